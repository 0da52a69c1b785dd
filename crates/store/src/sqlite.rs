//! SQLite persistence of the state machine: schema, per-batch writes, full loads and file swaps.

use crate::resource::Resource;
use crate::retention::{Bounds, EVENT_RING};
use crate::state::{Changes, RequestId, State, Table};
use andromede_api::v1::Event;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::retention::EVENT_HISTORY;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite")]
    Sql(#[from] sqlx::Error),
    #[error("schema migration")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error(
        "the database has schema migration {version}, unknown to this build: it was written by a \
         newer Andromède; upgrade this server"
    )]
    NewerSchema { version: i64 },
    #[error("corrupt row in {table}")]
    Decode {
        table: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("corrupt {what}")]
    Corrupt { what: String },
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<sqlx::migrate::MigrateError> for DbError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::VersionMissing(version) => Self::NewerSchema { version },
            e => Self::Migrate(e),
        }
    }
}

impl DbError {
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { op, path, source }
    }
}

pub static STATE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/state");
pub static LOG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/raftlog");

const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections for history reads and snapshot copies; apply has its own.
const READERS: u32 = 4;

/// Opens (creating if needed) a SQLite file with durable settings: WAL, fsync on every commit.
pub async fn open(path: &Path, migrator: &sqlx::migrate::Migrator) -> Result<SqlitePool, DbError> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT);
    // One writer connection: every write is serialized by the Raft core anyway, and nothing
    // else writes, so a write never waits for a connection.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?;
    migrator.run(&pool).await?;
    Ok(pool)
}

/// Read-only connections to a database [`open`] has set up. In WAL mode readers see the last
/// commit and never block the writer, however long they read.
pub async fn open_readers(path: &Path) -> Result<SqlitePool, DbError> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT);
    Ok(SqlitePoolOptions::new()
        .max_connections(READERS)
        .connect_with(opts)
        .await?)
}

/// Opens an existing SQLite file without migrations (snapshot copies).
pub async fn open_plain(path: &Path) -> Result<SqlitePool, DbError> {
    let opts = SqliteConnectOptions::new().filename(path);
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?)
}

/// Folds the WAL into the main file and empties it, so the file alone is the whole database
/// (before it is renamed or copied). Nothing else may be reading it.
pub async fn checkpoint(pool: &SqlitePool, path: &Path) -> Result<(), DbError> {
    let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(pool)
        .await?;
    if row.get::<i64, _>(0) != 0 {
        return Err(DbError::Corrupt {
            what: format!(
                "checkpoint of {}: still in use by another connection",
                path.display()
            ),
        });
    }
    Ok(())
}

/// The paths of a database's companion files (WAL, shared memory, rollback journal).
pub fn side_files(path: &Path) -> [PathBuf; 3] {
    ["-wal", "-shm", "-journal"].map(|s| PathBuf::from(format!("{}{s}", path.display())))
}

/// Removes a database file and its companions, if present.
pub fn remove_db(path: &Path) -> Result<(), DbError> {
    let main = [path.to_path_buf()];
    for p in main.iter().chain(side_files(path).iter()) {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DbError::io("removing", p)(e)),
        }
    }
    Ok(())
}

pub async fn get_meta(pool: &SqlitePool, key: &str) -> Result<Option<String>, DbError> {
    Ok(sqlx::query("SELECT value FROM meta WHERE key = ?")
        .bind(key)
        .fetch_optional(pool)
        .await?
        .map(|r| r.get::<String, _>(0)))
}

/// A meta value decoded as JSON; present but undecodable is an error, never a default.
pub async fn get_meta_json<T: serde::de::DeserializeOwned>(
    pool: &SqlitePool,
    key: &str,
) -> Result<Option<T>, DbError> {
    match get_meta(pool, key).await? {
        None => Ok(None),
        Some(v) => serde_json::from_str(&v)
            .map(Some)
            .map_err(|e| DbError::Corrupt {
                what: format!("meta {key} = {v:?}: {e}"),
            }),
    }
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

/// Writes one batch of changes (rows, request ids, events, revision) into `tx`, then prunes the
/// event history to `history`.
pub async fn write_changes(
    tx: &mut Transaction<'_, Sqlite>,
    ch: &Changes,
    history: Bounds,
) -> Result<(), DbError> {
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
        match v {
            Some(v) => {
                sqlx::query(
                    "INSERT OR REPLACE INTO request_ids (key, target, created_at_ms, expires_at_ms) \
                     VALUES (?, ?, ?, ?)",
                )
                .bind(k)
                .bind(&v.target)
                .bind(v.at_ms)
                .bind(v.expires_at_ms)
                .execute(&mut **tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM request_ids WHERE key = ?")
                    .bind(k)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    if !ch.events.is_empty() {
        let mut bytes = event_bytes(tx).await?;
        for ev in &ch.events {
            let body = serde_json::to_string(ev).map_err(|e| DbError::Decode {
                table: "events",
                source: e,
            })?;
            bytes += body.len() as u64;
            sqlx::query("INSERT OR REPLACE INTO events (revision, kind, id, project_id, body) VALUES (?, ?, ?, ?, ?)")
                .bind(ev.revision as i64)
                .bind(&ev.kind)
                .bind(&ev.id)
                .bind(&ev.project_id)
                .bind(body)
                .execute(&mut **tx)
                .await?;
        }
        prune_events(tx, history, bytes).await?;
    }
    if let Some(r) = &ch.replicas {
        put_meta(tx, "replica_locations", r).await?;
    }
    put_meta(tx, "revision", &ch.revision.to_string()).await?;
    Ok(())
}

/// Bytes of event bodies on disk, kept in `meta` so the bound costs no scan per batch.
async fn event_bytes(tx: &mut Transaction<'_, Sqlite>) -> Result<u64, DbError> {
    let kept: Option<String> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'event_bytes'")
            .fetch_optional(&mut **tx)
            .await?;
    match kept {
        Some(v) => v.parse().map_err(|e| DbError::Corrupt {
            what: format!("meta event_bytes = {v:?}: {e}"),
        }),
        // A database from before the byte bound: count once.
        None => {
            let n: i64 = sqlx::query_scalar(
                "SELECT COALESCE(SUM(length(CAST(body AS BLOB))), 0) FROM events",
            )
            .fetch_one(&mut **tx)
            .await?;
            Ok(n as u64)
        }
    }
}

/// Deletes the oldest events until the history fits `history` (the newest is always kept).
/// The outcome depends only on the events, not on how they were batched, so every replica
/// keeps the same history.
async fn prune_events(
    tx: &mut Transaction<'_, Sqlite>,
    history: Bounds,
    mut bytes: u64,
) -> Result<(), DbError> {
    let (first, last): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT MIN(revision), MAX(revision) FROM events")
            .fetch_one(&mut **tx)
            .await?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(());
    };
    // Revisions on disk are contiguous: the count is the span.
    let count = (last - first + 1) as u64;
    let mut cut = first - 1;
    if count > history.count {
        cut = last - history.count as i64;
        let freed: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(length(CAST(body AS BLOB))), 0) FROM events WHERE revision <= ?",
        )
        .bind(cut)
        .fetch_one(&mut **tx)
        .await?;
        bytes = bytes.saturating_sub(freed as u64);
    }
    while history.exceeded((last - cut) as u64, bytes) {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT revision, length(CAST(body AS BLOB)) FROM events \
             WHERE revision > ? AND revision < ? ORDER BY revision LIMIT 256",
        )
        .bind(cut)
        .bind(last)
        .fetch_all(&mut **tx)
        .await?;
        if rows.is_empty() {
            break;
        }
        for (rev, len) in rows {
            if !history.exceeded((last - cut) as u64, bytes) {
                break;
            }
            cut = rev;
            bytes = bytes.saturating_sub(len as u64);
        }
    }
    if cut >= first {
        sqlx::query("DELETE FROM events WHERE revision <= ?")
            .bind(cut)
            .execute(&mut **tx)
            .await?;
    }
    put_meta(tx, "event_bytes", &bytes.to_string()).await
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
    load_table::<andromede_api::v1::ApiToken>(pool, &mut s).await?;
    s.reindex();
    for row in sqlx::query("SELECT key, target, created_at_ms, expires_at_ms FROM request_ids")
        .fetch_all(pool)
        .await?
    {
        s.request_ids.insert(
            row.get(0),
            RequestId {
                target: row.get(1),
                at_ms: row.get(2),
                expires_at_ms: row.get(3),
            },
        );
    }
    s.reindex_request_ids();
    s.revision = get_meta_json(pool, "revision").await?.unwrap_or(0);
    if let Some(r) = get_meta_json(pool, "replica_locations").await? {
        s.replicas = r;
    }
    let rows = sqlx::query("SELECT body FROM events ORDER BY revision DESC LIMIT ?")
        .bind(EVENT_RING as i64)
        .fetch_all(pool)
        .await?;
    // Oldest first through the ring's own bounds: the same events it would hold had it never
    // been reloaded.
    for row in rows.into_iter().rev() {
        let body: String = row.get(0);
        let ev: Event = serde_json::from_str(&body).map_err(|e| DbError::Decode {
            table: "events",
            source: e,
        })?;
        s.events.push(ev);
    }
    Ok(s)
}

/// Events after `from` (exclusive), oldest first, at most `limit`, read from disk.
pub async fn events_since(pool: &SqlitePool, from: u64, limit: u32) -> Result<Vec<Event>, DbError> {
    // Revisions are stored as i64: anything past i64::MAX has nothing after it.
    let Ok(from) = i64::try_from(from) else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query("SELECT body FROM events WHERE revision > ? ORDER BY revision LIMIT ?")
        .bind(from)
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
