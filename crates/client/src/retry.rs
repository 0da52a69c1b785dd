//! Deadlines and retries: which failures are worth sending again, and how often.

use std::future::Future;
use std::time::Duration;

use tonic::{Code, Status};

/// Whether retrying the very same request may succeed (a leader election, a restarting node, a
/// call that outlived its deadline).
pub fn is_transient(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
}

/// [`is_transient`], plus an aborted call or an overloaded server: for setup calls that can
/// afford to insist.
pub fn is_transient_or_overload(status: &Status) -> bool {
    is_transient(status) || matches!(status.code(), Code::Aborted | Code::ResourceExhausted)
}

/// Runs one unary call, turning a call that outlives `limit` into DEADLINE_EXCEEDED.
pub async fn with_deadline<T, F>(limit: Duration, fut: F) -> Result<T, Status>
where
    F: Future<Output = Result<tonic::Response<T>, Status>>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer within {}s",
            limit.as_secs()
        ))),
    }
}

/// How a call is retried: up to `retries` times after the first attempt, pausing
/// `first_pause`, then twice as long each time up to `max_pause`.
///
/// Only requests that are safe to send twice may be retried: reads, and creates that carry the
/// same request id every time, which the server answers with the first result.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub retries: u32,
    pub first_pause: Duration,
    pub max_pause: Duration,
    pub retryable: fn(&Status) -> bool,
}

impl Retry {
    /// Creates on a user's behalf: three retries, 0.5 s, 1 s then 2 s apart.
    pub const CREATE: Retry = Retry {
        retries: 3,
        first_pause: Duration::from_millis(500),
        max_pause: Duration::from_secs(2),
        retryable: is_transient,
    };

    /// Setup calls of a test or benchmark cluster: nine retries from 50 ms up to 2 s apart.
    pub const SETUP: Retry = Retry {
        retries: 9,
        first_pause: Duration::from_millis(50),
        max_pause: Duration::from_secs(2),
        retryable: is_transient_or_overload,
    };

    /// The pause before retry number `n` (from 1).
    pub fn pause(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        self.first_pause.saturating_mul(factor).min(self.max_pause)
    }

    /// Runs `attempt` (each under `limit`, if given) until it succeeds, fails for good or the
    /// retries are spent; `on_retry` hears of each retried failure with the retry's number.
    pub async fn run<T, F, Fut>(
        &self,
        limit: Option<Duration>,
        mut on_retry: impl FnMut(&Status, u32),
        mut attempt: F,
    ) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut n = 0;
        loop {
            let result = match limit {
                Some(limit) => with_deadline(limit, attempt()).await,
                None => attempt().await.map(tonic::Response::into_inner),
            };
            match result {
                Err(status) if (self.retryable)(&status) && n < self.retries => {
                    n += 1;
                    on_retry(&status, n);
                    tokio::time::sleep(self.pause(n)).await;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn quick(retries: u32) -> Retry {
        Retry {
            retries,
            first_pause: Duration::from_millis(1),
            max_pause: Duration::from_millis(2),
            retryable: is_transient,
        }
    }

    #[tokio::test]
    async fn retries_transient_failures_then_succeeds() {
        let calls = Cell::new(0);
        let mut heard = Vec::new();
        let r = quick(3)
            .run(
                None,
                |s, n| heard.push((s.code(), n)),
                || {
                    calls.set(calls.get() + 1);
                    let n = calls.get();
                    async move {
                        if n < 3 {
                            Err(Status::unavailable("election"))
                        } else {
                            Ok(tonic::Response::new(n))
                        }
                    }
                },
            )
            .await;
        assert_eq!(r.ok(), Some(3));
        assert_eq!(heard, vec![(Code::Unavailable, 1), (Code::Unavailable, 2)]);
    }

    /// How many attempts a policy of two retries makes when every one fails with `code`.
    async fn attempts_failing_with(code: Code) -> u32 {
        let calls = Cell::new(0);
        let r: Result<(), Status> = quick(2)
            .run(
                None,
                |_, _| {},
                || {
                    calls.set(calls.get() + 1);
                    async move { Err(Status::new(code, "no")) }
                },
            )
            .await;
        assert_eq!(r.err().map(|s| s.code()), Some(code));
        calls.get()
    }

    #[tokio::test]
    async fn gives_up_after_the_retries_and_never_retries_a_refusal() {
        assert_eq!(attempts_failing_with(Code::Unavailable).await, 3);
        assert_eq!(attempts_failing_with(Code::InvalidArgument).await, 1);
    }

    #[tokio::test]
    async fn a_slow_attempt_is_a_deadline_exceeded() {
        let r: Result<(), Status> = quick(0)
            .run(
                Some(Duration::from_millis(10)),
                |_, _| {},
                || async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(tonic::Response::new(()))
                },
            )
            .await;
        assert_eq!(r.err().map(|s| s.code()), Some(Code::DeadlineExceeded));
    }

    #[test]
    fn pauses_double_up_to_the_cap() {
        let p = Retry::CREATE;
        assert_eq!(p.pause(1), Duration::from_millis(500));
        assert_eq!(p.pause(2), Duration::from_secs(1));
        assert_eq!(p.pause(3), Duration::from_secs(2));
        assert_eq!(p.pause(30), Duration::from_secs(2));
    }
}
