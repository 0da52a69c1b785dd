//! Connections to the servers under test and the retry of setup calls, over the
//! andromede-client crate.

use std::future::Future;
use std::time::Duration;

use andromede_client::{describe, Client, Retry};
use anyhow::Context;
use tonic::Status;

/// One HTTP/2 connection to one server, with the run's token attached.
pub type Conn = Client;

/// Connects eagerly so that a server that is not up yet shows as an error here rather than as
/// a slow first call during the measured phase. With `ca` (the cluster CA, PEM) over TLS.
pub async fn connect(addr: &str, token: &str, ca: Option<&str>) -> anyhow::Result<Conn> {
    let scheme = if ca.is_some() { "https" } else { "http" };
    Client::builder(format!("{scheme}://{addr}"))
        .token(Some(token))
        .ca_cert(ca)
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))
}

/// Runs a setup call, retrying a leader change or a transient overload with a capped
/// exponential backoff. Setup calls carry a request id, so a retry of a write that did land
/// returns the first result instead of failing.
pub async fn retry<T, F, Fut>(what: &str, call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    Retry::SETUP
        .run(None, |_, _| {}, call)
        .await
        .map_err(|s| anyhow::anyhow!("{what}: {}", describe(&s)))
}
