//! The local cluster under test: server processes, their work directory, joining and teardown.

use crate::client::{connect, retry, Conn};
use andromede_api::v1::{
    AddLearnerRequest, ClusterStatus, ClusterStatusRequest, LocateNodeRequest, PromoteRequest,
};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How long a fresh server gets to open its stores and answer a first call.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the membership changes get to settle into one leader and all voters.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// One `andromede-server run` process.
pub struct Server {
    pub node_id: u64,
    pub addr: String,
    pub log: PathBuf,
    /// Taken on shutdown; `kill_on_drop` also covers an early return or a panic.
    child: Option<Child>,
}

impl Server {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// The exit status if the process is gone (a crash or a failed bind).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

/// Where the bench writes; removed at the end unless kept.
struct WorkDir {
    path: PathBuf,
    /// True when the bench made the directory itself, so it may delete all of it. A directory
    /// the user named may hold other things: only the bench's own entries are removed there.
    owned: bool,
}

pub struct Cluster {
    pub servers: Vec<Server>,
    token: String,
    /// Serve TLS (the servers' default) rather than plaintext.
    tls: bool,
    /// The cluster CA node 1 made, once it has, over TLS.
    ca: Option<String>,
    cluster_token: String,
    data_key: String,
    work: WorkDir,
    keep: bool,
}

impl Cluster {
    /// Prepares the work directory; no process is started yet.
    pub fn new(work_dir: Option<PathBuf>, keep: bool, tls: bool) -> anyhow::Result<Self> {
        let work = match work_dir {
            Some(path) => {
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                WorkDir { path, owned: false }
            }
            None => {
                let path = std::env::temp_dir()
                    .join(format!("andromede-bench-{}", uuid::Uuid::new_v4().simple()));
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                WorkDir { path, owned: true }
            }
        };
        // A fresh token per run, so that a stray server from an earlier run on the same ports
        // answers Unauthenticated instead of silently taking part.
        let (_, token) = andromede_auth::generate();
        Ok(Cluster {
            servers: Vec::new(),
            token,
            tls,
            ca: None,
            cluster_token: andromede_auth::token::random_secret(),
            data_key: andromede_auth::token::random_secret(),
            work,
            keep,
        })
    }

    pub fn work_path(&self) -> &Path {
        &self.work.path
    }

    /// Starts `nodes` servers on consecutive ports, initializes node 1, joins the others as
    /// voters and waits for a leader everyone agrees on. Returns the leader's node id.
    pub async fn start(
        &mut self,
        server_bin: &Path,
        nodes: u64,
        base_port: u16,
    ) -> anyhow::Result<u64> {
        // Checking the ports up front turns a busy port into a clear message rather than a
        // server that exits right after start.
        for i in 0..nodes {
            let port = port_of(base_port, i)?;
            std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
                format!("port {port} is busy; pick another range with --base-port")
            })?;
        }
        for i in 0..nodes {
            let node_id = i + 1;
            let addr = format!("127.0.0.1:{}", port_of(base_port, i)?);
            let data_dir = self.work.path.join(format!("node-{node_id}"));
            let log = self.work.path.join(format!("node-{node_id}.log"));
            let out = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let err = out.try_clone()?;
            let mut cmd = Command::new(server_bin);
            cmd.arg("run");
            if self.tls {
                if node_id > 1 {
                    // A joining server's certificate (and the CA key, so any server enrolls
                    // the fleet's agents), from node 1's CA.
                    let ca_dir = self.work.path.join("node-1/tls");
                    self.wait_for_file(&ca_dir.join("ca.pem")).await?;
                    let st = Command::new(server_bin)
                        .arg("issue-cert")
                        .arg("--ca-dir")
                        .arg(&ca_dir)
                        .arg("--node-id")
                        .arg(node_id.to_string())
                        .arg("--name")
                        .arg(&addr)
                        .arg("--out")
                        .arg(data_dir.join("tls"))
                        .arg("--with-ca-key")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .await
                        .context("running andromede-server issue-cert")?;
                    anyhow::ensure!(st.success(), "issue-cert for node {node_id} failed ({st})");
                }
            } else {
                cmd.arg("--insecure-plaintext")
                    // Through the environment so the credential stays out of the process list.
                    .env("ANDROMEDE_CLUSTER_TOKEN", &self.cluster_token);
            }
            cmd.arg("--node-id")
                .arg(node_id.to_string())
                .arg("--listen")
                .arg(&addr)
                .arg("--data-dir")
                .arg(&data_dir)
                // The fleet enrolls its agents from this one address.
                .arg("--enrollments-per-sec")
                .arg("1000000")
                // The logs go to files: escape codes would only clutter them.
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .kill_on_drop(true);
            // Every server holds the same data key.
            std::fs::create_dir_all(&data_dir)?;
            std::fs::write(data_dir.join("data-key"), &self.data_key)
                .context("writing the data key")?;
            if node_id == 1 {
                cmd.arg("--init");
                // The first server takes this run's admin token as its bootstrap token.
                std::fs::create_dir_all(&data_dir)?;
                std::fs::write(data_dir.join("bootstrap-admin-token"), &self.token)
                    .context("writing the bootstrap token")?;
            }
            let child = cmd
                .spawn()
                .with_context(|| format!("starting {}", server_bin.display()))?;
            self.servers.push(Server {
                node_id,
                addr,
                log,
                child: Some(child),
            });
        }
        if self.tls {
            let ca = self.work.path.join("node-1/tls/ca.pem");
            self.wait_for_file(&ca).await?;
            self.ca = Some(std::fs::read_to_string(&ca).context("reading the cluster CA")?);
        }
        for i in 0..self.servers.len() {
            self.wait_serving(i).await?;
        }
        eprintln!("bench: {} server(s) answering", self.servers.len());

        let first = self.conn(0).await?;
        self.wait_until(
            "node 1 to lead",
            |st| st.iter().all(|s| s.state == "leader"),
            &[0],
        )
        .await?;
        if nodes > 1 {
            // Servers hold every project's metadata, so each one is located before it joins.
            crate::setup::create_datacenter(&first).await?;
            let leader_id = self.servers[0].node_id;
            retry("locating node 1", || {
                let mut c = first.cluster();
                let req = LocateNodeRequest {
                    node_id: leader_id,
                    datacenter: crate::setup::DATACENTER.into(),
                };
                async move { c.locate_node(req).await }
            })
            .await?;
            for s in &self.servers[1..] {
                let req = AddLearnerRequest {
                    node_id: s.node_id,
                    addr: s.addr.clone(),
                    datacenter: crate::setup::DATACENTER.into(),
                };
                retry(&format!("adding node {} as learner", s.node_id), || {
                    let mut c = first.cluster();
                    let req = req.clone();
                    async move { c.add_learner(req).await }
                })
                .await?;
            }
            let ids: Vec<u64> = self.servers[1..].iter().map(|s| s.node_id).collect();
            retry("promoting the learners", || {
                let mut c = first.cluster();
                let req = PromoteRequest {
                    node_ids: ids.clone(),
                };
                async move { c.promote(req).await }
            })
            .await?;
        }
        let all: Vec<usize> = (0..self.servers.len()).collect();
        let n = self.servers.len();
        let statuses = self
            .wait_until(
                "all nodes to be voters under one leader",
                |st| {
                    let leader = st.first().map(|s| s.leader_id).unwrap_or(0);
                    leader != 0
                        && st.iter().all(|s| {
                            s.leader_id == leader
                                && s.members.len() == n
                                && s.members.iter().all(|m| m.role == "voter")
                        })
                },
                &all,
            )
            .await?;
        let leader = statuses.first().map(|s| s.leader_id).unwrap_or(1);
        eprintln!("bench: cluster of {n} voter(s) formed, leader is node {leader}");
        Ok(leader)
    }

    pub async fn conn(&self, index: usize) -> anyhow::Result<Conn> {
        self.conn_as(index, &self.token).await
    }

    /// A connection to server `index` presenting `token`.
    pub async fn conn_as(&self, index: usize, token: &str) -> anyhow::Result<Conn> {
        let s = self
            .servers
            .get(index)
            .with_context(|| format!("no server #{index}"))?;
        connect(&s.addr, token, self.ca.as_deref()).await
    }

    /// The cluster CA (PEM) over TLS.
    pub fn ca(&self) -> Option<&str> {
        self.ca.as_deref()
    }

    /// Waits for a file a server makes at its start (its CA), failing if node 1 exits.
    async fn wait_for_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !path.is_file() {
            if let Some(status) = self.servers.first_mut().and_then(|s| s.exited()) {
                bail!("server 1 exited during start ({status})");
            }
            if Instant::now() > deadline {
                bail!("{} did not appear within {START_TIMEOUT:?}", path.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Polls one server until it answers Status, failing fast if its process exits.
    async fn wait_serving(&mut self, index: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = self.servers[index].addr.clone();
        let mut refused: Option<String> = None;
        loop {
            if let Some(status) = self.servers[index].exited() {
                bail!(
                    "server {} exited during start ({status})",
                    self.servers[index].node_id
                );
            }
            if let Ok(conn) = connect(&addr, &self.token, self.ca.as_deref()).await {
                match conn.cluster().status(ClusterStatusRequest {}).await {
                    Ok(_) => return Ok(()),
                    // A server that has not joined yet holds no token at all: it answers,
                    // which is all this waits for.
                    Err(s) if s.code() == tonic::Code::Unauthenticated && index > 0 => {
                        return Ok(());
                    }
                    // The first server knows the token once it leads and has committed it;
                    // one still refusing it at the deadline is someone else's.
                    Err(s) if s.code() == tonic::Code::Unauthenticated => {
                        refused = Some(s.message().to_string());
                    }
                    Err(_) => {}
                }
            }
            if let (Some(why), true) = (&refused, Instant::now() > deadline) {
                bail!("{addr} rejects this run's token ({why}): another server holds the port");
            }
            if Instant::now() > deadline {
                bail!("server at {addr} did not answer within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls Status on the given servers until `done` holds for all their answers together.
    async fn wait_until(
        &mut self,
        what: &str,
        done: impl Fn(&[ClusterStatus]) -> bool,
        indexes: &[usize],
    ) -> anyhow::Result<Vec<ClusterStatus>> {
        let deadline = Instant::now() + JOIN_TIMEOUT;
        let mut conns = Vec::new();
        for &i in indexes {
            conns.push(self.conn(i).await?);
        }
        loop {
            for s in &mut self.servers {
                if let Some(status) = s.exited() {
                    bail!("server {} exited ({status})", s.node_id);
                }
            }
            let mut statuses = Vec::with_capacity(conns.len());
            for c in &conns {
                if let Ok(r) = c.cluster().status(ClusterStatusRequest {}).await {
                    statuses.push(r.into_inner());
                }
            }
            if statuses.len() == conns.len() && done(&statuses) {
                return Ok(statuses);
            }
            if Instant::now() > deadline {
                bail!("timed out after {JOIN_TIMEOUT:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader and term as seen by the node with the highest term, or None if no node
    /// answers. Comparing two of these tells whether an election happened in between.
    pub async fn leadership(&self) -> Option<(u64, u64)> {
        let mut best: Option<(u64, u64)> = None;
        for i in 0..self.servers.len() {
            let Ok(conn) = self.conn(i).await else {
                continue;
            };
            let mut c = conn.cluster();
            let call = c.status(ClusterStatusRequest {});
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), call).await {
                let st = r.into_inner();
                if best.is_none_or(|(_, term)| st.term > term) {
                    best = Some((st.leader_id, st.term));
                }
            }
        }
        best
    }

    /// Node ids whose process is no longer running.
    pub fn dead(&mut self) -> Vec<u64> {
        let mut dead = Vec::new();
        for s in &mut self.servers {
            if s.exited().is_some() {
                dead.push(s.node_id);
            }
        }
        dead
    }

    /// The last lines of every server's log, for diagnosing a failed run.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for s in &self.servers {
            let text = std::fs::read_to_string(&s.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            out.push_str(&format!("--- node {} ({})\n", s.node_id, s.log.display()));
            for l in &all[from..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Kills every server, waits for them to be gone, then removes the work directory unless
    /// it is kept. Waiting first matters: a dying server could still be writing into it.
    pub async fn shutdown(&mut self) {
        for s in &mut self.servers {
            if let Some(mut child) = s.child.take() {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            }
        }
        if self.keep {
            eprintln!("bench: kept {}", self.work.path.display());
            return;
        }
        let res = if self.work.owned {
            std::fs::remove_dir_all(&self.work.path)
        } else {
            self.remove_own_entries()
        };
        if let Err(e) = res {
            eprintln!("bench: could not remove {}: {e}", self.work.path.display());
        }
    }

    fn remove_own_entries(&self) -> std::io::Result<()> {
        for s in &self.servers {
            let data = self.work.path.join(format!("node-{}", s.node_id));
            if data.exists() {
                std::fs::remove_dir_all(data)?;
            }
            if s.log.exists() {
                std::fs::remove_file(&s.log)?;
            }
        }
        // Leaves a directory that held other things alone; an error here just means that.
        let _ = std::fs::remove_dir(&self.work.path);
        Ok(())
    }
}

fn port_of(base: u16, index: u64) -> anyhow::Result<u16> {
    u16::try_from(u64::from(base) + index)
        .ok()
        .filter(|p| *p != 0)
        .with_context(|| format!("--base-port {base} leaves no room for {} nodes", index + 1))
}
