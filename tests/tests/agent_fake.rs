//! A real server and real agent processes on the fake hypervisor driver: enrollment, the
//! desired-state stream, host liveness (down, HOST_LOST, back), crash recovery, declared-lost
//! hosts, volumes and the console log. The libvirt end-to-end test covers real guests.

#![allow(clippy::unwrap_used)]

use andromede_api::v1::agent_service_client::AgentServiceClient;
use andromede_api::v1::*;
use andromede_tests::agent::{instance_state, r, Agent};
use andromede_tests::{policy, Clients, Server};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn fake_args(host: &str) -> Vec<String> {
    [
        "--driver",
        "fake",
        "--hostname",
        host,
        "--heartbeat-secs",
        "1",
        "--resync-secs",
        "1",
        "--stop-timeout-secs",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn setup(root: &std::path::Path) -> (Server, Clients) {
    let mut s = Server::new(1, root, &["--host-ttl-secs", "3"]);
    s.start(true);
    let mut c = s.clients().await;
    c.wait_leader().await;
    c.datacenter("fr-1", "FR", "FR", "FR", &[]).await;
    c.datacenter("us-1", "US", "US", "US", &[]).await;
    c.flavor_and_image().await;
    c.project("gov", policy(&["FR"], &[], &[], false), None)
        .await;
    (s, c)
}

fn agent(root: &std::path::Path, s: &Server, host: &str) -> Agent {
    let args = fake_args(host);
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    Agent::new(&root.join(host), &[s.addr()], &args)
}

async fn create(c: &mut Clients, name: &str, user_data: &str) -> Instance {
    c.compute
        .create_instance(CreateInstanceRequest {
            name: name.into(),
            project: "gov".into(),
            flavor: "small".into(),
            image: "tiny".into(),
            user_data: user_data.into(),
            request_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn id(i: &Instance) -> String {
    i.meta.as_ref().unwrap().id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_agent_runs_instances_and_recovers_from_loss() {
    let root = tempfile::tempdir().unwrap();
    let (s, mut c) = setup(root.path()).await;

    // Enrollment: one use only, and a garbage token names the field.
    let token = c.join_token("fr-1").await;
    let mut a = agent(root.path(), &s, "hv-1");
    a.start(Some(&token), &[]);
    let host = andromede_tests::agent::eventually("host hv-1 enrolled", T, || {
        let mut c = c.clone();
        async move {
            c.host_named("hv-1")
                .await
                .ok_or_else(|| "absent".to_string())
        }
    })
    .await;
    let host_id = host.meta.as_ref().unwrap().id.clone();
    assert_eq!(host.driver, "fake");
    assert_eq!(host.state, HostState::Up as i32);
    assert!(!host.simulated);
    assert!(
        host.credential_sha256.is_empty(),
        "credential hashes never leave the server"
    );
    let mut ag = AgentServiceClient::new(s.channel().await);
    let again = ag
        .enroll(EnrollRequest {
            join_token: token.clone(),
            hostname: "hv-twin".into(),
            inventory: Some(HostInventory {
                capacity: Some(Resources {
                    vcpus: 1,
                    memory_mib: 1,
                    disk_gib: 1,
                }),
                ..Default::default()
            }),
            // Another machine, another credential: the used token is refused.
            credential: "x".repeat(64),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::PermissionDenied, "{again:?}");
    assert!(again.message().contains("already used"), "{again:?}");
    let bad = ag
        .enroll(EnrollRequest {
            join_token: "nonsense".into(),
            hostname: "hv-x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("join_token"), "{bad:?}");
    assert!(c.host_named("hv-twin").await.is_none());

    // Create → RUNNING through the agent; the console log carries the user-data.
    let i = create(&mut c, "web-1", "hello-from-user-data").await;
    let iid = id(&i);
    assert_eq!(i.host_id, host_id);
    let running = c.wait_instance(&iid, InstanceState::Running, T).await;
    assert!(
        running.state_reason.contains("host: running"),
        "{}",
        running.state_reason
    );
    let log = c
        .compute
        .get_console_log(GetConsoleLogRequest {
            r#ref: r(&iid),
            max_bytes: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let text = String::from_utf8_lossy(&log.data);
    assert!(text.contains("user-data: hello-from-user-data"), "{text}");

    // Volumes: create next to the instance, attach, extend, detach, delete.
    let v = c
        .volumes
        .create_volume(CreateVolumeRequest {
            name: "data".into(),
            project: "gov".into(),
            size_gib: 1,
            near_instance: iid.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let vid = v.meta.as_ref().unwrap().id.clone();
    c.wait_volume(&vid, VolumeState::Available, T).await;
    c.volumes
        .attach_volume(AttachVolumeRequest {
            volume: r(&vid),
            instance: iid.clone(),
        })
        .await
        .unwrap();
    c.wait_volume(&vid, VolumeState::InUse, T).await;
    let ext = c
        .volumes
        .extend_volume(ExtendVolumeRequest {
            volume: r(&vid),
            size_gib: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ext.size_gib, 2);
    let shrink = c
        .volumes
        .extend_volume(ExtendVolumeRequest {
            volume: r(&vid),
            size_gib: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(shrink.code(), tonic::Code::InvalidArgument);
    c.volumes
        .detach_volume(DetachVolumeRequest { volume: r(&vid) })
        .await
        .unwrap();
    let det = c.wait_volume(&vid, VolumeState::Available, T).await;
    assert!(det.attached_to.is_empty());

    // Stop, start, reboot.
    c.compute
        .stop_instance(InstanceActionRequest { r#ref: r(&iid) })
        .await
        .unwrap();
    c.wait_instance(&iid, InstanceState::Stopped, T).await;
    c.compute
        .start_instance(InstanceActionRequest { r#ref: r(&iid) })
        .await
        .unwrap();
    c.wait_instance(&iid, InstanceState::Running, T).await;
    c.compute
        .reboot_instance(InstanceActionRequest { r#ref: r(&iid) })
        .await
        .unwrap();
    c.wait_instance(&iid, InstanceState::Running, T).await;

    // A placement the project's policy forbids is refused before any host is involved.
    let refused = c
        .compute
        .create_instance(CreateInstanceRequest {
            name: "abroad".into(),
            project: "gov".into(),
            flavor: "small".into(),
            image: "tiny".into(),
            constraints: Some(PlacementConstraints {
                countries: vec!["US".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(c.instances("gov", false).await.len(), 1);

    // The agent dies: after the TTL the host is down and its instance HOST_LOST.
    a.kill9();
    c.wait_host(&host_id, HostState::Down, T).await;
    let lost = c.wait_instance(&iid, InstanceState::HostLost, T).await;
    assert!(
        lost.state_reason.contains("silent"),
        "{}",
        lost.state_reason
    );
    // Back without a token (its identity is on disk): host up, instance running, no twin.
    a.start(None, &[]);
    c.wait_host(&host_id, HostState::Up, T).await;
    c.wait_instance(&iid, InstanceState::Running, T).await;
    assert_eq!(c.instances("gov", false).await.len(), 1);
    assert_eq!(
        c.infra
            .list_hosts(ListHostsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .hosts
            .len(),
        1
    );

    // Deleted while the host is gone: stays DELETING until an admin declares the host lost.
    a.kill9();
    c.wait_host(&host_id, HostState::Down, T).await;
    c.compute
        .delete_instance(InstanceActionRequest { r#ref: r(&iid) })
        .await
        .unwrap();
    c.volumes
        .delete_volume(DeleteRequest { r#ref: r(&vid) })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        instance_state(&c.get_instance(&iid).await.unwrap()),
        InstanceState::Deleting
    );
    c.infra
        .declare_host_lost(DeclareHostLostRequest { r#ref: r(&host_id) })
        .await
        .unwrap();
    c.wait_gone("instance", &iid, T).await;
    c.wait_gone("volume", &vid, T).await;
    let h = c.get_host(&host_id).await.unwrap();
    assert_eq!(h.used.unwrap_or_default(), Resources::default(), "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_create_converges_to_one_instance() {
    let root = tempfile::tempdir().unwrap();
    let (s, mut c) = setup(root.path()).await;
    let token = c.join_token("fr-1").await;
    let mut a = agent(root.path(), &s, "hv-2");
    // Every hypervisor call hangs 5 s: the create is in flight when the agent dies.
    a.start(Some(&token), &["--fake-hang-ms", "5000"]);
    let host = andromede_tests::agent::eventually("host hv-2 enrolled", T, || {
        let mut c = c.clone();
        async move {
            c.host_named("hv-2")
                .await
                .ok_or_else(|| "absent".to_string())
        }
    })
    .await;
    let i = create(&mut c, "db-1", "x").await;
    let iid = id(&i);
    // Killed only once the agent has the create in hand (its define hangs 5 s from then).
    andromede_tests::agent::eventually("the agent to receive the create", T, || {
        let log = a.log();
        let ok = log
            .lines()
            .any(|l| l.contains("instance received") && l.contains(&iid));
        async move {
            if ok {
                Ok(())
            } else {
                Err(format!("agent log:\n{log}"))
            }
        }
    })
    .await;
    a.kill9();
    let cut = instance_state(&c.get_instance(&iid).await.unwrap());
    assert!(
        matches!(cut, InstanceState::Scheduled | InstanceState::Creating),
        "interrupted mid-create, yet {cut:?}"
    );
    a.start(None, &[]);
    c.wait_instance(&iid, InstanceState::Running, T).await;
    let all = c.instances("gov", false).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].host_id, host.meta.as_ref().unwrap().id);
    // A server with an agent stream open still shuts down promptly.
    let mut s = s;
    s.terminate(Duration::from_secs(10));
}

/// Deleting a host cuts its agent's stream at once; the agent stops, and a new hello would
/// find no host to authenticate against.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_hosts_agent_is_cut_off_and_cannot_reconnect() {
    let root = tempfile::tempdir().unwrap();
    let (s, mut c) = setup(root.path()).await;
    let token = c.join_token("fr-1").await;
    let mut a = agent(root.path(), &s, "hv-gone");
    a.start(Some(&token), &[]);
    let host = andromede_tests::agent::eventually("hv-gone to come up", T, || {
        let mut c = c.clone();
        async move {
            match c.host_named("hv-gone").await {
                Some(h) if h.state == HostState::Up as i32 => Ok(h),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    // Its stream is open (the agent logs this once the server registered it).
    andromede_tests::agent::eventually("the agent's stream", T, || {
        let log = a.log();
        async move {
            if log.contains("connected to the control plane") {
                Ok(())
            } else {
                Err(log)
            }
        }
    })
    .await;
    c.infra
        .delete_host(DeleteRequest {
            r#ref: r(&host.meta.unwrap().id),
        })
        .await
        .unwrap();
    // The stream ends with the reason, and the agent stops: it holds no identity any more.
    andromede_tests::agent::eventually("the agent to be cut off and refused", T, || {
        let log = a.log();
        async move {
            if log.contains("the control plane refused this host: the host was deleted") {
                Ok(())
            } else {
                Err(log)
            }
        }
    })
    .await;
    assert!(c.host_named("hv-gone").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn enrollment_attempts_are_limited_per_address() {
    let root = tempfile::tempdir().unwrap();
    let mut s = Server::new(1, root.path(), &["--enrollments-per-sec", "1"]);
    s.start(true);
    let mut c = s.clients().await;
    c.wait_leader().await;
    let mut ag = AgentServiceClient::new(s.channel().await);
    let mut codes = Vec::new();
    for _ in 0..12 {
        let e = ag
            .enroll(EnrollRequest {
                join_token: "00000000-0000-0000-0000-000000000000.bogus".into(),
                hostname: "hv-bogus".into(),
                inventory: Some(HostInventory {
                    capacity: Some(Resources {
                        vcpus: 1,
                        memory_mib: 1,
                        disk_gib: 1,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        codes.push(e.code());
    }
    // A burst of four is looked at (and refused for the bogus token); the rest are turned away
    // before the token is.
    assert_eq!(codes[0], tonic::Code::PermissionDenied, "{codes:?}");
    let limited = codes
        .iter()
        .filter(|c| **c == tonic::Code::ResourceExhausted)
        .count();
    assert!(limited >= 6, "{codes:?}");
    assert!(c.host_named("hv-bogus").await.is_none());
}
