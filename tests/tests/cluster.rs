//! Three real server processes: membership, forwarding, linearizable reads everywhere, leader
//! `kill -9` with no acknowledged write lost, and catch-up of a restarted node by snapshot.

#![allow(clippy::unwrap_used)]

use andromede_api::v1::*;
use andromede_tests::{bin, policy, Server, TOKEN};
use std::time::{Duration, Instant};

fn none() -> PlacementConstraints {
    PlacementConstraints::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_failover_and_snapshot_catch_up() {
    let root = tempfile::tempdir().unwrap();
    // Small snapshot interval so a node that was down must install a snapshot.
    let extra = ["--snapshot-every", "100", "--keep-logs", "10"];
    let mut servers: Vec<Server> = (1..=3)
        .map(|i| Server::new(i, root.path(), &extra))
        .collect();
    servers[0].start(true);
    servers[1].start(false);
    servers[2].start(false);
    let mut c1 = servers[0].clients().await;
    c1.wait_leader().await;
    // Every server holds every project's metadata: it joins only once it is located where
    // every project's policy allows.
    c1.datacenter("paris", "FR", "FR", "FR", &[]).await;
    c1.datacenter("frankfurt", "DE", "DE", "DE", &[]).await;
    c1.cluster
        .locate_node(LocateNodeRequest {
            node_id: 1,
            datacenter: "paris".into(),
        })
        .await
        .unwrap();
    c1.project("p", policy(&["FR"], &[], &[], false), None)
        .await;
    let unlocated = c1
        .cluster
        .add_learner(AddLearnerRequest {
            node_id: 2,
            addr: servers[1].addr(),
            datacenter: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(unlocated.code(), tonic::Code::InvalidArgument);
    assert!(unlocated.message().contains("datacenter"), "{unlocated:?}");
    let excluded = c1
        .cluster
        .add_learner(AddLearnerRequest {
            node_id: 2,
            addr: servers[1].addr(),
            datacenter: "frankfurt".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(excluded.code(), tonic::Code::FailedPrecondition);
    assert!(excluded.message().contains("p (in DE"), "{excluded:?}");
    let st = c1.cluster.status(ClusterStatusRequest {}).await.unwrap();
    assert_eq!(st.into_inner().members.len(), 1, "a refused learner joined");
    // Refused learners never received an entry: node 2 holds no token at all, so even the
    // cluster's admin token is unknown there.
    let st2 = servers[1]
        .clients()
        .await
        .cluster
        .status(ClusterStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(st2.code(), tonic::Code::Unauthenticated, "{st2:?}");
    assert!(st2.message().contains("unknown token"), "{st2:?}");
    for s in &servers[1..] {
        c1.cluster
            .add_learner(AddLearnerRequest {
                node_id: s.id,
                addr: s.addr(),
                datacenter: "paris".into(),
            })
            .await
            .unwrap();
    }
    c1.cluster
        .promote(PromoteRequest {
            node_ids: vec![2, 3],
        })
        .await
        .unwrap();

    // cloudctl sees one leader and three voters.
    let out = std::process::Command::new(bin("cloudctl"))
        .args(["-o", "json", "cluster", "status"])
        .env("ANDROMEDE_ENDPOINT", servers[1].endpoint())
        .env("ANDROMEDE_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members = st["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(members.iter().filter(|m| m["role"] == "voter").count(), 3);
    assert_eq!(members.iter().filter(|m| m["leader"] == true).count(), 1);

    // Writes through any node (followers forward), visible through every node.
    let mut c2 = servers[1].clients().await;
    let mut c3 = servers[2].clients().await;
    c3.host("h1", "paris", 512, 4.0).await;
    c2.flavor_and_image().await;
    let mut acked = Vec::new();
    for i in 0..30 {
        let c = if i % 2 == 0 { &mut c2 } else { &mut c3 };
        acked.push(
            c.instance(&format!("vm-{i}"), "p", none())
                .await
                .unwrap()
                .meta
                .unwrap()
                .id,
        );
    }
    for c in [&mut c1, &mut c2, &mut c3] {
        assert_eq!(c.instances("p", false).await.len(), 30);
    }

    // kill -9 the leader; writes resume through the survivors.
    let leader = c2.wait_leader().await.leader_id;
    let li = servers.iter().position(|s| s.id == leader).unwrap();
    servers[li].kill9();
    let survivor = servers.iter().find(|s| s.id != leader).unwrap();
    let mut cs = survivor.clients().await;
    let killed_at = Instant::now();
    let mut n = 0;
    loop {
        match cs.instance(&format!("after-kill-{n}"), "p", none()).await {
            Ok(i) => {
                acked.push(i.meta.unwrap().id);
                break;
            }
            Err(e) => {
                assert!(
                    killed_at.elapsed() < Duration::from_secs(30),
                    "no write accepted after failover: {e}"
                );
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    println!(
        "writes resumed {} ms after the leader was killed",
        killed_at.elapsed().as_millis()
    );
    // Enough writes while the old leader is down to compact the log past it.
    for i in 0..150 {
        acked.push(
            cs.instance(&format!("down-{i}"), "p", none())
                .await
                .unwrap()
                .meta
                .unwrap()
                .id,
        );
    }
    let ids: std::collections::BTreeSet<String> = cs
        .instances("p", false)
        .await
        .into_iter()
        .map(|i| i.meta.unwrap().id)
        .collect();
    for id in &acked {
        assert!(ids.contains(id), "acknowledged {id} lost after failover");
    }

    // The killed node restarts and catches up (by snapshot: its log was compacted meanwhile).
    servers[li].start(false);
    let mut cr = servers[li].clients().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let local = cr.instances("p", true).await.len();
        if local == acked.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted node stuck at {local}/{} instances",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = cr
        .cluster
        .status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        st.snapshot_index > 0,
        "expected a snapshot on the restarted node: {st:?}"
    );
    let log = std::fs::read_to_string(servers[li].dir.join("server.log")).unwrap();
    assert!(
        log.contains("installed snapshot"),
        "restarted node did not install a snapshot"
    );
}
