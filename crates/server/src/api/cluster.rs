//! ClusterService: status and membership changes (run on the leader).

use super::Api;
use crate::error::ApiError;
use crate::node::Proposal;
use andromede_api::v1::cluster_service_server::ClusterService;
use andromede_api::v1::*;
use openraft::{BasicNode, ServerState};
use std::collections::BTreeMap;
use tonic::{Request, Response, Status};

type R<T> = Result<Response<T>, Status>;

impl Api {
    /// Records the datacenter a server runs in, refused when a project's policy excludes it.
    async fn locate(&self, node_id: u64, datacenter: &str) -> Result<(), ApiError> {
        if datacenter.is_empty() {
            return Err(ApiError::invalid("datacenter", "must name a datacenter"));
        }
        let dc = self
            .read(false, |s| {
                s.find::<Datacenter>("", datacenter)
                    .and_then(|d| d.meta.as_ref().map(|m| m.id.clone()))
            })
            .await?
            .ok_or_else(|| {
                ApiError::missing("datacenter", format!("datacenter {datacenter:?} not found"))
            })?;
        self.node
            .submit(Proposal::Cmd(andromede_store::Command::LocateReplica {
                node_id,
                datacenter_id: dc,
            }))
            .await?;
        Ok(())
    }

    fn status(&self) -> ClusterStatus {
        let m = self.node.raft.metrics();
        let m = m.borrow().clone();
        let mem = m.membership_config.membership();
        let voters: Vec<u64> = mem.voter_ids().collect();
        let matched: BTreeMap<u64, u64> = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, l)| (*id, l.map(|l| l.index).unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        let located = self.node.read(|s| s.replicas.clone());
        let members = mem
            .nodes()
            .map(|(id, n)| ClusterMember {
                datacenter_id: located.get(id).cloned().unwrap_or_default(),
                node_id: *id,
                addr: n.addr.clone(),
                role: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                }
                .into(),
                leader: m.current_leader == Some(*id),
                matched_index: matched.get(id).copied().unwrap_or(0),
            })
            .collect();
        ClusterStatus {
            node_id: m.id,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            committed_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            connected_agents: self.node.agents.connected() as u64,
            members,
            state: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .into(),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
        }
    }
}

fn check_addr(addr: &str) -> Result<(), ApiError> {
    let a = addr.trim_start_matches("http://");
    if a.parse::<std::net::SocketAddr>().is_err() && !a.contains(':') {
        return Err(ApiError::invalid("addr", "must be host:port"));
    }
    Ok(())
}

#[tonic::async_trait]
impl ClusterService for Api {
    async fn status(&self, _r: Request<ClusterStatusRequest>) -> R<ClusterStatus> {
        Ok(Response::new(Api::status(self)))
    }

    async fn add_learner(&self, r: Request<AddLearnerRequest>) -> R<ClusterStatus> {
        let r = r.into_inner();
        if r.node_id == 0 {
            return Err(ApiError::invalid("node_id", "must be greater than 0").into());
        }
        check_addr(&r.addr)?;
        if r.datacenter.is_empty() {
            return Err(ApiError::invalid(
                "datacenter",
                "must name the datacenter the new server runs in: it will hold every project's metadata, so it is checked against every project's policy before it receives any entry",
            )
            .into());
        }
        // Located (and checked against every project) before it receives any data.
        self.locate(r.node_id, &r.datacenter).await?;
        let added = self
            .node
            .submit(Proposal::AddLearner {
                node_id: r.node_id,
                addr: r.addr,
            })
            .await;
        if let Err(e) = added {
            if !self.node.members().contains_key(&r.node_id) {
                // A location for a server that never joined would bind future policies.
                let forget = andromede_store::Command::ForgetReplica { node_id: r.node_id };
                if let Err(f) = self.node.submit(Proposal::Cmd(forget)).await {
                    tracing::warn!(node_id = r.node_id, error = %f, "could not forget the location of a server that did not join");
                }
            }
            return Err(e.into());
        }
        Ok(Response::new(Api::status(self)))
    }

    async fn promote(&self, r: Request<PromoteRequest>) -> R<ClusterStatus> {
        let r = r.into_inner();
        if r.node_ids.is_empty() {
            return Err(ApiError::invalid("node_ids", "must name at least one node").into());
        }
        let members = self.node.members();
        for (i, id) in r.node_ids.iter().enumerate() {
            if !members.contains_key(id) {
                return Err(ApiError::invalid(
                    &format!("node_ids[{i}]"),
                    format!("node {id} is not a learner; add it first"),
                )
                .into());
            }
        }
        self.node
            .submit(Proposal::Promote {
                node_ids: r.node_ids,
            })
            .await?;
        Ok(Response::new(Api::status(self)))
    }

    async fn remove_node(&self, r: Request<RemoveNodeRequest>) -> R<ClusterStatus> {
        let r = r.into_inner();
        self.node
            .submit(Proposal::RemoveNode { node_id: r.node_id })
            .await?;
        self.node
            .submit(Proposal::Cmd(andromede_store::Command::ForgetReplica {
                node_id: r.node_id,
            }))
            .await?;
        Ok(Response::new(Api::status(self)))
    }

    async fn locate_node(&self, r: Request<LocateNodeRequest>) -> R<ClusterStatus> {
        let r = r.into_inner();
        if !self.node.members().contains_key(&r.node_id) {
            return Err(ApiError::invalid(
                "node_id",
                format!("node {} is not a member of the cluster", r.node_id),
            )
            .into());
        }
        self.locate(r.node_id, &r.datacenter).await?;
        Ok(Response::new(Api::status(self)))
    }

    async fn initialize(&self, _r: Request<InitializeRequest>) -> R<ClusterStatus> {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            self.node.id,
            BasicNode {
                addr: self.node.addr.clone(),
            },
        );
        self.node
            .raft
            .initialize(nodes)
            .await
            .map_err(|e| Status::failed_precondition(format!("cannot initialize: {e}")))?;
        Ok(Response::new(Api::status(self)))
    }
}
