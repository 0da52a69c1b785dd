//! TLS on the listener, the servers' default: the first server makes a cluster CA and its
//! certificate; a client trusting that CA gets through, a plaintext client and a client
//! trusting another CA do not; a joining server with a certificate the CA issued
//! (`andromede-server issue-cert`) replicates over mutual TLS, and one with a certificate from
//! another CA gets nothing.

#![allow(clippy::unwrap_used)]

use andromede_api::v1::identity_service_client::IdentityServiceClient;
use andromede_api::v1::*;
use andromede_tests::{bin, Auth, Server, TOKEN};
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

async fn tls_channel(port: u16, ca_pem: &str) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)))?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
}

/// A channel once the server is up (it makes its CA on first start).
async fn wait_tls(s: &Server) -> (Channel, String) {
    let ca_file = s.dir.join("tls/ca.pem");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(ca) = std::fs::read_to_string(&ca_file) {
            if let Ok(ch) = tls_channel(s.port, &ca).await {
                return (ch, ca);
            }
        }
        assert!(Instant::now() < deadline, "no TLS listener on {}", s.addr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn whoami(ch: Channel) -> Result<ApiToken, tonic::Status> {
    IdentityServiceClient::with_interceptor(ch, Auth::admin())
        .who_am_i(WhoAmIRequest {})
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_by_default_and_only_to_the_cluster_ca() {
    let root = tempfile::tempdir().unwrap();
    let mut s1 = Server::new(1, root.path(), &[]);
    s1.tls = true;
    s1.start(true);
    let (ch, ca) = wait_tls(&s1).await;
    // Through TLS with the cluster CA: the bootstrap token answers (once it is committed).
    let deadline = Instant::now() + Duration::from_secs(30);
    let me = loop {
        match whoami(ch.clone()).await {
            Ok(t) => break t,
            Err(e) => {
                assert!(Instant::now() < deadline, "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(me.role_name, "cloud-admin");

    // A plaintext client on the TLS port gets nowhere.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{}", s1.port))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await;
    if let Ok(plain) = plain {
        let e = whoami(plain).await.unwrap_err();
        assert_ne!(e.code(), tonic::Code::Ok, "{e:?}");
    }

    // A client trusting another CA refuses the server.
    let other = tempfile::tempdir().unwrap();
    andromede_pki::ServerTls::create_with_ca(other.path(), "other", 9, &["127.0.0.1".into()])
        .unwrap();
    let other_ca = std::fs::read_to_string(other.path().join("ca.pem")).unwrap();
    match tls_channel(s1.port, &other_ca).await {
        Err(_) => {}
        Ok(ch) => {
            let e = whoami(ch).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        }
    }

    // A joining server without a certificate refuses to start, saying what it needs.
    let out = std::process::Command::new(bin("andromede-server"))
        .args(["run", "--node-id", "2", "--data-dir"])
        .arg(root.path().join("lost"))
        .env("ANDROMEDE_CLUSTER_TOKEN", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("issue-cert"), "{err}");

    // With a certificate from the cluster CA it joins and catches up over TLS.
    let mut s2 = Server::new(2, root.path(), &[]);
    s2.tls = true;
    let st = std::process::Command::new(bin("andromede-server"))
        .args(["issue-cert", "--node-id", "2", "--name"])
        .arg(s2.addr())
        .arg("--ca-dir")
        .arg(s1.dir.join("tls"))
        .arg("--out")
        .arg(s2.dir.join("tls"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::create_dir_all(&s2.dir).unwrap();
    std::fs::copy(s1.dir.join("data-key"), s2.dir.join("data-key")).unwrap();
    s2.start(false);
    let mut cluster =
        andromede_api::v1::cluster_service_client::ClusterServiceClient::with_interceptor(
            ch.clone(),
            Auth::admin(),
        );
    let mut infra =
        andromede_api::v1::infrastructure_service_client::InfrastructureServiceClient::with_interceptor(
            ch.clone(),
            Auth::admin(),
        );
    infra
        .create_datacenter(CreateDatacenterRequest {
            name: "paris".into(),
            country: "FR".into(),
            operator: Some(Operator {
                name: "op".into(),
                country: "FR".into(),
                parent_country: "FR".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    cluster
        .locate_node(LocateNodeRequest {
            node_id: 1,
            datacenter: "paris".into(),
        })
        .await
        .unwrap();
    cluster
        .add_learner(AddLearnerRequest {
            node_id: 2,
            addr: s2.addr(),
            datacenter: "paris".into(),
        })
        .await
        .unwrap();
    // Node 2 now holds the replicated tokens: the admin token works there, over TLS.
    let (ch2, ca2) = wait_tls(&s2).await;
    assert_eq!(ca2, ca, "node 2 trusts the same cluster CA");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match whoami(ch2.clone()).await {
            Ok(t) => {
                assert_eq!(t.meta.unwrap().id, andromede_auth::parse(TOKEN).unwrap().id);
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "node 2 never caught up: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // A write through node 2 is forwarded to the leader, and a read there asks the leader for
    // its read index: both server-to-server calls over mutual TLS.
    let mut c2 = andromede_tests::Clients::new(ch2.clone());
    c2.datacenter("lyon", "FR", "FR", "FR", &[]).await;
    let read = c2
        .infra
        .get_datacenter(GetRequest {
            r#ref: Some(ResourceRef {
                id_or_name: "lyon".into(),
                project: String::new(),
            }),
            read: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.meta.unwrap().name, "lyon");

    // A server whose certificate comes from another CA cannot join: the leader does not trust
    // it and it does not trust the leader, so nothing reaches it.
    let mut s3 = Server::new(3, root.path(), &[]);
    s3.tls = true;
    let foreign = tempfile::tempdir().unwrap();
    andromede_pki::ServerTls::create_with_ca(foreign.path(), "foreign", 3, &["127.0.0.1".into()])
        .unwrap();
    std::fs::create_dir_all(s3.dir.join("tls")).unwrap();
    for f in ["server.pem", "server-key.pem", "ca.pem"] {
        std::fs::copy(foreign.path().join(f), s3.dir.join("tls").join(f)).unwrap();
    }
    std::fs::copy(s1.dir.join("data-key"), s3.dir.join("data-key")).unwrap();
    s3.start(false);
    let (ch3, _) = wait_tls(&s3).await;
    cluster
        .add_learner(AddLearnerRequest {
            node_id: 3,
            addr: s3.addr(),
            datacenter: "paris".into(),
        })
        .await
        .unwrap();
    // Node 2 catches up with everything the leader has, node 3 with nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = cluster
            .status(ClusterStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        let matched = |id| {
            st.members
                .iter()
                .find(|m| m.node_id == id)
                .map(|m| m.matched_index)
        };
        if matched(2) == Some(st.last_log_index) {
            break st;
        }
        assert!(Instant::now() < deadline, "node 2 never caught up: {st:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let node3 = st.members.iter().find(|m| m.node_id == 3).unwrap();
    assert_eq!(node3.matched_index, 0, "{st:?}");
    let e = whoami(ch3).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(
        e.message().contains("unknown token"),
        "node 3 got state: {e:?}"
    );
    let log = std::fs::read_to_string(s3.dir.join("server.log")).unwrap();
    assert!(!log.contains("initialized"), "{log}");
}
