//! AgentService: enrollment with a join token, then each agent's stream to the leader, which
//! pushes the host's desired state (in full on connect, then changes) and records its reports.

use super::{Agents, Outbox, Routed};
use crate::auth::HostPeer;
use crate::node::{Node, Proposal};
use andromede_api::v1::agent_service_server::AgentService;
use andromede_api::v1::{
    agent_message, control_message, AgentHello, AgentMessage, ControlMessage, DesiredState,
    EnrollRequest, EnrollResponse, Host, HostCertificate, HostState, Image, Instance,
    InstanceState, Reports, Volume, VolumeState,
};
use andromede_model::capacity::DEFAULT_RATIOS;
use andromede_model::validate::{self as val, Violations};
use andromede_store::command::Reply;
use andromede_store::{Command, State};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

/// Metadata key naming the leader's address when a follower turns an agent away.
pub const LEADER_HEADER: &str = "x-andromede-leader";

#[derive(Clone)]
pub struct AgentApi {
    pub node: Arc<Node>,
    pub agents: Arc<Agents>,
    /// Enrollment attempts per peer address: an unauthenticated caller cannot make the
    /// server hash join tokens and sign certificates as fast as it can send.
    pub enrollments: Arc<Enrollments>,
}

/// Per-address limit on enrollment attempts.
pub type Enrollments = governor::DefaultKeyedRateLimiter<std::net::IpAddr>;

/// A limit of `per_sec` attempts per second per address, in bursts of up to `burst`.
pub fn enrollment_limit(per_sec: u32, burst: u32) -> Arc<Enrollments> {
    let rate = std::num::NonZeroU32::new(per_sec.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    let burst = std::num::NonZeroU32::new(burst.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    Arc::new(governor::RateLimiter::keyed(
        governor::Quota::per_second(rate).allow_burst(burst),
    ))
}

pub use andromede_auth::sha256_hex;
/// 256 random bits as hex, for secrets and credentials.
pub use andromede_auth::token::random_secret as secret;

/// Checks what an agent says of its host, at enrollment (capacity required) and in every
/// hello (capacity optional): bounded numbers and strings, so a compromised host cannot claim
/// unbounded capacity.
fn check_inventory(v: &mut Violations, inv: &andromede_api::v1::HostInventory, required: bool) {
    let cap = inv.capacity.unwrap_or_default();
    if required || cap.vcpus > 0 || cap.memory_mib > 0 {
        v.positive("inventory.capacity.vcpus", cap.vcpus, val::MAX_VCPUS);
        v.positive(
            "inventory.capacity.memory_mib",
            cap.memory_mib,
            val::MAX_MEMORY_MIB,
        );
        v.positive(
            "inventory.capacity.disk_gib",
            cap.disk_gib,
            val::MAX_DISK_GIB,
        );
    }
    v.text("inventory.driver", &inv.driver, 64);
    v.text("inventory.agent_version", &inv.agent_version, 64);
}

/// A fresh join token for `datacenter_id`, valid `ttl_secs`, and the `<id>.<secret>` string an
/// agent presents (the token keeps only the secret's hash), followed over TLS by
/// `.<ca-sha256>`, the pin with which the agent verifies the servers on first contact.
pub fn new_join_token(
    datacenter_id: &str,
    ttl_secs: u64,
    tls: Option<&crate::tls::Tls>,
) -> (andromede_api::v1::JoinToken, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let secret = secret();
    let token = andromede_api::v1::JoinToken {
        meta: Some(andromede_api::v1::Meta {
            id: id.clone(),
            name: id.clone(),
            ..Default::default()
        }),
        datacenter_id: datacenter_id.to_string(),
        expires_at_ms: crate::node::now_ms()
            + i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2000) * 1000,
        secret_sha256: sha256_hex(&secret),
        used_by_host: String::new(),
    };
    let presented = match tls {
        Some(t) => format!("{id}.{secret}.{}", t.pin),
        None => format!("{id}.{secret}"),
    };
    (token, presented)
}

fn id_of<T: andromede_store::resource::Resource>(r: &T) -> String {
    r.meta().id.clone()
}

/// Everything `host` must run, with the images its instances boot from.
fn full_state(s: &State, host: &str) -> DesiredState {
    let instances: Vec<Instance> = s
        .instances
        .values()
        .filter(|i| i.host_id == host)
        .cloned()
        .collect();
    let volumes: Vec<Volume> = s
        .volumes
        .values()
        .filter(|v| v.host_id == host)
        .cloned()
        .collect();
    DesiredState {
        full: true,
        images: images_for(s, &instances),
        instances,
        volumes,
        ..Default::default()
    }
}

fn images_for(s: &State, instances: &[Instance]) -> Vec<Image> {
    let ids: BTreeSet<&str> = instances.iter().map(|i| i.image_id.as_str()).collect();
    ids.into_iter()
        .filter_map(|id| s.images.get(id).cloned())
        .collect()
}

fn desired(d: DesiredState) -> ControlMessage {
    ControlMessage {
        msg: Some(control_message::Msg::Desired(d)),
    }
}

fn not_leader(node: &Node) -> Status {
    let mut st = Status::unavailable("this server is not the Raft leader; connect to the leader");
    if let Some((_, addr)) = node.leader() {
        if let Ok(v) = MetadataValue::try_from(addr.as_str()) {
            st.metadata_mut().insert(LEADER_HEADER, v);
        }
    }
    st
}

/// Whether the host certificate `c` is still `host`'s: same datacenter, and its current or
/// previous serial (anything else was revoked by a renewal, or the host was re-enrolled).
fn check_certificate(host: &Host, c: &HostPeer) -> Result<(), Status> {
    if host.datacenter_id != c.datacenter_id {
        tracing::warn!(host = %c.host_id, certificate = %c.datacenter_id, state = %host.datacenter_id, "refused a host certificate naming another datacenter");
        return Err(Status::permission_denied(
            "the host certificate names another datacenter than the host's",
        ));
    }
    let current = !c.serial.is_empty()
        && (c.serial == host.cert_serial || c.serial == host.previous_cert_serial);
    if !current {
        tracing::warn!(host = %c.host_id, serial = %c.serial, "refused a revoked host certificate");
        return Err(Status::unauthenticated(format!(
            "host certificate {} was revoked: enroll the host again with a new join token",
            c.serial
        )));
    }
    Ok(())
}

impl AgentApi {
    /// Issues a certificate for `host` (as committed) from `csr` and records its serial.
    async fn certify(
        &self,
        issuer: &crate::tls::Issuer,
        host: &Host,
        csr: &str,
    ) -> Result<HostCertificate, Status> {
        let (issued, cert) = issuer
            .host(csr, &id_of(host), &host.datacenter_id)
            .map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
        let cmd = Command::HostCertificate {
            id: id_of(host),
            serial: issued.serial,
            not_after_ms: issued.not_after_ms,
        };
        self.node.submit(Proposal::Cmd(cmd)).await?;
        Ok(cert)
    }

    /// A fresh certificate for a connected host, over its stream.
    async fn renew(&self, host: &str, csr: &str) -> Result<HostCertificate, Status> {
        let issuer = self
            .node
            .tls
            .as_ref()
            .and_then(|t| t.issuer.clone())
            .ok_or_else(|| Status::failed_precondition("this server holds no cluster CA key"))?;
        if csr.len() > 16 * 1024 || !andromede_pki::is_request(csr) {
            return Err(Status::invalid_argument(
                "csr: must be one PEM certificate signing request of at most 16 KiB",
            ));
        }
        let h = self
            .node
            .read(|s| s.hosts.get(host).cloned())
            .ok_or_else(|| Status::not_found(format!("host {host} not found")))?;
        let c = self.certify(&issuer, &h, csr).await?;
        tracing::info!(%host, not_after_ms = c.not_after_ms, "renewed the host certificate");
        Ok(c)
    }

    /// Checks who the stream is from (the host certificate over TLS, the host credential over
    /// plaintext) and records what the agent reports of its host.
    async fn hello(&self, h: &AgentHello, cert: Option<&HostPeer>) -> Result<Host, Status> {
        let mut v = Violations::new();
        v.text("host_id", &h.host_id, 64);
        v.text("credential", &h.credential, 256);
        let inv = h.inventory.clone().unwrap_or_default();
        check_inventory(&mut v, &inv, false);
        crate::api::check(v)?;
        let host_id = match (cert, &self.node.tls) {
            (Some(c), _) => {
                // The host is the certificate's; the message may only agree with it.
                if !h.host_id.is_empty() && h.host_id != c.host_id {
                    tracing::warn!(certificate = %c.host_id, claimed = %h.host_id, "refused a hello speaking for another host");
                    return Err(Status::permission_denied(format!(
                        "the hello names host {} but the certificate is host {}'s",
                        h.host_id, c.host_id
                    )));
                }
                c.host_id.clone()
            }
            (None, Some(_)) => {
                return Err(Status::unauthenticated(
                    "an agent stream needs the host certificate from enrollment (mutual TLS)",
                ))
            }
            (None, None) => h.host_id.clone(),
        };
        // The credential is checked on this server's state before anything costs a quorum
        // read; only a host this server has not heard of yet (a leader fresh from an election
        // may not have applied its enrollment) waits for one.
        let known = |node: &Node| node.read(|s| s.hosts.get(&host_id).cloned());
        let host = match known(&self.node) {
            Some(host) => host,
            None => {
                self.node.read_barrier(false).await?;
                known(&self.node).ok_or_else(|| {
                    Status::unauthenticated(format!(
                        "host {host_id} is not enrolled here (was it deleted?): enroll again with a new join token"
                    ))
                })?
            }
        };
        match cert {
            Some(c) => check_certificate(&host, c)?,
            None => {
                if host.credential_sha256.is_empty()
                    || !crate::auth::constant_time_eq(
                        host.credential_sha256.as_bytes(),
                        sha256_hex(&h.credential).as_bytes(),
                    )
                {
                    return Err(Status::unauthenticated("wrong host credential"));
                }
            }
        }
        // Still the host's state as of the last commit this server applied.
        self.node.read_barrier(false).await?;
        let capacity = inv.capacity.filter(|c| c.vcpus > 0 && c.memory_mib > 0);
        let changed = host.state == HostState::Down as i32
            || (capacity.is_some() && capacity != host.capacity)
            || inv.driver != host.driver
            || inv.agent_version != host.agent_version;
        if changed {
            let cmd = Command::HostSeen {
                id: host_id.clone(),
                capacity,
                driver: inv.driver,
                agent_version: inv.agent_version,
            };
            self.node
                .submit_local(Proposal::Cmd(cmd))
                .await
                .map_err(Status::from)?;
        }
        Ok(host)
    }

    /// The host booting an instance receives its user-data opened.
    fn open(&self, d: &mut DesiredState) {
        for i in &mut d.instances {
            self.node.data_key.open_instance(i);
        }
    }

    /// Queues what the agent observed for the log, limited to resources on its own host.
    fn reports(&self, host: &str, r: Reports) {
        // A host speaks for its own resources only (the stream is bound to it); anything else
        // is dropped and logged, never recorded.
        let foreign = self.node.read(|s| {
            r.instances
                .iter()
                .filter(|x| s.instances.get(&x.id).is_some_and(|i| i.host_id != host))
                .map(|x| format!("instance {}", x.id))
                .chain(
                    r.volumes
                        .iter()
                        .filter(|x| s.volumes.get(&x.id).is_some_and(|v| v.host_id != host))
                        .map(|x| format!("volume {}", x.id)),
                )
                .take(5)
                .collect::<Vec<_>>()
        });
        if !foreign.is_empty() {
            tracing::warn!(host, about = ?foreign, "refused a report about another host's resources");
        }
        let (inst, vols) = self.node.read(|s| {
            let inst: Vec<(String, InstanceState, String)> = r
                .instances
                .iter()
                .filter(|x| s.instances.get(&x.id).is_some_and(|i| i.host_id == host))
                .filter_map(|x| {
                    let st = InstanceState::try_from(x.state).ok()?;
                    let cur = s.instances.get(&x.id).map(|i| i.state);
                    (cur != Some(x.state)).then(|| (x.id.clone(), st, x.reason.clone()))
                })
                .collect();
            let vols: Vec<(String, VolumeState, String)> = r
                .volumes
                .iter()
                .filter(|x| s.volumes.get(&x.id).is_some_and(|v| v.host_id == host))
                .filter_map(|x| {
                    let st = VolumeState::try_from(x.state).ok()?;
                    let cur = s.volumes.get(&x.id).map(|v| v.state);
                    (cur != Some(x.state)).then(|| (x.id.clone(), st, x.reason.clone()))
                })
                .collect();
            (inst, vols)
        });
        self.agents.observed(inst, vols);
    }

    /// Records what the agent quarantined on its host, when that changed.
    async fn orphans(&self, host: &str, mut o: andromede_api::v1::HostOrphans) {
        // A host reports its own guests; keep the record bounded whatever it sends.
        o.items.truncate(10_000);
        let clip = |s: &mut String, max: usize| {
            if s.len() > max {
                let mut end = max;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
            }
        };
        for x in &mut o.items {
            clip(&mut x.kind, 16);
            clip(&mut x.id, 128);
            clip(&mut x.reason, 512);
            clip(&mut x.owner_host_id, 128);
        }
        let orphans = (!o.items.is_empty()).then_some(o);
        let same = self
            .node
            .read(|s| s.hosts.get(host).map(|h| h.orphans == orphans));
        if same != Some(false) {
            return;
        }
        let cmd = Command::HostOrphans {
            id: host.to_string(),
            orphans,
        };
        if let Err(e) = self.node.submit_local(Proposal::Cmd(cmd)).await {
            tracing::warn!(%host, error = %e, "could not record the host's orphans");
        }
    }

    /// One agent's stream, until it ends, another stream replaces it or leadership moves.
    async fn run(
        self,
        host: String,
        session: u64,
        mut changes: mpsc::UnboundedReceiver<Routed>,
        mut inbound: Streaming<AgentMessage>,
        tx: Outbox,
    ) {
        // The hello waited for a read barrier, and this stream's routes were registered before
        // this read: the full state misses nothing committed before or after it.
        let (exists, mut first) = self
            .node
            .read(|s| (s.hosts.contains_key(&host), full_state(s, &host)));
        if !exists {
            // Deleted between the hello and the registration: the router's cut came too early
            // to find this stream, so it is cut here.
            let _ = tx
                .send(Err(Status::unauthenticated("the host was deleted")))
                .await;
            self.agents.disconnect(&host, session);
            return;
        }
        self.open(&mut first);
        if tx.send(Ok(desired(first))).await.is_err() {
            self.agents.disconnect(&host, session);
            return;
        }
        tracing::info!(%host, "agent connected");
        let mut closing = self.agents.closing();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let end: Option<Status> = loop {
            tokio::select! {
                m = inbound.message() => match m {
                    Ok(Some(m)) => {
                        self.agents.touch(&host);
                        match m.msg {
                            Some(agent_message::Msg::Reports(r)) => self.reports(&host, r),
                            Some(agent_message::Msg::ConsoleLog(c)) => self.agents.resolve_console(&host, c),
                            Some(agent_message::Msg::Orphans(o)) => self.orphans(&host, o).await,
                            Some(agent_message::Msg::Renew(r)) => match self.renew(&host, &r.csr).await {
                                Ok(c) => {
                                    let m = ControlMessage { msg: Some(control_message::Msg::Certificate(c)) };
                                    if tx.try_send(Ok(m)).is_err() {
                                        break None;
                                    }
                                }
                                Err(st) => tracing::warn!(%host, error = %st.message(), "could not renew the host certificate"),
                            },
                            Some(agent_message::Msg::Heartbeat(_)) | None => {}
                            Some(agent_message::Msg::Hello(_)) => {
                                break Some(Status::invalid_argument("hello sent twice on one stream"));
                            }
                        }
                    }
                    Ok(None) => break None,
                    Err(e) => {
                        tracing::info!(%host, error = %e, "agent stream broke");
                        break None;
                    }
                },
                c = changes.recv() => {
                    let Some(c) = c else { break None };
                    let mut batch = vec![c];
                    while batch.len() < 1000 {
                        match changes.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    let mut msg = self.node.read(|s| changes_for(s, &host, &batch));
                    if let Some(m) = msg.as_mut() {
                        self.open(m);
                    }
                    if let Some(d) = msg {
                        // Never wait on a slow agent: that would stop reading its heartbeats.
                        // It reconnects and gets the full state instead.
                        match tx.try_send(Ok(desired(d))) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                break Some(Status::resource_exhausted("agent fell behind its desired-state stream; reconnect for a full state"));
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => break None,
                        }
                    }
                }
                _ = closing.changed() => {
                    break Some(Status::unavailable("server shutting down"));
                }
                _ = tick.tick() => {
                    if !self.node.is_leader() {
                        break Some(not_leader(&self.node));
                    }
                    if !self.agents.current(&host, session) {
                        break Some(Status::aborted("a newer stream from the same host replaced this one"));
                    }
                    // Marked down while this stream was alive (a stall past the TTL, or a race
                    // with the hello): it is plainly up, so say so.
                    let down = self.node.read(|s| s.hosts.get(&host).map(|h| (h.state == HostState::Down as i32, h.driver.clone(), h.agent_version.clone())));
                    if let (Some((true, driver, agent_version)), true) = (down, self.agents.fresh(&host)) {
                        let cmd = Command::HostSeen { id: host.clone(), capacity: None, driver, agent_version };
                        if let Err(e) = self.node.submit_local(Proposal::Cmd(cmd)).await {
                            tracing::warn!(%host, error = %e, "could not mark the host up again");
                        }
                    }
                }
            }
        };
        if let Some(st) = end {
            let _ = tx.send(Err(st)).await;
        }
        self.agents.disconnect(&host, session);
        tracing::info!(%host, "agent disconnected");
    }
}

/// The desired-state message for a batch of routed changes (`None` when nothing is left).
fn changes_for(s: &State, host: &str, batch: &[Routed]) -> Option<DesiredState> {
    if batch.iter().any(|r| matches!(r, Routed::Resync)) {
        return Some(full_state(s, host));
    }
    let mut d = DesiredState::default();
    let mut seen = BTreeSet::new();
    for r in batch {
        match r {
            Routed::Instance { id, deleted } if seen.insert(("i", id.as_str())) => {
                match s.instances.get(id) {
                    Some(i) if i.host_id == host => d.instances.push(i.clone()),
                    None if *deleted => d.removed_instances.push(id.clone()),
                    _ => {}
                }
            }
            Routed::Volume { id, deleted } if seen.insert(("v", id.as_str())) => {
                match s.volumes.get(id) {
                    Some(v) if v.host_id == host => d.volumes.push(v.clone()),
                    None if *deleted => d.removed_volumes.push(id.clone()),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if d.instances.is_empty()
        && d.volumes.is_empty()
        && d.removed_instances.is_empty()
        && d.removed_volumes.is_empty()
    {
        return None;
    }
    d.images = images_for(s, &d.instances);
    Some(d)
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn enroll(&self, r: Request<EnrollRequest>) -> Result<Response<EnrollResponse>, Status> {
        if let Some(ip) = r.remote_addr().map(|a| a.ip()) {
            if self.enrollments.len() > 100_000 {
                self.enrollments.retain_recent();
            }
            if self.enrollments.check_key(&ip).is_err() {
                tracing::warn!(%ip, "enrollment attempts over the per-address limit");
                return Err(Status::resource_exhausted(
                    "too many enrollment attempts from this address: retry in a few seconds",
                ));
            }
        }
        let r = r.into_inner();
        let mut v = Violations::new();
        v.name("hostname", &r.hostname);
        let mut parts = r.join_token.split('.');
        let token_id = parts.next().unwrap_or("");
        let token_secret = parts.next().unwrap_or("");
        let pin = parts.next();
        if token_id.is_empty() || token_secret.is_empty() || parts.next().is_some() {
            v.add(
                "join_token",
                "must be the `<id>.<secret>[.<ca-sha256>]` string an admin created",
            );
        }
        let tls = self.node.tls.as_ref();
        if let (Some(pin), Some(t)) = (pin, tls) {
            if pin != t.pin {
                v.add(
                    "join_token",
                    "pins another cluster CA than this server's: the token is for another cluster",
                );
            }
        }
        if tls.is_some() {
            if r.csr.is_empty() {
                v.add(
                    "csr",
                    "required over TLS: a PEM certificate signing request for the host's own key",
                );
            } else if r.csr.len() > 16 * 1024 || !andromede_pki::is_request(&r.csr) {
                v.add(
                    "csr",
                    "must be one PEM certificate signing request of at most 16 KiB",
                );
            }
        }
        let inv = r.inventory.unwrap_or_default();
        check_inventory(&mut v, &inv, true);
        let cap = inv.capacity.unwrap_or_default();
        if !r.credential.is_empty() && !(32..=256).contains(&r.credential.len()) {
            v.add("credential", "must be 32 to 256 characters (or empty)");
        }
        crate::api::check(v)?;
        let issuer = match tls {
            Some(t) => Some(t.issuer.clone().ok_or_else(|| {
                Status::failed_precondition(
                    "this server holds no cluster CA key, so it cannot issue host certificates: enroll through a server that does (--tls-ca-key)",
                )
            })?),
            None => None,
        };
        // A bogus join token is refused here, on this server's state, before anything is
        // proposed: an unauthenticated caller never costs a replicated entry. Apply checks
        // again (single use under races).
        let credential = if r.credential.is_empty() {
            secret()
        } else {
            r.credential.clone()
        };
        let presented = sha256_hex(token_secret);
        let credential_sha256 = sha256_hex(&credential);
        let now = crate::node::now_ms();
        self.node
            .read(|s| s.join_token_check(token_id, &presented, &credential_sha256, now))
            .map_err(crate::error::ApiError::Cmd)?;
        let host = Host {
            meta: crate::api::meta(&r.hostname, "", ""),
            state: HostState::Up as i32,
            capacity: Some(cap),
            ratios: Some(DEFAULT_RATIOS),
            driver: inv.driver,
            agent_version: inv.agent_version,
            credential_sha256,
            ..Default::default()
        };
        let cmd = Command::EnrollHost {
            token_id: token_id.to_string(),
            secret_sha256: presented,
            host,
        };
        let rep = self.node.submit(Proposal::Cmd(cmd)).await?;
        let Reply::Host(h) = rep else {
            return Err(Status::internal("unexpected reply to an enrollment"));
        };
        // The certificate names the host and the datacenter as committed: the token's
        // datacenter, never anything the agent said.
        let certificate = match &issuer {
            Some(issuer) => Some(self.certify(issuer, &h, &r.csr).await?),
            None => None,
        };
        tracing::info!(host = %id_of(&h), name = %r.hostname, "host enrolled");
        Ok(Response::new(EnrollResponse {
            host_id: id_of(&h),
            host_name: r.hostname,
            datacenter_id: h.datacenter_id,
            credential,
            certificate,
            ca_certificate: tls.map(|t| t.ca.clone()).unwrap_or_default(),
        }))
    }

    type SessionStream = ReceiverStream<Result<ControlMessage, Status>>;

    async fn session(
        &self,
        r: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        if !self.node.is_leader() {
            return Err(not_leader(&self.node));
        }
        let cert = r.extensions().get::<HostPeer>().cloned();
        let mut inbound = r.into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello within 10 s"))??;
        let Some(AgentMessage {
            msg: Some(agent_message::Msg::Hello(hello)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message on a session must be a hello",
            ));
        };
        let host = self.hello(&hello, cert.as_ref()).await?;
        let host_id = id_of(&host);
        let (tx, rx) = mpsc::channel(256);
        let (session, changes) = self.agents.connect(&host_id, tx.clone());
        tokio::spawn(self.clone().run(host_id, session, changes, inbound, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
