//! Authenticated gRPC connections to the servers and a retry helper for the setup calls.

use andromede_api::v1::{
    cluster_service_client::ClusterServiceClient, compute_service_client::ComputeServiceClient,
    identity_service_client::IdentityServiceClient,
    infrastructure_service_client::InfrastructureServiceClient,
};
use anyhow::Context;
use std::future::Future;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerAuth {
    value: MetadataValue<Ascii>,
}

impl BearerAuth {
    pub fn new(token: &str) -> anyhow::Result<Self> {
        let mut value = MetadataValue::try_from(format!("Bearer {token}"))
            .context("the token is not a valid gRPC header value")?;
        value.set_sensitive(true);
        Ok(BearerAuth { value })
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.value.clone());
        Ok(request)
    }
}

pub type Svc = InterceptedService<Channel, BearerAuth>;

/// One HTTP/2 connection to one server, with the token attached.
#[derive(Clone)]
pub struct Conn {
    svc: Svc,
}

impl Conn {
    /// Connects eagerly so that a server that is not up yet shows as an error here rather than
    /// as a slow first call during the measured phase.
    pub async fn connect(addr: &str, auth: &BearerAuth) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .with_context(|| format!("endpoint for {addr}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true);
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        Ok(Conn {
            svc: InterceptedService::new(channel, auth.clone()),
        })
    }

    pub fn cluster(&self) -> ClusterServiceClient<Svc> {
        ClusterServiceClient::new(self.svc.clone())
    }
    pub fn infra(&self) -> InfrastructureServiceClient<Svc> {
        InfrastructureServiceClient::new(self.svc.clone())
    }
    pub fn identity(&self) -> IdentityServiceClient<Svc> {
        IdentityServiceClient::new(self.svc.clone())
    }
    pub fn compute(&self) -> ComputeServiceClient<Svc> {
        ComputeServiceClient::new(self.svc.clone())
    }
}

/// Codes worth retrying during setup: a leader change or a transient overload. Setup calls carry
/// a request id, so a retry of a write that did land returns the first result instead of failing.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted
    )
}

/// Runs a setup call, retrying transient failures with a capped exponential backoff.
pub async fn retry<T, F, Fut>(what: &str, mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut delay = Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if retryable(s.code()) && attempt < 10 => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(s) => {
                anyhow::bail!("{what}: {:?}: {}", s.code(), s.message())
            }
        }
    }
}
