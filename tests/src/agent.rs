//! Agent processes for end-to-end tests, and polling helpers for states that converge.

use crate::{bin, Clients};
use andromede_api::v1::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `andromede-agent` process.
pub struct Agent {
    pub dir: PathBuf,
    pub servers: Vec<String>,
    pub args: Vec<String>,
    child: Option<Child>,
}

impl Agent {
    pub fn new(dir: &Path, servers: &[String], args: &[&str]) -> Self {
        Self {
            dir: dir.to_path_buf(),
            servers: servers.to_vec(),
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    pub fn start(&mut self, join_token: Option<&str>, extra: &[&str]) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut c = Command::new(bin("andromede-agent"));
        c.arg("--server")
            .arg(self.servers.join(","))
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .args(&self.args)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(t) = join_token {
            c.arg("--join-token").arg(t);
        }
        self.child = Some(c.spawn().unwrap());
    }

    /// SIGKILL: nothing of the agent's shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `f` until it returns `Some`, failing with `what` and the last value seen on timeout.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub fn instance_state(i: &Instance) -> InstanceState {
    InstanceState::try_from(i.state).unwrap_or(InstanceState::Unspecified)
}

pub fn volume_state(v: &Volume) -> VolumeState {
    VolumeState::try_from(v.state).unwrap_or(VolumeState::Unspecified)
}

pub fn r(id: &str) -> Option<ResourceRef> {
    Some(ResourceRef {
        id_or_name: id.into(),
        project: String::new(),
    })
}

impl Clients {
    pub async fn join_token(&mut self, dc: &str) -> String {
        self.infra
            .create_join_token(CreateJoinTokenRequest {
                datacenter: dc.into(),
                ttl_seconds: 600,
            })
            .await
            .unwrap()
            .into_inner()
            .token
    }

    pub async fn get_instance(&mut self, id: &str) -> Result<Instance, tonic::Status> {
        self.compute
            .get_instance(GetRequest {
                r#ref: r(id),
                read: None,
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn get_volume(&mut self, id: &str) -> Result<Volume, tonic::Status> {
        self.volumes
            .get_volume(GetRequest {
                r#ref: r(id),
                read: None,
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn get_host(&mut self, id: &str) -> Result<Host, tonic::Status> {
        self.infra
            .get_host(GetRequest {
                r#ref: r(id),
                read: None,
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Waits until the instance reaches `want`, failing early if it lands in ERROR instead.
    pub async fn wait_instance(&mut self, id: &str, want: InstanceState, t: Duration) -> Instance {
        let me = self.clone();
        eventually(&format!("instance {id} {want:?}"), t, || {
            let mut c = me.clone();
            async move {
                let i = c.get_instance(id).await.map_err(|e| e.to_string())?;
                let s = instance_state(&i);
                if s == want {
                    Ok(i)
                } else if s == InstanceState::Error && want != InstanceState::Error {
                    panic!("instance {id} went to ERROR: {}", i.state_reason)
                } else {
                    Err(format!("{s:?} {}", i.state_reason))
                }
            }
        })
        .await
    }

    pub async fn wait_volume(&mut self, id: &str, want: VolumeState, t: Duration) -> Volume {
        let me = self.clone();
        eventually(&format!("volume {id} {want:?}"), t, || {
            let mut c = me.clone();
            async move {
                let v = c.get_volume(id).await.map_err(|e| e.to_string())?;
                let s = volume_state(&v);
                if s == want {
                    Ok(v)
                } else {
                    Err(format!("{s:?} {}", v.state_reason))
                }
            }
        })
        .await
    }

    pub async fn wait_gone(&mut self, kind: &str, id: &str, t: Duration) {
        let me = self.clone();
        eventually(&format!("{kind} {id} deleted"), t, || {
            let mut c = me.clone();
            async move {
                let res = if kind == "instance" {
                    c.get_instance(id)
                        .await
                        .map(|i| format!("{:?}", instance_state(&i)))
                } else {
                    c.get_volume(id)
                        .await
                        .map(|v| format!("{:?}", volume_state(&v)))
                };
                match res {
                    Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
                    Err(s) => Err(s.to_string()),
                    Ok(state) => Err(state),
                }
            }
        })
        .await
    }

    pub async fn wait_host(&mut self, id: &str, want: HostState, t: Duration) -> Host {
        let me = self.clone();
        eventually(&format!("host {id} {want:?}"), t, || {
            let mut c = me.clone();
            async move {
                let h = c.get_host(id).await.map_err(|e| e.to_string())?;
                if h.state == want as i32 {
                    Ok(h)
                } else {
                    Err(format!("{:?}", HostState::try_from(h.state)))
                }
            }
        })
        .await
    }

    /// The single host enrolled under `name`.
    pub async fn host_named(&mut self, name: &str) -> Option<Host> {
        self.infra
            .list_hosts(ListHostsRequest::default())
            .await
            .ok()?
            .into_inner()
            .hosts
            .into_iter()
            .find(|h| h.meta.as_ref().is_some_and(|m| m.name == name))
    }
}

/// Runs `cloudctl` against `endpoint` with the test token; returns (success, stdout, stderr).
pub fn cloudctl(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    cloudctl_as(endpoint, crate::TOKEN, args)
}

/// Runs `cloudctl` against `endpoint` with `token`; returns (success, stdout, stderr).
pub fn cloudctl_as(endpoint: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    cloudctl_with(endpoint, token, None, args)
}

/// `cloudctl_as`, trusting the cluster CA `ca` for an https endpoint.
pub fn cloudctl_with(
    endpoint: &str,
    token: &str,
    ca: Option<&Path>,
    args: &[&str],
) -> (bool, String, String) {
    let mut c = Command::new(bin("cloudctl"));
    c.args(["--endpoint", endpoint, "--token", token]);
    if let Some(ca) = ca {
        c.arg("--ca-cert").arg(ca);
    }
    let out = c.args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `virsh -c qemu:///system` and returns its stdout (panics with stderr on failure).
pub fn virsh(args: &[&str]) -> String {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("virsh is not installed (run scripts/setup-libvirt.sh): {e}"));
    assert!(
        out.status.success(),
        "virsh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Files under `dir` whose name contains `needle`.
pub fn files_with(dir: &Path, needle: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(needle))
                .collect()
        })
        .unwrap_or_default()
}
