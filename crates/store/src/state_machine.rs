//! The openraft state machine: applies entries to the in-memory [`State`] and persists each batch
//! in one SQLite transaction together with the last applied log id (exactly-once across crashes).
//! Snapshots are SQLite files made with `VACUUM INTO` and installed by swapping files.

use crate::command::{Reply, Response};
use crate::sqlite::{self, DbError, STATE_MIGRATIONS};
use crate::state::State;
use crate::{io_err, LogId, NodeId, StorageError, TypeConfig};
use andromede_api::v1::Event;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, SnapshotMeta,
    StoredMembership,
};
use sqlx::SqlitePool;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

type Membership = StoredMembership<NodeId, BasicNode>;

/// What the API layer shares with the state machine: the applied state and the event feed.
pub struct Shared {
    state: RwLock<State>,
    pool: RwLock<SqlitePool>,
    pub events: broadcast::Sender<Event>,
}

impl Shared {
    /// Runs `f` against the applied state. Never hold the result across an await.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        let g = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&g)
    }

    fn write<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut g = self.state.write().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn pool(&self) -> SqlitePool {
        self.pool.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub struct StateMachine {
    shared: Arc<Shared>,
    dir: PathBuf,
    last_applied: Option<LogId>,
    membership: Membership,
}

fn sm_w(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e)
}
fn snap_w(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e)
}
fn snap_r(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e)
}

async fn read_applied(pool: &SqlitePool) -> Result<(Option<LogId>, Membership), DbError> {
    let last = sqlite::get_meta(pool, "last_applied")
        .await?
        .and_then(|s| serde_json::from_str(&s).ok());
    let mem = sqlite::get_meta(pool, "membership")
        .await?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    Ok((last, mem))
}

impl StateMachine {
    /// Opens `dir/state.db`, applies migrations and loads the state into memory.
    pub async fn open(dir: &Path) -> Result<Self, DbError> {
        std::fs::create_dir_all(dir.join("snapshots")).map_err(|e| DbError::Sql(e.into()))?;
        let pool = sqlite::open(&dir.join("state.db"), &STATE_MIGRATIONS).await?;
        let state = sqlite::load(&pool).await?;
        let (last_applied, membership) = read_applied(&pool).await?;
        let (events, _) = broadcast::channel(4096);
        Ok(Self {
            shared: Arc::new(Shared {
                state: RwLock::new(state),
                pool: RwLock::new(pool),
                events,
            }),
            dir: dir.to_path_buf(),
            last_applied,
            membership,
        })
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut replies = Vec::new();
        let mut changes = None;
        {
            let entries: Vec<_> = entries.into_iter().collect();
            if entries.is_empty() {
                return Ok(replies);
            }
            self.shared.write(|st| {
                for e in &entries {
                    self.last_applied = Some(e.log_id);
                    match &e.payload {
                        EntryPayload::Blank => replies.push(Response(Ok(Reply::Done))),
                        EntryPayload::Normal(env) => replies.push(st.apply(env)),
                        EntryPayload::Membership(m) => {
                            self.membership = StoredMembership::new(Some(e.log_id), m.clone());
                            replies.push(Response(Ok(Reply::Done)));
                        }
                    }
                }
                changes = Some(st.take_changes());
            });
        }
        let Some(changes) = changes else {
            return Ok(replies);
        };
        let pool = self.shared.pool();
        let mut tx = pool.begin().await.map_err(sm_w)?;
        sqlite::write_changes(&mut tx, &changes)
            .await
            .map_err(sm_w)?;
        let la = serde_json::to_string(&self.last_applied).map_err(sm_w)?;
        sqlite::put_meta(&mut tx, "last_applied", &la)
            .await
            .map_err(sm_w)?;
        let mem = serde_json::to_string(&self.membership).map_err(sm_w)?;
        sqlite::put_meta(&mut tx, "membership", &mem)
            .await
            .map_err(sm_w)?;
        tx.commit().await.map_err(sm_w)?;
        for ev in changes.events {
            // No receivers is fine: nobody is watching.
            let _ = self.shared.events.send(ev);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
            dir: self.dir.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        save_snapshot_files(&self.dir, meta, &data).map_err(snap_w)?;
        let incoming = self.dir.join("incoming.db");
        write_synced(&incoming, &data).map_err(snap_w)?;
        let old = self.shared.pool();
        old.close().await;
        let db = self.dir.join("state.db");
        for suffix in ["-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", db.display()));
            if p.exists() {
                std::fs::remove_file(&p).map_err(snap_w)?;
            }
        }
        std::fs::rename(&incoming, &db).map_err(snap_w)?;
        sync_dir(&self.dir).map_err(snap_w)?;
        let pool = sqlite::open(&db, &STATE_MIGRATIONS).await.map_err(snap_w)?;
        let state = sqlite::load(&pool).await.map_err(snap_w)?;
        *self.shared.pool.write().unwrap_or_else(|p| p.into_inner()) = pool;
        self.shared.write(|st| *st = state);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let dir = self.dir.join("snapshots");
        let meta_path = dir.join("current.json");
        if !meta_path.exists() {
            return Ok(None);
        }
        let meta: SnapshotMeta<NodeId, BasicNode> =
            serde_json::from_slice(&std::fs::read(&meta_path).map_err(snap_r)?).map_err(snap_r)?;
        let data = std::fs::read(dir.join("current.db")).map_err(snap_r)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Keeps the latest snapshot as `snapshots/current.db` + `current.json`, replaced atomically.
fn save_snapshot_files(
    dir: &Path,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    data: &[u8],
) -> std::io::Result<()> {
    let sdir = dir.join("snapshots");
    write_synced(&sdir.join("next.db"), data)?;
    std::fs::rename(sdir.join("next.db"), sdir.join("current.db"))?;
    let m = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    write_synced(&sdir.join("next.json"), &m)?;
    std::fs::rename(sdir.join("next.json"), sdir.join("current.json"))?;
    sync_dir(&sdir)
}

pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let tmp = self.dir.join("snapshots").join("building.db");
        if tmp.exists() {
            std::fs::remove_file(&tmp).map_err(snap_w)?;
        }
        let pool = self.shared.pool();
        // VACUUM INTO copies one consistent read transaction: rows and last_applied agree.
        let path = tmp.display().to_string().replace('\'', "''");
        sqlx::query(&format!("VACUUM INTO '{path}'"))
            .execute(&pool)
            .await
            .map_err(snap_w)?;
        let copy = sqlite::open_plain(&tmp).await.map_err(snap_w)?;
        let (last_applied, membership) = read_applied(&copy).await.map_err(snap_w)?;
        copy.close().await;
        let data = std::fs::read(&tmp).map_err(snap_w)?;
        std::fs::remove_file(&tmp).map_err(snap_w)?;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, data.len()),
            None => format!("0-0-{}", data.len()),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        save_snapshot_files(&self.dir, &meta, &data).map_err(snap_w)?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
