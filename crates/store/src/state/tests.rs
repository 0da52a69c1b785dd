//! Tests of the apply function: placement re-verification, quotas, idempotency, lifecycles.

use super::*;
use crate::command::CmdErrorCode;
use andromede_api::v1::{Meta, Operator, Quota, SovereigntyPolicy};

fn meta(id: &str, project: &str, req: &str) -> Option<Meta> {
    Some(Meta {
        id: id.into(),
        name: id.into(),
        project_id: project.into(),
        request_id: req.into(),
        ..Default::default()
    })
}

fn run(s: &mut State, cmd: Command) -> Result<Reply, CmdError> {
    s.apply(&Envelope::new(1, cmd)).0
}

fn world(quota: Option<Quota>) -> State {
    let mut s = State::default();
    run(
        &mut s,
        Command::CreateDatacenter(Datacenter {
            meta: meta("dc1", "", ""),
            country: "FR".into(),
            operator: Some(Operator {
                name: "op".into(),
                country: "FR".into(),
                parent_country: "FR".into(),
                ..Default::default()
            }),
            status: 1,
            ..Default::default()
        }),
    )
    .unwrap();
    run(
        &mut s,
        Command::RegisterHost(Host {
            meta: meta("h1", "", ""),
            datacenter_id: "dc1".into(),
            state: 1,
            capacity: Some(Resources {
                vcpus: 2,
                memory_mib: 4096,
                disk_gib: 100,
            }),
            ratios: Some(andromede_api::v1::AllocationRatios {
                cpu: 1.0,
                memory: 1.0,
                disk: 1.0,
            }),
            ..Default::default()
        }),
    )
    .unwrap();
    run(
        &mut s,
        Command::CreateProject(Project {
            meta: meta("p1", "", ""),
            policy: Some(SovereigntyPolicy {
                allowed_countries: vec!["FR".into()],
                ..Default::default()
            }),
            quota,
            ..Default::default()
        }),
    )
    .unwrap();
    s
}

fn inst(id: &str, req: &str) -> Command {
    Command::CreateInstance(Instance {
        meta: meta(id, "p1", req),
        host_id: "h1".into(),
        resources: Some(Resources {
            vcpus: 1,
            memory_mib: 1024,
            disk_gib: 10,
        }),
        ..Default::default()
    })
}

#[test]
fn apply_reverifies_capacity() {
    let mut s = world(None);
    assert!(run(&mut s, inst("a", "")).is_ok());
    assert!(run(&mut s, inst("b", "")).is_ok());
    let e = run(&mut s, inst("c", "")).unwrap_err();
    assert_eq!(e.code, CmdErrorCode::Aborted);
    assert_eq!(s.hosts["h1"].used.unwrap().vcpus, 2);
    assert_eq!(s.instances.len(), 2);
}

#[test]
fn quota_and_request_id() {
    let mut s = world(Some(Quota {
        instances: Some(1),
        ..Default::default()
    }));
    let first = run(&mut s, inst("a", "r1")).unwrap();
    let again = run(&mut s, inst("a2", "r1")).unwrap();
    match (first, again) {
        (Reply::Instance(x), Reply::Instance(y)) => assert_eq!(x.meta, y.meta),
        other => panic!("unexpected {other:?}"),
    }
    let e = run(&mut s, inst("b", "r2")).unwrap_err();
    assert_eq!(e.code, CmdErrorCode::ResourceExhausted);
    assert_eq!(s.instances.len(), 1);
    assert_eq!(s.projects["p1"].usage.unwrap().instances, 1);
}

#[test]
fn delete_releases_everything() {
    let mut s = world(None);
    run(&mut s, inst("a", "")).unwrap();
    run(
        &mut s,
        Command::InstanceAction {
            id: "a".into(),
            action: InstanceAction::Delete,
        },
    )
    .unwrap();
    assert_eq!(s.instances["a"].state, IS::Deleting as i32);
    run(
        &mut s,
        Command::ObserveInstances(vec![("a".into(), IS::Deleted, String::new())]),
    )
    .unwrap();
    assert!(s.instances.is_empty());
    assert_eq!(s.hosts["h1"].used.unwrap().vcpus, 0);
    assert_eq!(s.projects["p1"].usage.unwrap().instances, 0);
    // Tightening the policy is possible again once nothing offends it.
    let r = run(
        &mut s,
        Command::UpdateProject {
            id: "p1".into(),
            policy: Some(SovereigntyPolicy {
                allowed_countries: vec!["DE".into()],
                ..Default::default()
            }),
            quota: None,
            description: None,
            expected_generation: 0,
        },
    );
    assert!(r.is_ok());
}

#[test]
fn tightening_policy_lists_offenders() {
    let mut s = world(None);
    run(&mut s, inst("a", "")).unwrap();
    let e = run(
        &mut s,
        Command::UpdateProject {
            id: "p1".into(),
            policy: Some(SovereigntyPolicy {
                allowed_countries: vec!["DE".into()],
                ..Default::default()
            }),
            quota: None,
            description: None,
            expected_generation: 0,
        },
    )
    .unwrap_err();
    assert_eq!(e.code, CmdErrorCode::FailedPrecondition);
    assert!(e.message.contains("instance a"), "{}", e.message);
}

fn token(s: &mut State, id: &str, expires: i64) {
    run(
        s,
        Command::CreateJoinToken(JoinToken {
            meta: meta(id, "", ""),
            datacenter_id: "dc1".into(),
            expires_at_ms: expires,
            secret_sha256: "hash".into(),
            used_by_host: String::new(),
        }),
    )
    .unwrap();
}

fn enroll(
    s: &mut State,
    token: &str,
    secret: &str,
    host: &str,
    at: i64,
) -> Result<Reply, CmdError> {
    s.apply(&Envelope::new(
        at,
        Command::EnrollHost {
            token_id: token.into(),
            secret_sha256: secret.into(),
            host: Host {
                meta: meta(host, "", ""),
                credential_sha256: format!("cred-{host}"),
                capacity: Some(Resources {
                    vcpus: 4,
                    memory_mib: 4096,
                    disk_gib: 100,
                }),
                ..Default::default()
            },
        },
    ))
    .0
}

#[test]
fn join_tokens_are_single_use_secret_and_expiring() {
    let mut s = world(None);
    token(&mut s, "t1", 1000);
    let e = enroll(&mut s, "t1", "wrong", "a", 10).unwrap_err();
    assert_eq!(e.code, CmdErrorCode::PermissionDenied);
    let e = enroll(&mut s, "t1", "hash", "a", 1000).unwrap_err();
    assert!(e.message.contains("expired"), "{e}");
    let Reply::Host(h) = enroll(&mut s, "t1", "hash", "a", 10).unwrap() else {
        panic!()
    };
    assert_eq!(h.datacenter_id, "dc1");
    assert!(!h.simulated);
    assert_eq!(s.join_tokens["t1"].used_by_host, "a");
    // The same agent retrying after a lost answer (same credential) gets its host back, even
    // once the token has expired; nothing new is created.
    let Reply::Host(again) = enroll(&mut s, "t1", "hash", "a", 5000).unwrap() else {
        panic!()
    };
    assert_eq!(again.meta().id, "a");
    assert_eq!(s.hosts.len(), 2);
    let e = enroll(&mut s, "t1", "hash", "b", 10).unwrap_err();
    assert!(e.message.contains("already used"), "{e}");
    assert!(!s.hosts.contains_key("b"));
    let e = enroll(&mut s, "nope", "hash", "c", 10).unwrap_err();
    assert_eq!(e.code, CmdErrorCode::PermissionDenied);
}

#[test]
fn lost_hosts_mark_instances_and_declared_loss_completes_deletes() {
    let mut s = world(None);
    let Reply::Instance(i) = run(&mut s, inst("i1", "r1")).unwrap() else {
        panic!()
    };
    let id = i.meta().id.clone();
    let e = run(&mut s, Command::DeclareHostLost { id: "h1".into() }).unwrap_err();
    assert_eq!(e.code, CmdErrorCode::FailedPrecondition);
    run(
        &mut s,
        Command::HostLost {
            id: "h1".into(),
            reason: "silent".into(),
        },
    )
    .unwrap();
    assert_eq!(s.hosts["h1"].state, HostState::Down as i32);
    assert_eq!(s.instances[&id].state, IS::HostLost as i32);
    run(
        &mut s,
        Command::InstanceAction {
            id: id.clone(),
            action: InstanceAction::Delete,
        },
    )
    .unwrap();
    run(&mut s, Command::DeclareHostLost { id: "h1".into() }).unwrap();
    assert!(!s.instances.contains_key(&id));
    assert_eq!(s.hosts["h1"].used.unwrap_or_default(), Resources::default());
    run(
        &mut s,
        Command::HostSeen {
            id: "h1".into(),
            capacity: None,
            driver: "fake".into(),
            agent_version: "1".into(),
        },
    )
    .unwrap();
    assert_eq!(s.hosts["h1"].state, HostState::Up as i32);
}

#[test]
fn control_plane_servers_must_sit_where_every_project_allows() {
    let mut s = world(None);
    run(
        &mut s,
        Command::CreateDatacenter(Datacenter {
            meta: meta("us", "", ""),
            country: "US".into(),
            status: 1,
            ..Default::default()
        }),
    )
    .unwrap();
    // p1 allows FR only: a server in the US would hold its metadata.
    let e = run(
        &mut s,
        Command::LocateReplica {
            node_id: 2,
            datacenter_id: "us".into(),
        },
    )
    .unwrap_err();
    assert_eq!(e.code, CmdErrorCode::FailedPrecondition);
    assert!(e.message.contains("p1"), "{e}");
    assert!(s.replicas.is_empty());
    run(
        &mut s,
        Command::LocateReplica {
            node_id: 1,
            datacenter_id: "dc1".into(),
        },
    )
    .unwrap();
    // A new project that excludes server 1's datacenter is refused, naming the server.
    let e = run(
        &mut s,
        Command::CreateProject(Project {
            meta: meta("p2", "", ""),
            policy: Some(SovereigntyPolicy {
                allowed_countries: vec!["DE".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("policy"));
    assert!(e.message.contains("control-plane server 1"), "{e}");
    assert!(!s.projects.contains_key("p2"));
    let ch = s.take_changes();
    assert!(ch.replicas.is_some_and(|r| r.contains("dc1")));
    run(&mut s, Command::ForgetReplica { node_id: 1 }).unwrap();
    assert!(s.replicas.is_empty());
}

#[test]
fn a_resource_in_an_unknown_datacenter_fails_closed_everywhere() {
    let mut s = world(None);
    run(&mut s, inst("a", "")).unwrap();
    if let Some(i) = s.instances.get_mut("a") {
        i.datacenter_id = "gone".into();
    }
    let open = SovereigntyPolicy::default();
    // Listing offenders: counted, not skipped.
    let off = s.offenders("p1", &open);
    assert_eq!(off, ["instance a (in unknown datacenter gone)"]);
    // A policy change is refused, naming it.
    let e = run(
        &mut s,
        Command::UpdateProject {
            id: "p1".into(),
            policy: Some(open),
            quota: None,
            description: None,
            expected_generation: 0,
        },
    )
    .unwrap_err();
    assert_eq!(e.code, CmdErrorCode::FailedPrecondition);
    assert!(e.message.contains("instance a"), "{e}");
    // The recheck flags it instead of calling it compliant.
    s.recheck_compliance(2, |_, _| true);
    let reason = &s.instances["a"].non_compliant_reason;
    assert!(reason.contains("unknown datacenter gone"), "{reason}");
}

#[test]
fn apply_refuses_a_plan_whose_datacenter_left_active() {
    for status in [
        andromede_api::v1::DatacenterStatus::Maintenance,
        andromede_api::v1::DatacenterStatus::Retired,
    ] {
        let mut s = world(None);
        run(
            &mut s,
            Command::UpdateDatacenter {
                id: "dc1".into(),
                country: None,
                operator: None,
                certifications: None,
                status: Some(status),
                expected_generation: 0,
            },
        )
        .unwrap();
        let e = run(&mut s, inst("a", "")).unwrap_err();
        assert_eq!(e.code, CmdErrorCode::Aborted);
        assert!(e.message.contains("datacenter status"), "{e}");
        assert!(s.instances.is_empty());
        assert_eq!(s.hosts["h1"].used.unwrap_or_default().vcpus, 0);
    }
}

#[test]
fn an_image_in_use_cannot_be_deleted_and_a_flavor_can() {
    let mut s = world(None);
    run(
        &mut s,
        Command::CreateImage(Image {
            meta: meta("img", "", ""),
            ..Default::default()
        }),
    )
    .unwrap();
    run(
        &mut s,
        Command::CreateFlavor(Flavor {
            meta: meta("f", "", ""),
            vcpus: 1,
            memory_mib: 1024,
            disk_gib: 10,
        }),
    )
    .unwrap();
    let mut a = inst("a", "");
    if let Command::CreateInstance(i) = &mut a {
        i.image_id = "img".into();
        i.flavor_id = "f".into();
    }
    run(&mut s, a).unwrap();
    let e = run(&mut s, Command::DeleteImage { id: "img".into() }).unwrap_err();
    assert_eq!(e.code, CmdErrorCode::FailedPrecondition);
    assert!(e.message.contains("a (project p1)"), "{e}");
    assert!(s.images.contains_key("img"));
    // An instance carries its flavor's sizes: deleting the flavor changes nothing it needs.
    run(&mut s, Command::DeleteFlavor { id: "f".into() }).unwrap();
    assert_eq!(s.instances["a"].resources.unwrap_or_default().vcpus, 1);
    run(
        &mut s,
        Command::InstanceAction {
            id: "a".into(),
            action: InstanceAction::Delete,
        },
    )
    .unwrap();
    run(
        &mut s,
        Command::ObserveInstances(vec![("a".into(), IS::Deleted, String::new())]),
    )
    .unwrap();
    assert!(s.instances.is_empty());
    run(&mut s, Command::DeleteImage { id: "img".into() }).unwrap();
    assert!(s.images.is_empty());
}

fn run_at(s: &mut State, at: i64, cmd: Command) -> Result<Reply, CmdError> {
    s.apply(&Envelope::new(at, cmd)).0
}

fn delete_instance(s: &mut State, at: i64, id: &str) {
    run_at(
        s,
        at,
        Command::InstanceAction {
            id: id.into(),
            action: InstanceAction::Delete,
        },
    )
    .unwrap();
    run_at(
        s,
        at,
        Command::ObserveInstances(vec![(id.into(), IS::Deleted, String::new())]),
    )
    .unwrap();
}

#[test]
fn events_carry_neither_user_data_nor_ssh_keys() {
    let mut s = world(None);
    let Command::CreateInstance(mut i) = inst("a", "") else {
        unreachable!()
    };
    i.user_data = "#cloud-config password: hunter2".into();
    i.ssh_keys = vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 admin@example".into()];
    run(&mut s, Command::CreateInstance(i)).unwrap();
    // The state keeps them for the host that boots the guest.
    assert!(s.instances["a"].user_data.contains("hunter2"));
    delete_instance(&mut s, 2, "a");
    let evs: Vec<&Event> = s.events.iter().filter(|e| e.kind == "instance").collect();
    assert_eq!(evs.len(), 3, "created, updated (deleting), deleted");
    for e in evs {
        let r: Instance = serde_json::from_str(&e.resource_json).unwrap();
        assert_eq!(r.meta().id, "a");
        assert_eq!(r.host_id, "h1", "what watchers route on stays");
        assert!(r.user_data.is_empty() && r.ssh_keys.is_empty(), "{e:?}");
        assert!(!e.resource_json.contains("hunter2"));
        assert!(!e.resource_json.contains("AAAAC3NzaC1lZDI1NTE5"));
    }
}

#[test]
fn request_ids_expire_a_window_after_the_create_once_the_resource_is_gone() {
    use crate::retention::REQUEST_ID_WINDOW_MS as W;
    let mut s = world(None);
    let key = |r: &str| format!("p1/{r}");
    run_at(&mut s, 10, inst("a", "r-a")).unwrap();
    run_at(&mut s, 10, inst("b", "r-b")).unwrap();
    s.take_changes();
    // Deleted within the window: remembered until the window ends.
    delete_instance(&mut s, 20, "a");
    run_at(&mut s, 10 + W - 1, Command::ForgetReplica { node_id: 9 }).unwrap();
    assert!(s.request_ids.contains_key(&key("r-a")));
    assert!(s.replay("p1", "r-b").is_some());
    run_at(&mut s, 10 + W, Command::ForgetReplica { node_id: 9 }).unwrap();
    assert!(!s.request_ids.contains_key(&key("r-a")));
    let ch = s.take_changes();
    assert!(ch.request_ids.contains(&(key("r-a"), None)), "{ch:?}");
    // Alive long past the window: kept; deleted then: forgotten at the next command.
    run_at(&mut s, 10 + 5 * W, Command::ForgetReplica { node_id: 9 }).unwrap();
    assert!(s.replay("p1", "r-b").is_some());
    delete_instance(&mut s, 10 + 5 * W, "b");
    assert!(s.request_ids.contains_key(&key("r-b")));
    run_at(&mut s, 10 + 5 * W, Command::ForgetReplica { node_id: 9 }).unwrap();
    assert!(s.request_ids.is_empty(), "{:?}", s.request_ids);
    assert!(s.request_expiry.is_empty());
}

#[test]
fn a_request_id_reused_after_its_resource_is_gone_is_not_expired_by_the_old_entry() {
    use crate::retention::REQUEST_ID_WINDOW_MS as W;
    let mut s = world(None);
    run_at(&mut s, 10, inst("a", "r")).unwrap();
    delete_instance(&mut s, 20, "a");
    // The resource is gone, so a retry creates anew and takes the entry over.
    run_at(&mut s, 30, inst("a2", "r")).unwrap();
    run_at(&mut s, 10 + 2 * W, Command::ForgetReplica { node_id: 9 }).unwrap();
    match s.replay("p1", "r") {
        Some(Reply::Instance(i)) => assert_eq!(i.meta().id, "a2"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn tokens_revoke_once_free_their_name_and_never_the_last_cloud_admin() {
    let mut s = State::default();
    let tok = |id: &str, project: &str, role: andromede_api::v1::Role| {
        Command::CreateApiToken(ApiToken {
            meta: meta(id, project, ""),
            role: role as i32,
            secret_sha256: "00".into(),
            ..Default::default()
        })
    };
    use andromede_api::v1::Role;
    run(&mut s, tok("root", "", Role::Admin)).unwrap();
    run(&mut s, tok("audit", "", Role::Reader)).unwrap();
    let last = run(&mut s, Command::RevokeApiToken { id: "root".into() }).unwrap_err();
    assert_eq!(last.code, CmdErrorCode::FailedPrecondition, "{last:?}");
    run(&mut s, tok("root-2", "", Role::Admin)).unwrap();
    let Reply::ApiToken(t) = run(&mut s, Command::RevokeApiToken { id: "root".into() }).unwrap()
    else {
        panic!("not a token")
    };
    assert_ne!(t.revoked_at_ms, 0);
    // Revoking again changes nothing; the name is free for a new token.
    run(&mut s, Command::RevokeApiToken { id: "root".into() }).unwrap();
    let mut again = tok("root-3", "", Role::Admin);
    if let Command::CreateApiToken(t) = &mut again {
        if let Some(m) = t.meta.as_mut() {
            m.name = "root".into();
        }
    }
    run(&mut s, again).unwrap();
    assert_eq!(
        s.names
            .get(&name_key(Kind::ApiToken, "", "root"))
            .map(String::as_str),
        Some("root-3")
    );
    // A token of a project that does not exist is refused.
    let e = run(&mut s, tok("p1", "nope", Role::Member)).unwrap_err();
    assert_eq!(e.code, CmdErrorCode::NotFound);
}
