//! Role × RPC matrix over real calls: every token-authenticated RPC in `andromede_auth::ACCESS`
//! is called as every kind of caller (cloud-admin, cloud-reader, project admin, member and
//! reader, expired, revoked, unknown and no token), and the answer refuses exactly when the
//! table says so; server-to-server RPCs refuse every API token; tokens say who they are, expire,
//! revoke at once, and a project admin grants nothing beyond what it holds.

#![allow(clippy::unwrap_used)]

use andromede_api::v1::identity_service_client::IdentityServiceClient;
use andromede_api::v1::*;
use andromede_auth::{Access, Principal, ACCESS};
use andromede_tests::agent::{instance_state, r, volume_state};
use andromede_tests::{policy, Clients, Server, TOKEN};
use prost::Message;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

const T: Duration = Duration::from_secs(30);

/// The empty message every raw call sends, and what every answer decodes as (prost skips the
/// fields it does not know, so any reply decodes).
#[derive(Clone, PartialEq, prost::Message)]
struct Nothing {}

type Identity = IdentityServiceClient<InterceptedService<Channel, andromede_tests::Auth>>;

fn bearer(token: &str) -> MetadataValue<Ascii> {
    format!("Bearer {token}").parse().unwrap()
}

fn identity(ch: &Channel, token: &str) -> Identity {
    IdentityServiceClient::with_interceptor(ch.clone(), andromede_tests::Auth::token(token))
}

/// Every method of the compiled contract, by gRPC path, with whether the client and the
/// server stream.
fn compiled_methods() -> BTreeMap<String, (bool, bool)> {
    let fds = prost_types::FileDescriptorSet::decode(andromede_api::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = BTreeMap::new();
    for f in &fds.file {
        for s in &f.service {
            for m in &s.method {
                out.insert(
                    format!("/{}.{}/{}", f.package(), s.name(), m.name()),
                    (m.client_streaming(), m.server_streaming()),
                );
            }
        }
    }
    out
}

/// Calls `path` with an empty request, as `token` (none: no `authorization` at all), and
/// returns the outcome. A server-streaming method answers with its opening status; the stream
/// itself is dropped.
async fn raw_call(
    ch: &Channel,
    path: &'static str,
    server_streaming: bool,
    token: Option<&str>,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("channel not ready: {e}")))?;
    let mut req = tonic::Request::new(Nothing {});
    req.set_timeout(T);
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", bearer(t));
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    let codec = tonic_prost::ProstCodec::<Nothing, Nothing>::default();
    if server_streaming {
        grpc.server_streaming(req, path, codec).await.map(drop)
    } else {
        grpc.unary(req, path, codec).await.map(drop)
    }
}

/// One caller of the matrix.
enum Caller {
    /// A live token and who the table should take it for.
    Live {
        label: &'static str,
        secret: String,
        principal: Principal,
    },
    /// A token that must be refused before any role is considered, with what the refusal
    /// must say.
    Dead {
        label: &'static str,
        secret: Option<String>,
        says: &'static str,
    },
}

impl Caller {
    fn label(&self) -> &'static str {
        match self {
            Caller::Live { label, .. } | Caller::Dead { label, .. } => label,
        }
    }

    fn secret(&self) -> Option<&str> {
        match self {
            Caller::Live { secret, .. } => Some(secret),
            Caller::Dead { secret, .. } => secret.as_deref(),
        }
    }
}

async fn create_token(
    id: &mut Identity,
    name: &str,
    project: &str,
    role: Role,
    ttl_secs: u64,
) -> Result<CreateTokenResponse, Status> {
    id.create_token(CreateTokenRequest {
        name: name.into(),
        project: project.into(),
        role: role as i32,
        ttl_secs,
        request_id: String::new(),
    })
    .await
    .map(|r| r.into_inner())
}

fn meta_id<M: std::fmt::Debug>(m: &Option<Meta>, what: &M) -> String {
    m.as_ref()
        .unwrap_or_else(|| panic!("no meta in {what:?}"))
        .id
        .clone()
}

/// Everything the cloud holds, as `(kind, id) → generation`, read with the cloud-admin token:
/// equal before and after means nothing was created, changed or deleted.
async fn census(c: &mut Clients) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    let mut put = |kind: &str, m: &Option<Meta>| {
        let m = m.clone().unwrap();
        out.insert((kind.to_string(), m.id), m.generation);
    };
    let list = || ListRequest {
        page_size: 1000,
        ..Default::default()
    };
    for d in c
        .infra
        .list_datacenters(ListDatacentersRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .datacenters
    {
        put("datacenter", &d.meta);
    }
    for h in c
        .infra
        .list_hosts(ListHostsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .hosts
    {
        put("host", &h.meta);
    }
    for j in c
        .infra
        .list_join_tokens(ListJoinTokensRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .join_tokens
    {
        put("join_token", &j.meta);
    }
    for f in c
        .infra
        .list_flavors(list())
        .await
        .unwrap()
        .into_inner()
        .flavors
    {
        put("flavor", &f.meta);
    }
    for i in c
        .infra
        .list_images(list())
        .await
        .unwrap()
        .into_inner()
        .images
    {
        put("image", &i.meta);
    }
    for p in c
        .identity
        .list_projects(list())
        .await
        .unwrap()
        .into_inner()
        .projects
    {
        put("project", &p.meta);
    }
    for i in c
        .compute
        .list_instances(list())
        .await
        .unwrap()
        .into_inner()
        .instances
    {
        put("instance", &i.meta);
    }
    for g in c
        .compute
        .list_server_groups(list())
        .await
        .unwrap()
        .into_inner()
        .server_groups
    {
        put("server_group", &g.meta);
    }
    for v in c
        .volumes
        .list_volumes(list())
        .await
        .unwrap()
        .into_inner()
        .volumes
    {
        put("volume", &v.meta);
    }
    for t in c
        .identity
        .list_tokens(ListTokensRequest {
            include_inactive: true,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
    {
        put("api_token", &t.meta);
    }
    let status = c.cluster.status(ClusterStatusRequest {}).await.unwrap();
    for m in status.into_inner().members {
        out.insert(("cluster_member".into(), m.node_id.to_string()), 0);
    }
    out
}

#[test]
fn every_compiled_rpc_has_an_access_entry_and_every_entry_an_rpc() {
    let methods = compiled_methods();
    assert!(
        methods.len() > 50,
        "the descriptor set looks empty: {methods:?}"
    );
    let missing: Vec<&String> = methods
        .keys()
        .filter(|m| andromede_auth::access(m).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "compiled RPCs without an entry in andromede_auth::ACCESS (the server refuses them \
         all): {missing:?}"
    );
    for (path, _) in ACCESS {
        if path.starts_with("/andromede.v1.") {
            assert!(
                methods.contains_key(*path),
                "ACCESS lists {path}, which the contract does not have"
            );
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (path, _) in ACCESS {
        assert!(seen.insert(*path), "ACCESS lists {path} twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_every_role_as_the_access_table_says() {
    let methods = compiled_methods();
    let root = tempfile::tempdir().unwrap();
    let mut s = Server::new(1, root.path(), &[]);
    s.start(true);
    let ch = s.channel().await;
    let mut c = Clients::new(ch.clone());
    c.wait_leader().await;

    // Seed enough that calls have something to act on.
    c.datacenter("paris", "FR", "FR", "FR", &[]).await;
    c.host("h1", "paris", 16, 1.0).await;
    c.flavor_and_image().await;
    let a = c.project("alpha", policy(&[], &[], &[], false), None).await;
    let b = c.project("beta", policy(&[], &[], &[], false), None).await;
    let a_id = meta_id(&a.meta, &a);
    let b_id = meta_id(&b.meta, &b);
    let inst = c
        .instance("web", "alpha", PlacementConstraints::default())
        .await
        .unwrap();
    let inst_id = meta_id(&inst.meta, &inst);
    let vol = c
        .volumes
        .create_volume(CreateVolumeRequest {
            name: "data".into(),
            project: "alpha".into(),
            size_gib: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let vol_id = meta_id(&vol.meta, &vol);
    c.wait_instance(&inst_id, InstanceState::Running, T).await;
    c.wait_volume(&vol_id, VolumeState::Available, T).await;

    // Tokens: the cloud admin makes the cloud reader and alpha's admin; alpha's admin makes
    // the rest of alpha's.
    let mut root_id = identity(&ch, TOKEN);
    let cloud_reader = create_token(&mut root_id, "auditor", "", Role::Reader, 0)
        .await
        .unwrap();
    let a_admin = create_token(&mut root_id, "alpha-admin", "alpha", Role::Admin, 0)
        .await
        .unwrap();
    let mut a_admin_id = identity(&ch, &a_admin.secret);
    let a_member = create_token(&mut a_admin_id, "alpha-member", "", Role::Member, 0)
        .await
        .unwrap();
    let a_reader = create_token(&mut a_admin_id, "alpha-reader", &a_id, Role::Reader, 0)
        .await
        .unwrap();
    let short = create_token(&mut a_admin_id, "short-lived", "alpha", Role::Member, 1)
        .await
        .unwrap();
    let doomed = create_token(&mut a_admin_id, "doomed", "alpha", Role::Member, 0)
        .await
        .unwrap();
    for t in [
        &cloud_reader,
        &a_admin,
        &a_member,
        &a_reader,
        &short,
        &doomed,
    ] {
        assert!(
            t.secret.starts_with("andro_"),
            "a fresh token's secret is shown once: {t:?}"
        );
    }
    let principal = |t: &CreateTokenResponse, project: Option<&str>, role| Principal {
        token_id: t.token.as_ref().unwrap().meta.as_ref().unwrap().id.clone(),
        token_name: t
            .token
            .as_ref()
            .unwrap()
            .meta
            .as_ref()
            .unwrap()
            .name
            .clone(),
        project_id: project.map(String::from),
        role,
    };

    // WhoAmI says who each token is.
    let root_me = root_id
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    let root_meta = root_me.meta.clone().unwrap();
    assert_eq!(root_me.role_name, "cloud-admin", "{root_me:?}");
    assert_eq!(root_me.role, Role::Admin as i32, "{root_me:?}");
    assert!(root_meta.project_id.is_empty(), "{root_me:?}");
    assert!(
        root_me.secret_sha256.is_empty(),
        "WhoAmI shows the hash: {root_me:?}"
    );
    for (t, role_name, project, project_name) in [
        (&cloud_reader, "cloud-reader", "", ""),
        (&a_admin, "admin", a_id.as_str(), "alpha"),
        (&a_member, "member", a_id.as_str(), "alpha"),
        (&a_reader, "reader", a_id.as_str(), "alpha"),
    ] {
        let me = identity(&ch, &t.secret)
            .who_am_i(WhoAmIRequest {})
            .await
            .unwrap()
            .into_inner();
        let m = me.meta.clone().unwrap();
        let want = t.token.as_ref().unwrap();
        assert_eq!(m.id, want.meta.as_ref().unwrap().id, "{me:?}");
        assert_eq!(me.role_name, role_name, "{me:?}");
        assert_eq!(m.project_id, project, "{me:?}");
        assert_eq!(me.project_name, project_name, "{me:?}");
        assert!(me.secret_sha256.is_empty(), "WhoAmI shows the hash: {me:?}");
    }
    // Tokens alpha's admin made say who made them.
    let a_admin_tid = a_admin
        .token
        .as_ref()
        .unwrap()
        .meta
        .as_ref()
        .unwrap()
        .id
        .clone();
    assert_eq!(a_member.token.as_ref().unwrap().created_by, a_admin_tid);
    assert_eq!(a_reader.token.as_ref().unwrap().created_by, a_admin_tid);

    // A project admin grants only inside its project, at its role or lower.
    let own = create_token(&mut a_admin_id, "no-project-named", "", Role::Admin, 0)
        .await
        .unwrap();
    let own_me = identity(&ch, &own.secret)
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        own_me.meta.as_ref().unwrap().project_id,
        a_id,
        "a project admin naming no project gets a token of its own project, never a \
         cloud-scope one: {own_me:?}"
    );
    assert_eq!(own_me.role_name, "admin", "{own_me:?}");
    let err = raw_call(
        &ch,
        "/andromede.v1.InfrastructureService/ListHosts",
        false,
        Some(&own.secret),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    for project in ["beta", b_id.as_str()] {
        for role in [Role::Reader, Role::Admin] {
            let err = create_token(&mut a_admin_id, "into-beta", project, role, 0)
                .await
                .unwrap_err();
            assert_eq!(
                err.code(),
                Code::NotFound,
                "alpha's admin asking a {role:?} token of {project}: {err:?}"
            );
            assert!(err.message().contains("not found"), "{err:?}");
        }
    }
    let mut a_member_id = identity(&ch, &a_member.secret);
    for role in [Role::Admin, Role::Member, Role::Reader] {
        let err = create_token(&mut a_member_id, "escalate", "alpha", role, 0)
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::PermissionDenied,
            "a member asking a {role:?} token: {err:?}"
        );
    }
    let err = create_token(&mut root_id, "cloud-member", "", Role::Member, 0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = create_token(
        &mut identity(&ch, &cloud_reader.secret),
        "reader-grant",
        "alpha",
        Role::Reader,
        0,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // Nor does a project admin see, let alone revoke, a cloud-scope token.
    let cloud_reader_tid = cloud_reader
        .token
        .as_ref()
        .unwrap()
        .meta
        .as_ref()
        .unwrap()
        .id
        .clone();
    let err = a_admin_id
        .revoke_token(RevokeTokenRequest {
            r#ref: r(&cloud_reader_tid),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // Revocation: the very next call is refused, saying so.
    let mut doomed_id = identity(&ch, &doomed.secret);
    doomed_id.who_am_i(WhoAmIRequest {}).await.unwrap();
    let doomed_tid = doomed
        .token
        .as_ref()
        .unwrap()
        .meta
        .as_ref()
        .unwrap()
        .id
        .clone();
    let revoked = a_admin_id
        .revoke_token(RevokeTokenRequest {
            r#ref: r(&doomed_tid),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(revoked.revoked_at_ms, 0, "{revoked:?}");
    let err = doomed_id.who_am_i(WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("was revoked"), "{err:?}");

    // Expiry: the one-second token stops working, saying why.
    let mut short_id = identity(&ch, &short.secret);
    let deadline = Instant::now() + T;
    loop {
        match short_id.who_am_i(WhoAmIRequest {}).await {
            Ok(_) => {}
            Err(e) if e.code() == Code::Unauthenticated && e.message().contains("expired") => break,
            Err(e) => panic!("an expiring token answered {e:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "a token with ttl_secs = 1 still works after {T:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The matrix.
    let unknown = andromede_auth::generate().1;
    let callers = vec![
        Caller::Live {
            label: "cloud-admin",
            secret: TOKEN.to_string(),
            principal: Principal {
                token_id: root_meta.id.clone(),
                token_name: root_meta.name.clone(),
                project_id: None,
                role: Role::Admin,
            },
        },
        Caller::Live {
            label: "cloud-reader",
            secret: cloud_reader.secret.clone(),
            principal: principal(&cloud_reader, None, Role::Reader),
        },
        Caller::Live {
            label: "alpha-admin",
            secret: a_admin.secret.clone(),
            principal: principal(&a_admin, Some(&a_id), Role::Admin),
        },
        Caller::Live {
            label: "alpha-member",
            secret: a_member.secret.clone(),
            principal: principal(&a_member, Some(&a_id), Role::Member),
        },
        Caller::Live {
            label: "alpha-reader",
            secret: a_reader.secret.clone(),
            principal: principal(&a_reader, Some(&a_id), Role::Reader),
        },
        Caller::Dead {
            label: "expired",
            secret: Some(short.secret.clone()),
            says: "expired",
        },
        Caller::Dead {
            label: "revoked",
            secret: Some(doomed.secret.clone()),
            says: "was revoked",
        },
        Caller::Dead {
            label: "unknown",
            secret: Some(unknown),
            says: "unknown token",
        },
        Caller::Dead {
            label: "no token",
            secret: None,
            says: "no token",
        },
    ];

    let before = census(&mut c).await;
    let mut wrong = Vec::new();
    let mut calls = 0;
    let mut allowed_calls = 0;
    for (path, access) in ACCESS {
        if !path.starts_with("/andromede.v1.") || !matches!(access, Access::Token { .. }) {
            continue;
        }
        let Some(&(client_streaming, server_streaming)) = methods.get(*path) else {
            panic!("{path} is in ACCESS but not in the contract");
        };
        assert!(
            !client_streaming,
            "{path}: a client-streaming token RPC needs a test of its own"
        );
        let method = path.rsplit('/').next().unwrap();
        for who in &callers {
            calls += 1;
            let got = raw_call(&ch, path, server_streaming, who.secret()).await;
            let code = got.as_ref().err().map_or(Code::Ok, Status::code);
            let msg = got.as_ref().err().map_or("", Status::message);
            let problem = match who {
                Caller::Live { principal, .. } if principal.allows(*access) => {
                    allowed_calls += 1;
                    // Past the layer: whatever the handler makes of an empty request, but
                    // never a refusal of the caller, and never a method the server lacks.
                    matches!(
                        code,
                        Code::PermissionDenied
                            | Code::Unauthenticated
                            | Code::Unimplemented
                            | Code::Internal
                            | Code::Unknown
                    )
                    .then(|| "allowed by the table".to_string())
                }
                Caller::Live { .. } => (code != Code::PermissionDenied || !msg.contains(method))
                    .then(|| "refused by role: PERMISSION_DENIED naming the method".to_string()),
                Caller::Dead { says, .. } => (code != Code::Unauthenticated || !msg.contains(says))
                    .then(|| format!("UNAUTHENTICATED saying {says:?}")),
            };
            if let Some(want) = problem {
                wrong.push(format!(
                    "{path} as {}: got {code:?} {msg:?}, want {want}",
                    who.label()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {calls} calls answered against the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        calls > 8 * 50 && allowed_calls > 100,
        "the matrix looks too small: {calls} calls, {allowed_calls} allowed"
    );

    // Server-to-server RPCs take this cluster's credential, never an API token, whatever its
    // role.
    let mut peer_paths = 0;
    for (path, access) in ACCESS {
        if *access != Access::Peer {
            continue;
        }
        peer_paths += 1;
        let (_, server_streaming) = methods[*path];
        for who in &callers {
            let got = raw_call(&ch, path, server_streaming, who.secret()).await;
            match got {
                Err(e) if e.code() == Code::Unauthenticated => {}
                other => wrong.push(format!(
                    "{path} as {}: got {other:?}, want UNAUTHENTICATED",
                    who.label()
                )),
            }
        }
    }
    assert!(
        peer_paths >= 6,
        "only {peer_paths} server-to-server RPCs in ACCESS"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // A method nobody lists is refused too.
    let err = raw_call(
        &ch,
        "/andromede.v1.ComputeService/Nonsense",
        false,
        Some(TOKEN),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");

    // Empty requests changed nothing: every allowed write failed validation.
    let after = census(&mut c).await;
    assert_eq!(
        before, after,
        "the matrix of empty requests changed the cloud"
    );
    for key in [
        ("instance".to_string(), inst_id.clone()),
        ("volume".to_string(), vol_id.clone()),
        ("project".to_string(), a_id.clone()),
        ("project".to_string(), b_id.clone()),
    ] {
        assert!(after.contains_key(&key), "{key:?} is gone");
    }
    let still = c.get_instance(&inst_id).await.unwrap();
    assert_eq!(instance_state(&still), InstanceState::Running, "{still:?}");
    let still = c.get_volume(&vol_id).await.unwrap();
    assert_eq!(volume_state(&still), VolumeState::Available, "{still:?}");
}
