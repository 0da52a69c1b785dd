//! Andromède's replicated state: the Raft command protocol, the deterministic state it drives, a
//! durable openraft log in SQLite and the SQLite state machine with snapshots.

pub mod command;
pub mod log_store;
pub mod resource;
pub mod retention;
pub mod sqlite;
pub mod state;
pub mod state_machine;

pub use command::{CmdError, CmdErrorCode, Command, Envelope, Reply, Response};
pub use log_store::LogStore;
pub use state::State;
pub use state_machine::{Shared, StateMachine};

use std::io::Cursor;

openraft::declare_raft_types!(
    /// Raft types of an Andromède region.
    pub TypeConfig:
        D = Envelope,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Maps any error into openraft's storage error, as a read or write failure of the given subject.
pub(crate) fn io_err(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(&e)).into()
}
