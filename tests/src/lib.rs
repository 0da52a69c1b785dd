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

pub const TOKEN: &str = "test-token";

/// Directory holding the built binaries (`ANDROMEDE_BIN_DIR`, else `target/debug`).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("ANDROMEDE_BIN_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug")
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build it first (cargo build -p andromede-server -p cloudctl) or set ANDROMEDE_BIN_DIR",
        p.display()
    );
    p
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
}

impl Server {
    pub fn new(id: u64, root: &Path, extra: &[&str]) -> Self {
        Self {
            id,
            port: free_port(),
            dir: root.join(format!("node-{id}")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
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
            .arg("--token")
            .arg(TOKEN)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log);
        if init {
            c.arg("--init");
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
            match Channel::from_shared(self.endpoint())
                .unwrap()
                .connect()
                .await
            {
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

#[derive(Clone)]
pub struct Auth;

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        Ok(r)
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
    pub fn new(ch: Channel) -> Self {
        Self {
            infra: InfrastructureServiceClient::with_interceptor(ch.clone(), Auth),
            identity: IdentityServiceClient::with_interceptor(ch.clone(), Auth),
            compute: ComputeServiceClient::with_interceptor(ch.clone(), Auth),
            volumes: VolumeServiceClient::with_interceptor(ch.clone(), Auth),
            cluster: ClusterServiceClient::with_interceptor(ch, Auth),
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

    pub async fn instances(&mut self, project: &str, stale: bool) -> Vec<Instance> {
        self.compute
            .list_instances(ListRequest {
                project: project.into(),
                read: Some(ReadOptions { stale }),
            })
            .await
            .unwrap()
            .into_inner()
            .instances
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
