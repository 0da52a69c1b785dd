//! `--wait`: polling a resource until it reaches a target state, fails or times out, with a
//! spinner on stderr when it is a terminal.

use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tonic::Status;

use crate::client::is_transient;
use crate::errors::code_words;

const POLL_EVERY: Duration = Duration::from_millis(200);

/// What one poll found.
#[derive(Debug)]
pub enum Probe<T> {
    /// The target state is reached (or the resource is gone, for deletes).
    Done(T),
    /// Not there yet; the current state, to show.
    Pending(String),
    /// It will not get there; why.
    Failed(String),
}

/// Polls `probe` every 200 ms until it reports `Done` or `Failed`, or `timeout` passes.
/// Transient API errors (a leader election, a restarting node) only delay the wait.
pub async fn until<T, F, Fut>(
    what: &str,
    target: &str,
    timeout: Duration,
    mut probe: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Probe<T>, Status>>,
{
    let spinner = spinner();
    let start = Instant::now();
    let mut last = "unknown".to_owned();
    loop {
        match probe().await {
            Ok(Probe::Done(t)) => {
                spinner.finish_and_clear();
                return Ok(t);
            }
            Ok(Probe::Failed(why)) => {
                spinner.finish_and_clear();
                bail!("{what} did not become {target}: {why}");
            }
            Ok(Probe::Pending(state)) => last = state,
            Err(status) if is_transient(&status) => {
                last = format!("{last} (API {}, retrying)", code_words(status.code()));
            }
            Err(status) => {
                spinner.finish_and_clear();
                return Err(status.into());
            }
        }
        spinner.set_message(format!("{what}: {last}, waiting for {target}"));
        if start.elapsed() >= timeout {
            spinner.finish_and_clear();
            bail!(
                "timed out after {}s waiting for {what} to become {target} (last state: {last}); \
                 it may still get there, check with `get`",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
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
    async fn returns_when_done_and_tolerates_transient_errors() {
        let mut calls = 0;
        let r = until("instance a", "RUNNING", Duration::from_secs(10), || {
            calls += 1;
            let n = calls;
            async move {
                match n {
                    1 => Ok(Probe::Pending("CREATING".to_owned())),
                    2 => Err(Status::unavailable("election")),
                    _ => Ok(Probe::Done(n)),
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(3));
    }

    #[tokio::test]
    async fn failure_and_timeout_are_errors() {
        let r: Result<()> = until("volume v", "AVAILABLE", Duration::from_secs(10), || async {
            Ok(Probe::Failed("ERROR: backend full".to_owned()))
        })
        .await;
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("backend full"), "{msg}");

        let r: Result<()> = until(
            "volume v",
            "AVAILABLE",
            Duration::from_millis(0),
            || async { Ok(Probe::Pending("CREATING".to_owned())) },
        )
        .await;
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("timed out") && msg.contains("CREATING"),
            "{msg}"
        );

        let r: Result<()> = until("volume v", "AVAILABLE", Duration::from_secs(10), || async {
            Err(Status::permission_denied("no"))
        })
        .await;
        assert!(r.err().and_then(|e| e.downcast::<Status>().ok()).is_some());
    }
}
