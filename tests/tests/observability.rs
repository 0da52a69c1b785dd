//! What operators and integrators watch: the resumable event stream and the Prometheus endpoint,
//! against a real server process.

#![allow(clippy::unwrap_used)]

use andromede_api::v1::event_service_client::EventServiceClient;
use andromede_api::v1::*;
use andromede_tests::{free_port, policy, Auth, Server};
use std::io::{Read, Write};
use std::time::Duration;
use tokio_stream::StreamExt;

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(
        body.starts_with("HTTP/1."),
        "not an HTTP answer: {body:.200}"
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_from_a_revision_and_metrics_count_calls() {
    let root = tempfile::tempdir().unwrap();
    let mport = free_port();
    let listen = format!("127.0.0.1:{mport}");
    let mut s = Server::new(1, root.path(), &["--metrics-listen", &listen]);
    s.start(true);
    let mut c = s.clients().await;
    c.wait_leader().await;
    c.datacenter("paris", "FR", "FR", "FR", &[]).await;
    c.host("h1", "paris", 8, 1.0).await;
    c.flavor_and_image().await;
    c.project("p", policy(&["FR"], &[], &[], false), None).await;

    let mut events = EventServiceClient::with_interceptor(s.channel().await, Auth);
    let mut stream = events
        .watch(WatchRequest {
            from_revision: 0,
            kinds: vec!["instance".into()],
            project: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let a = c
        .instance("a", "p", PlacementConstraints::default())
        .await
        .unwrap();
    let a_id = a.meta.unwrap().id;
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("no event within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(first.kind, "instance");
    assert_eq!(first.id, a_id);
    assert_eq!(first.r#type, EventType::Created as i32);
    let created: Instance = serde_json::from_str(&first.resource_json).unwrap();
    assert_eq!(created.host_id, a.host_id);
    drop(stream);

    // Resuming after `first` skips it and everything before; only later instance events come.
    let b = c
        .instance("b", "p", PlacementConstraints::default())
        .await
        .unwrap();
    let b_id = b.meta.unwrap().id;
    let mut resumed = events
        .watch(WatchRequest {
            from_revision: first.revision,
            kinds: vec!["instance".into()],
            project: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen_b = false;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(3), resumed.next()).await {
        let e = e.unwrap();
        assert!(e.revision > first.revision, "{} replayed", e.revision);
        assert_eq!(e.kind, "instance");
        if e.id == b_id && e.r#type == EventType::Created as i32 {
            seen_b = true;
            break;
        }
    }
    assert!(
        seen_b,
        "the resumed watch never showed instance b's creation"
    );

    // The metrics endpoint counts the calls above by method and status, and shows Raft state.
    let m = scrape(mport);
    let line = m
        .lines()
        .find(|l| {
            l.starts_with("andromede_grpc_requests_total")
                && l.contains("CreateInstance")
                && l.contains("code=\"0\"")
        })
        .unwrap_or_else(|| panic!("no CreateInstance counter in:\n{m}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 2.0, "{line}");
    for name in [
        "andromede_raft_applied_index",
        "andromede_raft_is_leader",
        "andromede_placements_total",
        "andromede_grpc_request_seconds",
    ] {
        assert!(m.contains(name), "{name} missing from:\n{m}");
    }
}
