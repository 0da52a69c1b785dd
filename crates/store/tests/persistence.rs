//! The SQLite state machine and log survive a reopen, and snapshots round-trip.

use andromede_api::v1::{Datacenter, Meta};
use andromede_store::{Command, Envelope, LogStore, StateMachine, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder};

fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Envelope::new(7, cmd)),
    }
}

fn dc(name: &str) -> Command {
    Command::CreateDatacenter(Datacenter {
        meta: Some(Meta {
            id: format!("id-{name}"),
            name: name.into(),
            ..Default::default()
        }),
        country: "FR".into(),
        status: 1,
        ..Default::default()
    })
}

#[tokio::test]
async fn state_survives_reopen_and_snapshot_installs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut sm = StateMachine::open(dir.path()).await.unwrap();
        sm.apply(vec![entry(1, dc("a")), entry(2, dc("b"))])
            .await
            .unwrap();
    }
    let mut sm = StateMachine::open(dir.path()).await.unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));
    let shared = sm.shared();
    assert_eq!(shared.read(|s| s.datacenters.len()), 2);
    assert_eq!(
        shared.read(|s| s.datacenters["id-a"].jurisdictions.clone()),
        vec!["FR", "EU", "EEA"]
    );

    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2));

    let other = tempfile::tempdir().unwrap();
    let mut sm2 = StateMachine::open(other.path()).await.unwrap();
    sm2.install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    assert_eq!(sm2.shared().read(|s| s.datacenters.len()), 2);
    let (applied2, _) = sm2.applied_state().await.unwrap();
    assert_eq!(applied2.map(|l| l.index), Some(2));
    // The installed copy keeps applying.
    sm2.apply(vec![entry(3, dc("c"))]).await.unwrap();
    assert_eq!(sm2.shared().read(|s| s.datacenters.len()), 3);
    assert!(sm2.get_current_snapshot().await.unwrap().is_some());
}

/// Appends need openraft's flush callback, which only openraft can build: they are exercised by
/// the cluster tests in `tests/`. Here: an empty log and a durable vote.
#[tokio::test]
async fn vote_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.db");
    let mut store = LogStore::open(&path).await.unwrap();
    assert_eq!(store.get_log_state().await.unwrap().last_log_id, None);
    assert!(store.try_get_log_entries(0..10).await.unwrap().is_empty());
    store.save_vote(&openraft::Vote::new(3, 1)).await.unwrap();
    drop(store);
    let mut store = LogStore::open(&path).await.unwrap();
    assert_eq!(
        store.read_vote().await.unwrap(),
        Some(openraft::Vote::new(3, 1))
    );
}
