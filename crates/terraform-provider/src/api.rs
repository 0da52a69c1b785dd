//! The provider's use of the andromede-client crate: a lazily connected client, calls under a
//! deadline, creates retried with their request id, and the server's answer with a hint at the
//! provider's settings.

use std::future::Future;

use andromede_client::{with_deadline, Client, ConnectError, Retry, DEFAULT_CALL_TIMEOUT};
use tonic::{Code, Status};

pub use andromede_client::DEFAULT_ENDPOINT;

/// Cheap to clone: every clone shares one HTTP/2 connection.
pub type Api = Client;

/// Connects lazily, so that `terraform validate` and plans of data-free configurations work
/// before the cloud is reachable; the first call reports a connection failure.
/// `ca_cert` is the PEM text of the cluster CA an https endpoint is verified against.
pub fn connect(
    endpoint: &str,
    token: Option<&str>,
    ca_cert: Option<&str>,
) -> Result<Api, ConnectError> {
    Client::builder(endpoint)
        .token(token)
        .ca_cert(ca_cert)
        .connect_lazy()
}

/// Runs one unary call under the client's default deadline.
pub async fn call<T, F>(fut: F) -> Result<T, Status>
where
    F: Future<Output = Result<tonic::Response<T>, Status>>,
{
    with_deadline(DEFAULT_CALL_TIMEOUT, fut).await
}

/// Runs a create, retrying transient failures. `attempt` must send the same request id every
/// time so that the server answers a retry of an applied create with its first result.
pub async fn create_with_retry<T, F, Fut>(attempt: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    Retry::CREATE
        .run(Some(DEFAULT_CALL_TIMEOUT), |_, _| {}, attempt)
        .await
}

/// The server's whole answer, with a hint where the fix is a provider setting.
pub fn describe(status: &Status) -> String {
    let mut out = andromede_client::describe(status);
    match status.code() {
        Code::Unauthenticated => out
            .push_str("\nhint: set `token` in the provider block or the ANDROMEDE_TOKEN variable"),
        Code::PermissionDenied => out.push_str(
            "\nhint: the provider's token lacks the role for this: creating or deleting a \
             project, its quota and flavors need a cloud-admin token; instances, volumes and \
             server groups a member token of their project (docs/terraform.md, Tokens and roles)",
        ),
        Code::Unavailable => out.push_str(
            "\nhint: check that an andromede-server runs at the provider's endpoint \
             (`endpoint` or ANDROMEDE_ENDPOINT)",
        ),
        _ => {}
    }
    out
}
