//! openraft's own storage conformance suite, run against the SQLite log store and state machine.

#![allow(clippy::unwrap_used)]

use andromede_store::{LogStore, NodeId, StateMachine, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};

struct Sqlite;

fn io(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read(&std::io::Error::other(e.to_string())).into()
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Sqlite {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(io)?;
        let log = LogStore::open(&dir.path().join("raft.db"))
            .await
            .map_err(io)?;
        let sm = StateMachine::open(&dir.path().join("state"))
            .await
            .map_err(io)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Sqlite).unwrap();
}
