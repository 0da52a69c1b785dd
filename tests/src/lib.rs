//! Test harness: real `andromede-server` processes on loopback, authenticated gRPC clients.

#![allow(clippy::unwrap_used)]

use andromede_api::v1::cluster_service_client::ClusterServiceClient;
use andromede_api::v1::compute_service_client::ComputeServiceClient;
use andromede_api::v1::identity_service_client::IdentityServiceClient;
use andromede_api::v1::infrastructure_service_client::InfrastructureServiceClient;
use andromede_api::v1::volume_service_client::VolumeServiceClient;
use andromede_api::v1::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub mod agent;
pub mod terraform;

/// The first cloud-admin token of every test cluster: the harness writes it where the first
/// server looks for it (`bootstrap-admin-token` in its data directory), so the server takes it
/// instead of making one.
pub const TOKEN: &str = "andro_00000000000000000000000000007e57_5e1f7e575e1f7e575e1f7e575e1f7e575e1f7e575e1f7e575e1f7e575e1f7e57f2a606f4";

/// The data key of every test cluster (each server gets a copy in its data directory).
pub const DATA_KEY: &str = "7e57da7a7e57da7a7e57da7a7e57da7a7e57da7a7e57da7a7e57da7a7e57da7a";

/// The shared server credential of every test cluster.
pub const CLUSTER_TOKEN: &str = "test-cluster-credential";

/// Directory holding the built binaries (`ANDROMEDE_BIN_DIR`, else `target/debug`).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("ANDROMEDE_BIN_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug")
}

/// A binary the tests run, built from the current sources first (see [`ensure_built`]).
pub fn bin(name: &str) -> PathBuf {
    ensure_built(name);
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing after the build: set ANDROMEDE_BIN_DIR to where it is built",
        p.display()
    );
    p
}

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The packages built together, with the features every build of this workspace uses, so the
/// harness never rebuilds what `scripts/test-all.sh` built.
const CORE: &[&str] = &["andromede-server", "cloudctl", "andromede-agent"];

/// Makes sure the binary `name` is built from the sources as they are now, once per test
/// process. Without `ANDROMEDE_BIN_DIR` the harness runs `cargo build` itself (the agent with
/// the libvirt driver when libvirt's development files are installed); with it, the binaries
/// there must be newer than every source file, or the test fails saying which one changed.
pub fn ensure_built(name: &str) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    let group: Vec<&str> = if CORE.contains(&name) {
        CORE.to_vec()
    } else {
        vec![name]
    };
    if group.iter().all(|n| done.iter().any(|d| d == n)) {
        return;
    }
    let result = match std::env::var_os("ANDROMEDE_BIN_DIR") {
        Some(dir) => check_fresh(Path::new(&dir), &group),
        None => cargo_build(&group),
    };
    if let Err(e) = result {
        panic!("{e}");
    }
    done.extend(group.iter().map(|s| s.to_string()));
}

fn cargo_build(packages: &[&str]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(repo_root()).arg("build");
    for p in packages {
        c.arg("-p").arg(p);
    }
    let libvirt = Command::new("pkg-config")
        .args(["--exists", "libvirt"])
        .status()
        .is_ok_and(|s| s.success());
    if packages.contains(&"andromede-agent") && libvirt {
        c.args(["--features", "andromede-agent/libvirt"]);
    }
    let status = c
        .status()
        .map_err(|e| format!("cannot run cargo to build {packages:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build of {packages:?} failed ({status})"))
    }
}

/// The newest file under the sources the binaries are built from, with its time.
fn newest_source() -> Option<(std::time::SystemTime, PathBuf)> {
    fn walk(dir: &Path, best: &mut Option<(std::time::SystemTime, PathBuf)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                if e.file_name() != "target" {
                    walk(&path, best);
                }
            } else if let Ok(t) = md.modified() {
                if best.as_ref().is_none_or(|(b, _)| t > *b) {
                    *best = Some((t, path));
                }
            }
        }
    }
    let root = repo_root();
    let mut best = None;
    for d in ["crates", "proto", "migrations"] {
        walk(&root.join(d), &mut best);
    }
    for f in ["Cargo.lock", "Cargo.toml"] {
        if let Ok(t) = std::fs::metadata(root.join(f)).and_then(|m| m.modified()) {
            if best.as_ref().is_none_or(|(b, _)| t > *b) {
                best = Some((t, root.join(f)));
            }
        }
    }
    best
}

fn check_fresh(dir: &Path, names: &[&str]) -> Result<(), String> {
    let newest = newest_source();
    for n in names {
        let p = dir.join(n);
        let built = std::fs::metadata(&p)
            .and_then(|m| m.modified())
            .map_err(|e| {
                format!(
                    "{} is missing ({e}): build it (cargo build -p {n}) or unset ANDROMEDE_BIN_DIR",
                    p.display()
                )
            })?;
        if let Some((t, src)) = &newest {
            if *t > built {
                return Err(format!(
                    "{} is older than {}: it would test stale code; rebuild it \
                     (cargo build -p andromede-server -p cloudctl -p andromede-agent \
                     --features andromede-agent/libvirt) or unset ANDROMEDE_BIN_DIR",
                    p.display(),
                    src.display()
                ));
            }
        }
    }
    Ok(())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One server process.
pub struct Server {
    pub id: u64,
    pub port: u16,
    pub dir: PathBuf,
    pub extra: Vec<String>,
    child: Option<Child>,
    /// Serve TLS (the servers' default) instead of the harness's plaintext.
    pub tls: bool,
}

impl Server {
    pub fn new(id: u64, root: &Path, extra: &[&str]) -> Self {
        Self {
            id,
            port: free_port(),
            dir: root.join(format!("node-{id}")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            tls: false,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr())
    }

    /// The cluster CA a TLS server made (or was given) in its data directory.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    pub fn start(&mut self, init: bool) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let mut c = Command::new(bin("andromede-server"));
        c.arg("run")
            .arg("--node-id")
            .arg(self.id.to_string())
            .arg("--listen")
            .arg(self.addr())
            .arg("--data-dir")
            .arg(&self.dir)
            .env("ANDROMEDE_CLUSTER_TOKEN", CLUSTER_TOKEN)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log);
        let key = self.dir.join("data-key");
        if !key.exists() {
            std::fs::write(&key, DATA_KEY).unwrap();
        }
        // TLS is the servers' default; the harness's own clients speak plaintext, so its
        // servers run without TLS unless a test asks for it (see `tests/tests/tls.rs`).
        if !self.tls {
            c.arg("--insecure-plaintext");
        }
        if init {
            c.arg("--init");
            let f = self.dir.join("bootstrap-admin-token");
            if !f.exists() {
                std::fs::write(&f, TOKEN).unwrap();
            }
        }
        self.child = Some(c.spawn().unwrap());
    }

    /// SIGTERM, then a clean exit within `within`, or the test fails.
    pub fn terminate(&mut self, within: Duration) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + within;
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("server {} still running {within:?} after SIGTERM", self.id);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub async fn channel(&self) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut e = Channel::from_shared(self.endpoint()).unwrap();
            if self.tls {
                // The server makes its CA on first start: until then there is nothing to trust.
                let Ok(ca) = std::fs::read_to_string(self.ca_file()) else {
                    assert!(Instant::now() < deadline, "server {} made no CA", self.id);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                e = e
                    .tls_config(
                        tonic::transport::ClientTlsConfig::new()
                            .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
                    )
                    .unwrap();
            }
            match e.connect().await {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => {
                    panic!("server {} not reachable: {e}", self.id)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub async fn clients(&self) -> Clients {
        Clients::new(self.channel().await)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Puts one bearer token on every call.
#[derive(Clone)]
pub struct Auth(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

impl Auth {
    /// The first cloud-admin token.
    pub fn admin() -> Self {
        Self::token(TOKEN)
    }

    pub fn token(token: &str) -> Self {
        Auth(format!("Bearer {token}").parse().unwrap())
    }
}

type Ch = InterceptedService<Channel, Auth>;

#[derive(Clone)]
pub struct Clients {
    pub infra: InfrastructureServiceClient<Ch>,
    pub identity: IdentityServiceClient<Ch>,
    pub compute: ComputeServiceClient<Ch>,
    pub volumes: VolumeServiceClient<Ch>,
    pub cluster: ClusterServiceClient<Ch>,
}

impl Clients {
    /// Clients acting with the cluster's first cloud-admin token.
    pub fn new(ch: Channel) -> Self {
        Self::with_token(ch, TOKEN)
    }

    /// Clients acting with `token`.
    pub fn with_token(ch: Channel, token: &str) -> Self {
        let a = Auth::token(token);
        Self {
            infra: InfrastructureServiceClient::with_interceptor(ch.clone(), a.clone()),
            identity: IdentityServiceClient::with_interceptor(ch.clone(), a.clone()),
            compute: ComputeServiceClient::with_interceptor(ch.clone(), a.clone()),
            volumes: VolumeServiceClient::with_interceptor(ch.clone(), a.clone()),
            cluster: ClusterServiceClient::with_interceptor(ch, a),
        }
    }

    /// Waits until this node reports a leader.
    pub async fn wait_leader(&mut self) -> ClusterStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(s) = self.cluster.status(ClusterStatusRequest {}).await {
                let s = s.into_inner();
                if s.leader_id != 0 {
                    return s;
                }
            }
            assert!(Instant::now() < deadline, "no leader elected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A member token of `project` named `name`; returns its secret.
    pub async fn member_token(&mut self, project: &str, name: &str) -> String {
        self.identity
            .create_token(CreateTokenRequest {
                name: name.into(),
                project: project.into(),
                role: Role::Member as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .secret
    }

    pub async fn datacenter(
        &mut self,
        name: &str,
        country: &str,
        op_country: &str,
        parent: &str,
        certs: &[&str],
    ) -> Datacenter {
        self.infra
            .create_datacenter(CreateDatacenterRequest {
                name: name.into(),
                country: country.into(),
                operator: Some(Operator {
                    name: format!("{name}-operator"),
                    country: op_country.into(),
                    parent_country: parent.into(),
                    ..Default::default()
                }),
                certifications: certs.iter().map(|c| c.to_string()).collect(),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn host(&mut self, name: &str, dc: &str, vcpus: u64, cpu_ratio: f64) -> Host {
        self.infra
            .register_host(RegisterHostRequest {
                name: name.into(),
                datacenter: dc.into(),
                capacity: Some(Resources {
                    vcpus,
                    memory_mib: vcpus * 2048,
                    disk_gib: vcpus * 100,
                }),
                ratios: Some(AllocationRatios {
                    cpu: cpu_ratio,
                    memory: 1.0,
                    disk: 1.0,
                }),
                simulated: true,
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn flavor_and_image(&mut self) {
        self.infra
            .create_flavor(CreateFlavorRequest {
                name: "small".into(),
                vcpus: 1,
                memory_mib: 1024,
                disk_gib: 10,
                request_id: String::new(),
            })
            .await
            .unwrap();
        self.infra
            .create_image(CreateImageRequest {
                name: "tiny".into(),
                format: "qcow2".into(),
                source: "/images/tiny.qcow2".into(),
                checksum_sha256: "a".repeat(64),
                min_disk_gib: 0,
                project: String::new(),
                request_id: String::new(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    pub async fn project(
        &mut self,
        name: &str,
        policy: SovereigntyPolicy,
        quota: Option<Quota>,
    ) -> Project {
        self.identity
            .create_project(CreateProjectRequest {
                name: name.into(),
                description: String::new(),
                policy: Some(policy),
                quota,
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn instance(
        &mut self,
        name: &str,
        project: &str,
        c: PlacementConstraints,
    ) -> Result<Instance, tonic::Status> {
        self.compute
            .create_instance(CreateInstanceRequest {
                name: name.into(),
                project: project.into(),
                flavor: "small".into(),
                image: "tiny".into(),
                constraints: Some(c),
                request_id: uuid::Uuid::new_v4().to_string(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Every instance of `project`, through every page of the list.
    pub async fn instances(&mut self, project: &str, stale: bool) -> Vec<Instance> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .compute
                .list_instances(ListRequest {
                    project: project.into(),
                    read: Some(ReadOptions { stale }),
                    page_size: 1000,
                    page_token,
                })
                .await
                .unwrap()
                .into_inner();
            out.extend(page.instances);
            if page.next_page_token.is_empty() {
                return out;
            }
            page_token = page.next_page_token;
        }
    }
}

pub fn policy(
    countries: &[&str],
    jurisdictions: &[&str],
    certs: &[&str],
    immunity: bool,
) -> SovereigntyPolicy {
    SovereigntyPolicy {
        allowed_countries: countries.iter().map(|c| c.to_string()).collect(),
        allowed_jurisdictions: jurisdictions.iter().map(|c| c.to_string()).collect(),
        required_certifications: certs.iter().map(|c| c.to_string()).collect(),
        operator_immunity: immunity,
    }
}

/// Every file under `dir` whose bytes contain `needle` (for secrets that must never reach disk).
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}
