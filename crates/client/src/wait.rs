//! Polling a resource until it reaches a target state, fails or runs out of time.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::{Code, Status};

use crate::errors::{code_words, describe};
use crate::retry::is_transient;

/// How often a wait polls.
pub const POLL_EVERY: Duration = Duration::from_millis(200);

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

/// Why a wait ended without reaching its target. Programs append their own hint to a timeout
/// (how to wait longer, how to look again).
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("{what} did not become {target}: {why}")]
    Failed {
        what: String,
        target: String,
        why: String,
    },
    #[error(
        "timed out after {secs}s waiting for {what} to become {target} (last state: {last}); \
         it may still get there"
    )]
    TimedOut {
        what: String,
        target: String,
        secs: u64,
        last: String,
    },
    #[error("while waiting for {what} to become {target}: {}", describe(.status))]
    Api {
        what: String,
        target: String,
        status: Status,
    },
}

/// Polls `probe` every [`POLL_EVERY`] until it reports `Done` or `Failed`, or `timeout` passes.
/// Transient API errors (an election, a restarting node) only delay the wait. `progress` hears
/// a one-line summary after each poll, e.g. for a spinner.
pub async fn until<T, F, Fut>(
    what: &str,
    target: &str,
    timeout: Duration,
    mut progress: impl FnMut(&str),
    mut probe: F,
) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Probe<T>, Status>>,
{
    let start = Instant::now();
    let mut last = "unknown".to_owned();
    loop {
        match probe().await {
            Ok(Probe::Done(t)) => return Ok(t),
            Ok(Probe::Failed(why)) => {
                return Err(WaitError::Failed {
                    what: what.to_owned(),
                    target: target.to_owned(),
                    why,
                })
            }
            Ok(Probe::Pending(state)) => last = state,
            Err(status) if is_transient(&status) => {
                // The state before the hiccup stays the one reported.
                let state = last.split(" (API ").next().unwrap_or_default().to_owned();
                last = format!("{state} (API {}, retrying)", code_words(status.code()));
            }
            Err(status) => {
                return Err(WaitError::Api {
                    what: what.to_owned(),
                    target: target.to_owned(),
                    status,
                })
            }
        }
        progress(&format!("{what}: {last}, waiting for {target}"));
        if start.elapsed() >= timeout {
            return Err(WaitError::TimedOut {
                what: what.to_owned(),
                target: target.to_owned(),
                secs: timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Polls `get` until the resource is gone: NOT_FOUND, or a state for which `pending` gives no
/// name (e.g. DELETED); otherwise that name is the state reported on a timeout.
pub async fn until_gone<T, F, Fut, S>(
    what: &str,
    timeout: Duration,
    mut get: F,
    pending: S,
) -> Result<(), WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
    S: Fn(&T) -> Option<String>,
{
    let pending = &pending;
    until(
        what,
        "deleted",
        timeout,
        |_| {},
        || {
            let got = get();
            async move {
                let state = match got.await {
                    Ok(t) => pending(&t),
                    Err(s) if s.code() == Code::NotFound => None,
                    Err(s) => return Err(s),
                };
                Ok(match state {
                    None => Probe::Done(()),
                    Some(state) => Probe::Pending(state),
                })
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_when_done_and_tolerates_transient_errors() {
        let mut calls = 0;
        let mut seen = Vec::new();
        let r = until(
            "instance a",
            "RUNNING",
            Duration::from_secs(10),
            |m| seen.push(m.to_owned()),
            || {
                calls += 1;
                let n = calls;
                async move {
                    match n {
                        1 => Ok(Probe::Pending("CREATING".to_owned())),
                        2 => Err(Status::unavailable("election")),
                        _ => Ok(Probe::Done(n)),
                    }
                }
            },
        )
        .await;
        assert_eq!(r.ok(), Some(3));
        assert_eq!(
            seen,
            vec![
                "instance a: CREATING, waiting for RUNNING",
                "instance a: CREATING (API unavailable, retrying), waiting for RUNNING"
            ]
        );
    }

    #[tokio::test]
    async fn failure_timeout_and_refusal_are_errors() {
        let r: Result<(), _> = until(
            "volume v",
            "AVAILABLE",
            Duration::from_secs(10),
            |_| {},
            || async { Ok(Probe::Failed("ERROR: backend full".to_owned())) },
        )
        .await;
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            "volume v did not become AVAILABLE: ERROR: backend full"
        );

        let r: Result<(), _> = until(
            "volume v",
            "AVAILABLE",
            Duration::ZERO,
            |_| {},
            || async { Ok(Probe::Pending("CREATING".to_owned())) },
        )
        .await;
        assert!(
            matches!(&r, Err(WaitError::TimedOut { last, .. }) if last == "CREATING"),
            "{r:?}"
        );

        let r: Result<(), _> = until(
            "volume v",
            "AVAILABLE",
            Duration::from_secs(10),
            |_| {},
            || async { Err(Status::permission_denied("no")) },
        )
        .await;
        assert!(
            matches!(r, Err(WaitError::Api { status, .. }) if status.code() == Code::PermissionDenied)
        );
    }

    #[tokio::test]
    async fn gone_on_not_found_or_a_final_state() {
        let mut calls = 0;
        let r = until_gone(
            "volume v",
            Duration::from_secs(10),
            || {
                calls += 1;
                let n = calls;
                async move {
                    match n {
                        1 => Ok("DELETING"),
                        _ => Err(Status::not_found("volume v")),
                    }
                }
            },
            |s: &&str| Some(s.to_string()),
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
        let r = until_gone(
            "volume v",
            Duration::from_secs(10),
            || async { Ok("DELETED") },
            |s: &&str| (*s != "DELETED").then(|| s.to_string()),
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
    }
}
