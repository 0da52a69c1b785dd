//! The durable Raft log and vote, in their own SQLite file. An append is acknowledged to openraft
//! only after its transaction has been committed with a full fsync.

use crate::sqlite::{self, DbError, LOG_MIGRATIONS};
use crate::{io_err, LogId, NodeId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, RaftLogId, RaftLogReader, Vote};
use sqlx::{Row, SqlitePool};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

#[derive(Clone)]
pub struct LogStore {
    pool: SqlitePool,
}

fn rd(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}
fn wr(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

impl LogStore {
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        Ok(Self {
            pool: sqlite::open(path, &LOG_MIGRATIONS).await?,
        })
    }

    async fn meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let row = sqlx::query("SELECT value FROM raft_meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(rd)?;
        match row {
            None => Ok(None),
            Some(r) => serde_json::from_str(&r.get::<String, _>(0))
                .map(Some)
                .map_err(rd),
        }
    }

    async fn set_meta<T: serde::Serialize>(&self, key: &str, v: &T) -> Result<(), StorageError> {
        let s = serde_json::to_string(v).map_err(wr)?;
        sqlx::query("INSERT INTO raft_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(s)
            .execute(&self.pool)
            .await
            .map_err(wr)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x as i64,
            Bound::Excluded(x) => *x as i64 + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => (*x as i64).saturating_add(1),
            Bound::Excluded(x) => *x as i64,
            Bound::Unbounded => i64::MAX,
        };
        let rows = sqlx::query("SELECT data FROM log WHERE idx >= ? AND idx < ? ORDER BY idx")
            .bind(start)
            .bind(end)
            .fetch_all(&self.pool)
            .await
            .map_err(rd)?;
        rows.iter()
            .map(|r| serde_json::from_slice(r.get::<&[u8], _>(0)).map_err(rd))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.meta("last_purged").await?;
        let row = sqlx::query("SELECT data FROM log ORDER BY idx DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(rd)?;
        let last = match row {
            Some(r) => {
                let e: Entry<TypeConfig> =
                    serde_json::from_slice(r.get::<&[u8], _>(0)).map_err(rd)?;
                Some(*e.get_log_id())
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.set_meta("vote", vote)
            .await
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta("vote").await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.set_meta("committed", &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta::<Option<LogId>>("committed").await?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut tx = self.pool.begin().await.map_err(wr)?;
        for e in entries {
            let data = serde_json::to_vec(&e).map_err(wr)?;
            sqlx::query("INSERT OR REPLACE INTO log (idx, term, data) VALUES (?, ?, ?)")
                .bind(e.get_log_id().index as i64)
                .bind(e.get_log_id().leader_id.term as i64)
                .bind(data)
                .execute(&mut *tx)
                .await
                .map_err(wr)?;
        }
        // synchronous=FULL: the commit returns after the WAL is fsynced.
        let res = tx.commit().await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(wr(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM log WHERE idx >= ?")
            .bind(log_id.index as i64)
            .execute(&self.pool)
            .await
            .map_err(wr)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.set_meta("last_purged", &log_id).await?;
        sqlx::query("DELETE FROM log WHERE idx <= ?")
            .bind(log_id.index as i64)
            .execute(&self.pool)
            .await
            .map_err(wr)?;
        Ok(())
    }
}
