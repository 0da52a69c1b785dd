//! The authorization layer: before any handler runs, a call's method is looked up in
//! [`andromede_auth::ACCESS`], its credential checked against the replicated tokens (this
//! server's applied state: no quorum read, no proposal), and the caller's [`Principal`] handed to
//! the handler. A method the table does not list is refused.

use crate::network::CLUSTER_HEADER;
use crate::node::Node;
use andromede_auth::{Access, Principal};
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

/// Decides one call: `Ok(Some(p))` for a token caller, `Ok(None)` for a call that needs no
/// token (public, agent, peer), or the refusal.
pub fn authorize(
    node: &Node,
    cluster_token: &str,
    path: &str,
    headers: &http::HeaderMap,
) -> Result<Option<Principal>, Status> {
    let Some(access) = andromede_auth::access(path) else {
        return Err(Status::unimplemented(format!(
            "no such method {path:?} on this server"
        )));
    };
    match access {
        Access::Public | Access::Agent => Ok(None),
        Access::Peer => {
            let ok = headers
                .get(CLUSTER_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| constant_time_eq(t.as_bytes(), cluster_token.as_bytes()));
            if ok {
                Ok(None)
            } else {
                Err(Status::unauthenticated(
                    "server-to-server call without this cluster's credential",
                ))
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
            Ok(Some(p))
        }
    }
}

/// Tower layer applying [`authorize`] to every call of the listener.
#[derive(Clone)]
pub struct AuthLayer {
    pub node: Arc<Node>,
    pub cluster_token: Arc<String>,
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
    cluster_token: Arc<String>,
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
            &self.cluster_token,
            req.uri().path(),
            req.headers(),
        ) {
            Ok(p) => {
                if let Some(p) = p {
                    req.extensions_mut().insert(p);
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
