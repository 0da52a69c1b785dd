//! The internal service other servers call: Raft RPCs, forwarded writes and read index.

use crate::error::ApiError;
use crate::node::{Node, Proposal};
use andromede_api::v1::internal_service_server::InternalService;
use andromede_api::v1::{
    ConsoleLogReply, ConsoleLogRequest, RaftPayload, ReadIndexRequest, ReadIndexResponse,
};
use andromede_model::validate::{Violation, Violations};
use andromede_store::command::{CmdError, Reply};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// [`ApiError`] as it crosses between servers.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardError {
    Invalid(Vec<(String, String)>),
    Cmd(CmdError),
    NotFound(String),
    Precondition(String),
    NoHost(String),
    Unavailable(String),
    NotLeader,
    Internal(String),
}

impl From<ApiError> for ForwardError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Invalid(v) => {
                ForwardError::Invalid(v.0.into_iter().map(|x| (x.field, x.description)).collect())
            }
            ApiError::Cmd(c) => ForwardError::Cmd(c),
            ApiError::NotFound(m) => ForwardError::NotFound(m),
            ApiError::Precondition(m) => ForwardError::Precondition(m),
            ApiError::NoHost(m) => ForwardError::NoHost(m),
            ApiError::Unavailable(m) => ForwardError::Unavailable(m),
            ApiError::NotLeader => ForwardError::NotLeader,
            ApiError::Internal(m) => ForwardError::Internal(m),
        }
    }
}

impl From<ForwardError> for ApiError {
    fn from(e: ForwardError) -> Self {
        match e {
            ForwardError::Invalid(v) => ApiError::Invalid(Violations(
                v.into_iter()
                    .map(|(field, description)| Violation { field, description })
                    .collect(),
            )),
            ForwardError::Cmd(c) => ApiError::Cmd(c),
            ForwardError::NotFound(m) => ApiError::NotFound(m),
            ForwardError::Precondition(m) => ApiError::Precondition(m),
            ForwardError::NoHost(m) => ApiError::NoHost(m),
            ForwardError::Unavailable(m) => ApiError::Unavailable(m),
            ForwardError::NotLeader => ApiError::NotLeader,
            ForwardError::Internal(m) => ApiError::Internal(m),
        }
    }
}

pub struct Internal {
    pub node: Arc<Node>,
}

/// Over mutual TLS, a Raft message must come from the server it says it is from: the vote's
/// node (the leader or the candidate) is the certificate's. Over plaintext there is no
/// certificate to compare with.
fn from_itself<T>(
    r: &Request<T>,
    vote: &openraft::Vote<andromede_store::NodeId>,
) -> Result<(), Status> {
    let Some(peer) = r.extensions().get::<crate::auth::ServerPeer>() else {
        return Ok(());
    };
    let claimed = vote.leader_id().node_id;
    if claimed != peer.node_id {
        tracing::warn!(
            certificate = peer.node_id,
            claimed,
            "refused a Raft message from a server speaking for another"
        );
        return Err(Status::permission_denied(format!(
            "server {} may not speak for server {claimed}",
            peer.node_id
        )));
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(p: &RaftPayload) -> Result<T, Status> {
    serde_json::from_slice(&p.data).map_err(|e| Status::invalid_argument(format!("payload: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(v)
        .map(|data| Response::new(RaftPayload { data }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl InternalService for Internal {
    async fn append_entries(
        &self,
        r: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let req: openraft::raft::AppendEntriesRequest<andromede_store::TypeConfig> =
            decode(r.get_ref())?;
        from_itself(&r, &req.vote)?;
        encode(&self.node.raft.append_entries(req).await)
    }

    async fn vote(&self, r: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let req: openraft::raft::VoteRequest<andromede_store::NodeId> = decode(r.get_ref())?;
        from_itself(&r, &req.vote)?;
        encode(&self.node.raft.vote(req).await)
    }

    async fn install_snapshot(
        &self,
        r: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let req: openraft::raft::InstallSnapshotRequest<andromede_store::TypeConfig> =
            decode(r.get_ref())?;
        from_itself(&r, &req.vote)?;
        encode(&self.node.raft.install_snapshot(req).await)
    }

    async fn forward(&self, r: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let p: Proposal = decode(r.get_ref())?;
        let res: Result<Reply, ForwardError> =
            self.node.submit_local(p).await.map_err(ForwardError::from);
        encode(&res)
    }

    async fn console_log(
        &self,
        r: Request<ConsoleLogRequest>,
    ) -> Result<Response<ConsoleLogReply>, Status> {
        let r = r.into_inner();
        if !self.node.is_leader() {
            return Err(Status::failed_precondition("not the leader"));
        }
        let host = self
            .node
            .read(|s| s.instances.get(&r.instance_id).map(|i| i.host_id.clone()))
            .ok_or_else(|| Status::not_found(format!("instance {} not found", r.instance_id)))?;
        let data = self
            .node
            .agents
            .console_log(&host, &r.instance_id, r.max_bytes)
            .await?;
        Ok(Response::new(ConsoleLogReply {
            request_id: r.request_id,
            data,
            error: String::new(),
        }))
    }

    async fn read_index(
        &self,
        _r: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        match self.node.read_index().await {
            Ok(index) => Ok(Response::new(ReadIndexResponse { index })),
            Err(ApiError::NotLeader) => Err(Status::failed_precondition("not the leader")),
            Err(e) => Err(e.into()),
        }
    }
}
