//! Server-to-server transport on tonic: the openraft network, write forwarding and read index.

use crate::error::ApiError;
use crate::node::Proposal;
use andromede_api::v1::internal_service_client::InternalServiceClient;
use andromede_api::v1::{RaftPayload, ReadIndexRequest};
use andromede_store::command::Reply;
use andromede_store::{NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

pub const CLUSTER_HEADER: &str = "x-andromede-cluster-token";

/// Lazily connected channels to the other servers, keyed by address.
#[derive(Clone)]
pub struct Peers {
    /// Over plaintext: the shared secret sent with every call.
    token: Option<Arc<String>>,
    /// Over TLS: this server's certificate (presented to its peers) and the cluster CA (their
    /// certificates must chain to it).
    tls: Option<Arc<crate::tls::Tls>>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

fn url(addr: &str, tls: bool) -> String {
    let bare = addr
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    format!("{}://{bare}", if tls { "https" } else { "http" })
}

impl Peers {
    pub fn new(token: Option<String>, tls: Option<crate::tls::Tls>) -> Self {
        Self {
            token: token.map(Arc::new),
            tls: tls.map(Arc::new),
            channels: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut m = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = m.get(addr) {
            return Ok(c.clone());
        }
        let mut e = Endpoint::from_shared(url(addr, self.tls.is_some()))?;
        if let Some(t) = &self.tls {
            e = e.tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(t.ca.as_bytes()))
                    .identity(tonic::transport::Identity::from_pem(&t.cert, &t.key)),
            )?;
        }
        let c = e
            .connect_timeout(std::time::Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(std::time::Duration::from_secs(10))
            .connect_lazy();
        m.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    fn request<T>(&self, msg: T, timeout: std::time::Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(timeout);
        if let Some(Ok(v)) = self
            .token
            .as_ref()
            .map(|t| MetadataValue::try_from(t.as_str()))
        {
            r.metadata_mut().insert(CLUSTER_HEADER, v);
        }
        r
    }

    pub async fn forward(&self, _leader: u64, addr: &str, p: &Proposal) -> Result<Reply, ApiError> {
        let ch = self
            .channel(addr)
            .map_err(|e| ApiError::Unavailable(format!("leader {addr}: {e}")))?;
        let data = serde_json::to_vec(p).map_err(|e| ApiError::Internal(e.to_string()))?;
        let resp = InternalServiceClient::new(ch)
            .forward(self.request(RaftPayload { data }, std::time::Duration::from_secs(30)))
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unavailable => ApiError::NotLeader,
                _ => ApiError::Unavailable(format!("forwarding to leader {addr}: {}", s.message())),
            })?;
        let r: Result<Reply, crate::internal::ForwardError> =
            serde_json::from_slice(&resp.into_inner().data)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
        r.map_err(Into::into)
    }

    /// An instance's console log, through the leader (which holds the agents' streams).
    pub async fn console_log(
        &self,
        addr: &str,
        req: andromede_api::v1::ConsoleLogRequest,
    ) -> Result<Vec<u8>, ApiError> {
        let ch = self
            .channel(addr)
            .map_err(|e| ApiError::Unavailable(format!("leader {addr}: {e}")))?;
        let resp = InternalServiceClient::new(ch)
            .console_log(self.request(req, std::time::Duration::from_secs(15)))
            .await
            .map_err(|s| match s.code() {
                tonic::Code::FailedPrecondition if s.message() == "not the leader" => {
                    ApiError::NotLeader
                }
                tonic::Code::FailedPrecondition => ApiError::Precondition(s.message().into()),
                tonic::Code::NotFound => ApiError::NotFound(s.message().into()),
                _ => ApiError::Unavailable(s.message().to_string()),
            })?;
        Ok(resp.into_inner().data)
    }

    pub async fn read_index(&self, _leader: u64, addr: &str) -> Result<u64, ApiError> {
        let ch = self
            .channel(addr)
            .map_err(|e| ApiError::Unavailable(format!("leader {addr}: {e}")))?;
        let resp = InternalServiceClient::new(ch)
            .read_index(self.request(ReadIndexRequest {}, std::time::Duration::from_secs(5)))
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unavailable | tonic::Code::FailedPrecondition => ApiError::NotLeader,
                _ => ApiError::Unavailable(s.message().to_string()),
            })?;
        Ok(resp.into_inner().index)
    }
}

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            peers: self.clone(),
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    peers: Peers,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        which: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let ch = self
            .peers
            .channel(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let data = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = InternalServiceClient::new(ch)
            .max_decoding_message_size(1 << 30)
            .max_encoding_message_size(1 << 30);
        let r = self.peers.request(RaftPayload { data }, option.hard_ttl());
        let resp = match which {
            Rpc::Append => client.append_entries(r).await,
            Rpc::Vote => client.vote(r).await,
            Rpc::Snapshot => client.install_snapshot(r).await,
        };
        let resp = resp.map_err(|s| match s.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown => {
                RPCError::Unreachable(Unreachable::new(&s))
            }
            _ => RPCError::Network(NetworkError::new(&s)),
        })?;
        let r: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&resp.into_inner().data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
