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

    let mut events = EventServiceClient::with_interceptor(s.channel().await, Auth::admin());
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

/// Sends one gRPC-shaped request to an arbitrary path and returns its grpc-status.
async fn call_path(ch: tonic::transport::Channel, path: &str) -> String {
    use tonic::codegen::{http, Service};
    let mut ch = ch;
    futures::future::poll_fn(|cx| ch.poll_ready(cx))
        .await
        .unwrap();
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::empty())
        .unwrap();
    let res = ch.call(req).await.unwrap();
    res.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_label_unknown_paths_with_one_bucket() {
    let root = tempfile::tempdir().unwrap();
    let mport = free_port();
    let listen = format!("127.0.0.1:{mport}");
    let mut s = Server::new(1, root.path(), &["--metrics-listen", &listen]);
    s.start(true);
    let mut c = s.clients().await;
    c.wait_leader().await;
    // Unauthenticated junk paths, each different: none may become its own series.
    for i in 0..20 {
        let code = call_path(s.channel().await, &format!("/probe{i}.Scan/Method{i}")).await;
        assert_eq!(code, "12", "an unknown path answers UNIMPLEMENTED");
    }
    let m = scrape(mport);
    assert!(!m.contains("probe"), "a raw path became a label:\n{m}");
    let unknown = m
        .lines()
        .find(|l| {
            l.starts_with("andromede_grpc_requests_total") && l.contains("method=\"unknown\"")
        })
        .unwrap_or_else(|| panic!("no unknown bucket in:\n{m}"));
    let n: f64 = unknown.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 20.0, "{unknown}");
    assert!(
        m.lines()
            .any(|l| l.starts_with("andromede_grpc_requests_total")
                && l.contains("method=\"/andromede.v1.ClusterService/Status\"")),
        "known methods keep their own label:\n{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_caps_watches_and_streams_per_connection() {
    let root = tempfile::tempdir().unwrap();
    let mut s = Server::new(
        1,
        root.path(),
        &["--max-watches", "1", "--max-concurrent-streams", "1"],
    );
    s.start(true);
    let mut c = s.clients().await;
    c.wait_leader().await;
    let watch = || WatchRequest {
        from_revision: 0,
        kinds: vec![],
        project: String::new(),
    };
    let mut events = EventServiceClient::with_interceptor(s.channel().await, Auth::admin());
    let first = events.watch(watch()).await.unwrap().into_inner();
    // A second watch, on another connection, is refused while the first lives.
    let mut other = EventServiceClient::with_interceptor(s.channel().await, Auth::admin());
    let e = other.watch(watch()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("max 1"), "{e:?}");
    // One stream per connection: a call on the watch's connection waits for it to end.
    let blocked = tokio::time::timeout(Duration::from_millis(500), events.watch(watch())).await;
    assert!(
        blocked.is_err(),
        "a second stream opened on a connection capped at 1"
    );
    drop(first);
    // The hung-up watch frees its slot promptly, without waiting for an event.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match other.watch(watch()).await {
            Ok(_) => break,
            Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the closed watch still holds its slot"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}
