//! The agent's link to the control plane: enrollment, then one outbound stream to the leader
//! that follows leader changes and server restarts by itself.

use crate::hypervisor::{HvError, Inventory};
use crate::identity::Identity;
use crate::reconcile::{Reconciler, Report};
use crate::tls::HostTls;
use andromede_api::v1::agent_service_client::AgentServiceClient;
use andromede_api::v1::{
    agent_message, control_message, AgentHello, AgentMessage, ConsoleLogReply, EnrollRequest,
    Heartbeat, HostInventory, Reports, Resources,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Metadata a follower sets to name the leader.
const LEADER_HEADER: &str = "x-andromede-leader";

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}: {1}")]
    Connect(String, String),
    #[error("{0}")]
    Refused(String),
    #[error("hypervisor: {0}")]
    Hypervisor(#[from] HvError),
}

pub fn url(addr: &str, tls: bool) -> String {
    let bare = addr
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    format!("{}://{bare}", if tls { "https" } else { "http" })
}

/// Connections to the servers, shared by every agent of one process: one per server for a real
/// agent, a few dozen for a benchmark fleet of thousands (HTTP/2 multiplexes their streams).
pub struct Pool {
    size: usize,
    /// The cluster CA (PEM): with it the agent speaks TLS and only to servers it issued.
    ca: Option<String>,
    /// The host certificate and key the agent presents (mutual TLS), once enrolled.
    host: Mutex<Option<Arc<HostTls>>>,
    channels: Mutex<HashMap<String, Vec<Channel>>>,
    next: AtomicUsize,
}

impl Pool {
    pub fn new(size: usize) -> Arc<Self> {
        Self::with_ca(size, None)
    }

    /// A pool that reaches the servers over TLS, trusting `ca` (PEM) only.
    pub fn with_ca(size: usize, ca: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            size: size.max(1),
            ca,
            host: Mutex::new(None),
            channels: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
        })
    }

    /// A pool of one host, presenting its certificate to servers it verifies by the CA.
    pub fn for_host(host: Arc<HostTls>) -> Arc<Self> {
        let p = Self::with_ca(1, Some(host.ca.clone()));
        p.present(host);
        p
    }

    /// From now on, connections present `host`'s certificate (after enrollment or renewal);
    /// a stream already open keeps its connection.
    pub fn present(&self, host: Arc<HostTls>) {
        *self.host.lock().unwrap_or_else(|p| p.into_inner()) = Some(host);
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn get(&self, addr: &str) -> Result<Channel, SessionError> {
        let host = self.host.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut m = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let list = m.entry(addr.to_string()).or_default();
        if list.len() < self.size {
            list.push(channel(addr, self.ca.as_deref(), host.as_deref())?);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % list.len();
        Ok(list[i].clone())
    }
}

fn channel(addr: &str, ca: Option<&str>, host: Option<&HostTls>) -> Result<Channel, SessionError> {
    let bad = |e: tonic::transport::Error| SessionError::Connect(addr.into(), e.to_string());
    let mut e = Endpoint::from_shared(url(addr, ca.is_some())).map_err(bad)?;
    if let Some(ca) = ca {
        let mut tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca.as_bytes()));
        if let Some(h) = host {
            tls = tls.identity(tonic::transport::Identity::from_pem(h.cert(), &h.key));
        }
        e = e.tls_config(tls).map_err(bad)?;
    }
    Ok(e.connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect_lazy())
}

pub fn inventory(inv: Inventory, driver: &str) -> HostInventory {
    HostInventory {
        capacity: Some(Resources {
            vcpus: inv.vcpus,
            memory_mib: inv.memory_mib,
            disk_gib: inv.disk_gib,
        }),
        driver: driver.to_string(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Trades a join token (and over TLS a CSR, `csr`) for a host identity and, over TLS, its
/// certificate, trying each server in turn (any server accepts it: followers forward the write
/// to the leader).
pub async fn enroll(
    pool: &Pool,
    servers: &[String],
    join_token: &str,
    hostname: &str,
    credential: &str,
    csr: &str,
    inv: HostInventory,
) -> Result<(Identity, Option<andromede_api::v1::HostCertificate>), SessionError> {
    let mut last = SessionError::Refused("no server given".into());
    for s in servers {
        let mut c = AgentServiceClient::new(pool.get(s)?);
        let req = EnrollRequest {
            join_token: join_token.to_string(),
            hostname: hostname.to_string(),
            inventory: Some(inv.clone()),
            credential: credential.to_string(),
            csr: csr.to_string(),
        };
        match c.enroll(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let id = Identity {
                    host_id: r.host_id,
                    host_name: r.host_name,
                    datacenter_id: r.datacenter_id,
                    credential: r.credential,
                    renew_after_ms: r.certificate.as_ref().map_or(0, |c| c.renew_after_ms),
                };
                return Ok((id, r.certificate));
            }
            Err(st) if st.code() == tonic::Code::Unavailable => {
                last = SessionError::Connect(s.clone(), st.message().to_string());
            }
            Err(st) => {
                return Err(SessionError::Refused(format!(
                    "enrollment refused ({:?}): {}",
                    st.code(),
                    st.message()
                )))
            }
        }
    }
    Err(last)
}

/// Settings of the stream.
#[derive(Clone)]
pub struct Link {
    pub servers: Vec<String>,
    pub heartbeat: Duration,
    pub pool: Arc<Pool>,
    /// Over TLS: the host certificate, renewed over the stream, and where the identity lives.
    pub tls: Option<Renewal>,
}

/// What renewing the host certificate needs.
#[derive(Clone)]
pub struct Renewal {
    pub host: Arc<HostTls>,
    pub state_dir: std::path::PathBuf,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Keeps a stream to the leader open forever, reconnecting with backoff. Returns only when the
/// control plane refuses this host's identity.
pub async fn run(
    link: Link,
    mut id: Identity,
    rec: Arc<Reconciler>,
    mut reports: mpsc::UnboundedReceiver<Report>,
) -> Result<(), SessionError> {
    let mut next = 0usize;
    let mut hint: Option<String> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        let addr = hint.take().unwrap_or_else(|| {
            let a = link.servers[next % link.servers.len()].clone();
            next += 1;
            a
        });
        match one_session(&link, &addr, &mut id, &rec, &mut reports).await {
            Ok(Ended::Redirect(leader)) => {
                tracing::info!(from = %addr, to = %leader, "following the leader");
                hint = Some(leader);
                backoff = Duration::from_millis(200);
                continue;
            }
            Ok(Ended::Closed(why)) => {
                tracing::warn!(server = %addr, %why, "stream ended; reconnecting");
                backoff = Duration::from_millis(200);
            }
            Err(SessionError::Refused(why)) => return Err(SessionError::Refused(why)),
            Err(e) => tracing::warn!(server = %addr, error = %e, "cannot reach the control plane"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

enum Ended {
    Redirect(String),
    Closed(String),
}

fn ended(st: tonic::Status) -> Result<Ended, SessionError> {
    if let Some(l) = st
        .metadata()
        .get(LEADER_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return Ok(Ended::Redirect(l.to_string()));
    }
    match st.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => Err(SessionError::Refused(
            format!("the control plane refused this host: {}", st.message()),
        )),
        _ => Ok(Ended::Closed(format!("{:?}: {}", st.code(), st.message()))),
    }
}

/// Keeps a renewed certificate: the file first, then the identity's renewal time.
fn renewed(
    r: &Renewal,
    id: &mut Identity,
    c: &andromede_api::v1::HostCertificate,
) -> Result<(), crate::tls::TlsError> {
    r.host.renewed(&c.pem)?;
    id.renew_after_ms = c.renew_after_ms;
    Ok(crate::identity::save(&r.state_dir, id)?)
}

async fn one_session(
    link: &Link,
    addr: &str,
    id: &mut Identity,
    rec: &Arc<Reconciler>,
    reports: &mut mpsc::UnboundedReceiver<Report>,
) -> Result<Ended, SessionError> {
    let hv = rec.hypervisor();
    let inv = tokio::task::spawn_blocking(move || hv.inventory().map(|i| (i, hv.driver())))
        .await
        .map_err(|e| SessionError::Refused(format!("inventory task: {e}")))??;
    let (out, out_rx) = mpsc::channel::<AgentMessage>(1024);
    let hello = AgentMessage {
        msg: Some(agent_message::Msg::Hello(AgentHello {
            host_id: id.host_id.clone(),
            credential: id.credential.clone(),
            inventory: Some(inventory(inv.0, inv.1)),
        })),
    };
    let _ = out.send(hello).await;
    let mut client = AgentServiceClient::new(link.pool.get(addr)?);
    let mut inbound = match client.session(ReceiverStream::new(out_rx)).await {
        Ok(r) => r.into_inner(),
        Err(st) => return ended(st),
    };
    tracing::info!(server = %addr, host = %id.host_id, "connected to the control plane");
    rec.resend_all();
    let mut beat = tokio::time::interval(link.heartbeat);
    // One renewal asked for at a time; another only if the answer never came.
    let mut renewing: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            m = inbound.message() => match m {
                Ok(Some(m)) => match m.msg {
                    Some(control_message::Msg::Desired(d)) => rec.apply(d).await,
                    Some(control_message::Msg::Certificate(c)) => {
                        if let Some(r) = &link.tls {
                            renewing = None;
                            match renewed(r, id, &c) {
                                Ok(()) => {
                                    link.pool.present(r.host.clone());
                                    tracing::info!(not_after_ms = c.not_after_ms, "host certificate renewed");
                                }
                                Err(e) => tracing::error!(error = %e, "could not keep the renewed host certificate"),
                            }
                        }
                    }
                    Some(control_message::Msg::ConsoleLog(c)) => {
                        let hv = rec.hypervisor();
                        let out = out.clone();
                        tokio::spawn(async move {
                            let max = usize::try_from(c.max_bytes).unwrap_or(usize::MAX);
                            let iid = c.instance_id.clone();
                            let r = tokio::task::spawn_blocking(move || hv.console_log(&iid, max)).await;
                            let (data, error) = match r {
                                Ok(Ok(d)) => (d, String::new()),
                                Ok(Err(e)) => (Vec::new(), e.to_string()),
                                Err(e) => (Vec::new(), e.to_string()),
                            };
                            let reply = ConsoleLogReply { request_id: c.request_id, data, error };
                            let _ = out.send(AgentMessage { msg: Some(agent_message::Msg::ConsoleLog(reply)) }).await;
                        });
                    }
                    None => {}
                },
                Ok(None) => return Ok(Ended::Closed("the server closed the stream".into())),
                Err(st) => return ended(st),
            },
            _ = beat.tick() => {
                if out.send(AgentMessage { msg: Some(agent_message::Msg::Heartbeat(Heartbeat {})) }).await.is_err() {
                    return Ok(Ended::Closed("outbound stream closed".into()));
                }
                let due = link.tls.as_ref().filter(|_| id.renew_after_ms > 0 && now_ms() >= id.renew_after_ms);
                let waited = renewing.is_none_or(|t| t.elapsed() > Duration::from_secs(60));
                if let (Some(r), true) = (due, waited) {
                    match crate::tls::request(&r.host.key) {
                        Ok(csr) => {
                            renewing = Some(tokio::time::Instant::now());
                            let m = AgentMessage { msg: Some(agent_message::Msg::Renew(andromede_api::v1::RenewCertificate { csr })) };
                            if out.send(m).await.is_err() {
                                return Ok(Ended::Closed("outbound stream closed".into()));
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "could not make a certificate request"),
                    }
                }
            }
            r = reports.recv() => {
                let Some(first) = r else { return Ok(Ended::Closed("reconciler stopped".into())) };
                let mut all = vec![first];
                while all.len() < 1000 {
                    match reports.try_recv() {
                        Ok(r) => all.push(r),
                        Err(_) => break,
                    }
                }
                let mut batch = Reports::default();
                for r in all {
                    match r {
                        Report::Instance(i) => batch.instances.push(i),
                        Report::Volume(v) => batch.volumes.push(v),
                        Report::Orphans(o) => {
                            if out.send(AgentMessage { msg: Some(agent_message::Msg::Orphans(o)) }).await.is_err() {
                                return Ok(Ended::Closed("outbound stream closed".into()));
                            }
                        }
                    }
                }
                if out.send(AgentMessage { msg: Some(agent_message::Msg::Reports(batch)) }).await.is_err() {
                    return Ok(Ended::Closed("outbound stream closed".into()));
                }
            }
        }
    }
}
