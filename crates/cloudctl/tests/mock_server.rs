//! Runs of the `cloudctl` binary against an in-process mock of the Andromède API, for what a
//! real server cannot easily be made to do: answer UNAVAILABLE once (create retries with a
//! stable request id), drive an instance or volume into ERROR or through ATTACHING for
//! `--wait`, report agents (drivers, versions, used join tokens, lost hosts, console logs),
//! stream chosen events, show a multi-member cluster; plus what needs no server at all
//! (profiles, connection failures, usage errors). Everything else runs against a real server
//! in real_server.rs, where the answers cannot drift from what the server does.

use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use andromede_api::v1::cluster_service_server::{ClusterService, ClusterServiceServer};
use andromede_api::v1::compute_service_server::{ComputeService, ComputeServiceServer};
use andromede_api::v1::event_service_server::{EventService, EventServiceServer};
use andromede_api::v1::infrastructure_service_server::{
    InfrastructureService, InfrastructureServiceServer,
};
use andromede_api::v1::volume_service_server::{VolumeService, VolumeServiceServer};
use andromede_api::v1::*;
use tokio::io::AsyncBufReadExt;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Default)]
struct Seen {
    auth: Vec<String>,
    create_request_ids: Vec<String>,
    creates: u32,
    polls: u32,
    console_max_bytes: Vec<u64>,
    join_token_requests: Vec<(String, u64)>,
    declared_lost: Vec<String>,
    image_creates: Vec<CreateImageRequest>,
    extends: Vec<(String, String, u64)>,
    volume_polls: u32,
}

/// What the mock's instance `web` wrote on its console: an escape sequence and a byte that is
/// not UTF-8, which must both reach stdout unchanged.
const CONSOLE: &[u8] = b"[    0.000000] Linux version 6.1\r\n\x1b[32mOK\x1b[0m boot\xff\nlogin: ";
const JOIN_TOKEN: &str = "jt-1.Zm9vYmFyc2VjcmV0";
/// Hashes the mock sends along with hosts and tokens; cloudctl must never print them.
const CREDENTIAL_HASH: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
const SECRET_HASH: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2";

#[derive(Clone, Default)]
struct Mock(Arc<Mutex<Seen>>);

impl Mock {
    fn record<T>(&self, req: &Request<T>) {
        let auth = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<none>")
            .to_owned();
        if let Ok(mut s) = self.0.lock() {
            s.auth.push(auth);
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Seen) -> R) -> R {
        match self.0.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

fn cluster_fixture() -> ClusterStatus {
    ClusterStatus {
        node_id: 1,
        leader_id: 1,
        term: 3,
        last_log_index: 42,
        committed_index: 42,
        applied_index: 41,
        members: vec![
            ClusterMember {
                node_id: 1,
                addr: "http://127.0.0.1:7401".into(),
                role: "voter".into(),
                leader: true,
                matched_index: 42,
                datacenter_id: "dc-paris".into(),
            },
            ClusterMember {
                node_id: 2,
                addr: "http://127.0.0.1:7402".into(),
                role: "learner".into(),
                leader: false,
                matched_index: 40,
                datacenter_id: String::new(),
            },
        ],
        state: "leader".into(),
        snapshot_index: 10,
        // Fields the contract gains later keep their defaults instead of breaking the fixture.
        ..ClusterStatus::default()
    }
}

#[tonic::async_trait]
impl ClusterService for Mock {
    async fn status(
        &self,
        r: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.record(&r);
        Ok(Response::new(cluster_fixture()))
    }
    async fn add_learner(
        &self,
        r: Request<AddLearnerRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.record(&r);
        Ok(Response::new(cluster_fixture()))
    }
    async fn promote(&self, r: Request<PromoteRequest>) -> Result<Response<ClusterStatus>, Status> {
        self.record(&r);
        Ok(Response::new(cluster_fixture()))
    }
    async fn remove_node(
        &self,
        r: Request<RemoveNodeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.record(&r);
        Ok(Response::new(cluster_fixture()))
    }
    async fn locate_node(
        &self,
        r: Request<LocateNodeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.record(&r);
        if r.get_ref().datacenter == "dc-us" {
            return Err(Status::failed_precondition(
                "server 1 cannot hold the region's metadata in datacenter us (US): the policy of project(s) gov (US is outside countries FR) excludes it",
            ));
        }
        Ok(Response::new(cluster_fixture()))
    }
    async fn initialize(
        &self,
        r: Request<InitializeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.record(&r);
        unimplemented()
    }
}

fn instance(id: &str, name: &str, state: InstanceState, reason: &str) -> Instance {
    Instance {
        meta: Some(Meta {
            id: id.into(),
            name: name.into(),
            project_id: "p-1".into(),
            ..Meta::default()
        }),
        state: state as i32,
        state_reason: reason.into(),
        intent: PowerIntent::Running as i32,
        country: "FR".into(),
        ..Instance::default()
    }
}

#[tonic::async_trait]
impl ComputeService for Mock {
    async fn create_instance(
        &self,
        r: Request<CreateInstanceRequest>,
    ) -> Result<Response<Instance>, Status> {
        self.record(&r);
        let req = r.into_inner();
        let attempt = self.with(|s| {
            s.creates += 1;
            s.create_request_ids.push(req.request_id.clone());
            s.creates
        });
        if req.name == "flaky" && attempt == 1 {
            return Err(Status::unavailable("leader election in progress"));
        }
        let id = format!("i-{}", req.name);
        let mut inst = instance(&id, &req.name, InstanceState::Pending, "");
        if let Some(m) = inst.meta.as_mut() {
            m.request_id = req.request_id;
        }
        Ok(Response::new(inst))
    }

    async fn get_instance(&self, r: Request<GetRequest>) -> Result<Response<Instance>, Status> {
        self.record(&r);
        let id = r
            .into_inner()
            .r#ref
            .map(|x| x.id_or_name)
            .unwrap_or_default();
        let polls = self.with(|s| {
            s.polls += 1;
            s.polls
        });
        match id.as_str() {
            "i-flaky" if polls < 3 => Ok(Response::new(instance(
                &id,
                "flaky",
                InstanceState::Creating,
                "",
            ))),
            "i-flaky" => Ok(Response::new(instance(
                &id,
                "flaky",
                InstanceState::Running,
                "",
            ))),
            "i-doomed" => Ok(Response::new(instance(
                &id,
                "doomed",
                InstanceState::Error,
                "image checksum mismatch",
            ))),
            "i-web" => Ok(Response::new(instance(
                &id,
                "web",
                InstanceState::Running,
                "",
            ))),
            _ => Err(Status::not_found(format!("instance `{id}` not found"))),
        }
    }

    async fn list_instances(
        &self,
        r: Request<ListRequest>,
    ) -> Result<Response<ListInstancesResponse>, Status> {
        self.record(&r);
        Ok(Response::new(ListInstancesResponse {
            instances: vec![
                instance("i-web", "web", InstanceState::Running, ""),
                instance("i-db", "db", InstanceState::Stopped, ""),
            ],
            ..Default::default()
        }))
    }

    async fn start_instance(
        &self,
        _: Request<InstanceActionRequest>,
    ) -> Result<Response<Instance>, Status> {
        Err(Status::unimplemented("mock"))
    }
    async fn stop_instance(
        &self,
        _: Request<InstanceActionRequest>,
    ) -> Result<Response<Instance>, Status> {
        Err(Status::unimplemented("mock"))
    }
    async fn reboot_instance(
        &self,
        _: Request<InstanceActionRequest>,
    ) -> Result<Response<Instance>, Status> {
        Err(Status::unimplemented("mock"))
    }
    async fn delete_instance(
        &self,
        r: Request<InstanceActionRequest>,
    ) -> Result<Response<Instance>, Status> {
        self.record(&r);
        let id = r
            .into_inner()
            .r#ref
            .map(|x| x.id_or_name)
            .unwrap_or_default();
        // Reported as deleting; the next get finds nothing.
        Ok(Response::new(instance(
            &format!("i-{id}-gone"),
            &id,
            InstanceState::Deleting,
            "",
        )))
    }
    async fn get_console_log(
        &self,
        r: Request<GetConsoleLogRequest>,
    ) -> Result<Response<GetConsoleLogResponse>, Status> {
        self.record(&r);
        let req = r.into_inner();
        self.with(|s| s.console_max_bytes.push(req.max_bytes));
        let name = req.r#ref.map(|x| x.id_or_name).unwrap_or_default();
        let data = match name.as_str() {
            "web" | "i-web" => CONSOLE.to_vec(),
            "quiet" => Vec::new(),
            _ => return Err(Status::not_found(format!("instance `{name}` not found"))),
        };
        Ok(Response::new(GetConsoleLogResponse {
            data,
            host_id: "h-1".into(),
        }))
    }
    async fn create_server_group(
        &self,
        _: Request<CreateServerGroupRequest>,
    ) -> Result<Response<ServerGroup>, Status> {
        Err(Status::unimplemented("mock"))
    }
    async fn get_server_group(
        &self,
        _: Request<GetRequest>,
    ) -> Result<Response<ServerGroup>, Status> {
        Err(Status::unimplemented("mock"))
    }
    async fn list_server_groups(
        &self,
        _: Request<ListRequest>,
    ) -> Result<Response<ListServerGroupsResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }
    async fn delete_server_group(
        &self,
        _: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }
}

fn meta(id: &str, name: &str) -> Option<Meta> {
    Some(Meta {
        id: id.into(),
        name: name.into(),
        ..Meta::default()
    })
}

fn host_fixture(state: HostState) -> Host {
    Host {
        meta: meta("h-1", "par1-h01"),
        datacenter_id: "dc-1".into(),
        state: state as i32,
        capacity: Some(Resources {
            vcpus: 64,
            memory_mib: 262_144,
            disk_gib: 2000,
        }),
        driver: "libvirt".into(),
        agent_version: "0.3.1".into(),
        credential_sha256: CREDENTIAL_HASH.into(),
        ..Host::default()
    }
}

fn join_token_fixture(id: &str, used_by_host: &str) -> JoinToken {
    JoinToken {
        meta: meta(id, id),
        datacenter_id: "dc-1".into(),
        expires_at_ms: 4_102_444_800_000,
        secret_sha256: SECRET_HASH.into(),
        used_by_host: used_by_host.into(),
    }
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("mock"))
}

#[tonic::async_trait]
impl InfrastructureService for Mock {
    async fn create_datacenter(
        &self,
        _: Request<CreateDatacenterRequest>,
    ) -> Result<Response<Datacenter>, Status> {
        unimplemented()
    }
    async fn update_datacenter(
        &self,
        _: Request<UpdateDatacenterRequest>,
    ) -> Result<Response<Datacenter>, Status> {
        unimplemented()
    }
    async fn get_datacenter(&self, _: Request<GetRequest>) -> Result<Response<Datacenter>, Status> {
        unimplemented()
    }
    async fn list_datacenters(
        &self,
        _: Request<ListDatacentersRequest>,
    ) -> Result<Response<ListDatacentersResponse>, Status> {
        // Only for the names tables show instead of ids.
        Ok(Response::new(ListDatacentersResponse {
            datacenters: vec![Datacenter {
                meta: meta("dc-1", "par1"),
                country: "FR".into(),
                ..Datacenter::default()
            }],
            ..Default::default()
        }))
    }
    async fn delete_datacenter(
        &self,
        _: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        unimplemented()
    }
    async fn register_host(
        &self,
        _: Request<RegisterHostRequest>,
    ) -> Result<Response<Host>, Status> {
        unimplemented()
    }
    async fn set_host_state(
        &self,
        _: Request<SetHostStateRequest>,
    ) -> Result<Response<Host>, Status> {
        unimplemented()
    }
    async fn get_host(&self, r: Request<GetRequest>) -> Result<Response<Host>, Status> {
        self.record(&r);
        Ok(Response::new(host_fixture(HostState::Up)))
    }
    async fn list_hosts(
        &self,
        r: Request<ListHostsRequest>,
    ) -> Result<Response<ListHostsResponse>, Status> {
        self.record(&r);
        let simulated = Host {
            meta: meta("h-2", "par1-sim"),
            datacenter_id: "dc-1".into(),
            state: HostState::Up as i32,
            simulated: true,
            ..Host::default()
        };
        Ok(Response::new(ListHostsResponse {
            hosts: vec![host_fixture(HostState::Up), simulated],
            ..Default::default()
        }))
    }
    async fn delete_host(
        &self,
        _: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        unimplemented()
    }
    async fn declare_host_lost(
        &self,
        r: Request<DeclareHostLostRequest>,
    ) -> Result<Response<Host>, Status> {
        self.record(&r);
        let name = r
            .into_inner()
            .r#ref
            .map(|x| x.id_or_name)
            .unwrap_or_default();
        self.with(|s| s.declared_lost.push(name.clone()));
        if name != "par1-h01" {
            return Err(Status::not_found(format!("host `{name}` not found")));
        }
        Ok(Response::new(host_fixture(HostState::Down)))
    }
    async fn create_join_token(
        &self,
        r: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<CreateJoinTokenResponse>, Status> {
        self.record(&r);
        let req = r.into_inner();
        self.with(|s| {
            s.join_token_requests
                .push((req.datacenter.clone(), req.ttl_seconds))
        });
        Ok(Response::new(CreateJoinTokenResponse {
            join_token: Some(join_token_fixture("jt-1", "")),
            token: JOIN_TOKEN.into(),
        }))
    }
    async fn list_join_tokens(
        &self,
        r: Request<ListJoinTokensRequest>,
    ) -> Result<Response<ListJoinTokensResponse>, Status> {
        self.record(&r);
        Ok(Response::new(ListJoinTokensResponse {
            join_tokens: vec![
                join_token_fixture("jt-1", ""),
                join_token_fixture("jt-0", "h-1"),
            ],
            ..Default::default()
        }))
    }
    async fn create_flavor(
        &self,
        _: Request<CreateFlavorRequest>,
    ) -> Result<Response<Flavor>, Status> {
        unimplemented()
    }
    async fn get_flavor(&self, _: Request<GetRequest>) -> Result<Response<Flavor>, Status> {
        unimplemented()
    }
    async fn list_flavors(
        &self,
        _: Request<ListRequest>,
    ) -> Result<Response<ListFlavorsResponse>, Status> {
        unimplemented()
    }
    async fn delete_flavor(
        &self,
        _: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        unimplemented()
    }
    async fn create_image(
        &self,
        r: Request<CreateImageRequest>,
    ) -> Result<Response<Image>, Status> {
        self.record(&r);
        let req = r.into_inner();
        self.with(|s| s.image_creates.push(req.clone()));
        Ok(Response::new(Image {
            meta: meta("img-1", &req.name),
            format: req.format,
            source: req.source,
            checksum_sha256: req.checksum_sha256,
            min_disk_gib: req.min_disk_gib,
            kernel: req.kernel,
            initrd: req.initrd,
            cmdline: req.cmdline,
        }))
    }
    async fn get_image(&self, r: Request<GetRequest>) -> Result<Response<Image>, Status> {
        self.record(&r);
        let file = |source: &str, sum: &str| ImageFile {
            source: source.into(),
            checksum_sha256: sum.repeat(32),
        };
        Ok(Response::new(Image {
            meta: meta("img-1", "deb-direct"),
            format: "raw".into(),
            source: "/srv/images/deb.raw".into(),
            checksum_sha256: "aa".repeat(32),
            kernel: Some(file("/srv/images/vmlinuz", "bb")),
            initrd: Some(file("/srv/images/initrd.img", "cc")),
            cmdline: "console=ttyS0 root=/dev/vda".into(),
            ..Image::default()
        }))
    }
    async fn list_images(
        &self,
        _: Request<ListRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        unimplemented()
    }
    async fn delete_image(
        &self,
        _: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        unimplemented()
    }
}

fn volume(id: &str, state: VolumeState, size_gib: u64, reason: &str) -> Volume {
    Volume {
        meta: Some(Meta {
            id: id.into(),
            name: id.trim_start_matches("v-").into(),
            project_id: "p-1".into(),
            ..Meta::default()
        }),
        size_gib,
        state: state as i32,
        state_reason: reason.into(),
        host_id: "h-1".into(),
        ..Volume::default()
    }
}

#[tonic::async_trait]
impl VolumeService for Mock {
    async fn create_volume(
        &self,
        _: Request<CreateVolumeRequest>,
    ) -> Result<Response<Volume>, Status> {
        unimplemented()
    }
    async fn get_volume(&self, r: Request<GetRequest>) -> Result<Response<Volume>, Status> {
        self.record(&r);
        let id = r
            .into_inner()
            .r#ref
            .map(|x| x.id_or_name)
            .unwrap_or_default();
        let polls = self.with(|s| {
            s.volume_polls += 1;
            s.volume_polls
        });
        match id.as_str() {
            // Attached after the host took a moment to confirm it.
            "v-data" if polls < 3 => Ok(Response::new(volume(&id, VolumeState::Attaching, 10, ""))),
            "v-data" => Ok(Response::new(volume(&id, VolumeState::InUse, 10, ""))),
            // The host could not detach it and put it back.
            "v-stuck" => Ok(Response::new(volume(
                &id,
                VolumeState::InUse,
                10,
                "guest did not release the disk",
            ))),
            "v-big" => Ok(Response::new(volume(&id, VolumeState::InUse, 200, ""))),
            _ => Err(Status::not_found(format!("volume `{id}` not found"))),
        }
    }
    async fn list_volumes(
        &self,
        _: Request<ListRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        unimplemented()
    }
    async fn delete_volume(&self, _: Request<DeleteRequest>) -> Result<Response<Volume>, Status> {
        unimplemented()
    }
    async fn attach_volume(
        &self,
        r: Request<AttachVolumeRequest>,
    ) -> Result<Response<Volume>, Status> {
        self.record(&r);
        let name = r
            .into_inner()
            .volume
            .map(|x| x.id_or_name)
            .unwrap_or_default();
        Ok(Response::new(volume(
            &format!("v-{name}"),
            VolumeState::Attaching,
            10,
            "",
        )))
    }
    async fn detach_volume(
        &self,
        r: Request<DetachVolumeRequest>,
    ) -> Result<Response<Volume>, Status> {
        self.record(&r);
        let name = r
            .into_inner()
            .volume
            .map(|x| x.id_or_name)
            .unwrap_or_default();
        Ok(Response::new(volume(
            &format!("v-{name}"),
            VolumeState::Detaching,
            10,
            "",
        )))
    }
    async fn extend_volume(
        &self,
        r: Request<ExtendVolumeRequest>,
    ) -> Result<Response<Volume>, Status> {
        self.record(&r);
        let req = r.into_inner();
        let (name, project) = req
            .volume
            .map(|x| (x.id_or_name, x.project))
            .unwrap_or_default();
        self.with(|s| s.extends.push((name.clone(), project, req.size_gib)));
        if req.size_gib <= 10 {
            let mut d = ErrorDetails::new();
            d.add_bad_request_violation(
                "size_gib",
                "must be larger than the current 10 GiB (volumes never shrink)",
            );
            return Err(Status::with_error_details(
                Code::InvalidArgument,
                "invalid volume extension",
                d,
            ));
        }
        Ok(Response::new(volume(
            &format!("v-{name}"),
            VolumeState::InUse,
            req.size_gib,
            "",
        )))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for Mock {
    type WatchStream = EventStream;

    async fn watch(&self, r: Request<WatchRequest>) -> Result<Response<EventStream>, Status> {
        self.record(&r);
        let req = r.into_inner();
        let from = req.from_revision;
        let hosts = req.kinds.iter().any(|k| k == "host");
        let events: Vec<Result<Event, Status>> = (from + 1..=from + 2)
            .map(|rev| {
                Ok(if hosts {
                    Event {
                        revision: rev,
                        r#type: EventType::Updated as i32,
                        kind: "host".into(),
                        id: "h-1".into(),
                        name: "par1-h01".into(),
                        generation: rev,
                        resource_json: serde_json::to_string(&host_fixture(HostState::Up))
                            .unwrap_or_default(),
                        at_ms: 1_700_000_000_000,
                        ..Event::default()
                    }
                } else {
                    Event {
                        revision: rev,
                        r#type: EventType::Updated as i32,
                        kind: "instance".into(),
                        id: "i-web".into(),
                        name: "web".into(),
                        project_id: "p-1".into(),
                        generation: rev,
                        resource_json: "{}".into(),
                        at_ms: 1_700_000_000_000,
                    }
                })
            })
            .collect();
        let stream = tokio_stream::iter(events).chain(tokio_stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }
}

async fn start() -> (String, Mock) {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => panic!("local addr: {e}"),
    };
    let mock = Mock::default();
    let router = tonic::transport::Server::builder()
        .add_service(ClusterServiceServer::new(mock.clone()))
        .add_service(ComputeServiceServer::new(mock.clone()))
        .add_service(EventServiceServer::new(mock.clone()))
        .add_service(InfrastructureServiceServer::new(mock.clone()))
        .add_service(VolumeServiceServer::new(mock.clone()));
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    (format!("http://{addr}"), mock)
}

struct Run {
    code: i32,
    stdout: String,
    /// Stdout as written, for output that is not text.
    raw: Vec<u8>,
    stderr: String,
}

fn command(endpoint: Option<&str>, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudctl"));
    for v in [
        "ANDROMEDE_ENDPOINT",
        "ANDROMEDE_TOKEN",
        "ANDROMEDE_PROFILE",
        "ANDROMEDE_CONFIG",
    ] {
        cmd.env_remove(v);
    }
    // Keep any profile file of the machine out of the runs.
    cmd.env("HOME", "/nonexistent-cloudctl-test-home");
    if let Some(ep) = endpoint {
        cmd.env("ANDROMEDE_ENDPOINT", ep);
    }
    cmd.args(args).stdin(Stdio::null());
    cmd
}

async fn run(mut cmd: tokio::process::Command) -> Run {
    let out = match cmd.output().await {
        Ok(o) => o,
        Err(e) => panic!("cannot run cloudctl: {e}"),
    };
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        raw: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json(text: &str) -> serde_json::Value {
    match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => panic!("not JSON ({e}): {text}"),
    }
}

#[tokio::test]
async fn cluster_status_table_marks_the_leader() {
    let (ep, _mock) = start().await;
    let r = run(command(Some(&ep), &["cluster", "status"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("NODE ID"), "{}", r.stdout);
    let leader_line = r
        .stdout
        .lines()
        .find(|l| l.contains("7401"))
        .unwrap_or_default();
    assert!(
        leader_line.contains('*') && leader_line.contains("voter"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("term") && r.stdout.contains("applied index"),
        "{}",
        r.stdout
    );
    assert!(
        leader_line.contains("dc-paris") && r.stdout.contains("(not located)"),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn cluster_locate_sends_the_datacenter_and_shows_a_refusal() {
    let (ep, _mock) = start().await;
    let r = run(command(
        Some(&ep),
        &["cluster", "locate", "1", "--datacenter", "dc-paris"],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(command(
        Some(&ep),
        &["cluster", "locate", "1", "--datacenter", "dc-us"],
    ))
    .await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("project(s) gov"), "{}", r.stderr);
}

#[tokio::test]
async fn profile_file_supplies_endpoint_and_token() {
    let (ep, mock) = start().await;
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let path = dir.path().join("config.toml");
    let text = format!(
        "[profiles.default]\nendpoint = \"http://127.0.0.1:1\"\n\n[profiles.lab]\nendpoint = \"{ep}\"\ntoken = \"lab-token\"\n"
    );
    if let Err(e) = std::fs::write(&path, text) {
        panic!("write config: {e}");
    }
    let mut cmd = command(None, &["--profile", "lab", "cluster", "status"]);
    cmd.env("ANDROMEDE_CONFIG", &path);
    let r = run(cmd).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(mock.with(|s| s.auth.clone()), ["Bearer lab-token"]);

    // The flag beats the profile.
    let mut cmd = command(
        None,
        &[
            "--profile",
            "lab",
            "--token",
            "flag-token",
            "cluster",
            "status",
        ],
    );
    cmd.env("ANDROMEDE_CONFIG", &path);
    assert_eq!(run(cmd).await.code, 0);
    assert_eq!(
        mock.with(|s| s.auth.last().cloned()),
        Some("Bearer flag-token".to_owned())
    );
}

#[tokio::test]
async fn contexts_are_made_chosen_and_used_without_a_server() {
    let (ep, mock) = start().await;
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let path = dir.path().join("andromede").join("config.toml");
    if let Err(e) = std::fs::write(dir.path().join("lab-token"), "andro_lab\n") {
        panic!("write token: {e}");
    }
    let config = |args: &[&str]| {
        let mut cmd = command(None, args);
        cmd.env("ANDROMEDE_CONFIG", &path).current_dir(dir.path());
        cmd
    };

    let r = run(config(&[
        "config",
        "set-context",
        "lab",
        "--endpoint",
        &ep,
        "--token-file",
        "lab-token",
    ]))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("context `lab` created"), "{}", r.stdout);
    let r = run(config(&["config", "set-context", "other", "--token", "x"])).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--token-file"), "{}", r.stderr);
    let r = run(config(&["config", "current-context"])).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no current context"), "{}", r.stderr);
    let r = run(config(&["config", "use-context", "nope"])).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no profile `nope`"), "{}", r.stderr);

    let r = run(config(&["config", "use-context", "lab"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(config(&["config", "current-context"])).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "lab\n"), "{}", r.stderr);
    let r = run(config(&["config", "get-contexts", "-o", "json"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r.stdout);
    assert_eq!(v[0]["name"], "lab");
    assert_eq!(v[0]["current"], true);
    assert_eq!(v[0]["token_source"], "token_file");
    let token_file = dir.path().join("lab-token");
    assert_eq!(v[0]["token_file"], token_file.to_string_lossy().as_ref());
    assert!(!r.stdout.contains("andro_lab"), "{}", r.stdout);

    // The current context carries the endpoint and the token read from its file.
    let r = run(config(&["cluster", "status"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(mock.with(|s| s.auth.clone()), ["Bearer andro_lab"]);
}

#[tokio::test]
async fn create_retries_with_the_same_request_id_and_waits() {
    let (ep, mock) = start().await;
    let r = run(command(
        Some(&ep),
        &[
            "instance",
            "create",
            "flaky",
            "--project",
            "acme",
            "--flavor",
            "m1",
            "--image",
            "deb",
            "--wait",
            "--timeout",
            "20",
            "-o",
            "json",
        ],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ids = mock.with(|s| s.create_request_ids.clone());
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[0].len(), 36, "a UUID: {}", ids[0]);
    assert!(
        r.stderr.contains("retrying with the same request id"),
        "{}",
        r.stderr
    );
    let v = json(&r.stdout);
    assert_eq!(v["state"], "INSTANCE_STATE_RUNNING");
    assert_eq!(v["intent"], "POWER_INTENT_RUNNING");
    assert!(mock.with(|s| s.polls) >= 3);
}

#[tokio::test]
async fn wait_reports_the_error_reason() {
    let (ep, _mock) = start().await;
    let r = run(command(
        Some(&ep),
        &[
            "instance", "create", "doomed", "-p", "acme", "--flavor", "m1", "--image", "deb",
            "--wait",
        ],
    ))
    .await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("image checksum mismatch"), "{}", r.stderr);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
}

#[tokio::test]
async fn events_stream_as_json_lines() {
    let (ep, _mock) = start().await;
    let mut cmd = command(
        Some(&ep),
        &["events", "watch", "--from-revision", "7", "-o", "json"],
    );
    cmd.stdout(Stdio::piped()).kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("spawn: {e}"),
    };
    let Some(stdout) = child.stdout.take() else {
        panic!("no stdout");
    };
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut got = Vec::new();
    while got.len() < 2 {
        let next =
            tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line()).await;
        match next {
            Ok(Ok(Some(line))) => got.push(json(&line)),
            other => panic!("expected an event line, got {other:?}"),
        }
    }
    let _ = child.kill().await;
    assert_eq!(got[0]["revision"], 8);
    assert_eq!(got[1]["revision"], 9);
    assert_eq!(got[0]["type"], "EVENT_TYPE_UPDATED");
    assert_eq!(got[0]["kind"], "instance");
}

#[tokio::test]
async fn unreachable_endpoint_is_explained() {
    // Port 1 on loopback has nothing listening.
    let r = run(command(Some("http://127.0.0.1:1"), &["cluster", "status"])).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("http://127.0.0.1:1"), "{}", r.stderr);
    assert!(r.stderr.contains("ANDROMEDE_ENDPOINT"), "{}", r.stderr);
}

#[tokio::test]
async fn usage_errors_exit_with_two_and_completions_need_no_server() {
    let r = run(command(None, &["instance", "create", "x"])).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = run(command(None, &["completions", "bash"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("cloudctl"), "{}", r.stdout);
}

#[tokio::test]
async fn console_log_writes_the_bytes_unchanged() {
    let (ep, mock) = start().await;
    let r = run(command(
        Some(&ep),
        &["instance", "console-log", "web", "-p", "acme"],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.raw, CONSOLE, "{}", r.stdout);

    let r = run(command(
        Some(&ep),
        &["instance", "console-log", "web", "--bytes", "100"],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(mock.with(|s| s.console_max_bytes.clone()), [65536, 100]);

    let r = run(command(
        Some(&ep),
        &["instance", "console-log", "web", "-o", "json"],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r.stdout);
    assert_eq!(v["host_id"], "h-1");
    assert!(
        v["data"].as_str().is_some_and(|d| d.contains("login: ")),
        "{v}"
    );

    let r = run(command(Some(&ep), &["instance", "console-log", "quiet"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.raw.is_empty(), "{}", r.stdout);
    assert!(r.stderr.contains("empty"), "{}", r.stderr);

    let r = run(command(Some(&ep), &["instance", "console-log", "ghost"])).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error: not found"), "{}", r.stderr);
}

#[tokio::test]
async fn join_token_create_prints_the_token_once_and_no_hash() {
    let (ep, mock) = start().await;
    let r = run(command(
        Some(&ep),
        &["host", "join-token", "create", "--datacenter", "par1"],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.lines().any(|l| l.trim() == JOIN_TOKEN),
        "the token alone on a line: {}",
        r.stdout
    );
    assert!(r.stdout.contains("shown only once"), "{}", r.stdout);
    assert!(
        r.stdout.contains("par1 (dc-1)") && r.stdout.contains("2100-01-01T00:00:00Z"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(SECRET_HASH), "{}", r.stdout);

    let r = run(command(
        Some(&ep),
        &[
            "host",
            "join-token",
            "create",
            "--datacenter",
            "dc-1",
            "--ttl",
            "600",
            "-o",
            "json",
        ],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r.stdout);
    assert_eq!(v["token"], JOIN_TOKEN);
    assert_eq!(v["join_token"]["datacenter_id"], "dc-1");
    assert_eq!(v["join_token"]["expires_at_ms"], 4_102_444_800_000_i64);
    assert!(!r.stdout.contains(SECRET_HASH), "{}", r.stdout);
    assert_eq!(
        mock.with(|s| s.join_token_requests.clone()),
        [("par1".to_owned(), 0), ("dc-1".to_owned(), 600)]
    );
}

#[tokio::test]
async fn join_token_list_shows_use_but_no_hash() {
    let (ep, _mock) = start().await;
    let r = run(command(Some(&ep), &["host", "join-token", "list"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let header = r.stdout.lines().next().unwrap_or_default();
    for col in ["ID", "DATACENTER", "EXPIRES", "USED BY HOST"] {
        assert!(header.contains(col), "{header}");
    }
    let used = r
        .stdout
        .lines()
        .find(|l| l.starts_with("jt-0"))
        .unwrap_or_default();
    assert!(
        used.ends_with("par1-h01"),
        "host names replace ids: {}",
        r.stdout
    );
    assert!(!r.stdout.contains(SECRET_HASH), "{}", r.stdout);

    for format in ["json", "yaml"] {
        let r = run(command(
            Some(&ep),
            &["host", "join-token", "list", "-o", format],
        ))
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("used_by_host"), "{}", r.stdout);
        assert!(
            !r.stdout.contains(SECRET_HASH) && !r.stdout.contains("secret_sha256"),
            "{}",
            r.stdout
        );
    }
}

#[tokio::test]
async fn hosts_show_driver_and_agent_never_the_credential_hash() {
    let (ep, mock) = start().await;
    let r = run(command(Some(&ep), &["host", "list"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let header = r.stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("DRIVER") && header.contains("AGENT VERSION"),
        "{header}"
    );
    let real = r
        .stdout
        .lines()
        .find(|l| l.starts_with("h-1"))
        .unwrap_or_default();
    assert!(
        real.contains("libvirt") && real.contains(" 0.3.1 "),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(CREDENTIAL_HASH), "{}", r.stdout);

    for args in [
        &["host", "list", "-o", "json"][..],
        &["host", "get", "par1-h01", "-o", "yaml"][..],
        &["host", "get", "par1-h01"][..],
    ] {
        let r = run(command(Some(&ep), args)).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("libvirt"), "{args:?}: {}", r.stdout);
        assert!(
            !r.stdout.contains(CREDENTIAL_HASH) && !r.stdout.contains("credential"),
            "{args:?}: {}",
            r.stdout
        );
    }

    let r = run(command(
        Some(&ep),
        &["host", "declare-lost", "par1-h01", "-o", "json"],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r.stdout)["state"], "HOST_STATE_DOWN");
    assert!(!r.stdout.contains(CREDENTIAL_HASH), "{}", r.stdout);
    let r = run(command(Some(&ep), &["host", "declare-lost", "nope"])).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("host `nope` not found"), "{}", r.stderr);
    assert_eq!(mock.with(|s| s.declared_lost.clone()), ["par1-h01", "nope"]);
}

#[tokio::test]
async fn host_events_lose_the_credential_hash() {
    let (ep, _mock) = start().await;
    let mut cmd = command(
        Some(&ep),
        &["events", "watch", "--kind", "host", "-o", "json"],
    );
    cmd.stdout(Stdio::piped()).kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("spawn: {e}"),
    };
    let Some(stdout) = child.stdout.take() else {
        panic!("no stdout");
    };
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let next = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line()).await;
    let line = match next {
        Ok(Ok(Some(line))) => line,
        other => panic!("expected an event line, got {other:?}"),
    };
    let _ = child.kill().await;
    let ev = json(&line);
    assert_eq!(ev["kind"], "host");
    let resource = json(ev["resource_json"].as_str().unwrap_or_default());
    assert_eq!(resource["driver"], "libvirt");
    assert!(resource.get("credential_sha256").is_none(), "{line}");
}

#[tokio::test]
async fn volume_extend_sends_the_size() {
    let (ep, mock) = start().await;
    let r = run(command(
        Some(&ep),
        &[
            "volume", "extend", "big", "--size", "200", "-p", "acme", "--wait", "-o", "json",
        ],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r.stdout);
    assert_eq!(v["size_gib"], 200);
    assert_eq!(v["state"], "VOLUME_STATE_IN_USE");
    assert_eq!(
        mock.with(|s| s.extends.clone()),
        [("big".to_owned(), "acme".to_owned(), 200)]
    );

    let r = run(command(
        Some(&ep),
        &["volume", "extend", "big", "--size", "5"],
    ))
    .await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("  - size_gib: must be larger than the current 10 GiB"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn attach_wait_passes_attaching_and_detach_wait_reports_a_refusal() {
    let (ep, mock) = start().await;
    let r = run(command(
        Some(&ep),
        &[
            "volume",
            "attach",
            "data",
            "--instance",
            "web",
            "--wait",
            "--timeout",
            "20",
            "-o",
            "json",
        ],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r.stdout)["state"], "VOLUME_STATE_IN_USE");
    assert!(mock.with(|s| s.volume_polls) >= 3);

    let r = run(command(
        Some(&ep),
        &["volume", "attach", "data", "--instance", "web"],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("ATTACHING"), "{}", r.stdout);
    assert!(!r.stdout.contains("VOLUME_STATE"), "{}", r.stdout);

    let r = run(command(
        Some(&ep),
        &["volume", "detach", "stuck", "--wait", "--timeout", "20"],
    ))
    .await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("did not become AVAILABLE")
            && r.stderr.contains("guest did not release the disk"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn image_create_sends_kernel_initrd_and_cmdline() {
    let (ep, mock) = start().await;
    let (k, i) = ("ab".repeat(32), "cd".repeat(32));
    let r = run(command(
        Some(&ep),
        &[
            "image",
            "create",
            "deb-direct",
            "--source",
            "/srv/images/deb.raw",
            "--checksum-sha256",
            &"ef".repeat(32),
            "--format",
            "raw",
            "--kernel",
            "http://images.example/vmlinuz",
            "--kernel-sha256",
            &k,
            "--initrd",
            "/srv/images/initrd.img",
            "--initrd-sha256",
            &i,
            "--cmdline",
            "console=ttyS0 root=/dev/vda",
        ],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sent = mock.with(|s| s.image_creates.clone());
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].kernel,
        Some(ImageFile {
            source: "http://images.example/vmlinuz".into(),
            checksum_sha256: k,
        })
    );
    assert_eq!(
        sent[0].initrd,
        Some(ImageFile {
            source: "/srv/images/initrd.img".into(),
            checksum_sha256: i,
        })
    );
    assert_eq!(sent[0].cmdline, "console=ttyS0 root=/dev/vda");
    assert!(
        r.stdout.contains("http://images.example/vmlinuz"),
        "{}",
        r.stdout
    );

    let r = run(command(
        Some(&ep),
        &[
            "image",
            "create",
            "plain",
            "--source",
            "/srv/images/deb.qcow2",
            "--checksum-sha256",
            &"ef".repeat(32),
        ],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sent = mock.with(|s| s.image_creates.clone());
    assert_eq!(
        (sent[1].kernel.as_ref(), sent[1].cmdline.as_str()),
        (None, "")
    );

    let r = run(command(Some(&ep), &["image", "get", "deb-direct"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    for line in [
        "/srv/images/vmlinuz",
        "/srv/images/initrd.img",
        "console=ttyS0 root=/dev/vda",
    ] {
        assert!(r.stdout.contains(line), "{}", r.stdout);
    }
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("kernel sha256") && l.ends_with(&"bb".repeat(32))),
        "{}",
        r.stdout
    );
}
