//! Mutual TLS, on a server run as the README runs it (TLS by default): server-to-server calls
//! need a server certificate from the cluster CA and may only speak for their own server;
//! agents enroll with a pinned join token (no CA file), stream with a host certificate that
//! binds their host and datacenter, renew it over the stream, and are cut off for good when
//! their host is deleted. A host certificate never passes as a server's.

#![allow(clippy::unwrap_used)]

use andromede_api::v1::agent_service_client::AgentServiceClient;
use andromede_api::v1::internal_service_client::InternalServiceClient;
use andromede_api::v1::*;
use andromede_tests::agent::{eventually, r, Agent};
use andromede_tests::{Clients, Server};
use std::path::Path;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const T: Duration = Duration::from_secs(30);

/// A channel to `s` trusting `ca`, presenting `identity` when given.
async fn channel(
    s: &Server,
    ca: &str,
    identity: Option<(String, String)>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(s.endpoint())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| e.to_string())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A Raft vote request from `candidate`, as a server would send it.
fn vote_from(candidate: u64) -> RaftPayload {
    let v = serde_json::json!({
        "vote": {"leader_id": {"term": 99, "node_id": candidate}, "committed": false},
        "last_log_id": null
    });
    RaftPayload {
        data: serde_json::to_vec(&v).unwrap(),
    }
}

async fn vote(ch: Channel, candidate: u64) -> Result<(), tonic::Status> {
    InternalServiceClient::new(ch)
        .vote(vote_from(candidate))
        .await
        .map(|_| ())
}

fn fake_agent(root: &Path, s: &Server, name: &str) -> Agent {
    Agent::new(
        &root.join(name),
        &[s.addr()],
        &[
            "--driver",
            "fake",
            "--hostname",
            name,
            "--heartbeat-secs",
            "1",
        ],
    )
}

async fn host_up(c: &Clients, name: &str) -> Host {
    eventually(&format!("host {name} up with a certificate"), T, || {
        let mut c = c.clone();
        let name = name.to_string();
        async move {
            match c.host_named(&name).await {
                Some(h) if h.state == HostState::Up as i32 && !h.cert_serial.is_empty() => Ok(h),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_and_hosts_are_bound_by_certificates() {
    let root = tempfile::tempdir().unwrap();
    // Host certificates live 30 s here, so a renewal is due after 20 s.
    let mut s = Server::new(1, root.path(), &["--host-cert-ttl-secs", "30"]);
    s.tls = true;
    s.start(true);
    let mut c = s.clients().await;
    c.wait_leader().await;
    let ca = read(&s.ca_file());

    // --- Server-to-server calls. ---
    // No client certificate: refused before Raft sees anything.
    let anonymous = channel(&s, &ca, None).await.unwrap();
    let e = vote(anonymous.clone(), 1).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = InternalServiceClient::new(anonymous)
        .forward(RaftPayload {
            data: b"{}".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    // A server certificate from another CA: the handshake or the call fails.
    let other = tempfile::tempdir().unwrap();
    let other_files =
        andromede_pki::ServerTls::create_with_ca(other.path(), "other", 2, &["127.0.0.1".into()])
            .unwrap();
    let (ocert, okey, _) = other_files.read().unwrap();
    if let Ok(ch) = channel(&s, &ca, Some((ocert, okey))).await {
        let e = vote(ch, 2).await.unwrap_err();
        assert_ne!(e.code(), tonic::Code::Ok, "{e:?}");
    }
    // The cluster's own server certificate, speaking for another server: refused.
    let own = (
        read(&s.dir.join("tls/server.pem")),
        read(&s.dir.join("tls/server-key.pem")),
    );
    let as_server = channel(&s, &ca, Some(own)).await.unwrap();
    let e = vote(as_server.clone(), 7).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("may not speak for server 7"), "{e:?}");

    // Reflection on the port lists the public services only.
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_request,
        server_reflection_response, ServerReflectionRequest,
    };
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers = ServerReflectionClient::new(channel(&s, &ca, None).await.unwrap())
        .server_reflection_info(tokio_stream::iter(vec![ask]))
        .await
        .unwrap()
        .into_inner();
    let Some(server_reflection_response::MessageResponse::ListServicesResponse(listed)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no list of services")
    };
    let mut names: Vec<String> = listed.service.into_iter().map(|x| x.name).collect();
    names.sort();
    let mut public: Vec<String> = andromede_auth::access::PUBLIC_SERVICES
        .iter()
        .map(|s| s.to_string())
        .collect();
    public.sort();
    assert_eq!(names, public);

    // --- Hosts. ---
    c.datacenter("fr-1", "FR", "FR", "FR", &[]).await;
    c.datacenter("fr-2", "FR", "FR", "FR", &[]).await;
    let token_a = c.join_token("fr-1").await;
    let token_b = c.join_token("fr-2").await;
    let pin = andromede_pki::pin_of(&ca).unwrap();
    assert!(
        token_a.ends_with(&format!(".{pin}")),
        "the token pins the CA: {token_a}"
    );
    // Given only the join token (no CA file), each agent finds and pins the CA, enrolls with
    // a key it made itself, and streams with its certificate.
    let mut a = fake_agent(root.path(), &s, "hv-a");
    a.start(Some(&token_a), &[]);
    let mut b = fake_agent(root.path(), &s, "hv-b");
    b.start(Some(&token_b), &[]);
    let ha = host_up(&c, "hv-a").await;
    let hb = host_up(&c, "hv-b").await;
    let a_id = ha.meta.clone().unwrap().id;
    let b_id = hb.meta.clone().unwrap().id;
    let state_a = a.dir.join("state");
    assert_eq!(read(&state_a.join("ca.pem")), ca, "the pinned CA is kept");
    let cert_a = read(&state_a.join("host.pem"));
    let key_a = read(&state_a.join("host-key.pem"));
    let peer = andromede_pki::peer_of_pem(&cert_a).unwrap();
    assert_eq!(
        peer.role,
        andromede_pki::PeerRole::Host {
            host_id: a_id.clone(),
            datacenter_id: ha.datacenter_id.clone()
        }
    );
    assert_eq!(peer.serial, ha.cert_serial);
    assert!(
        !a.log().contains(&key_a[30..80]),
        "the key never reaches a log"
    );

    // Host A's certificate opening a stream for host B: refused, B unchanged.
    let as_a = channel(&s, &ca, Some((cert_a.clone(), key_a.clone())))
        .await
        .unwrap();
    let hello = AgentMessage {
        msg: Some(agent_message::Msg::Hello(AgentHello {
            host_id: b_id.clone(),
            credential: String::new(),
            inventory: Some(HostInventory {
                capacity: Some(Resources {
                    vcpus: 4000,
                    memory_mib: 1 << 25,
                    disk_gib: 1 << 15,
                }),
                driver: "fake".into(),
                agent_version: "x".into(),
            }),
        })),
    };
    let e = AgentServiceClient::new(as_a.clone())
        .session(tokio_stream::iter(vec![hello]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let hb2 = c.get_host(&b_id).await.unwrap();
    assert_eq!(hb2.capacity, hb.capacity, "B's capacity is unchanged");
    assert_eq!(hb2.cert_serial, hb.cert_serial);
    // Host A's own stream, reporting on host B's instance: the report is dropped (and logged),
    // the instance is unchanged.
    c.flavor_and_image().await;
    c.project(
        "gov",
        andromede_tests::policy(&["FR"], &[], &[], false),
        None,
    )
    .await;
    let on_b = c
        .instance(
            "on-b",
            "gov",
            PlacementConstraints {
                datacenter_ids: vec![hb.datacenter_id.clone()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let on_b_id = on_b.meta.unwrap().id;
    c.wait_instance(&on_b_id, InstanceState::Running, T).await;
    let own_hello = AgentMessage {
        msg: Some(agent_message::Msg::Hello(AgentHello {
            host_id: a_id.clone(),
            ..Default::default()
        })),
    };
    let forged = AgentMessage {
        msg: Some(agent_message::Msg::Reports(Reports {
            instances: vec![InstanceReport {
                id: on_b_id.clone(),
                state: InstanceState::Error as i32,
                reason: "forged".into(),
            }],
            volumes: vec![],
        })),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(own_hello).await.unwrap();
    let mut answers = AgentServiceClient::new(as_a.clone())
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    // The first full state names what A must run: B's instance is not in it.
    let first = answers.message().await.unwrap().unwrap();
    let Some(control_message::Msg::Desired(d)) = first.msg else {
        panic!("no desired state first: {first:?}")
    };
    assert!(d.instances.iter().all(|i| i.host_id == a_id), "{d:?}");
    tx.send(forged).await.unwrap();
    eventually("the forged report logged and refused", T, || {
        let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap_or_default();
        async move {
            if log.contains("refused a report about another host's resources") {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        }
    })
    .await;
    let after = c.get_instance(&on_b_id).await.unwrap();
    assert_eq!(after.state, InstanceState::Running as i32, "{after:?}");
    drop(tx);
    drop(answers);

    // A host certificate makes no server-to-server call.
    let e = vote(as_a, 1).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // Without any certificate there is no agent stream at all.
    let e = AgentServiceClient::new(channel(&s, &ca, None).await.unwrap())
        .session(tokio_stream::iter(Vec::<AgentMessage>::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");

    // A host certificate never passes as a server's: a client trusting the cluster CA refuses
    // a listener serving one.
    let port = andromede_tests::free_port();
    let (_health, svc) = tonic_health::server::health_reporter();
    let fake_server = tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(Identity::from_pem(cert_a.clone(), key_a.clone())),
            )
            .unwrap()
            .add_service(svc)
            .serve(format!("127.0.0.1:{port}").parse().unwrap()),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fake = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca)))
        .unwrap()
        .connect()
        .await;
    assert!(
        fake.is_err(),
        "a host certificate was accepted as a server's"
    );
    fake_server.abort();

    // Renewal over the stream: a new serial, the old one kept as the previous, the new
    // certificate on disk.
    let renewed = eventually("host A's certificate renewed", T, || {
        let mut c = c.clone();
        let id = a_id.clone();
        let old = ha.cert_serial.clone();
        async move {
            let h = c.get_host(&id).await.map_err(|e| e.to_string())?;
            if h.cert_serial != old && h.previous_cert_serial == old {
                Ok(h)
            } else {
                Err(format!("{} / {}", h.cert_serial, h.previous_cert_serial))
            }
        }
    })
    .await;
    let on_disk = eventually("the renewed certificate on disk", T, || {
        let p = state_a.join("host.pem");
        let want = renewed.cert_serial.clone();
        async move {
            let pem = std::fs::read_to_string(&p).map_err(|e| e.to_string())?;
            match andromede_pki::peer_of_pem(&pem) {
                Some(peer) if peer.serial == want => Ok(pem),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert_ne!(on_disk, cert_a);
    // Restarted, the agent streams with the renewed certificate.
    a.kill9();
    a.start(None, &[]);
    eventually("host A back after a restart", T, || {
        let log = a.log();
        async move {
            if log.matches("connected to the control plane").count() >= 2 {
                Ok(())
            } else {
                Err(log)
            }
        }
    })
    .await;

    // Deleting host B (emptied first) revokes it: its agent is cut off and stays out.
    c.compute
        .delete_instance(InstanceActionRequest { r#ref: r(&on_b_id) })
        .await
        .unwrap();
    c.wait_gone("instance", &on_b_id, T).await;
    c.infra
        .delete_host(DeleteRequest { r#ref: r(&b_id) })
        .await
        .unwrap();
    eventually("agent B refused", T, || {
        let log = b.log();
        async move {
            if log.contains("the control plane refused this host") {
                Ok(())
            } else {
                Err(log)
            }
        }
    })
    .await;
    b.kill9();
    let before = b
        .log()
        .matches("the control plane refused this host")
        .count();
    b.start(None, &[]);
    eventually("agent B refused again after a restart", T, || {
        let log = b.log();
        async move {
            if log.matches("the control plane refused this host").count() > before {
                Ok(())
            } else {
                Err(log)
            }
        }
    })
    .await;
    assert!(c.host_named("hv-b").await.is_none());
}
