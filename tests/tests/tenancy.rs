//! Cross-tenant isolation over real calls: project beta's tokens, naming project alpha's
//! resources by id, by name in alpha or by plain name, get exactly the answer a name that exists
//! nowhere gets (NOT_FOUND, an empty list, a filtered stream), never a hint that alpha's
//! resource exists; nothing of alpha changes; request ids are per project.

#![allow(clippy::unwrap_used)]

use andromede_api::v1::compute_service_client::ComputeServiceClient;
use andromede_api::v1::event_service_client::EventServiceClient;
use andromede_api::v1::identity_service_client::IdentityServiceClient;
use andromede_api::v1::infrastructure_service_client::InfrastructureServiceClient;
use andromede_api::v1::placement_service_client::PlacementServiceClient;
use andromede_api::v1::volume_service_client::VolumeServiceClient;
use andromede_api::v1::*;
use andromede_tests::agent::r;
use andromede_tests::{policy, Clients, Server};
use std::fmt::Debug;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

const T: Duration = Duration::from_secs(30);

type Ch = InterceptedService<Channel, andromede_tests::Auth>;

/// Every client a tenant uses, all carrying one token.
#[derive(Clone)]
struct As {
    infra: InfrastructureServiceClient<Ch>,
    identity: IdentityServiceClient<Ch>,
    compute: ComputeServiceClient<Ch>,
    volumes: VolumeServiceClient<Ch>,
    placement: PlacementServiceClient<Ch>,
    events: EventServiceClient<Ch>,
}

impl As {
    fn new(ch: &Channel, token: &str) -> Self {
        let b = andromede_tests::Auth::token(token);
        Self {
            infra: InfrastructureServiceClient::with_interceptor(ch.clone(), b.clone()),
            identity: IdentityServiceClient::with_interceptor(ch.clone(), b.clone()),
            compute: ComputeServiceClient::with_interceptor(ch.clone(), b.clone()),
            volumes: VolumeServiceClient::with_interceptor(ch.clone(), b.clone()),
            placement: PlacementServiceClient::with_interceptor(ch.clone(), b.clone()),
            events: EventServiceClient::with_interceptor(ch.clone(), b),
        }
    }
}

fn id_of(m: &Option<Meta>) -> String {
    m.as_ref().unwrap().id.clone()
}

fn project_of(m: &Option<Meta>) -> String {
    m.as_ref().unwrap().project_id.clone()
}

fn rr(id_or_name: &str, project: &str) -> Option<ResourceRef> {
    Some(ResourceRef {
        id_or_name: id_or_name.into(),
        project: project.into(),
    })
}

fn get(id_or_name: &str, project: &str) -> GetRequest {
    GetRequest {
        r#ref: rr(id_or_name, project),
        read: None,
    }
}

fn list(project: &str) -> ListRequest {
    ListRequest {
        project: project.into(),
        page_size: 1000,
        ..Default::default()
    }
}

fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Ways of naming one of alpha's resources, each with a reference to nothing at all of the same
/// shape and the swap that turns the first's answer into the second's: (how, alpha's, nothing's,
/// swap).
fn refs(id: &str, name: &str, alpha_id: &str) -> Vec<(String, ResourceRef, ResourceRef, Swap)> {
    let (nid, npid) = (fresh_id(), fresh_id());
    let r = |a: &str, b: &str| ResourceRef {
        id_or_name: a.into(),
        project: b.into(),
    };
    vec![
        (
            "by id".into(),
            r(id, ""),
            r(&nid, ""),
            vec![(id.into(), nid.clone())],
        ),
        (
            "by name in project alpha".into(),
            r(name, "alpha"),
            r(name, "no-such-project"),
            vec![("alpha".into(), "no-such-project".into())],
        ),
        (
            "by name in alpha's project id".into(),
            r(name, alpha_id),
            r(name, &npid),
            vec![(alpha_id.into(), npid)],
        ),
        (
            "by plain name".into(),
            r(name, ""),
            r("no-such-thing", ""),
            vec![(name.into(), "no-such-thing".into())],
        ),
    ]
}

/// Pairs of strings (each replaced quoted, as messages quote what a request named).
type Swap = Vec<(String, String)>;

/// Records in `wrong` unless `got` (naming alpha's resource) is refused exactly as `missing`
/// (naming nothing) is: the same code and, once the names are swapped, the same message. With
/// `not_found`, that code must also be NOT_FOUND; otherwise NOT_FOUND or INVALID_ARGUMENT (a
/// request field naming nothing usable).
fn hidden<T: Debug, U: Debug>(
    wrong: &mut Vec<String>,
    what: &str,
    got: Result<T, Status>,
    missing: Result<U, Status>,
    swap: &[(String, String)],
    not_found: bool,
) {
    let (got, missing) = match (got, missing) {
        (Err(g), Err(m)) => (g, m),
        (g, m) => {
            wrong.push(format!(
                "{what}: got {g:?}, and for a reference to nothing {m:?}; both must fail"
            ));
            return;
        }
    };
    let allowed: &[Code] = if not_found {
        &[Code::NotFound]
    } else {
        &[Code::NotFound, Code::InvalidArgument]
    };
    if !allowed.contains(&got.code()) {
        wrong.push(format!(
            "{what}: got {:?} {:?}, want one of {allowed:?}",
            got.code(),
            got.message()
        ));
    }
    let mut msg = got.message().to_string();
    for (from, to) in swap {
        msg = msg.replace(&format!("{from:?}"), &format!("{to:?}"));
    }
    if got.code() != missing.code() || msg != missing.message() {
        wrong.push(format!(
            "{what}: answered {:?} {:?}, but a reference to nothing answers {:?} {:?}: the \
             difference tells alpha's resource exists",
            got.code(),
            got.message(),
            missing.code(),
            missing.message()
        ));
    }
}

/// What beta tries against one of alpha's resources, named by a reference.
#[derive(Debug, Clone, Copy)]
enum Op {
    GetInstance,
    StartInstance,
    StopInstance,
    RebootInstance,
    DeleteInstance,
    GetConsoleLog,
    GetVolume,
    DeleteVolume,
    DetachVolume,
    ExtendVolume,
    /// Alpha's volume onto beta's own instance.
    AttachVolume,
    GetServerGroup,
    DeleteServerGroup,
    GetImage,
    DeleteImage,
    RevokeToken,
    GetProject,
    UpdateProject,
}

impl Op {
    /// Whether a project member's role may call it at all (the rest need a project admin).
    fn member_may(self) -> bool {
        !matches!(self, Op::RevokeToken | Op::UpdateProject)
    }

    async fn run(self, t: &mut As, r: ResourceRef, beta_instance: &str) -> Result<String, Status> {
        let act = InstanceActionRequest {
            r#ref: Some(r.clone()),
        };
        let g = GetRequest {
            r#ref: Some(r.clone()),
            read: None,
        };
        let d = DeleteRequest {
            r#ref: Some(r.clone()),
        };
        let out = match self {
            Op::GetInstance => format!("{:?}", t.compute.get_instance(g).await?),
            Op::StartInstance => format!("{:?}", t.compute.start_instance(act).await?),
            Op::StopInstance => format!("{:?}", t.compute.stop_instance(act).await?),
            Op::RebootInstance => format!("{:?}", t.compute.reboot_instance(act).await?),
            Op::DeleteInstance => format!("{:?}", t.compute.delete_instance(act).await?),
            Op::GetConsoleLog => format!(
                "{:?}",
                t.compute
                    .get_console_log(GetConsoleLogRequest {
                        r#ref: Some(r),
                        max_bytes: 0,
                    })
                    .await?
            ),
            Op::GetVolume => format!("{:?}", t.volumes.get_volume(g).await?),
            Op::DeleteVolume => format!("{:?}", t.volumes.delete_volume(d).await?),
            Op::DetachVolume => format!(
                "{:?}",
                t.volumes
                    .detach_volume(DetachVolumeRequest { volume: Some(r) })
                    .await?
            ),
            Op::ExtendVolume => format!(
                "{:?}",
                t.volumes
                    .extend_volume(ExtendVolumeRequest {
                        volume: Some(r),
                        size_gib: 50,
                    })
                    .await?
            ),
            Op::AttachVolume => format!(
                "{:?}",
                t.volumes
                    .attach_volume(AttachVolumeRequest {
                        volume: Some(r),
                        instance: beta_instance.into(),
                    })
                    .await?
            ),
            Op::GetServerGroup => format!("{:?}", t.compute.get_server_group(g).await?),
            Op::DeleteServerGroup => format!("{:?}", t.compute.delete_server_group(d).await?),
            Op::GetImage => format!("{:?}", t.infra.get_image(g).await?),
            Op::DeleteImage => format!("{:?}", t.infra.delete_image(d).await?),
            Op::RevokeToken => format!(
                "{:?}",
                t.identity
                    .revoke_token(RevokeTokenRequest { r#ref: Some(r) })
                    .await?
            ),
            Op::GetProject => format!("{:?}", t.identity.get_project(g).await?),
            Op::UpdateProject => format!(
                "{:?}",
                t.identity
                    .update_project(UpdateProjectRequest {
                        r#ref: Some(r),
                        description: Some("taken over by beta".into()),
                        ..Default::default()
                    })
                    .await?
            ),
        };
        Ok(out)
    }
}

/// Alpha's resources as the cloud admin reads them.
#[derive(Debug, PartialEq)]
struct Alpha {
    project: Project,
    instance: Instance,
    volume: Volume,
    group: ServerGroup,
    image: Image,
    tokens: Vec<ApiToken>,
}

async fn alpha_state(c: &mut Clients, ids: &AlphaIds) -> Alpha {
    Alpha {
        project: c
            .identity
            .get_project(get(&ids.project, ""))
            .await
            .unwrap()
            .into_inner(),
        instance: c.get_instance(&ids.instance).await.unwrap(),
        volume: c.get_volume(&ids.volume).await.unwrap(),
        group: c
            .compute
            .get_server_group(get(&ids.group, ""))
            .await
            .unwrap()
            .into_inner(),
        image: c
            .infra
            .get_image(get(&ids.image, ""))
            .await
            .unwrap()
            .into_inner(),
        tokens: c
            .identity
            .list_tokens(ListTokensRequest {
                project: ids.project.clone(),
                include_inactive: true,
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .tokens,
    }
}

struct AlphaIds {
    project: String,
    instance: String,
    volume: String,
    group: String,
    image: String,
    token: String,
}

impl AlphaIds {
    fn all(&self) -> Vec<&str> {
        vec![
            &self.project,
            &self.instance,
            &self.volume,
            &self.group,
            &self.image,
            &self.token,
        ]
        .into_iter()
        .map(String::as_str)
        .collect()
    }
}

async fn token(c: &mut Clients, name: &str, project: &str, role: Role) -> String {
    c.identity
        .create_token(CreateTokenRequest {
            name: name.into(),
            project: project.into(),
            role: role as i32,
            ttl_secs: 0,
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret
}

fn volume_req(name: &str, project: &str, near: &str, request_id: &str) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        project: project.into(),
        size_gib: 1,
        near_instance: near.into(),
        request_id: request_id.into(),
        ..Default::default()
    }
}

fn instance_req(name: &str, project: &str, image: &str, group: &str) -> CreateInstanceRequest {
    CreateInstanceRequest {
        name: name.into(),
        project: project.into(),
        flavor: "small".into(),
        image: image.into(),
        server_group: group.into(),
        request_id: fresh_id(),
        ..Default::default()
    }
}

/// Reads `s` until an event for `until` arrives (or `T` passes), returning all it read.
async fn events_until(s: &mut tonic::Streaming<Event>, until: &str, what: &str) -> Vec<Event> {
    let deadline = Instant::now() + T;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.next()).await {
            Ok(Some(Ok(e))) => {
                let done = e.id == until;
                seen.push(e);
                if done {
                    return seen;
                }
            }
            Ok(Some(Err(e))) => panic!("{what}: the watch failed: {e:?}"),
            Ok(None) => panic!("{what}: the watch ended before {until}'s event"),
            Err(_) => panic!(
                "{what}: no event for {until} within {T:?}; saw {:?}",
                seen.iter().map(|e| (&e.kind, &e.id)).collect::<Vec<_>>()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_project_never_sees_nor_touches_another() {
    let root = tempfile::tempdir().unwrap();
    let mut s = Server::new(1, root.path(), &[]);
    s.start(true);
    let ch = s.channel().await;
    let mut c = Clients::new(ch.clone());
    c.wait_leader().await;

    c.datacenter("paris", "FR", "FR", "FR", &[]).await;
    c.host("h1", "paris", 32, 1.0).await;
    c.flavor_and_image().await;
    let alpha = c.project("alpha", policy(&[], &[], &[], false), None).await;
    let beta = c.project("beta", policy(&[], &[], &[], false), None).await;
    let (a_id, b_id) = (id_of(&alpha.meta), id_of(&beta.meta));
    let a_admin = As::new(
        &ch,
        &token(&mut c, "alpha-admin", "alpha", Role::Admin).await,
    );
    let mut a_member = As::new(
        &ch,
        &token(&mut c, "alpha-member", "alpha", Role::Member).await,
    );
    let mut b_admin = As::new(&ch, &token(&mut c, "beta-admin", "beta", Role::Admin).await);
    let mut b_member = As::new(
        &ch,
        &token(&mut c, "beta-member", "beta", Role::Member).await,
    );

    // Alpha's resources, made by alpha's own tokens.
    let group = a_member
        .compute
        .create_server_group(CreateServerGroupRequest {
            name: "alpha-grp".into(),
            project: String::new(),
            policy: GroupPolicy::AntiAffinity as i32,
            hard: false,
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let image = a_member
        .infra
        .create_image(CreateImageRequest {
            name: "alpha-img".into(),
            format: "qcow2".into(),
            source: "https://images.example/alpha.qcow2".into(),
            checksum_sha256: "b".repeat(64),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(project_of(&image.meta), a_id, "{image:?}");
    let inst = a_member
        .compute
        .create_instance(instance_req("alpha-web", "", "alpha-img", "alpha-grp"))
        .await
        .unwrap()
        .into_inner();
    let inst_id = id_of(&inst.meta);
    c.wait_instance(&inst_id, InstanceState::Running, T).await;
    let vol = a_member
        .volumes
        .create_volume(volume_req("alpha-data", "", &inst_id, ""))
        .await
        .unwrap()
        .into_inner();
    let vol_id = id_of(&vol.meta);
    c.wait_volume(&vol_id, VolumeState::Available, T).await;
    a_member
        .volumes
        .attach_volume(AttachVolumeRequest {
            volume: r(&vol_id),
            instance: "alpha-web".into(),
        })
        .await
        .unwrap();
    let attached = c.wait_volume(&vol_id, VolumeState::InUse, T).await;
    assert_eq!(attached.attached_to, inst_id);
    let a_token = a_admin
        .identity
        .clone()
        .create_token(CreateTokenRequest {
            name: "alpha-ci".into(),
            role: Role::Reader as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let a_token_meta = a_token.token.as_ref().unwrap().meta.clone();
    assert_eq!(project_of(&a_token_meta), a_id);
    let ids = AlphaIds {
        project: a_id.clone(),
        instance: inst_id.clone(),
        volume: vol_id.clone(),
        group: id_of(&group.meta),
        image: id_of(&image.meta),
        token: id_of(&a_token_meta),
    };
    // The console log exists for alpha (a simulated host has none, so: FAILED_PRECONDITION).
    let own = a_member
        .compute
        .get_console_log(GetConsoleLogRequest {
            r#ref: r(&inst_id),
            max_bytes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(own.code(), Code::FailedPrecondition, "{own:?}");

    // Beta's own, so that every "not found" below is beta's view, not a broken lookup.
    let b_inst = b_member
        .compute
        .create_instance(instance_req("beta-web", "", "tiny", ""))
        .await
        .unwrap()
        .into_inner();
    let b_inst_id = id_of(&b_inst.meta);
    c.wait_instance(&b_inst_id, InstanceState::Running, T).await;
    let b_vol = b_member
        .volumes
        .create_volume(volume_req("beta-data", "beta", &b_inst_id, ""))
        .await
        .unwrap()
        .into_inner();
    let b_vol_id = id_of(&b_vol.meta);
    c.wait_volume(&b_vol_id, VolumeState::Available, T).await;
    let mut wrong = Vec::new();
    let b_group = b_member
        .compute
        .create_server_group(CreateServerGroupRequest {
            name: "beta-grp".into(),
            policy: GroupPolicy::Affinity as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for (what, got) in [
        (
            "beta's instance by plain name",
            b_member
                .compute
                .get_instance(get("beta-web", ""))
                .await
                .map(|x| id_of(&x.into_inner().meta)),
        ),
        (
            "beta's volume by name in beta",
            b_member
                .volumes
                .get_volume(get("beta-data", "beta"))
                .await
                .map(|x| id_of(&x.into_inner().meta)),
        ),
        (
            "beta's group by id",
            b_member
                .compute
                .get_server_group(get(&id_of(&b_group.meta), ""))
                .await
                .map(|x| id_of(&x.into_inner().meta)),
        ),
        (
            "beta's project by name",
            b_member
                .identity
                .get_project(get("beta", ""))
                .await
                .map(|x| id_of(&x.into_inner().meta)),
        ),
        (
            "beta's project by id",
            b_member
                .identity
                .get_project(get(&b_id, ""))
                .await
                .map(|x| id_of(&x.into_inner().meta)),
        ),
        (
            "the public image by name",
            b_member
                .infra
                .get_image(get("tiny", ""))
                .await
                .map(|x| id_of(&x.into_inner().meta)),
        ),
        (
            "the flavor by name",
            b_member
                .infra
                .get_flavor(get("small", ""))
                .await
                .map(|x| id_of(&x.into_inner().meta)),
        ),
        (
            "the datacenter by name",
            b_member
                .infra
                .get_datacenter(get("paris", ""))
                .await
                .map(|x| id_of(&x.into_inner().meta)),
        ),
    ] {
        if let Err(e) = got {
            wrong.push(format!("beta's member reading {what}: {e:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    let before = alpha_state(&mut c, &ids).await;

    // Every kind, every way of naming it, every call: the answer for nothing at all.
    let targets: Vec<(&str, &str, &[Op])> = vec![
        (
            &inst_id,
            "alpha-web",
            &[
                Op::GetInstance,
                Op::StartInstance,
                Op::StopInstance,
                Op::RebootInstance,
                Op::DeleteInstance,
                Op::GetConsoleLog,
            ],
        ),
        (
            &vol_id,
            "alpha-data",
            &[
                Op::GetVolume,
                Op::DeleteVolume,
                Op::DetachVolume,
                Op::ExtendVolume,
                Op::AttachVolume,
            ],
        ),
        (
            &ids.group,
            "alpha-grp",
            &[Op::GetServerGroup, Op::DeleteServerGroup],
        ),
        (&ids.image, "alpha-img", &[Op::GetImage, Op::DeleteImage]),
        (&ids.token, "alpha-ci", &[Op::RevokeToken]),
    ];
    let mut tried = 0;
    for (id, name, ops) in &targets {
        for (how, theirs, nothing, swap) in refs(id, name, &a_id) {
            for op in ops.iter() {
                for (who, t) in [("member", &mut b_member), ("admin", &mut b_admin)] {
                    if who == "member" && !op.member_may() {
                        continue;
                    }
                    tried += 1;
                    let got = op.run(t, theirs.clone(), &b_inst_id).await;
                    let missing = op.run(t, nothing.clone(), &b_inst_id).await;
                    hidden(
                        &mut wrong,
                        &format!("beta's {who}: {op:?} of alpha's {name} {how}"),
                        got,
                        missing,
                        &swap,
                        true,
                    );
                }
            }
        }
    }
    // Alpha itself, by id and by name.
    for (how, theirs, nothing) in [
        ("by id", a_id.clone(), fresh_id()),
        (
            "by name",
            "alpha".to_string(),
            "no-such-project".to_string(),
        ),
    ] {
        let swap = [(theirs.clone(), nothing.clone())];
        for op in [Op::GetProject, Op::UpdateProject] {
            for (who, t) in [("member", &mut b_member), ("admin", &mut b_admin)] {
                if who == "member" && !op.member_may() {
                    continue;
                }
                tried += 1;
                let got = op.run(t, rr(&theirs, "").unwrap(), &b_inst_id).await;
                let missing = op.run(t, rr(&nothing, "").unwrap(), &b_inst_id).await;
                hidden(
                    &mut wrong,
                    &format!("beta's {who}: {op:?} of project alpha {how}"),
                    got,
                    missing,
                    &swap,
                    true,
                );
            }
        }
    }
    assert!(tried > 100, "only {tried} attempts");

    // Beta's own volume onto alpha's instance.
    let onto = |i: &str| AttachVolumeRequest {
        volume: r(&b_vol_id),
        instance: i.into(),
    };
    let nothing = fresh_id();
    let got = b_member.volumes.attach_volume(onto(&inst_id)).await;
    let missing = b_member.volumes.attach_volume(onto(&nothing)).await;
    hidden(
        &mut wrong,
        "beta's volume attached to alpha's instance by id",
        got,
        missing,
        &[(inst_id.clone(), nothing)],
        true,
    );
    let got = b_member
        .volumes
        .attach_volume(AttachVolumeRequest {
            volume: r(&b_vol_id),
            instance: "alpha-web".into(),
        })
        .await;
    let missing = b_member
        .volumes
        .attach_volume(AttachVolumeRequest {
            volume: r(&b_vol_id),
            instance: "no-such-vm".into(),
        })
        .await;
    hidden(
        &mut wrong,
        "beta's volume attached to alpha's instance by name",
        got,
        missing,
        &[("alpha-web".into(), "no-such-vm".into())],
        true,
    );

    // Creating in alpha, and lists, reports, placement and watches of alpha: as for a project
    // that does not exist.
    let np = fresh_id();
    for (theirs, nothing) in [(a_id.as_str(), np.as_str()), ("alpha", "no-such-project")] {
        let swap = [(theirs.to_string(), nothing.to_string())];
        let t = &mut b_member;
        macro_rules! same {
            ($what:expr, |$p:ident| $call:expr) => {{
                let got = {
                    let $p = theirs;
                    $call.await
                };
                let missing = {
                    let $p = nothing;
                    $call.await
                };
                hidden(
                    &mut wrong,
                    &format!("beta's member: {} with project {theirs}", $what),
                    got,
                    missing,
                    &swap,
                    true,
                );
            }};
        }
        same!("CreateInstance", |p| t
            .compute
            .create_instance(instance_req("intruder", p, "tiny", "")));
        same!("CreateVolume", |p| t
            .volumes
            .create_volume(volume_req("intruder", p, "", "")));
        same!("CreateServerGroup", |p| t.compute.create_server_group(
            CreateServerGroupRequest {
                name: "intruder".into(),
                project: p.into(),
                policy: GroupPolicy::Affinity as i32,
                ..Default::default()
            }
        ));
        same!("CreateImage", |p| t.infra.create_image(
            CreateImageRequest {
                name: "intruder".into(),
                source: "https://images.example/x.qcow2".into(),
                checksum_sha256: "c".repeat(64),
                project: p.into(),
                ..Default::default()
            }
        ));
        same!("ListInstances", |p| t.compute.list_instances(list(p)));
        same!("ListVolumes", |p| t.volumes.list_volumes(list(p)));
        same!("ListServerGroups", |p| t
            .compute
            .list_server_groups(list(p)));
        same!("ListImages", |p| t.infra.list_images(list(p)));
        same!("GetComplianceReport", |p| t.identity.get_compliance_report(
            ComplianceReportRequest {
                project: p.into(),
                read: None,
            }
        ));
        same!("Explain", |p| t.placement.explain(ExplainRequest {
            project: p.into(),
            flavor: "small".into(),
            ..Default::default()
        }));
        same!("Watch", |p| t.events.watch(WatchRequest {
            from_revision: 0,
            kinds: vec![],
            project: p.into(),
        }));
        let t = &mut b_admin;
        same!("CreateToken", |p| t.identity.create_token(
            CreateTokenRequest {
                name: "intruder".into(),
                project: p.into(),
                role: Role::Reader as i32,
                ..Default::default()
            }
        ));
        same!("ListTokens", |p| t.identity.list_tokens(
            ListTokensRequest {
                project: p.into(),
                ..Default::default()
            }
        ));
    }

    // Alpha's image, group and instance named inside beta's own requests: refused as a name
    // of nothing is (the request field names nothing beta can use).
    for (theirs, nothing) in [
        (ids.image.clone(), fresh_id()),
        ("alpha-img".to_string(), "no-such-image".to_string()),
    ] {
        let got = b_member
            .compute
            .create_instance(instance_req("borrow", "", &theirs, ""))
            .await;
        let missing = b_member
            .compute
            .create_instance(instance_req("borrow", "", &nothing, ""))
            .await;
        hidden(
            &mut wrong,
            &format!("CreateInstance in beta with alpha's image {theirs}"),
            got,
            missing,
            &[(theirs.clone(), nothing.clone())],
            false,
        );
    }
    for (theirs, nothing) in [
        (ids.group.clone(), fresh_id()),
        ("alpha-grp".to_string(), "no-such-group".to_string()),
    ] {
        let swap = [(theirs.clone(), nothing.clone())];
        let got = b_member
            .compute
            .create_instance(instance_req("borrow", "", "tiny", &theirs))
            .await;
        let missing = b_member
            .compute
            .create_instance(instance_req("borrow", "", "tiny", &nothing))
            .await;
        hidden(
            &mut wrong,
            &format!("CreateInstance in beta in alpha's group {theirs}"),
            got,
            missing,
            &swap,
            false,
        );
        let explain = |g: &str| ExplainRequest {
            flavor: "small".into(),
            server_group: g.into(),
            ..Default::default()
        };
        let got = b_member.placement.explain(explain(&theirs)).await;
        let missing = b_member.placement.explain(explain(&nothing)).await;
        hidden(
            &mut wrong,
            &format!("Explain in beta with alpha's group {theirs}"),
            got,
            missing,
            &swap,
            false,
        );
    }
    for (theirs, nothing) in [
        (inst_id.clone(), fresh_id()),
        ("alpha-web".to_string(), "no-such-vm".to_string()),
    ] {
        let got = b_member
            .volumes
            .create_volume(volume_req("borrow", "", &theirs, ""))
            .await;
        let missing = b_member
            .volumes
            .create_volume(volume_req("borrow", "", &nothing, ""))
            .await;
        hidden(
            &mut wrong,
            &format!("CreateVolume in beta next to alpha's instance {theirs}"),
            got,
            missing,
            &[(theirs.clone(), nothing.clone())],
            false,
        );
    }
    assert!(
        wrong.is_empty(),
        "{} answers to beta told something of alpha:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // Lists without a project: beta's own, none of alpha's.
    let alpha_ids = ids.all();
    let leaks = |what: &str, found: Vec<(String, String)>, want: &str| {
        let leaked: Vec<_> = found
            .iter()
            .filter(|(id, p)| alpha_ids.contains(&id.as_str()) || *p == a_id)
            .collect();
        assert!(leaked.is_empty(), "{what} shows beta alpha's {leaked:?}");
        assert!(
            found.iter().any(|(id, _)| id == want),
            "{what} lacks beta's own {want}: {found:?}"
        );
    };
    let pairs = |ms: Vec<&Option<Meta>>| {
        ms.into_iter()
            .map(|m| (id_of(m), project_of(m)))
            .collect::<Vec<_>>()
    };
    let l = b_member
        .compute
        .list_instances(list(""))
        .await
        .unwrap()
        .into_inner();
    leaks(
        "ListInstances",
        pairs(l.instances.iter().map(|x| &x.meta).collect()),
        &b_inst_id,
    );
    let l = b_member
        .volumes
        .list_volumes(list(""))
        .await
        .unwrap()
        .into_inner();
    leaks(
        "ListVolumes",
        pairs(l.volumes.iter().map(|x| &x.meta).collect()),
        &b_vol_id,
    );
    let l = b_member
        .compute
        .list_server_groups(list(""))
        .await
        .unwrap()
        .into_inner();
    leaks(
        "ListServerGroups",
        pairs(l.server_groups.iter().map(|x| &x.meta).collect()),
        &id_of(&b_group.meta),
    );
    let l = b_member
        .infra
        .list_images(list(""))
        .await
        .unwrap()
        .into_inner();
    let public = c
        .infra
        .get_image(get("tiny", ""))
        .await
        .unwrap()
        .into_inner();
    leaks(
        "ListImages",
        pairs(l.images.iter().map(|x| &x.meta).collect()),
        &id_of(&public.meta),
    );
    let l = b_member
        .identity
        .list_projects(list(""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        l.projects
            .iter()
            .map(|p| id_of(&p.meta))
            .collect::<Vec<_>>(),
        vec![b_id.clone()],
        "ListProjects as beta"
    );
    let l = b_admin
        .identity
        .list_tokens(ListTokensRequest {
            include_inactive: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!l.tokens.is_empty(), "beta's admin lists no token of beta");
    for t in &l.tokens {
        assert_eq!(project_of(&t.meta), b_id, "ListTokens as beta shows {t:?}");
    }
    let report = b_member
        .identity
        .get_compliance_report(ComplianceReportRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.project_id, b_id);
    assert!(
        report.rows.iter().any(|r| r.id == b_inst_id),
        "beta's report lacks beta's instance: {report:?}"
    );
    for row in &report.rows {
        assert!(
            !alpha_ids.contains(&row.id.as_str()),
            "beta's compliance report shows alpha's {row:?}"
        );
    }

    // Nothing of alpha changed.
    let after = alpha_state(&mut c, &ids).await;
    assert_eq!(before, after, "beta's attempts changed alpha");

    // Watches: beta's, from the beginning of time, carries none of alpha's events, before or
    // after a change in alpha; a cloud-admin watch shows that change happened.
    let mut b_watch = b_member
        .events
        .watch(WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut admin_watch = c_watch(&ch).await;
    let extra = a_member
        .volumes
        .create_volume(volume_req("alpha-extra", "", "", ""))
        .await
        .unwrap()
        .into_inner();
    let extra_id = id_of(&extra.meta);
    let b_extra = b_member
        .volumes
        .create_volume(volume_req("beta-extra", "", "", ""))
        .await
        .unwrap()
        .into_inner();
    let b_extra_id = id_of(&b_extra.meta);
    let admin_saw = events_until(&mut admin_watch, &extra_id, "cloud-admin's watch").await;
    assert_eq!(admin_saw.last().unwrap().project_id, a_id);
    // Alpha's change was applied before beta's: had it leaked, it would come first.
    let b_saw = events_until(&mut b_watch, &b_extra_id, "beta's watch").await;
    assert!(
        b_saw.iter().any(|e| e.id == b_inst_id),
        "beta's watch from revision 0 lacks beta's own history"
    );
    for e in &b_saw {
        assert_eq!(e.project_id, b_id, "beta's watch shows {e:?}");
        assert!(
            e.id != extra_id && !alpha_ids.contains(&e.id.as_str()),
            "beta's watch shows alpha's {e:?}"
        );
        assert!(
            !e.resource_json.contains(&a_id),
            "beta's watch shows alpha's project in {e:?}"
        );
    }

    // Request ids are per project: the same one in beta makes beta's own volume.
    let rid = fresh_id();
    let va = a_member
        .volumes
        .create_volume(volume_req("rid-alpha", "", "", &rid))
        .await
        .unwrap()
        .into_inner();
    let again = a_member
        .volumes
        .create_volume(volume_req("rid-alpha", "", "", &rid))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(id_of(&again.meta), id_of(&va.meta), "a retry in alpha");
    let vb = b_member
        .volumes
        .create_volume(volume_req("rid-beta", "", "", &rid))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(
        id_of(&vb.meta),
        id_of(&va.meta),
        "beta's create with alpha's request id returned alpha's volume"
    );
    assert_eq!(project_of(&vb.meta), b_id, "{vb:?}");
    assert_eq!(vb.meta.as_ref().unwrap().name, "rid-beta", "{vb:?}");
    let rid = fresh_id();
    let mut req = instance_req("rid-vm-a", "", "tiny", "");
    req.request_id = rid.clone();
    let ia = a_member
        .compute
        .create_instance(req)
        .await
        .unwrap()
        .into_inner();
    let mut req = instance_req("rid-vm-b", "", "tiny", "");
    req.request_id = rid;
    let ib = b_member
        .compute
        .create_instance(req)
        .await
        .unwrap()
        .into_inner();
    assert_ne!(id_of(&ib.meta), id_of(&ia.meta));
    assert_eq!(project_of(&ib.meta), b_id, "{ib:?}");
    assert_eq!(ib.meta.as_ref().unwrap().name, "rid-vm-b", "{ib:?}");

    // And still nothing of what beta aimed at changed (alpha's project itself did: its usage
    // counts alpha's new volumes and instance).
    let end = alpha_state(&mut c, &ids).await;
    assert_eq!(
        Alpha {
            project: before.project.clone(),
            ..end
        },
        before
    );
}

/// A cloud-admin watch of volume events from now on.
async fn c_watch(ch: &Channel) -> tonic::Streaming<Event> {
    let mut e = EventServiceClient::with_interceptor(ch.clone(), andromede_tests::Auth::admin());
    e.watch(WatchRequest {
        kinds: vec!["volume".into()],
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}
