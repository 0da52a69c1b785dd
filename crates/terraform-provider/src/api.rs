//! The connection to the Andromède API: an authenticated tonic channel, the generated clients,
//! and the rendering of a failed call (status, rich details) into diagnostic text.

use std::future::Future;
use std::time::Duration;

use andromede_api::v1::compute_service_client::ComputeServiceClient;
use andromede_api::v1::identity_service_client::IdentityServiceClient;
use andromede_api::v1::infrastructure_service_client::InfrastructureServiceClient;
use andromede_api::v1::volume_service_client::VolumeServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7400";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One unary call never waits longer than this; the long waits are polls of short calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CREATE_RETRIES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the endpoint `{0}` is not a valid URL: {1}")]
    BadEndpoint(String, String),
    #[error("the token contains characters not allowed in a gRPC header")]
    BadToken,
}

/// Adds `authorization: Bearer …` to every call.
#[derive(Clone)]
pub struct BearerAuth(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

pub type Svc = InterceptedService<Channel, BearerAuth>;

/// Cheap to clone: every clone shares one HTTP/2 connection.
#[derive(Clone)]
pub struct Api {
    channel: Channel,
    auth: BearerAuth,
}

impl Api {
    /// Connects lazily, so that `terraform validate` and plans of data-free configurations work
    /// before the cloud is reachable; the first call reports a connection failure.
    pub fn new(endpoint: &str, token: Option<&str>) -> Result<Self, ConfigError> {
        let auth = match token.filter(|t| !t.is_empty()) {
            None => BearerAuth(None),
            Some(t) => {
                // The parse error would quote the token, so it is replaced by one that does not.
                let mut v = MetadataValue::try_from(format!("Bearer {t}"))
                    .map_err(|_| ConfigError::BadToken)?;
                v.set_sensitive(true);
                BearerAuth(Some(v))
            }
        };
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| ConfigError::BadEndpoint(endpoint.to_owned(), e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .connect_lazy();
        Ok(Api { channel, auth })
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
}

/// Runs one unary call with a deadline.
pub async fn call<T, F>(fut: F) -> Result<T, Status>
where
    F: Future<Output = Result<tonic::Response<T>, Status>>,
{
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// Runs a create, retrying transient failures. `attempt` must send the same request id every
/// time so that the server answers a retry of an applied create with its first result.
pub async fn create_with_retry<T, F, Fut>(mut attempt: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut retries = 0;
    loop {
        match call(attempt()).await {
            Err(status) if is_transient(&status) && retries < CREATE_RETRIES => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(500 * (1 << (retries - 1)))).await;
            }
            other => return other,
        }
    }
}

/// Whether retrying the very same request may succeed.
pub fn is_transient(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
}

pub fn code_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The server's whole answer: the code, its message kept as is (a refused placement explains
/// itself per filter over several lines) and every violation carried in the error details.
pub fn describe(status: &Status) -> String {
    let mut out = format!("{}: {}", code_words(status.code()), status.message());
    let details = status.get_error_details();
    if let Some(br) = details.bad_request() {
        for v in &br.field_violations {
            out.push_str(&format!("\n  - {}: {}", v.field, v.description));
        }
    }
    if let Some(pf) = details.precondition_failure() {
        for v in &pf.violations {
            let subject = if v.subject.is_empty() {
                &v.r#type
            } else {
                &v.subject
            };
            out.push_str(&format!("\n  - {subject}: {}", v.description));
        }
    }
    if let Some(qf) = details.quota_failure() {
        for v in &qf.violations {
            out.push_str(&format!("\n  - {}: {}", v.subject, v.description));
        }
    }
    if let Some(help) = details.help() {
        for link in &help.links {
            out.push_str(&format!("\n  see {}: {}", link.description, link.url));
        }
    }
    match status.code() {
        Code::Unauthenticated => out
            .push_str("\nhint: set `token` in the provider block or the ANDROMEDE_TOKEN variable"),
        Code::Unavailable => out.push_str(
            "\nhint: check that an andromede-server runs at the provider's endpoint \
             (`endpoint` or ANDROMEDE_ENDPOINT)",
        ),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn describe_keeps_the_message_and_lists_violations() {
        let mut d = ErrorDetails::new();
        d.add_precondition_failure_violation("POLICY", "constraints.countries[0]", "US is out");
        let s = Status::with_error_details(
            Code::FailedPrecondition,
            "no host fits\n  policy: 3 excluded",
            d,
        );
        let text = describe(&s);
        assert!(text.starts_with("failed precondition: no host fits\n  policy: 3 excluded"));
        assert!(
            text.contains("\n  - constraints.countries[0]: US is out"),
            "{text}"
        );
    }

    #[test]
    fn rejects_tokens_that_cannot_be_headers() {
        assert!(matches!(
            Api::new("http://x:1", Some("a\nb")),
            Err(ConfigError::BadToken)
        ));
    }
}
