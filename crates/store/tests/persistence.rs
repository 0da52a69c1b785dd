//! Persistence of the state machine and log: reopens, snapshots (one atomic file, validated before
//! install, builds beside installs), apply beside readers, retention, and unreadable data refused.

#![allow(clippy::unwrap_used)]

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

#[tokio::test]
async fn apply_completes_while_a_history_read_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(dir.path()).await.unwrap();
    sm.apply(vec![entry(1, dc("a"))]).await.unwrap();
    let pool = sm.shared().read_pool();
    let mut tx = pool.begin().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 1);
    sm.apply(vec![entry(2, dc("b"))]).await.unwrap();
    tx.rollback().await.unwrap();
}

fn entry_at(index: u64, at_ms: i64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Envelope::new(at_ms, cmd)),
    }
}

async fn sql(path: &std::path::Path, stmt: &str) {
    let pool =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(path))
            .await
            .unwrap();
    sqlx::query(stmt).execute(&pool).await.unwrap();
    pool.close().await;
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_snapshot_from_a_newer_schema_is_refused_and_the_node_keeps_its_state() {
    let leader = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(leader.path()).await.unwrap();
    sm.apply(vec![entry(1, dc("a")), entry(2, dc("b"))])
        .await
        .unwrap();
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    // The same data as a newer build would ship it: one more schema migration applied.
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("newer.db");
    std::fs::write(&copy, snap.snapshot.get_ref()).unwrap();
    sql(
        &copy,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', TRUE, x'00', 0)",
    )
    .await;
    let newer = std::fs::read(&copy).unwrap();

    let follower = tempfile::tempdir().unwrap();
    let mut f = StateMachine::open(follower.path()).await.unwrap();
    f.apply(vec![entry(1, dc("x"))]).await.unwrap();
    let before = files_in(follower.path());
    let err = f
        .install_snapshot(&snap.meta, Box::new(std::io::Cursor::new(newer)))
        .await
        .unwrap_err();
    let why = format!("{err}: {:?}", err);
    assert!(
        why.contains("99990101000000") && why.contains("newer"),
        "{why}"
    );
    // Old state in memory, on disk, and nothing left behind.
    assert_eq!(f.shared().read(|s| s.datacenters.len()), 1);
    assert_eq!(files_in(follower.path()), before);
    assert!(f.get_current_snapshot().await.unwrap().is_none());
    f.apply(vec![entry(2, dc("y"))]).await.unwrap();
    drop(f);
    let mut f = StateMachine::open(follower.path()).await.unwrap();
    assert_eq!(f.applied_state().await.unwrap().0.map(|l| l.index), Some(2));
    let names = f.shared().read(|s| {
        s.datacenters
            .values()
            .map(|d| d.meta.clone().unwrap_or_default().name)
            .collect::<Vec<_>>()
    });
    assert_eq!(names, ["x", "y"]);
}

#[tokio::test]
async fn unreadable_last_applied_stops_open_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut sm = StateMachine::open(dir.path()).await.unwrap();
        sm.apply(vec![entry(1, dc("a"))]).await.unwrap();
    }
    let db = dir.path().join("state.db");
    sql(
        &db,
        "UPDATE meta SET value = '{\"leader_id\":' WHERE key = 'last_applied'",
    )
    .await;
    let err = StateMachine::open(dir.path())
        .await
        .err()
        .expect("open must fail");
    let why = format!("{err}");
    assert!(why.contains("last_applied"), "{why}");
    // Missing altogether while the state holds events: as bad, never "nothing applied".
    sql(&db, "DELETE FROM meta WHERE key = 'last_applied'").await;
    let err = StateMachine::open(dir.path())
        .await
        .err()
        .expect("open must fail");
    assert!(format!("{err}").contains("no last_applied"), "{err}");
}

#[tokio::test]
async fn a_snapshot_is_one_file_and_a_damaged_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(dir.path()).await.unwrap();
    sm.apply(vec![entry(1, dc("a"))]).await.unwrap();
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let sdir = dir.path().join("snapshots");
    assert_eq!(files_in(&sdir), ["current.snap"]);
    let cur = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(cur.meta.last_log_id.map(|l| l.index), Some(1));
    std::fs::write(sdir.join("current.snap"), b"ANDSNAP1\xff").unwrap();
    let err = sm.get_current_snapshot().await.expect_err("damaged");
    assert!(format!("{err:?}").contains("current.snap"), "{err:?}");
}

#[tokio::test]
async fn crash_leftovers_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(StateMachine::open(dir.path()).await.unwrap());
    std::fs::write(dir.path().join("incoming-3.db"), b"half").unwrap();
    std::fs::write(dir.path().join("snapshots").join("build-7.db"), b"half").unwrap();
    std::fs::write(dir.path().join("snapshots").join("current-2.tmp"), b"half").unwrap();
    drop(StateMachine::open(dir.path()).await.unwrap());
    assert!(!files_in(dir.path())
        .iter()
        .any(|f| f.starts_with("incoming")));
    assert!(files_in(&dir.path().join("snapshots")).is_empty());
}

#[tokio::test]
async fn builds_and_installs_running_together_keep_their_own_files() {
    let src = tempfile::tempdir().unwrap();
    let mut a = StateMachine::open(src.path()).await.unwrap();
    a.apply(
        (1..=20)
            .map(|i| entry(i, dc(&format!("a{i}"))))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let incoming = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut b = StateMachine::open(dir.path()).await.unwrap();
    b.apply(vec![entry(1, dc("b1"))]).await.unwrap();
    for _ in 0..5 {
        let mut builder = b.get_snapshot_builder().await;
        let data = incoming.snapshot.get_ref().clone();
        let (built, installed) = tokio::join!(
            builder.build_snapshot(),
            b.install_snapshot(&incoming.meta, Box::new(std::io::Cursor::new(data))),
        );
        installed.unwrap();
        built.unwrap();
        // The newest snapshot stays current, and its data is at its metadata's log id.
        let cur = b.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(cur.meta.last_log_id, incoming.meta.last_log_id);
        let other = tempfile::tempdir().unwrap();
        let mut c = StateMachine::open(other.path()).await.unwrap();
        c.install_snapshot(&cur.meta, cur.snapshot).await.unwrap();
        assert_eq!(c.shared().read(|s| s.datacenters.len()), 20);
    }
    assert_eq!(b.shared().read(|s| s.datacenters.len()), 20);
    assert_eq!(files_in(&dir.path().join("snapshots")), ["current.snap"]);
}

/// Every event body on disk, oldest first, and the byte count the store keeps for them.
async fn history(dir: &std::path::Path) -> (Vec<i64>, i64, Option<String>) {
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("state.db"))
            .read_only(true),
    )
    .await
    .unwrap();
    let revs: Vec<i64> = sqlx::query_scalar("SELECT revision FROM events ORDER BY revision")
        .fetch_all(&pool)
        .await
        .unwrap();
    let bytes: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(length(CAST(body AS BLOB))), 0) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap();
    let kept: Option<String> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'event_bytes'")
            .fetch_optional(&pool)
            .await
            .unwrap();
    pool.close().await;
    (revs, bytes, kept)
}

#[tokio::test]
async fn event_history_is_bounded_in_count_and_bytes_whatever_the_batching() {
    use andromede_store::retention::Bounds;
    let entries = |from: u64, to: u64| -> Vec<Entry<TypeConfig>> {
        (from..=to)
            .map(|i| {
                // Names of varying length, so the byte bound cuts at uneven places.
                entry(
                    i,
                    dc(&format!("dc{i}-{}", "x".repeat((i % 7 * 40) as usize))),
                )
            })
            .collect()
    };
    for bounds in [
        Bounds {
            count: 25,
            bytes: 1 << 30,
        },
        Bounds {
            count: 1000,
            bytes: 6000,
        },
    ] {
        let one = tempfile::tempdir().unwrap();
        let mut a = StateMachine::open(one.path())
            .await
            .unwrap()
            .with_event_history(bounds);
        for i in 1..=120 {
            a.apply(entries(i, i)).await.unwrap();
        }
        let many = tempfile::tempdir().unwrap();
        let mut b = StateMachine::open(many.path())
            .await
            .unwrap()
            .with_event_history(bounds);
        let mut next = 1;
        for size in [1, 13, 2, 40, 7, 57] {
            b.apply(entries(next, next + size - 1)).await.unwrap();
            next += size;
        }
        drop((a, b));
        let (ra, bytes_a, kept_a) = history(one.path()).await;
        let (rb, _, _) = history(many.path()).await;
        assert_eq!(ra, rb, "the same history whatever the batching");
        assert_eq!(ra.last(), Some(&120));
        assert!(ra.len() as u64 <= bounds.count, "{} events", ra.len());
        assert!(bytes_a as u64 <= bounds.bytes, "{bytes_a} bytes");
        assert_eq!(kept_a, Some(bytes_a.to_string()));
        // Contiguous: a watcher either gets every event after its revision or is told to re-list.
        assert!(ra.windows(2).all(|w| w[1] == w[0] + 1));
        if bounds.count == 25 {
            assert_eq!(ra.len(), 25);
        } else {
            assert!(ra.len() < 100, "the byte bound bites: {} events", ra.len());
        }
    }
}

#[tokio::test]
async fn request_ids_persist_with_their_expiry() {
    use andromede_store::retention::REQUEST_ID_WINDOW_MS as W;
    let with_req = || match dc("a") {
        Command::CreateDatacenter(mut d) => {
            d.meta.as_mut().unwrap().request_id = "req-1".into();
            Command::CreateDatacenter(d)
        }
        _ => unreachable!(),
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let mut sm = StateMachine::open(dir.path()).await.unwrap();
        sm.apply(vec![
            entry_at(1, 0, with_req()),
            entry_at(2, 5, Command::DeleteDatacenter { id: "id-a".into() }),
        ])
        .await
        .unwrap();
    }
    let mut sm = StateMachine::open(dir.path()).await.unwrap();
    let e = sm.shared().read(|s| s.request_ids.get("/req-1").cloned());
    assert_eq!(e.and_then(|e| e.expires_at_ms), Some(W));
    sm.apply(vec![entry_at(3, W, Command::ForgetReplica { node_id: 9 })])
        .await
        .unwrap();
    drop(sm);
    let sm = StateMachine::open(dir.path()).await.unwrap();
    assert!(sm.shared().read(|s| s.request_ids.is_empty()));
    let pool = sm.shared().read_pool();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM request_ids")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}
