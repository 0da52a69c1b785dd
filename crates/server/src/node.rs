//! One server of the region: the Raft handle, the applied state, leader-side scheduling with
//! in-flight reservations, write forwarding to the leader and linearizable read barriers.

use crate::error::ApiError;
use crate::network::Peers;
use andromede_api::v1::{Instance, Resources, Volume};
use andromede_placement::{Explanation, Request, Snapshot, Strategy};
use andromede_store::command::{CmdErrorCode, Reply};
use andromede_store::{Command, Envelope, Raft, Shared, State};
use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A write as the API layer hands it over; followers forward it to the leader as is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Proposal {
    /// A fully formed command.
    Cmd(Command),
    /// An instance to place, then create.
    PlaceInstance(Instance),
    /// A volume to place (next to `near_instance` when set), then create.
    PlaceVolume {
        volume: Volume,
        near_instance: String,
    },
    AddLearner {
        node_id: u64,
        addr: String,
    },
    Promote {
        node_ids: Vec<u64>,
    },
    RemoveNode {
        node_id: u64,
    },
}

/// Concurrent event watches a server accepts unless configured otherwise.
pub const DEFAULT_MAX_WATCHES: usize = 1024;

pub struct Node {
    pub id: u64,
    pub addr: String,
    pub raft: Raft,
    pub shared: Arc<Shared>,
    pub peers: Peers,
    /// Plans proposed but not yet released: resource id → (host, resources). A reservation stops
    /// counting as soon as its resource exists in the applied state, so it is never counted twice.
    reservations: Mutex<HashMap<String, (String, Resources)>>,
    /// Serializes planning so two concurrent creates see each other's reservations.
    plan_lock: tokio::sync::Mutex<()>,
    pub strategy: Strategy,
    /// Host agents connected to this server (they only stay connected to the leader).
    pub agents: Arc<crate::agents::Agents>,
    /// One permit per open event watch: each holds a task and a buffer, so they are capped.
    pub watches: Arc<tokio::sync::Semaphore>,
    pub max_watches: usize,
    /// Seals and opens tenant secrets (user-data); the same key on every server.
    pub data_key: Arc<crate::sealed::DataKey>,
    /// The TLS identity and cluster CA; `None` over --insecure-plaintext.
    pub tls: Option<crate::tls::Tls>,
}

/// The scheduler's view: applied state plus in-flight reservations.
struct View<'a> {
    state: &'a State,
    reserved: &'a HashMap<String, Resources>,
}

impl Snapshot for View<'_> {
    fn hosts(&self) -> Box<dyn Iterator<Item = &andromede_api::v1::Host> + '_> {
        self.state.hosts()
    }
    fn hosts_from(&self, start: &str) -> Box<dyn Iterator<Item = &andromede_api::v1::Host> + '_> {
        self.state.hosts_from(start)
    }
    fn datacenter(&self, id: &str) -> Option<&andromede_api::v1::Datacenter> {
        self.state.datacenters.get(id)
    }
    fn reserved(&self, host_id: &str) -> Resources {
        self.reserved.get(host_id).copied().unwrap_or_default()
    }
}

/// Fitting hosts a create's placement weighs before choosing (all of them when fewer fit).
pub const PLACEMENT_SAMPLE: u32 = 64;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Node {
    pub fn new(
        id: u64,
        addr: String,
        raft: Raft,
        shared: Arc<Shared>,
        peers: Peers,
        data_key: Arc<crate::sealed::DataKey>,
    ) -> Self {
        Self {
            id,
            addr,
            raft,
            shared,
            peers,
            reservations: Mutex::new(HashMap::new()),
            plan_lock: tokio::sync::Mutex::new(()),
            strategy: Strategy::Spread,
            agents: crate::agents::Agents::new(Duration::from_secs(10)),
            watches: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_WATCHES)),
            max_watches: DEFAULT_MAX_WATCHES,
            data_key,
            tls: None,
        }
    }

    /// Caps concurrent event watches at `max`.
    pub fn limit_watches(&mut self, max: usize) {
        self.watches = Arc::new(tokio::sync::Semaphore::new(max));
        self.max_watches = max;
    }

    /// A slot for one event watch, held for as long as the watch lives; refused with
    /// `RESOURCE_EXHAUSTED` when every slot is taken.
    pub fn watch_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, tonic::Status> {
        self.watches.clone().try_acquire_owned().map_err(|_| {
            tonic::Status::resource_exhausted(format!(
                "too many concurrent event watches on this server (max {}); close one or retry later",
                self.max_watches
            ))
        })
    }

    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.shared.read(f)
    }

    /// The leader's id and address, when one is known.
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n: &BasicNode| n.addr.clone())?;
        Some((id, addr))
    }

    /// Runs a proposal here when leader, otherwise on the leader.
    pub async fn submit(&self, p: Proposal) -> Result<Reply, ApiError> {
        for attempt in 0..50 {
            match self.leader() {
                Some((id, _)) if id == self.id => match self.submit_local(p.clone()).await {
                    Err(ApiError::NotLeader) => {}
                    other => return other,
                },
                Some((id, addr)) => match self.peers.forward(id, &addr, &p).await {
                    Err(ApiError::NotLeader) => {}
                    other => return other,
                },
                None => {}
            }
            // No leader known (election in progress) or it just changed: wait a little.
            tokio::time::sleep(Duration::from_millis(if attempt < 10 { 20 } else { 60 })).await;
        }
        Err(ApiError::Unavailable(
            "no Raft leader elected; retry later".into(),
        ))
    }

    /// Runs a proposal on this node, which must be the leader.
    pub async fn submit_local(&self, p: Proposal) -> Result<Reply, ApiError> {
        match p {
            Proposal::Cmd(c) => self.write(c).await,
            Proposal::PlaceInstance(i) => self.place_instance(i).await,
            Proposal::PlaceVolume {
                volume,
                near_instance,
            } => self.place_volume(volume, near_instance).await,
            Proposal::AddLearner { node_id, addr } => {
                self.raft
                    .add_learner(node_id, BasicNode { addr }, true)
                    .await
                    .map_err(write_err)?;
                Ok(Reply::Done)
            }
            Proposal::Promote { node_ids } => {
                let mut voters: std::collections::BTreeSet<u64> = {
                    let m = self.raft.metrics();
                    let m = m.borrow();
                    m.membership_config.membership().voter_ids().collect()
                };
                voters.extend(node_ids);
                self.raft
                    .change_membership(voters, false)
                    .await
                    .map_err(write_err)?;
                Ok(Reply::Done)
            }
            Proposal::RemoveNode { node_id } => {
                let (voters, is_learner) = {
                    let m = self.raft.metrics();
                    let m = m.borrow();
                    let mem = m.membership_config.membership();
                    let voters = mem.voter_ids().collect::<std::collections::BTreeSet<u64>>();
                    let is_learner = mem.learner_ids().any(|l| l == node_id);
                    (voters, is_learner)
                };
                if voters.contains(&node_id) {
                    let rest: std::collections::BTreeSet<u64> =
                        voters.into_iter().filter(|v| *v != node_id).collect();
                    if rest.is_empty() {
                        return Err(ApiError::refused("node_id", "cannot remove the last voter"));
                    }
                    self.raft
                        .change_membership(rest, false)
                        .await
                        .map_err(write_err)?;
                } else if is_learner {
                    let set: std::collections::BTreeSet<u64> = [node_id].into();
                    self.raft
                        .change_membership(openraft::ChangeMembers::RemoveNodes(set), false)
                        .await
                        .map_err(write_err)?;
                } else {
                    return Err(ApiError::missing(
                        "node_id",
                        format!("node {node_id} is not a member"),
                    ));
                }
                Ok(Reply::Done)
            }
        }
    }

    async fn write(&self, c: Command) -> Result<Reply, ApiError> {
        let name = c.name();
        let started = std::time::Instant::now();
        let r = self
            .raft
            .client_write(Envelope::new(now_ms(), c))
            .await
            .map_err(write_err)?;
        metrics::histogram!("andromede_raft_write_seconds", "command" => name)
            .record(started.elapsed().as_secs_f64());
        r.data.0.map_err(ApiError::Cmd)
    }

    /// Plans against state plus reservations; returns the explanation (chosen host reserved).
    /// Plans a create: the best of a sample of fitting hosts (see [`andromede_placement::Sample`]).
    fn plan(&self, req: &Request<'_>) -> Explanation {
        let start = uuid::Uuid::new_v4().to_string();
        self.plan_with(
            req,
            Some(andromede_placement::Sample {
                start: &start,
                candidates: PLACEMENT_SAMPLE,
            }),
        )
    }

    fn plan_with(
        &self,
        req: &Request<'_>,
        sample: Option<andromede_placement::Sample<'_>>,
    ) -> Explanation {
        let pending = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        self.read(|state| {
            let mut reserved: HashMap<String, Resources> = HashMap::new();
            for (id, (host, r)) in pending.iter() {
                if state.instances.contains_key(id) || state.volumes.contains_key(id) {
                    continue;
                }
                let e = reserved.entry(host.clone()).or_default();
                *e = andromede_model::capacity::add(e, r);
            }
            andromede_placement::place_sampled(
                &View {
                    state,
                    reserved: &reserved,
                },
                req,
                sample,
            )
        })
    }

    fn reserve(&self, id: &str, host: &str, r: &Resources, add: bool) {
        let mut m = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        if add {
            m.insert(id.to_string(), (host.to_string(), *r));
        } else {
            m.remove(id);
        }
    }

    /// Schedules, reserves, writes, releases; re-plans if the plan went stale before apply.
    async fn place_and_write(
        &self,
        id: &str,
        resources: Resources,
        build: impl Fn(&State) -> Result<PlanInput, ApiError>,
        make: impl Fn(&str) -> Command,
    ) -> Result<Reply, ApiError> {
        for _ in 0..3 {
            let (explanation, host) = {
                let _g = self.plan_lock.lock().await;
                let input = self.read(|s| build(s))?;
                let req = Request {
                    policy: &input.policy,
                    constraints: &input.constraints,
                    resources,
                    group: input.group,
                    pin_host: input.pin_host,
                    strategy: self.strategy,
                };
                let e = self.plan(&req);
                let host = e.chosen.as_ref().map(|c| c.host_id.clone());
                if let Some(h) = &host {
                    self.reserve(id, h, &resources, true);
                }
                (e, host)
            };
            let Some(host) = host else {
                crate::metrics::placement_failed(&explanation);
                return Err(ApiError::NoHost(explanation.summary()));
            };
            let r = self.write(make(&host)).await;
            self.reserve(id, &host, &resources, false);
            match r {
                Err(ApiError::Cmd(e)) if e.code == CmdErrorCode::Aborted => continue,
                other => {
                    metrics::counter!("andromede_placements_total").increment(1);
                    return other;
                }
            }
        }
        Err(ApiError::Unavailable(
            "placement kept racing with concurrent changes; retry".into(),
        ))
    }

    async fn place_instance(&self, inst: Instance) -> Result<Reply, ApiError> {
        let m = inst.meta.clone().unwrap_or_default();
        if let Some(r) = self.read(|s| s.replay(&m.project_id, &m.request_id)) {
            return Ok(r);
        }
        let resources = inst.resources.unwrap_or_default();
        let build = |s: &State| -> Result<PlanInput, ApiError> {
            let p = s
                .projects
                .get(&m.project_id)
                .ok_or_else(|| ApiError::NotFound(format!("project {} not found", m.project_id)))?;
            Ok(PlanInput {
                policy: p.policy.clone().unwrap_or_default(),
                constraints: inst.constraints.clone().unwrap_or_default(),
                group: if inst.server_group_id.is_empty() {
                    None
                } else {
                    s.group_rule(&inst.server_group_id)
                },
                pin_host: None,
            })
        };
        self.place_and_write(&m.id, resources, build, |host| {
            let mut i = inst.clone();
            i.host_id = host.to_string();
            Command::CreateInstance(i)
        })
        .await
    }

    async fn place_volume(&self, vol: Volume, near: String) -> Result<Reply, ApiError> {
        let m = vol.meta.clone().unwrap_or_default();
        if let Some(r) = self.read(|s| s.replay(&m.project_id, &m.request_id)) {
            return Ok(r);
        }
        let resources = Resources {
            disk_gib: vol.size_gib,
            ..Default::default()
        };
        let build = |s: &State| -> Result<PlanInput, ApiError> {
            let p = s
                .projects
                .get(&m.project_id)
                .ok_or_else(|| ApiError::NotFound(format!("project {} not found", m.project_id)))?;
            let pin_host = if near.is_empty() {
                None
            } else {
                Some(
                    s.instances
                        .get(&near)
                        .map(|i| i.host_id.clone())
                        .ok_or_else(|| ApiError::NotFound(format!("instance {near} not found")))?,
                )
            };
            Ok(PlanInput {
                policy: p.policy.clone().unwrap_or_default(),
                constraints: vol.constraints.clone().unwrap_or_default(),
                group: None,
                pin_host,
            })
        };
        self.place_and_write(&m.id, resources, build, |host| {
            let mut v = vol.clone();
            v.host_id = host.to_string();
            Command::CreateVolume(v)
        })
        .await
    }

    /// Explains a placement without making it.
    pub fn explain(&self, input: PlanInput, resources: Resources) -> Explanation {
        let req = Request {
            policy: &input.policy,
            constraints: &input.constraints,
            resources,
            group: input.group,
            pin_host: input.pin_host,
            strategy: self.strategy,
        };
        // A dry run weighs every host, so it shows the whole picture.
        self.plan_with(&req, None)
    }

    /// Waits until this node has applied everything the leader had committed when called.
    pub async fn read_barrier(&self, stale: bool) -> Result<(), ApiError> {
        if stale {
            return Ok(());
        }
        for attempt in 0..50 {
            match self.leader() {
                // A quorum check can miss its deadline on a starved machine without any
                // election: ask again a few times before reporting the node unavailable.
                Some((id, _)) if id == self.id => match self.raft.ensure_linearizable().await {
                    Ok(_) => return Ok(()),
                    Err(e) if attempt >= 5 => {
                        return Err(ApiError::Unavailable(format!(
                            "cannot confirm leadership: {e}"
                        )))
                    }
                    Err(_) => {}
                },
                Some((id, addr)) => match self.peers.read_index(id, &addr).await {
                    Ok(index) => {
                        self.raft
                            .wait(Some(Duration::from_secs(5)))
                            .applied_index_at_least(Some(index), "read barrier")
                            .await
                            .map_err(|e| ApiError::Unavailable(format!("read barrier: {e}")))?;
                        return Ok(());
                    }
                    Err(ApiError::NotLeader) => {}
                    Err(e) => return Err(e),
                },
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(if attempt < 10 { 20 } else { 60 })).await;
        }
        Err(ApiError::Unavailable(
            "no Raft leader elected; retry later".into(),
        ))
    }

    /// Leader side of a follower's read barrier.
    pub async fn read_index(&self) -> Result<u64, ApiError> {
        match self.raft.ensure_linearizable().await {
            Ok(l) => Ok(l.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(_)) => Err(ApiError::NotLeader),
            Err(e) => Err(ApiError::Unavailable(e.to_string())),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader().is_some_and(|(id, _)| id == self.id)
    }

    pub fn members(&self) -> BTreeMap<u64, String> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }
}

/// What placement needs to know besides the resources.
pub struct PlanInput {
    pub policy: andromede_api::v1::SovereigntyPolicy,
    pub constraints: andromede_api::v1::PlacementConstraints,
    pub group: Option<andromede_placement::GroupRule>,
    pub pin_host: Option<String>,
}

fn write_err(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> ApiError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ApiError::NotLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            ApiError::Precondition(c.to_string())
        }
        RaftError::Fatal(f) => ApiError::Unavailable(format!("raft stopped: {f}")),
    }
}
