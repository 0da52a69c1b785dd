//! The leader's side of host agents: who is connected, when each was last heard from (kept in
//! memory only; only transitions reach the log), liveness sweeps and console-log requests.

pub mod session;

use crate::error::ApiError;
use crate::node::Node;
use andromede_api::v1::{
    control_message, ConsoleLogReply, ConsoleLogRequest, ControlMessage, InstanceState, VolumeState,
};
use andromede_store::Command;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

/// Outgoing half of one agent's stream.
pub type Outbox = mpsc::Sender<Result<ControlMessage, Status>>;

struct Conn {
    session: u64,
    tx: Outbox,
    changes: mpsc::UnboundedSender<Routed>,
}

/// A change the router hands to one host's stream.
#[derive(Debug, Clone)]
pub enum Routed {
    Instance {
        id: String,
        deleted: bool,
    },
    Volume {
        id: String,
        deleted: bool,
    },
    /// Events were lost (the router lagged): send the full desired state again.
    Resync,
}

/// Connected agents and their liveness, on this server (meaningful on the leader).
pub struct Agents {
    conns: Mutex<HashMap<String, Conn>>,
    /// Observations from every agent, written to the log in batches by [`write_reports`].
    observed: mpsc::UnboundedSender<Observed>,
    observed_rx: Mutex<Option<mpsc::UnboundedReceiver<Observed>>>,
    /// Set when the server shuts down: streams end so the listener can drain.
    closing: tokio::sync::watch::Sender<bool>,
    seen: Mutex<HashMap<String, Instant>>,
    /// Console-log requests in flight: id → (the host asked, where the answer goes).
    pending: Mutex<HashMap<u64, (String, oneshot::Sender<ConsoleLogReply>)>>,
    next: AtomicU64,
    /// A host not heard from for this long goes down.
    pub ttl: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Observed = (
    Vec<(String, InstanceState, String)>,
    Vec<(String, VolumeState, String)>,
);

impl Agents {
    pub fn new(ttl: Duration) -> Arc<Self> {
        let (observed, rx) = mpsc::unbounded_channel();
        Arc::new(Self {
            conns: Mutex::new(HashMap::new()),
            observed,
            observed_rx: Mutex::new(Some(rx)),
            closing: tokio::sync::watch::channel(false).0,
            seen: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            ttl,
        })
    }

    /// Ends every agent stream (they reconnect to another server); called at shutdown.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Queues observed states for the next batch written to the log.
    pub fn observed(
        &self,
        instances: Vec<(String, InstanceState, String)>,
        volumes: Vec<(String, VolumeState, String)>,
    ) {
        if !instances.is_empty() || !volumes.is_empty() {
            let _ = self.observed.send((instances, volumes));
        }
    }

    /// Heard from within the TTL.
    pub fn fresh(&self, host: &str) -> bool {
        lock(&self.seen)
            .get(host)
            .is_some_and(|t| t.elapsed() <= self.ttl)
    }

    pub fn touch(&self, host: &str) {
        lock(&self.seen).insert(host.to_string(), Instant::now());
    }

    /// Registers a new stream for `host`, replacing any older one; returns its session number
    /// and the receiver of the changes routed to it.
    pub fn connect(&self, host: &str, tx: Outbox) -> (u64, mpsc::UnboundedReceiver<Routed>) {
        let session = self.next.fetch_add(1, Ordering::Relaxed);
        let (changes, rx) = mpsc::unbounded_channel();
        lock(&self.conns).insert(
            host.to_string(),
            Conn {
                session,
                tx,
                changes,
            },
        );
        self.touch(host);
        (session, rx)
    }

    fn route(&self, host: &str, r: Routed) {
        if let Some(c) = lock(&self.conns).get(host) {
            let _ = c.changes.send(r);
        }
    }

    /// Ends `host`'s stream now (the host was deleted): its agent cannot speak for it again,
    /// since a new hello finds no host to authenticate against.
    fn cut(&self, host: &str, why: &str) {
        if let Some(c) = lock(&self.conns).remove(host) {
            let _ = c.tx.try_send(Err(Status::unauthenticated(why.to_string())));
            tracing::info!(host, "{why}: its agent stream is cut");
        }
    }

    fn resync_all(&self) {
        for c in lock(&self.conns).values() {
            let _ = c.changes.send(Routed::Resync);
        }
    }

    /// Whether `session` is still the current stream of `host`.
    pub fn current(&self, host: &str, session: u64) -> bool {
        lock(&self.conns)
            .get(host)
            .is_some_and(|c| c.session == session)
    }

    pub fn disconnect(&self, host: &str, session: u64) {
        let mut c = lock(&self.conns);
        if c.get(host).is_some_and(|c| c.session == session) {
            c.remove(host);
        }
    }

    pub fn connected(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Hands a console log to its caller, only from the host it was asked of: another host's
    /// agent cannot answer for a guest it does not run.
    pub fn resolve_console(&self, host: &str, reply: ConsoleLogReply) {
        let mut pending = lock(&self.pending);
        if pending
            .get(&reply.request_id)
            .is_some_and(|(h, _)| h == host)
        {
            if let Some((_, tx)) = pending.remove(&reply.request_id) {
                let _ = tx.send(reply);
            }
        }
    }

    /// Asks the host's agent for the tail of an instance's console log.
    pub async fn console_log(
        &self,
        host: &str,
        instance_id: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, ApiError> {
        let tx = lock(&self.conns)
            .get(host)
            .map(|c| c.tx.clone())
            .ok_or_else(|| {
                ApiError::Unavailable(format!("the agent of host {host} is not connected"))
            })?;
        let request_id = self.next.fetch_add(1, Ordering::Relaxed);
        let (done, wait) = oneshot::channel();
        lock(&self.pending).insert(request_id, (host.to_string(), done));
        let msg = ControlMessage {
            msg: Some(control_message::Msg::ConsoleLog(ConsoleLogRequest {
                request_id,
                instance_id: instance_id.to_string(),
                max_bytes,
            })),
        };
        if tx.try_send(Ok(msg)).is_err() {
            lock(&self.pending).remove(&request_id);
            return Err(ApiError::Unavailable(format!(
                "the agent of host {host} disconnected"
            )));
        }
        let reply = tokio::time::timeout(Duration::from_secs(10), wait).await;
        lock(&self.pending).remove(&request_id);
        match reply {
            Ok(Ok(r)) if r.error.is_empty() => Ok(r.data),
            Ok(Ok(r)) => Err(ApiError::Precondition(r.error)),
            Ok(Err(_)) => Err(ApiError::Unavailable(format!(
                "the agent of host {host} disconnected"
            ))),
            Err(_) => Err(ApiError::Unavailable(format!(
                "the agent of host {host} did not answer within 10 s"
            ))),
        }
    }
}

/// Writes agents' observations to the log, many agents' reports per entry: while one batch is
/// being replicated the next one gathers, so the log sees far fewer entries than reports.
pub async fn write_reports(node: Arc<Node>, agents: Arc<Agents>) {
    let Some(mut rx) = lock(&agents.observed_rx).take() else {
        return;
    };
    const BATCH: usize = 5000;
    while let Some(first) = rx.recv().await {
        let (mut inst, mut vols) = first;
        while inst.len() + vols.len() < BATCH {
            match rx.try_recv() {
                Ok((i, v)) => {
                    inst.extend(i);
                    vols.extend(v);
                }
                Err(_) => break,
            }
        }
        for cmd in [
            (!inst.is_empty()).then_some(Command::ObserveInstances(inst)),
            (!vols.is_empty()).then_some(Command::ObserveVolumes(vols)),
        ]
        .into_iter()
        .flatten()
        {
            // Lost observations are harmless: agents report again on their next pass and on
            // every reconnect, and the new leader's streams start from a full state.
            if let Err(e) = node.submit_local(crate::node::Proposal::Cmd(cmd)).await {
                tracing::warn!(error = %e, "could not record agent reports");
            }
        }
    }
}

/// The one field of an instance or volume event the router reads.
#[derive(serde::Deserialize)]
struct Placed {
    #[serde(default)]
    host_id: String,
}

/// Hands each instance or volume event to the stream of the host it lives on: one pass per
/// event, however many agents are connected.
pub async fn route_events(node: Arc<Node>, agents: Arc<Agents>) {
    use tokio::sync::broadcast::error::RecvError;
    let mut rx = node.shared.events.subscribe();
    loop {
        let e = match rx.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(_)) => {
                agents.resync_all();
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let deleted = e.r#type == andromede_api::v1::EventType::Deleted as i32;
        let routed = match e.kind.as_str() {
            "host" if deleted => {
                agents.cut(&e.id, "the host was deleted");
                continue;
            }
            "instance" => Routed::Instance { id: e.id, deleted },
            "volume" => Routed::Volume { id: e.id, deleted },
            _ => continue,
        };
        // A resource never changes host, so the event's copy says where it lives (deleted ones
        // included) without touching the state.
        let host = serde_json::from_str::<Placed>(&e.resource_json)
            .map(|p| p.host_id)
            .unwrap_or_default();
        if !host.is_empty() {
            agents.route(&host, routed);
        }
    }
}

/// Leader-only loop: hosts whose agent has not been heard from within the TTL go down (their
/// instances HOST_LOST). A new leader gives every host a full TTL before judging it.
pub async fn sweep(node: Arc<Node>, agents: Arc<Agents>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut leader_since: Option<Instant> = None;
    loop {
        tick.tick().await;
        if !node.is_leader() {
            leader_since = None;
            continue;
        }
        // Heartbeats heard before this leadership began count from its start: a new leader gives
        // every host a full TTL. Open streams are left alone (they close on leadership loss).
        let since = *leader_since.get_or_insert_with(Instant::now);
        let watched: Vec<String> = node.read(|s| {
            s.hosts
                .values()
                .filter(|h| !h.simulated && !h.credential_sha256.is_empty())
                .filter(|h| h.state != andromede_api::v1::HostState::Down as i32)
                .map(|h| h.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default())
                .collect()
        });
        let now = Instant::now();
        for host in watched {
            let last = lock(&agents.seen)
                .get(&host)
                .map_or(since, |t| (*t).max(since));
            if now.duration_since(last) <= agents.ttl {
                continue;
            }
            let reason = format!(
                "host agent silent for more than {} s",
                agents.ttl.as_secs_f64()
            );
            tracing::warn!(%host, %reason, "host down");
            let cmd = Command::HostLost {
                id: host.clone(),
                reason,
            };
            if let Err(e) = node.submit_local(crate::node::Proposal::Cmd(cmd)).await {
                tracing::warn!(%host, error = %e, "could not record the host as down");
            }
        }
    }
}
