//! Single real server: sovereignty placement, races against capacity and quota, idempotent
//! creates, invalid input, and durability across `kill -9`.

#![allow(clippy::unwrap_used)]

use andromede_api::v1::*;
use andromede_tests::{policy, Clients, Server};
use std::collections::HashMap;
use tonic_types::StatusExt;

async fn one_server(root: &std::path::Path) -> (Server, Clients) {
    let mut s = Server::new(1, root, &[]);
    s.start(true);
    let mut c = s.clients().await;
    c.wait_leader().await;
    (s, c)
}

fn none() -> PlacementConstraints {
    PlacementConstraints::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sovereignty_policies_place_exactly_where_they_should() {
    let root = tempfile::tempdir().unwrap();
    let (_s, mut c) = one_server(root.path()).await;
    c.datacenter("paris", "FR", "FR", "FR", &["secnumcloud"])
        .await;
    c.datacenter("frankfurt", "DE", "DE", "DE", &["c5"]).await;
    c.datacenter("lyon-us", "FR", "FR", "US", &["secnumcloud"])
        .await;
    c.datacenter("oslo", "NO", "NO", "NO", &[]).await;
    for dc in ["paris", "frankfurt", "lyon-us", "oslo"] {
        c.host(&format!("{dc}-h1"), dc, 64, 1.0).await;
    }
    c.flavor_and_image().await;

    let cases: Vec<(&str, SovereigntyPolicy, Vec<&str>)> = vec![
        (
            "fr-only",
            policy(&["FR"], &[], &[], false),
            vec!["paris", "lyon-us"],
        ),
        (
            "eu",
            policy(&[], &["EU"], &[], false),
            vec!["paris", "frankfurt", "lyon-us"],
        ),
        (
            "eea",
            policy(&[], &["EEA"], &[], false),
            vec!["paris", "frankfurt", "lyon-us", "oslo"],
        ),
        (
            "immune",
            policy(&[], &["EU"], &[], true),
            vec!["paris", "frankfurt"],
        ),
        (
            "snc",
            policy(&[], &[], &["secnumcloud"], false),
            vec!["paris", "lyon-us"],
        ),
    ];
    let dcs: HashMap<String, String> = c
        .infra
        .list_datacenters(ListDatacentersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .datacenters
        .into_iter()
        .map(|d| {
            let m = d.meta.unwrap();
            (m.id, m.name)
        })
        .collect();
    for (name, pol, allowed) in cases {
        c.project(name, pol, None).await;
        let want: std::collections::BTreeSet<String> =
            allowed.iter().map(|s| s.to_string()).collect();
        // Unconstrained placements land only inside the policy...
        for i in 0..6 {
            let inst = c.instance(&format!("vm-{i}"), name, none()).await.unwrap();
            assert!(
                want.contains(&dcs[&inst.datacenter_id]),
                "project {name} placed in {}",
                dcs[&inst.datacenter_id]
            );
        }
        // ...and each datacenter is reachable exactly when the policy allows it.
        let mut reachable = std::collections::BTreeSet::new();
        for dc in ["paris", "frankfurt", "lyon-us", "oslo"] {
            let pin = PlacementConstraints {
                countries: vec![],
                datacenter_ids: vec![dc.into()],
            };
            match c.instance(&format!("pin-{dc}"), name, pin).await {
                Ok(inst) => {
                    assert_eq!(dcs[&inst.datacenter_id], dc);
                    reachable.insert(dc.to_string());
                }
                Err(e) => assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{}", e.message()),
            }
        }
        assert_eq!(reachable, want, "project {name}");
    }

    // Narrowing inside the policy works; leaving it is refused, naming the policy.
    let inst = c
        .instance(
            "narrow",
            "eu",
            PlacementConstraints {
                countries: vec!["DE".into()],
                datacenter_ids: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(inst.country, "DE");
    let before = c.instances("fr-only", false).await.len();
    let err = c
        .instance(
            "escape",
            "fr-only",
            PlacementConstraints {
                countries: vec!["DE".into()],
                datacenter_ids: vec![],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message()
            .contains("sovereignty policy of project fr-only"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("countries FR"), "{}", err.message());
    let err = c
        .instance(
            "escape2",
            "immune",
            PlacementConstraints {
                countries: vec![],
                datacenter_ids: vec!["oslo".into()],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        err.message()
    );
    assert_eq!(c.instances("fr-only", false).await.len(), before);

    // A refused placement explains itself per filter.
    c.project("us-only", policy(&["US"], &[], &[], false), None)
        .await;
    let err = c.instance("nowhere", "us-only", none()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(
        err.message()
            .contains("4 hosts considered: 4 excluded by project policy"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_never_overbook_capacity_or_quota_and_request_ids_dedupe() {
    let root = tempfile::tempdir().unwrap();
    let (_s, mut c) = one_server(root.path()).await;
    c.datacenter("paris", "FR", "FR", "FR", &[]).await;
    // 4 hosts x 25 vCPU at ratio 1.0 = room for exactly 100 one-vCPU instances.
    for i in 0..4 {
        c.host(&format!("h{i}"), "paris", 25, 1.0).await;
    }
    c.flavor_and_image().await;
    c.project("cap", policy(&[], &[], &[], false), None).await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move { c.instance(&format!("vm-{i}"), "cap", none()).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{}", e.message()),
        }
    }
    assert_eq!(ok, 100);
    let hosts = c
        .infra
        .list_hosts(ListHostsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .hosts;
    for h in hosts {
        let used = h.used.unwrap().vcpus;
        assert!(used <= 25, "host over its allocation ratio: {used}");
    }

    // The same for a quota, with plenty of capacity.
    c.host("big", "paris", 1000, 4.0).await;
    c.project(
        "quota",
        policy(&[], &[], &[], false),
        Some(Quota {
            instances: Some(50),
            ..Default::default()
        }),
    )
    .await;
    let tasks: Vec<_> = (0..120)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move { c.instance(&format!("q-{i}"), "quota", none()).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 50);
    let p = c
        .identity
        .get_project(GetRequest {
            r#ref: Some(ResourceRef {
                id_or_name: "quota".into(),
                project: String::new(),
            }),
            read: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.usage.unwrap().instances, 50);

    // The same request id twice gives one instance.
    c.project("idem", policy(&[], &[], &[], false), None).await;
    let req = CreateInstanceRequest {
        name: "once".into(),
        project: "idem".into(),
        flavor: "small".into(),
        image: "tiny".into(),
        request_id: "retry-42".into(),
        ..Default::default()
    };
    let a = c
        .compute
        .create_instance(req.clone())
        .await
        .unwrap()
        .into_inner();
    let b = c.compute.create_instance(req).await.unwrap().into_inner();
    assert_eq!(a.meta.unwrap().id, b.meta.unwrap().id);
    assert_eq!(c.instances("idem", false).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_names_the_field_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (_s, mut c) = one_server(root.path()).await;
    c.datacenter("paris", "FR", "FR", "FR", &[]).await;
    c.host("h1", "paris", 16, 1.0).await;
    c.flavor_and_image().await;
    c.project("p", policy(&[], &[], &[], false), None).await;

    let base = CreateInstanceRequest {
        name: "ok".into(),
        project: "p".into(),
        flavor: "small".into(),
        image: "tiny".into(),
        ..Default::default()
    };
    let long = "a".repeat(10_000);
    let cases: Vec<(CreateInstanceRequest, &str)> = vec![
        (
            CreateInstanceRequest {
                name: String::new(),
                ..base.clone()
            },
            "name",
        ),
        (
            CreateInstanceRequest {
                name: long.clone(),
                ..base.clone()
            },
            "name",
        ),
        (
            CreateInstanceRequest {
                flavor: "nope".into(),
                ..base.clone()
            },
            "flavor",
        ),
        (
            CreateInstanceRequest {
                constraints: Some(PlacementConstraints {
                    countries: vec!["XX".into()],
                    datacenter_ids: vec![],
                }),
                ..base.clone()
            },
            "constraints.countries[0]",
        ),
        (
            CreateInstanceRequest {
                constraints: Some(PlacementConstraints {
                    countries: vec![],
                    datacenter_ids: vec!["atlantis".into()],
                }),
                ..base.clone()
            },
            "constraints.datacenter_ids[0]",
        ),
    ];
    for (req, field) in cases {
        let e = c.compute.create_instance(req).await.unwrap_err();
        assert_eq!(
            e.code(),
            tonic::Code::InvalidArgument,
            "{field}: {}",
            e.message()
        );
        let fields: Vec<String> = e
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default();
        assert!(
            fields.iter().any(|f| f == field),
            "{field} not in {fields:?}"
        );
    }
    let e = c
        .infra
        .create_flavor(CreateFlavorRequest {
            name: "zero".into(),
            vcpus: 0,
            memory_mib: 1,
            disk_gib: 1,
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("vcpus"));
    let e = c
        .infra
        .create_datacenter(CreateDatacenterRequest {
            name: "x".into(),
            country: "ZZ".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("country"));
    let e = c
        .infra
        .set_host_state(SetHostStateRequest {
            r#ref: Some(ResourceRef {
                id_or_name: "h1".into(),
                project: String::new(),
            }),
            state: 99,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("state"));
    let e = c
        .volumes
        .create_volume(CreateVolumeRequest {
            name: "v".into(),
            project: "p".into(),
            size_gib: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("size_gib"));
    assert!(c.instances("p", false).await.is_empty());
    assert_eq!(
        c.infra
            .list_flavors(ListRequest::default())
            .await
            .unwrap()
            .into_inner()
            .flavors
            .len(),
        1
    );
    assert_eq!(
        c.infra
            .list_datacenters(ListDatacentersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .datacenters
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_and_restart_keeps_every_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    let (mut s, mut c) = one_server(root.path()).await;
    c.datacenter("paris", "FR", "FR", "FR", &[]).await;
    c.host("h1", "paris", 64, 4.0).await;
    c.flavor_and_image().await;
    c.project("p", policy(&["FR"], &[], &[], false), None).await;
    let mut acked = Vec::new();
    for i in 0..50 {
        acked.push(
            c.instance(&format!("vm-{i}"), "p", none())
                .await
                .unwrap()
                .meta
                .unwrap()
                .id,
        );
    }
    s.kill9();
    s.start(false);
    let mut c = s.clients().await;
    c.wait_leader().await;
    let ids: std::collections::BTreeSet<String> = c
        .instances("p", false)
        .await
        .into_iter()
        .map(|i| i.meta.unwrap().id)
        .collect();
    for id in &acked {
        assert!(ids.contains(id), "acknowledged instance {id} lost");
    }
    assert_eq!(ids.len(), 50);
    // And the restarted node still takes writes.
    c.instance("after", "p", none()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_location_binds_every_project_and_survives_restart() {
    let root = tempfile::tempdir().unwrap();
    let (mut s, mut c) = one_server(root.path()).await;
    c.datacenter("paris", "FR", "FR", "FR", &[]).await;
    c.datacenter("berlin", "DE", "DE", "DE", &[]).await;
    c.project("bund", policy(&["DE"], &[], &[], false), None)
        .await;
    let locate = |c: &mut Clients, dc: &str| {
        let mut cl = c.cluster.clone();
        let dc = dc.to_string();
        async move {
            cl.locate_node(LocateNodeRequest {
                node_id: 1,
                datacenter: dc,
            })
            .await
        }
    };
    // Server 1 in Paris would hold project bund's metadata outside Germany.
    let e = locate(&mut c, "paris").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("bund"), "{e:?}");
    c.identity
        .delete_project(DeleteRequest {
            r#ref: Some(ResourceRef {
                id_or_name: "bund".into(),
                project: String::new(),
            }),
        })
        .await
        .unwrap();
    let st = locate(&mut c, "paris").await.unwrap().into_inner();
    let paris = c
        .infra
        .get_datacenter(GetRequest {
            r#ref: Some(ResourceRef {
                id_or_name: "paris".into(),
                project: String::new(),
            }),
            read: None,
        })
        .await
        .unwrap()
        .into_inner()
        .meta
        .unwrap()
        .id;
    assert_eq!(st.members[0].datacenter_id, paris);
    let refuse_de = |c: &mut Clients| {
        let mut id = c.identity.clone();
        async move {
            id.create_project(CreateProjectRequest {
                name: "bund-2".into(),
                policy: Some(policy(&["DE"], &[], &[], false)),
                ..Default::default()
            })
            .await
            .unwrap_err()
        }
    };
    let e = refuse_de(&mut c).await;
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("control-plane server 1"), "{e:?}");
    // The location is replicated state: it survives kill -9.
    s.kill9();
    s.start(false);
    let mut c = s.clients().await;
    let st = c.wait_leader().await;
    assert_eq!(st.members[0].datacenter_id, paris);
    let e = refuse_de(&mut c).await;
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_report_and_flags_follow_a_datacenter_change() {
    use andromede_tests::agent::cloudctl;
    let root = tempfile::tempdir().unwrap();
    let (s, mut c) = one_server(root.path()).await;
    c.datacenter("paris", "FR", "FR", "FR", &[]).await;
    c.host("h1", "paris", 8, 4.0).await;
    c.flavor_and_image().await;
    c.project("gov", policy(&["FR"], &[], &[], true), None)
        .await;
    let inst = c.instance("web", "gov", none()).await.unwrap();
    let id = inst.meta.unwrap().id;
    let ep = s.endpoint();

    // Not provable yet: the server holding gov's metadata has not declared where it runs.
    let (ok, out, err) = cloudctl(&ep, &["compliance", "report", "-p", "gov"]);
    assert!(!ok, "{out}");
    assert!(out.contains("location not declared"), "{out}");
    assert!(err.contains("NOT COMPLIANT"), "{err}");
    c.cluster
        .locate_node(LocateNodeRequest {
            node_id: 1,
            datacenter: "paris".into(),
        })
        .await
        .unwrap();
    let (ok, out, err) = cloudctl(&ep, &["compliance", "report", "-p", "gov"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("COMPLIANT") && out.contains("web"), "{out}");

    // The operator is bought by an American group: nothing moves, but everything is flagged.
    c.infra
        .update_datacenter(UpdateDatacenterRequest {
            r#ref: Some(ResourceRef {
                id_or_name: "paris".into(),
                project: String::new(),
            }),
            operator: Some(Operator {
                name: "paris-operator".into(),
                country: "FR".into(),
                parent_country: "US".into(),
                largest_non_eu_holder_percent: 100.0,
                total_non_eu_percent: 100.0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let flagged = c
        .compute
        .get_instance(GetRequest {
            r#ref: Some(ResourceRef {
                id_or_name: id.clone(),
                project: String::new(),
            }),
            read: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        flagged.non_compliant_reason.contains("paris"),
        "{:?}",
        flagged.non_compliant_reason
    );
    assert_eq!(flagged.host_id, inst.host_id, "nothing is moved silently");
    let (ok, out, _) = cloudctl(&ep, &["-o", "json", "compliance", "report", "-p", "gov"]);
    assert!(!ok);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows.iter().all(|r| r["compliant"] == false), "{out}");
}

fn by(name: &str, project: &str) -> Option<ResourceRef> {
    Some(ResourceRef {
        id_or_name: name.into(),
        project: project.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_running_guests_need_stays_and_refusals_name_their_field() {
    let root = tempfile::tempdir().unwrap();
    let (s, mut c) = one_server(root.path()).await;
    c.datacenter("paris", "FR", "FR", "FR", &[]).await;
    c.host("h1", "paris", 16, 1.0).await;
    c.flavor_and_image().await;
    c.project("p", policy(&[], &[], &[], false), None).await;
    c.project("q", policy(&[], &[], &[], false), None).await;
    let group = c
        .compute
        .create_server_group(CreateServerGroupRequest {
            name: "ha".into(),
            project: "p".into(),
            policy: GroupPolicy::AntiAffinity as i32,
            hard: true,
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    c.compute
        .create_instance(CreateInstanceRequest {
            name: "web-1".into(),
            project: "p".into(),
            flavor: "small".into(),
            image: "tiny".into(),
            server_group: "ha".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // The image a guest boots from cannot go while the guest exists; the refusal names it.
    let e = c
        .infra
        .delete_image(DeleteRequest {
            r#ref: by("tiny", ""),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("web-1 (project p)"), "{e:?}");
    // So can't its server group.
    let e = c
        .compute
        .delete_server_group(DeleteRequest {
            r#ref: by("ha", "p"),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("web-1 (project p)"), "{e:?}");
    // A flavor can: the instance carries its sizes, as in Nova.
    c.infra
        .delete_flavor(DeleteRequest {
            r#ref: by("small", ""),
        })
        .await
        .unwrap();
    let web = &c.instances("p", false).await[0];
    assert_eq!(web.resources.unwrap_or_default().vcpus, 1);
    let images = c
        .infra
        .list_images(ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(images.len(), 1);

    // Another project's server group is not found by placement explain, even by id.
    let mut placement = placement_service_client::PlacementServiceClient::with_interceptor(
        s.channel().await,
        andromede_tests::Auth::admin(),
    );
    let e = placement
        .explain(ExplainRequest {
            project: "q".into(),
            volume_gib: 1,
            server_group: group.meta.unwrap().id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("server_group"), "{e:?}");

    // A shrink is refused naming the field in the message, not only in the details.
    c.volumes
        .create_volume(CreateVolumeRequest {
            name: "data".into(),
            project: "p".into(),
            size_gib: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let e = c
        .volumes
        .extend_volume(ExtendVolumeRequest {
            volume: by("data", "p"),
            size_gib: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("size_gib: "), "{e:?}");
    let fields: Vec<String> = e
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    assert_eq!(fields, ["size_gib"]);
    // A reference to nothing names its field too.
    let e = c
        .compute
        .list_instances(ListRequest {
            project: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().starts_with("project: "), "{e:?}");
}
