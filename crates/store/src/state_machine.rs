//! The openraft state machine: applies entries to the in-memory [`State`] and persists each batch
//! in one SQLite transaction together with the last applied log id (exactly-once across crashes).
//!
//! Apply owns the one writer connection; history reads and snapshot builds use a separate pool of
//! read-only connections (WAL lets them read while apply writes), so apply never waits on them.
//! A snapshot is one file, `snapshots/current.snap` (header, metadata, then a `VACUUM INTO` copy
//! of the database), replaced by one rename. Installing one validates and loads the received
//! database under its own name before it replaces `state.db`. See docs/storage.md.

use crate::command::{Reply, Response};
use crate::retention::{Bounds, EVENT_HISTORY};
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;

type Membership = StoredMembership<NodeId, BasicNode>;
type Meta = SnapshotMeta<NodeId, BasicNode>;

/// What the API layer shares with the state machine: the applied state and the event feed.
pub struct Shared {
    state: RwLock<State>,
    /// Read-only connections to `state.db`, never used by apply.
    readers: RwLock<SqlitePool>,
    /// Held shared while reading `state.db` through `readers`, exclusively while an install
    /// swaps the file, so no reader sees the pool closed under it.
    files: tokio::sync::RwLock<()>,
    /// Serializes replacing the current snapshot file (builds run beside installs).
    snapshot_file: Mutex<()>,
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

    /// The read-only pool. Prefer [`Shared::events_since`], which also waits out a snapshot
    /// install; a transaction held here never delays apply.
    pub fn read_pool(&self) -> SqlitePool {
        self.readers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Events after revision `from`, oldest first, at most `limit`, from the on-disk history.
    pub async fn events_since(&self, from: u64, limit: u32) -> Result<Vec<Event>, DbError> {
        let _files = self.files.read().await;
        sqlite::events_since(&self.read_pool(), from, limit).await
    }
}

pub struct StateMachine {
    shared: Arc<Shared>,
    /// The one writer connection to `state.db`.
    writer: SqlitePool,
    dir: PathBuf,
    last_applied: Option<LogId>,
    membership: Membership,
    history: Bounds,
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

/// A process-wide sequence for temporary file names: no two builds or installs share one.
fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The last applied log id and membership recorded with the data. Absent means nothing was
/// applied; present but unreadable is an error, never "nothing applied".
async fn read_applied(pool: &SqlitePool) -> Result<(Option<LogId>, Membership), DbError> {
    let last = sqlite::get_meta_json::<Option<LogId>>(pool, "last_applied")
        .await?
        .flatten();
    let mem = sqlite::get_meta_json(pool, "membership")
        .await?
        .unwrap_or_default();
    Ok((last, mem))
}

/// Loads a state database and checks it is whole: a state with events but no applied log id
/// would re-apply the log on top of itself.
async fn load_checked(pool: &SqlitePool) -> Result<(State, Option<LogId>, Membership), DbError> {
    let state = sqlite::load(pool).await?;
    let (last_applied, membership) = read_applied(pool).await?;
    if last_applied.is_none() && state.revision > 0 {
        return Err(DbError::Corrupt {
            what: format!(
                "meta: state at revision {} has no last_applied",
                state.revision
            ),
        });
    }
    Ok((state, last_applied, membership))
}

impl StateMachine {
    /// Opens `dir/state.db`, applies migrations and loads the state into memory. Unreadable
    /// persistence is an error naming what is wrong: the node must not start on a guess.
    pub async fn open(dir: &Path) -> Result<Self, DbError> {
        let sdir = dir.join("snapshots");
        std::fs::create_dir_all(&sdir).map_err(DbError::io("creating", &sdir))?;
        remove_leftovers(dir)?;
        let db = dir.join("state.db");
        let writer = sqlite::open(&db, &STATE_MIGRATIONS).await?;
        let readers = sqlite::open_readers(&db).await?;
        let (state, last_applied, membership) = load_checked(&writer).await?;
        adopt_legacy_snapshot(&sdir).await?;
        let (events, _) = broadcast::channel(4096);
        Ok(Self {
            shared: Arc::new(Shared {
                state: RwLock::new(state),
                readers: RwLock::new(readers),
                files: tokio::sync::RwLock::new(()),
                snapshot_file: Mutex::new(()),
                events,
            }),
            writer,
            dir: dir.to_path_buf(),
            last_applied,
            membership,
            history: EVENT_HISTORY,
        })
    }

    /// Bounds the on-disk event history differently (tests; the default is [`EVENT_HISTORY`]).
    pub fn with_event_history(mut self, history: Bounds) -> Self {
        self.history = history;
        self
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Checks and loads a received snapshot database at `path`, away from `state.db`: migrated
    /// to this build's schema (refused if it is newer), loaded, and at `meta`'s log id.
    async fn load_incoming(
        &self,
        path: &Path,
        meta: &Meta,
        data: &[u8],
    ) -> Result<(State, Membership), DbError> {
        write_synced(path, data)?;
        let pool = sqlite::open(path, &STATE_MIGRATIONS).await?;
        let loaded = load_checked(&pool).await;
        let res = match loaded {
            Ok((_, last, _)) if last != meta.last_log_id => Err(DbError::Corrupt {
                what: format!(
                    "snapshot {}: data at log id {last:?}, metadata at {:?}",
                    meta.snapshot_id, meta.last_log_id
                ),
            }),
            Ok((state, _, membership)) => sqlite::checkpoint(&pool, path)
                .await
                .map(|()| (state, membership)),
            Err(e) => Err(e),
        };
        pool.close().await;
        res
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
        let mut tx = self.writer.begin().await.map_err(sm_w)?;
        sqlite::write_changes(&mut tx, &changes, self.history)
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
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let incoming = self.dir.join(format!("incoming-{}.db", unique()));
        // Until the rename below, state.db and the in-memory state are untouched: a snapshot
        // this build cannot read leaves the node on its old state, and the error says why.
        let (state, _) = match self.load_incoming(&incoming, meta, &data).await {
            Ok(x) => x,
            Err(e) => {
                let _ = sqlite::remove_db(&incoming);
                tracing::error!(snapshot = %meta.snapshot_id, error = %error_chain(&e), "refused snapshot");
                return Err(snap_w(e));
            }
        };
        let db = self.dir.join("state.db");
        {
            let _files = self.shared.files.write().await;
            self.shared.read_pool().close().await;
            // With the readers gone the writer can empty the WAL: the old file alone is then
            // the old database, and no stale WAL can be replayed onto the new one.
            sqlite::checkpoint(&self.writer, &db)
                .await
                .map_err(snap_w)?;
            self.writer.close().await;
            for p in sqlite::side_files(&db) {
                if p.exists() {
                    std::fs::remove_file(&p).map_err(snap_w)?;
                }
            }
            std::fs::rename(&incoming, &db).map_err(snap_w)?;
            sync_dir(&self.dir).map_err(snap_w)?;
            self.writer = sqlite::open(&db, &STATE_MIGRATIONS).await.map_err(snap_w)?;
            let readers = sqlite::open_readers(&db).await.map_err(snap_w)?;
            *self
                .shared
                .readers
                .write()
                .unwrap_or_else(|p| p.into_inner()) = readers;
        }
        self.shared.write(|st| *st = state);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        save_current(&self.shared, &self.dir, meta, &data).map_err(snap_w)?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let path = self.dir.join("snapshots").join(CURRENT);
        let bytes = {
            let _g = self
                .shared
                .snapshot_file
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(snap_r(DbError::io("reading", &path)(e))),
            }
        };
        let (meta, data) = decode_snapshot(&path, &bytes).map_err(snap_r)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.to_vec())),
        }))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), DbError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(DbError::io("creating", path))?;
    f.write_all(data).map_err(DbError::io("writing", path))?;
    f.sync_all().map_err(DbError::io("syncing", path))
}

fn sync_dir(dir: &Path) -> Result<(), DbError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(DbError::io("syncing", dir))
}

/// The current snapshot: [`MAGIC`], the metadata's length (u64, little endian), the metadata
/// as JSON, then the database bytes. One file, so data and metadata are replaced together.
const CURRENT: &str = "current.snap";
const MAGIC: &[u8; 8] = b"ANDSNAP1";

fn encode_snapshot(meta: &Meta, data: &[u8]) -> Result<Vec<u8>, DbError> {
    let m = serde_json::to_vec(meta).map_err(|e| DbError::Corrupt {
        what: format!("snapshot metadata: {e}"),
    })?;
    let mut out = Vec::with_capacity(16 + m.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(m.len() as u64).to_le_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(data);
    Ok(out)
}

fn decode_snapshot<'a>(path: &Path, bytes: &'a [u8]) -> Result<(Meta, &'a [u8]), DbError> {
    let corrupt = |why: String| DbError::Corrupt {
        what: format!("snapshot file {}: {why}", path.display()),
    };
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| corrupt("not an Andromède snapshot".into()))?;
    let (len, rest) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt("truncated header".into()))?;
    let len = usize::try_from(u64::from_le_bytes(*len))
        .ok()
        .filter(|l| *l <= rest.len())
        .ok_or_else(|| corrupt("truncated metadata".into()))?;
    let (m, data) = rest.split_at(len);
    let meta = serde_json::from_slice(m).map_err(|e| corrupt(format!("metadata: {e}")))?;
    Ok((meta, data))
}

/// Makes `meta` + `data` the current snapshot with one rename, unless the current one is
/// newer (a build that started before an install may finish after it).
fn save_current(shared: &Shared, dir: &Path, meta: &Meta, data: &[u8]) -> Result<(), DbError> {
    let sdir = dir.join("snapshots");
    let path = sdir.join(CURRENT);
    let _g = shared
        .snapshot_file
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok((cur, _)) = decode_snapshot(&path, &bytes) {
            if cur.last_log_id > meta.last_log_id {
                return Ok(());
            }
        }
    }
    let tmp = sdir.join(format!("current-{}.tmp", unique()));
    let res = write_synced(&tmp, &encode_snapshot(meta, data)?).and_then(|()| {
        std::fs::rename(&tmp, &path).map_err(DbError::io("renaming", &tmp))?;
        sync_dir(&sdir)
    });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Removes temporary files a crash may have left (copies being built, received or saved).
fn remove_leftovers(dir: &Path) -> Result<(), DbError> {
    for (d, prefixes) in [
        (dir.to_path_buf(), &["incoming-"][..]),
        (
            dir.join("snapshots"),
            &["build-", "current-", "legacy-", "next."][..],
        ),
    ] {
        let entries = std::fs::read_dir(&d).map_err(DbError::io("listing", &d))?;
        for e in entries {
            let e = e.map_err(DbError::io("listing", &d))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| name.starts_with(p)) {
                let p = e.path();
                std::fs::remove_file(&p).map_err(DbError::io("removing", &p))?;
            }
        }
    }
    Ok(())
}

/// Earlier builds kept a snapshot as `current.db` + `current.json`, renamed one after the
/// other: adopt the pair only if the data is at the metadata's log id, else drop it (a
/// snapshot is a cache of the state; the next build makes a new one).
async fn adopt_legacy_snapshot(sdir: &Path) -> Result<(), DbError> {
    let (db, json) = (sdir.join("current.db"), sdir.join("current.json"));
    if !db.exists() && !json.exists() {
        return Ok(());
    }
    let meta: Option<Meta> = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if let (Some(meta), Ok(data)) = (meta, std::fs::read(&db)) {
        let probe = sdir.join(format!("legacy-{}.db", unique()));
        write_synced(&probe, &data)?;
        let at = match sqlite::open_plain(&probe).await {
            Ok(pool) => {
                let r = read_applied(&pool).await.ok().map(|(l, _)| l);
                pool.close().await;
                r
            }
            Err(_) => None,
        };
        sqlite::remove_db(&probe)?;
        if at == Some(meta.last_log_id) && !sdir.join(CURRENT).exists() {
            let tmp = sdir.join(format!("current-{}.tmp", unique()));
            write_synced(&tmp, &encode_snapshot(&meta, &data)?)?;
            std::fs::rename(&tmp, sdir.join(CURRENT)).map_err(DbError::io("renaming", &tmp))?;
        } else {
            tracing::warn!("dropping a legacy snapshot whose data and metadata disagree");
        }
    }
    sqlite::remove_db(&db)?;
    let _ = std::fs::remove_file(&json);
    sync_dir(sdir)
}

pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let tmp = self
            .dir
            .join("snapshots")
            .join(format!("build-{}.db", unique()));
        let built = self.copy_to(&tmp).await;
        let _ = sqlite::remove_db(&tmp);
        let (data, last_applied, membership) = built.map_err(snap_w)?;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, data.len()),
            None => format!("0-0-{}", data.len()),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        save_current(&self.shared, &self.dir, &meta, &data).map_err(snap_w)?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl SnapshotBuilder {
    /// Copies the database to `tmp` and reads it back with the log id it is at.
    async fn copy_to(&self, tmp: &Path) -> Result<(Vec<u8>, Option<LogId>, Membership), DbError> {
        {
            let _files = self.shared.files.read().await;
            // VACUUM INTO copies one consistent read transaction: rows and last_applied agree.
            let path = tmp.display().to_string().replace('\'', "''");
            sqlx::query(&format!("VACUUM INTO '{path}'"))
                .execute(&self.shared.read_pool())
                .await?;
        }
        let copy = sqlite::open_plain(tmp).await?;
        let applied = read_applied(&copy).await;
        copy.close().await;
        let (last_applied, membership) = applied?;
        let data = std::fs::read(tmp).map_err(DbError::io("reading", tmp))?;
        Ok((data, last_applied, membership))
    }
}
