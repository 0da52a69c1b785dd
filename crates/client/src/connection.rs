//! The authenticated channel: one HTTP/2 connection with the bearer token on every call, the
//! generated service clients over it, and where the leader is.

use std::future::Future;
use std::time::Duration;

use andromede_api::v1::cluster_service_client::ClusterServiceClient;
use andromede_api::v1::compute_service_client::ComputeServiceClient;
use andromede_api::v1::event_service_client::EventServiceClient;
use andromede_api::v1::identity_service_client::IdentityServiceClient;
use andromede_api::v1::infrastructure_service_client::InfrastructureServiceClient;
use andromede_api::v1::placement_service_client::PlacementServiceClient;
use andromede_api::v1::volume_service_client::VolumeServiceClient;
use andromede_api::v1::{ClusterMember, ClusterStatus, ClusterStatusRequest};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::errors::ConnectError;
use crate::retry::{with_deadline, Retry};
use crate::DEFAULT_CALL_TIMEOUT;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Adds `authorization: Bearer …` to every call (nothing without a token).
#[derive(Clone, Default)]
pub struct BearerAuth(Option<MetadataValue<Ascii>>);

impl BearerAuth {
    /// An empty token counts as none.
    pub fn new(token: Option<&str>) -> Result<Self, ConnectError> {
        match token.filter(|t| !t.is_empty()) {
            None => Ok(BearerAuth(None)),
            Some(t) => {
                // The parse error would quote the token, so it is replaced by one that does not.
                let mut v = MetadataValue::try_from(format!("Bearer {t}"))
                    .map_err(|_| ConnectError::BadToken)?;
                v.set_sensitive(true);
                Ok(BearerAuth(Some(v)))
            }
        }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// The transport every generated client runs on.
pub type Svc = InterceptedService<Channel, BearerAuth>;

/// How to reach one server; [`Client::builder`] starts one.
pub struct ClientBuilder {
    endpoint: String,
    token: Option<String>,
    ca_cert: Option<String>,
    connect_timeout: Duration,
    call_timeout: Duration,
    nodelay: bool,
}

impl ClientBuilder {
    pub fn token(mut self, token: Option<&str>) -> Self {
        self.token = token.map(str::to_owned);
        self
    }

    /// The CA (PEM) an `https://` endpoint's certificate must come from; with none, an
    /// https endpoint is refused (there is no system trust store here on purpose: a cluster
    /// trusts its own CA).
    pub fn ca_cert(mut self, pem: Option<&str>) -> Self {
        self.ca_cert = pem.map(str::to_owned);
        self
    }

    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// The deadline of [`Client::call`] and of each retried attempt.
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// Sends small requests at once rather than batching them (for latency measurements).
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    fn parts(&self) -> Result<(Endpoint, BearerAuth), ConnectError> {
        let auth = BearerAuth::new(self.token.as_deref())?;
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|e| ConnectError::BadEndpoint {
                endpoint: self.endpoint.clone(),
                reason: e.to_string(),
            })?
            .connect_timeout(self.connect_timeout)
            .tcp_keepalive(Some(KEEPALIVE))
            .tcp_nodelay(self.nodelay);
        let endpoint =
            match (&self.ca_cert, self.endpoint.starts_with("https://")) {
                (Some(ca), _) => endpoint
                    .tls_config(
                        tonic::transport::ClientTlsConfig::new()
                            .ca_certificate(tonic::transport::Certificate::from_pem(ca.as_bytes())),
                    )
                    .map_err(|e| ConnectError::BadEndpoint {
                        endpoint: self.endpoint.clone(),
                        reason: format!("TLS settings: {e}"),
                    })?,
                (None, true) => return Err(ConnectError::BadEndpoint {
                    endpoint: self.endpoint.clone(),
                    reason:
                        "an https endpoint needs the cluster CA (ANDROMEDE_CA_CERT or --ca-cert)"
                            .into(),
                }),
                (None, false) => endpoint,
            };
        Ok((endpoint, auth))
    }

    fn client(self, channel: Channel, auth: BearerAuth) -> Client {
        Client {
            channel,
            auth,
            endpoint: self.endpoint,
            call_timeout: self.call_timeout,
        }
    }

    /// Connects now, so that an unreachable server is reported here, naming the endpoint.
    pub async fn connect(self) -> Result<Client, ConnectError> {
        let (endpoint, auth) = self.parts()?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ConnectError::Unreachable {
                endpoint: self.endpoint.clone(),
                reason: error_chain(&e),
            })?;
        Ok(self.client(channel, auth))
    }

    /// Connects on the first call, which then reports an unreachable server.
    pub fn connect_lazy(self) -> Result<Client, ConnectError> {
        let (endpoint, auth) = self.parts()?;
        let channel = endpoint.connect_lazy();
        Ok(self.client(channel, auth))
    }
}

/// Cheap to clone: every clone shares one HTTP/2 connection.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    auth: BearerAuth,
    endpoint: String,
    call_timeout: Duration,
}

impl Client {
    pub fn builder(endpoint: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            endpoint: endpoint.into(),
            token: None,
            ca_cert: None,
            connect_timeout: CONNECT_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            nodelay: false,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    fn svc(&self) -> Svc {
        InterceptedService::new(self.channel.clone(), self.auth.clone())
    }

    pub fn infra(&self) -> InfrastructureServiceClient<Svc> {
        InfrastructureServiceClient::new(self.svc())
    }
    pub fn identity(&self) -> IdentityServiceClient<Svc> {
        IdentityServiceClient::new(self.svc())
    }
    pub fn compute(&self) -> ComputeServiceClient<Svc> {
        ComputeServiceClient::new(self.svc())
    }
    pub fn volumes(&self) -> VolumeServiceClient<Svc> {
        VolumeServiceClient::new(self.svc())
    }
    pub fn placement(&self) -> PlacementServiceClient<Svc> {
        PlacementServiceClient::new(self.svc())
    }
    pub fn events(&self) -> EventServiceClient<Svc> {
        EventServiceClient::new(self.svc())
    }
    pub fn cluster(&self) -> ClusterServiceClient<Svc> {
        ClusterServiceClient::new(self.svc())
    }

    /// Runs one unary call under the call timeout (DEADLINE_EXCEEDED past it).
    pub async fn call<T, F>(&self, fut: F) -> Result<T, Status>
    where
        F: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        with_deadline(self.call_timeout, fut).await
    }

    /// Runs `attempt` under `policy`, each attempt under the call timeout; `on_retry` hears of
    /// every failure that is retried, with the retry's number (from 1).
    pub async fn retried<T, F, Fut>(
        &self,
        policy: &Retry,
        on_retry: impl FnMut(&Status, u32),
        attempt: F,
    ) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        policy.run(Some(self.call_timeout), on_retry, attempt).await
    }

    /// The leader as this server knows it: every server forwards writes to it, so a client
    /// that sends many talks to it directly and saves a hop.
    pub async fn leader(&self) -> Result<Option<ClusterMember>, Status> {
        let st = self
            .call(self.cluster().status(ClusterStatusRequest {}))
            .await?;
        Ok(leader_hint(&st).cloned())
    }
}

/// The leader among the members of a status, if one is elected.
pub fn leader_hint(status: &ClusterStatus) -> Option<&ClusterMember> {
    if status.leader_id == 0 {
        return None;
    }
    status
        .members
        .iter()
        .find(|m| m.node_id == status.leader_id)
}

/// A transport error with its causes, each said once.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interceptor_adds_the_bearer_header() {
        let mut auth = match BearerAuth::new(Some("abc")) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        let req = match auth.call(tonic::Request::new(())) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let value = req.metadata().get("authorization").map(|v| v.to_str().ok());
        assert_eq!(value, Some(Some("Bearer abc")));
    }

    #[test]
    fn no_or_empty_token_sends_no_header() {
        for token in [None, Some("")] {
            let mut auth = match BearerAuth::new(token) {
                Ok(a) => a,
                Err(e) => panic!("{e}"),
            };
            let req = auth.call(tonic::Request::new(())).ok();
            assert!(req.is_some_and(|r| r.metadata().get("authorization").is_none()));
        }
    }

    #[test]
    fn bad_tokens_and_endpoints_are_refused_without_quoting_the_token() {
        let err = Client::builder("http://x:1")
            .token(Some("s3cret\nx"))
            .connect_lazy()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("token") && !err.contains("s3cret"), "{err}");
        let err = Client::builder("not a url")
            .connect_lazy()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("not a url"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_server_names_the_endpoint() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let endpoint = format!("http://127.0.0.1:{port}");
        let err = Client::builder(endpoint.clone())
            .connect()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(&endpoint), "{err}");
    }

    #[test]
    fn the_leader_is_found_among_the_members() {
        let member = |id: u64| ClusterMember {
            node_id: id,
            addr: format!("10.0.0.{id}:7400"),
            ..Default::default()
        };
        let mut st = ClusterStatus {
            leader_id: 2,
            members: vec![member(1), member(2), member(3)],
            ..Default::default()
        };
        assert_eq!(
            leader_hint(&st).map(|m| m.addr.as_str()),
            Some("10.0.0.2:7400")
        );
        st.leader_id = 0;
        assert!(leader_hint(&st).is_none());
    }
}
