//! End-to-end runs of the `cloudctl` binary against an in-process mock of the Andromède API:
//! authentication, create retries with a stable request id, `--wait`, rich error details,
//! enum names in JSON, the event stream and connection failures.

use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use andromede_api::v1::cluster_service_server::{ClusterService, ClusterServiceServer};
use andromede_api::v1::compute_service_server::{ComputeService, ComputeServiceServer};
use andromede_api::v1::event_service_server::{EventService, EventServiceServer};
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
}

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
            },
            ClusterMember {
                node_id: 2,
                addr: "http://127.0.0.1:7402".into(),
                role: "learner".into(),
                leader: false,
                matched_index: 40,
            },
        ],
        state: "leader".into(),
        snapshot_index: 10,
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
    async fn initialize(
        &self,
        r: Request<InitializeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.record(&r);
        Err(Status::failed_precondition(
            "the cluster is already initialized",
        ))
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
        if req.name.is_empty() {
            let mut d = ErrorDetails::new();
            d.add_bad_request_violation("name", "must not be empty");
            d.add_bad_request_violation("flavor", "unknown flavor `m9`");
            return Err(Status::with_error_details(
                Code::InvalidArgument,
                "invalid instance",
                d,
            ));
        }
        if req.name == "toobig" {
            return Err(Status::resource_exhausted(
                "no host can take this instance\n  policy: 4 hosts excluded (DE not allowed)\n  capacity: 2 hosts excluded",
            ));
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

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for Mock {
    type WatchStream = EventStream;

    async fn watch(&self, r: Request<WatchRequest>) -> Result<Response<EventStream>, Status> {
        self.record(&r);
        let from = r.into_inner().from_revision;
        let events: Vec<Result<Event, Status>> = (from + 1..=from + 2)
            .map(|rev| {
                Ok(Event {
                    revision: rev,
                    r#type: EventType::Updated as i32,
                    kind: "instance".into(),
                    id: "i-web".into(),
                    name: "web".into(),
                    project_id: "p-1".into(),
                    generation: rev,
                    resource_json: "{}".into(),
                    at_ms: 1_700_000_000_000,
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
        .add_service(EventServiceServer::new(mock.clone()));
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    (format!("http://{addr}"), mock)
}

struct Run {
    code: i32,
    stdout: String,
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
async fn cluster_status_json_and_bearer_token() {
    let (ep, mock) = start().await;
    let mut cmd = command(Some(&ep), &["cluster", "status", "-o", "json"]);
    cmd.env("ANDROMEDE_TOKEN", "s3cret");
    let r = run(cmd).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r.stdout);
    for field in [
        "node_id",
        "leader_id",
        "term",
        "last_log_index",
        "committed_index",
        "applied_index",
        "members",
        "state",
        "snapshot_index",
    ] {
        assert!(v.get(field).is_some(), "missing {field}: {v}");
    }
    assert_eq!(v["members"][0]["role"], "voter");
    assert_eq!(v["members"][0]["leader"], true);
    assert_eq!(v["members"][1]["matched_index"], 40);
    assert_eq!(mock.with(|s| s.auth.clone()), ["Bearer s3cret"]);
    assert!(!r.stdout.contains("s3cret") && !r.stderr.contains("s3cret"));
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
async fn explicit_request_id_is_sent() {
    let (ep, mock) = start().await;
    let r = run(command(
        Some(&ep),
        &[
            "instance",
            "create",
            "web",
            "-p",
            "acme",
            "--flavor",
            "m1",
            "--image",
            "deb",
            "--request-id",
            "req-42",
        ],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(mock.with(|s| s.create_request_ids.clone()), ["req-42"]);
    assert!(r.stdout.contains("PENDING"), "{}", r.stdout);
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
async fn delete_wait_ends_when_the_instance_is_gone() {
    let (ep, _mock) = start().await;
    let r = run(command(
        Some(&ep),
        &["instance", "delete", "old", "--wait", "-o", "json"],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r.stdout);
    assert_eq!(v["deleted"], true);
    assert_eq!(v["id"], "i-old-gone");
}

#[tokio::test]
async fn field_violations_are_listed() {
    let (ep, _mock) = start().await;
    let r = run(command(
        Some(&ep),
        &[
            "instance", "create", "", "-p", "acme", "--flavor", "m9", "--image", "deb",
        ],
    ))
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr.trim_end(),
        "error: invalid argument: invalid instance\n  - name: must not be empty\n  - flavor: unknown flavor `m9`"
    );
}

#[tokio::test]
async fn placement_explanations_are_printed_as_is() {
    let (ep, _mock) = start().await;
    let r = run(command(
        Some(&ep),
        &[
            "instance", "create", "toobig", "-p", "acme", "--flavor", "m1", "--image", "deb",
        ],
    ))
    .await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(
            "error: resource exhausted: no host can take this instance\n  policy: 4 hosts excluded"
        ),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn list_as_json_array_and_table() {
    let (ep, _mock) = start().await;
    let r = run(command(Some(&ep), &["instance", "list", "-o", "json"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r.stdout);
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert_eq!(v[1]["state"], "INSTANCE_STATE_STOPPED");

    let r = run(command(Some(&ep), &["instance", "list"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let header = r.stdout.lines().next().unwrap_or_default();
    for col in ["ID", "NAME", "STATE", "HOST", "DATACENTER", "COUNTRY"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(r.stdout.contains("STOPPED"), "{}", r.stdout);

    let r = run(command(
        Some(&ep),
        &["instance", "get", "web", "-o", "yaml"],
    ))
    .await;
    assert_eq!(r.code, 1, "unknown by name in the mock: {}", r.stdout);
    assert!(r.stderr.contains("error: not found"), "{}", r.stderr);

    let r = run(command(
        Some(&ep),
        &["instance", "get", "i-web", "-o", "yaml"],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("state: INSTANCE_STATE_RUNNING"),
        "{}",
        r.stdout
    );
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
async fn server_refusals_exit_with_one() {
    let (ep, _mock) = start().await;
    let r = run(command(Some(&ep), &["cluster", "init"])).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr.trim_end(),
        "error: failed precondition: the cluster is already initialized"
    );
}

#[tokio::test]
async fn usage_errors_exit_with_two_and_completions_need_no_server() {
    let r = run(command(None, &["instance", "create", "x"])).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = run(command(None, &["completions", "bash"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("cloudctl"), "{}", r.stdout);
}
