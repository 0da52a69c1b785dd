//! SQLite persistence of the state machine: schema, per-batch writes, full loads and file swaps.

use crate::resource::Resource;
use crate::state::{Changes, State, Table, EVENT_RING};

/// Events kept on disk for watchers resuming from an old revision.
pub const EVENT_HISTORY: u64 = 200_000;
use andromede_api::v1::Event;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite")]
    Sql(#[from] sqlx::Error),
    #[error("migration")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row in {table}")]
    Decode {
        table: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

pub static STATE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/state");
pub static LOG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/raftlog");

/// Opens (creating if needed) a SQLite file with durable settings: WAL, fsync on every commit.
pub async fn open(path: &Path, migrator: &sqlx::migrate::Migrator) -> Result<SqlitePool, DbError> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(std::time::Duration::from_secs(30));
    // One connection: every write is serialized by the Raft core anyway, and one connection
    // avoids SQLITE_BUSY between our own tasks.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?;
    migrator.run(&pool).await?;
    Ok(pool)
}

/// Opens an existing SQLite file without migrations (snapshot copies).
pub async fn open_plain(path: &Path) -> Result<SqlitePool, DbError> {
    let opts = SqliteConnectOptions::new().filename(path);
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?)
}

pub async fn get_meta(pool: &SqlitePool, key: &str) -> Result<Option<String>, DbError> {
    Ok(sqlx::query("SELECT value FROM meta WHERE key = ?")
        .bind(key)
        .fetch_optional(pool)
        .await?
        .map(|r| r.get::<String, _>(0)))
}

pub async fn put_meta(
    tx: &mut Transaction<'_, Sqlite>,
    key: &str,
    value: &str,
) -> Result<(), DbError> {
    sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
        .bind(key)
        .bind(value)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Writes one batch of changes (rows, request ids, events, revision) into `tx`.
pub async fn write_changes(tx: &mut Transaction<'_, Sqlite>, ch: &Changes) -> Result<(), DbError> {
    for (kind, id, row) in &ch.rows {
        let table = kind.table();
        match row {
            Some(r) => {
                let sql = format!(
                    "INSERT INTO {table} (id, project_id, name, generation, body) VALUES (?, ?, ?, ?, ?) \
                     ON CONFLICT(id) DO UPDATE SET project_id = excluded.project_id, name = excluded.name, \
                     generation = excluded.generation, body = excluded.body"
                );
                sqlx::query(&sql)
                    .bind(id)
                    .bind(&r.project_id)
                    .bind(&r.name)
                    .bind(r.generation as i64)
                    .bind(&r.body)
                    .execute(&mut **tx)
                    .await?;
            }
            None => {
                sqlx::query(&format!("DELETE FROM {table} WHERE id = ?"))
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    for (k, v) in &ch.request_ids {
        sqlx::query("INSERT OR REPLACE INTO request_ids (key, target) VALUES (?, ?)")
            .bind(k)
            .bind(v)
            .execute(&mut **tx)
            .await?;
    }
    for ev in &ch.events {
        let body = serde_json::to_string(ev).map_err(|e| DbError::Decode {
            table: "events",
            source: e,
        })?;
        sqlx::query("INSERT OR REPLACE INTO events (revision, kind, id, project_id, body) VALUES (?, ?, ?, ?, ?)")
            .bind(ev.revision as i64)
            .bind(&ev.kind)
            .bind(&ev.id)
            .bind(&ev.project_id)
            .bind(body)
            .execute(&mut **tx)
            .await?;
    }
    // Keep a bounded event history on disk; watchers older than that must re-list.
    if let Some(last) = ch.events.last() {
        if last.revision % 1000 == 0 && last.revision > EVENT_HISTORY {
            sqlx::query("DELETE FROM events WHERE revision <= ?")
                .bind((last.revision - EVENT_HISTORY) as i64)
                .execute(&mut **tx)
                .await?;
        }
    }
    if let Some(r) = &ch.replicas {
        put_meta(tx, "replica_locations", r).await?;
    }
    put_meta(tx, "revision", &ch.revision.to_string()).await?;
    Ok(())
}

async fn load_table<T: Resource>(pool: &SqlitePool, state: &mut State) -> Result<(), DbError>
where
    State: Table<T>,
{
    let table = T::KIND.table();
    let rows = sqlx::query(&format!("SELECT body FROM {table}"))
        .fetch_all(pool)
        .await?;
    let map = <State as Table<T>>::table_mut(state);
    for row in rows {
        let body: String = row.get(0);
        let r: T = serde_json::from_str(&body).map_err(|e| DbError::Decode { table, source: e })?;
        map.insert(r.meta().id.clone(), r);
    }
    Ok(())
}

/// Loads the whole state from SQLite (at start and after installing a snapshot).
pub async fn load(pool: &SqlitePool) -> Result<State, DbError> {
    let mut s = State::default();
    load_table::<andromede_api::v1::Datacenter>(pool, &mut s).await?;
    load_table::<andromede_api::v1::Host>(pool, &mut s).await?;
    load_table::<andromede_api::v1::Flavor>(pool, &mut s).await?;
    load_table::<andromede_api::v1::Image>(pool, &mut s).await?;
    load_table::<andromede_api::v1::Project>(pool, &mut s).await?;
    load_table::<andromede_api::v1::Instance>(pool, &mut s).await?;
    load_table::<andromede_api::v1::Volume>(pool, &mut s).await?;
    load_table::<andromede_api::v1::ServerGroup>(pool, &mut s).await?;
    load_table::<andromede_api::v1::JoinToken>(pool, &mut s).await?;
    s.reindex();
    for row in sqlx::query("SELECT key, target FROM request_ids")
        .fetch_all(pool)
        .await?
    {
        s.request_ids.insert(row.get(0), row.get(1));
    }
    s.revision = get_meta(pool, "revision")
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if let Some(r) = get_meta(pool, "replica_locations").await? {
        s.replicas = serde_json::from_str(&r).map_err(|e| DbError::Decode {
            table: "meta",
            source: e,
        })?;
    }
    let rows = sqlx::query("SELECT body FROM events ORDER BY revision DESC LIMIT ?")
        .bind(EVENT_RING as i64)
        .fetch_all(pool)
        .await?;
    for row in rows.into_iter().rev() {
        let body: String = row.get(0);
        let ev: Event = serde_json::from_str(&body).map_err(|e| DbError::Decode {
            table: "events",
            source: e,
        })?;
        s.events.push_back(ev);
    }
    Ok(s)
}

/// Events after `from` (exclusive), oldest first, at most `limit`, read from disk.
pub async fn events_since(pool: &SqlitePool, from: u64, limit: u32) -> Result<Vec<Event>, DbError> {
    let rows = sqlx::query("SELECT body FROM events WHERE revision > ? ORDER BY revision LIMIT ?")
        .bind(from as i64)
        .bind(limit as i64)
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        .map(|r| {
            serde_json::from_str(&r.get::<String, _>(0)).map_err(|e| DbError::Decode {
                table: "events",
                source: e,
            })
        })
        .collect()
}
