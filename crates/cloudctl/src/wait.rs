//! `--wait`: the client crate's poll-until-state loop, with a spinner on stderr when it is a
//! terminal.

use std::future::Future;
use std::io::IsTerminal;
use std::time::Duration;

use andromede_client::wait::{self, WaitError};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tonic::Status;

pub use andromede_client::wait::Probe;

/// Polls `probe` until it reports `Done` or `Failed`, or `timeout` passes. Transient API errors
/// (a leader election, a restarting node) only delay the wait; any other is returned as is.
pub async fn until<T, F, Fut>(what: &str, target: &str, timeout: Duration, probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Probe<T>, Status>>,
{
    let spinner = spinner();
    let r = wait::until(
        what,
        target,
        timeout,
        |m| spinner.set_message(m.to_owned()),
        probe,
    )
    .await;
    spinner.finish_and_clear();
    r.map_err(|e| match e {
        WaitError::Api { status, .. } => status.into(),
        e @ WaitError::TimedOut { .. } => anyhow::anyhow!("{e}, check with `get`"),
        e => e.into(),
    })
}

fn spinner() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refusal_stays_a_status_and_a_timeout_says_how_to_look_again() {
        let r: Result<()> = until("volume v", "AVAILABLE", Duration::from_secs(10), || async {
            Err(Status::permission_denied("no"))
        })
        .await;
        assert!(r.err().and_then(|e| e.downcast::<Status>().ok()).is_some());

        let r: Result<()> = until("volume v", "AVAILABLE", Duration::ZERO, || async {
            Ok(Probe::Pending("CREATING".to_owned()))
        })
        .await;
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("timed out") && msg.contains("CREATING") && msg.contains("`get`"),
            "{msg}"
        );
    }
}
