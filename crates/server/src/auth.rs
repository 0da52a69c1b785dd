//! The authorization layer: before any handler runs, a call's method is looked up in
//! [`andromede_auth::ACCESS`], its credential checked against the replicated tokens (this
//! server's applied state: no quorum read, no proposal), and the caller's [`Principal`] handed to
//! the handler. Servers and hosts are known by their certificates from the cluster CA (mutual
//! TLS), handed on as [`ServerPeer`] and [`HostPeer`]. A method the table does not list is
//! refused.

use crate::network::CLUSTER_HEADER;
use crate::node::Node;
use andromede_auth::{Access, Principal};
use andromede_pki::PeerRole;
use andromede_store::State;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;

/// Checks a bearer token against the applied state: well-formed, known, the right secret, not
/// revoked, not expired.
pub fn authenticate(s: &State, header: Option<&str>, now_ms: i64) -> Result<Principal, Status> {
    let raw = header
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("no token: send `authorization: Bearer <token>`"))?;
    let parsed =
        andromede_auth::parse(raw.trim()).map_err(|e| Status::unauthenticated(e.to_string()))?;
    let unknown = || Status::unauthenticated("unknown token");
    let t = s.api_tokens.get(&parsed.id).ok_or_else(unknown)?;
    let hash = andromede_auth::sha256_hex(&parsed.secret);
    if !constant_time_eq(hash.as_bytes(), t.secret_sha256.as_bytes()) {
        return Err(unknown());
    }
    let name = t.meta.as_ref().map_or("", |m| m.name.as_str());
    if t.revoked_at_ms != 0 {
        return Err(Status::unauthenticated(format!(
            "token {name:?} ({}) was revoked",
            parsed.id
        )));
    }
    if t.expires_at_ms != 0 && now_ms >= t.expires_at_ms {
        return Err(Status::unauthenticated(format!(
            "token {name:?} ({}) expired",
            parsed.id
        )));
    }
    let project = t.meta.as_ref().map_or("", |m| m.project_id.as_str());
    Ok(Principal {
        token_id: parsed.id,
        token_name: name.to_string(),
        project_id: (!project.is_empty()).then(|| project.to_string()),
        role: andromede_api::v1::Role::try_from(t.role).unwrap_or_default(),
    })
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A server of the cluster, as its certificate names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPeer {
    pub node_id: u64,
}

/// A host's agent, as its certificate names it; whether that certificate is still the host's
/// (not revoked) is for the agent service to check against the replicated state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPeer {
    pub host_id: String,
    pub datacenter_id: String,
    pub serial: String,
}

/// Who a call comes from, once authorized.
#[derive(Debug)]
pub enum Caller {
    Anonymous,
    Token(Principal),
    Server(ServerPeer),
    Host(HostPeer),
}

/// The identity in the client certificate of the connection, which the TLS layer verified
/// against the cluster CA.
fn peer_of(ext: &http::Extensions) -> Option<andromede_pki::Peer> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let certs = ext
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.peer_certs())?;
    andromede_pki::peer_of(certs.first()?)
}

/// Decides one call: who it comes from, or the refusal.
pub fn authorize(
    node: &Node,
    cluster_token: Option<&str>,
    path: &str,
    headers: &http::HeaderMap,
    ext: &http::Extensions,
) -> Result<Caller, Status> {
    let Some(access) = andromede_auth::access(path) else {
        return Err(Status::unimplemented(format!(
            "no such method {path:?} on this server"
        )));
    };
    match access {
        Access::Public | Access::Join => Ok(Caller::Anonymous),
        Access::Peer => match cluster_token {
            // Over plaintext, the shared secret.
            Some(secret) => {
                let ok = headers
                    .get(CLUSTER_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|t| constant_time_eq(t.as_bytes(), secret.as_bytes()));
                if ok {
                    Ok(Caller::Anonymous)
                } else {
                    Err(Status::unauthenticated(
                        "server-to-server call without this cluster's credential",
                    ))
                }
            }
            None => match peer_of(ext).map(|p| p.role) {
                Some(PeerRole::Server { node_id }) => Ok(Caller::Server(ServerPeer { node_id })),
                Some(PeerRole::Host { host_id, .. }) => {
                    tracing::warn!(%host_id, %path, "a host certificate was presented for a server-to-server call");
                    Err(Status::permission_denied(
                        "a host certificate cannot make server-to-server calls",
                    ))
                }
                None => Err(Status::unauthenticated(
                    "server-to-server calls need a server certificate from the cluster CA",
                )),
            },
        },
        Access::Host => {
            if node.tls.is_none() {
                // Over plaintext the agent service checks the host credential itself.
                return Ok(Caller::Anonymous);
            }
            match peer_of(ext) {
                Some(andromede_pki::Peer {
                    role:
                        PeerRole::Host {
                            host_id,
                            datacenter_id,
                        },
                    serial,
                    ..
                }) => Ok(Caller::Host(HostPeer {
                    host_id,
                    datacenter_id,
                    serial,
                })),
                Some(_) => Err(Status::permission_denied(
                    "only a host certificate opens an agent stream",
                )),
                None => Err(Status::unauthenticated(
                    "an agent stream needs the host certificate from enrollment (mutual TLS)",
                )),
            }
        }
        Access::Token { .. } => {
            let header = headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let now = crate::node::now_ms();
            let p = node.read(|s| authenticate(s, header, now))?;
            if !p.allows(access) {
                let method = path.rsplit('/').next().unwrap_or(path);
                let role = andromede_auth::access::role_name(p.project_id.is_none(), p.role);
                return Err(Status::permission_denied(format!(
                    "a {role} token{} may not call {method}",
                    if p.project_id.is_some() {
                        " of a project"
                    } else {
                        ""
                    }
                )));
            }
            Ok(Caller::Token(p))
        }
    }
}

/// Tower layer applying [`authorize`] to every call of the listener.
#[derive(Clone)]
pub struct AuthLayer {
    pub node: Arc<Node>,
    pub cluster_token: Option<Arc<String>>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authorized<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authorized {
            inner,
            node: self.node.clone(),
            cluster_token: self.cluster_token.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authorized<S> {
    inner: S,
    node: Arc<Node>,
    cluster_token: Option<Arc<String>>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Authorized<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match authorize(
            &self.node,
            self.cluster_token.as_deref().map(String::as_str),
            req.uri().path(),
            req.headers(),
            req.extensions(),
        ) {
            Ok(caller) => {
                let ext = req.extensions_mut();
                match caller {
                    Caller::Anonymous => {}
                    Caller::Token(p) => {
                        ext.insert(p);
                    }
                    Caller::Server(p) => {
                        ext.insert(p);
                    }
                    Caller::Host(p) => {
                        ext.insert(p);
                    }
                }
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(req).await })
            }
            Err(status) => {
                tracing::debug!(path = %req.uri().path(), code = ?status.code(), "call refused");
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
