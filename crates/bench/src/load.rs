//! The measured phase: CreateInstance calls spread over every node, closed or open loop.

use crate::client::Conn;
use crate::setup::{FLAVOR, IMAGE, PROJECT};
use andromede_api::v1::CreateInstanceRequest;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

/// A call still unanswered after this long is counted as an error, so one stuck call cannot
/// hang the whole run.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Error key for calls the bench gave up on (distinct from a server-side DeadlineExceeded).
const CLIENT_TIMEOUT: &str = "ClientTimeout";

pub struct LoadConfig {
    pub creates: u64,
    pub concurrency: usize,
    /// Target creates per second for an open loop; None runs a closed loop.
    pub rate: Option<f64>,
}

/// Connections to use: `targets[node][k]`. A high concurrency is spread over several
/// connections per node, as many separate clients would be, so that a single TCP connection
/// (and the one server task reading it) does not become the bottleneck being measured.
pub type Targets = Arc<Vec<Vec<Conn>>>;

pub struct LoadResult {
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// The first message seen for each error code, to tell what went wrong.
    pub first_error: BTreeMap<String, String>,
    pub duration: Duration,
    /// Latencies of the successful calls, in microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

struct Outcome {
    latency: Duration,
    result: Result<(), (String, String)>,
}

/// Round-robin over nodes first, so consecutive calls hit different nodes, then over that
/// node's connections.
fn pick(targets: &Targets, idx: u64) -> Option<&Conn> {
    let nodes = targets.len() as u64;
    let node = targets.get(usize::try_from(idx % nodes).ok()?)?;
    let k = (idx / nodes) % node.len().max(1) as u64;
    node.get(usize::try_from(k).ok()?)
}

async fn create(targets: &Targets, idx: u64) -> Result<(), (String, String)> {
    let Some(conn) = pick(targets, idx) else {
        return Err(("NoTarget".into(), "no connection to send to".into()));
    };
    let mut client = conn.compute();
    let req = CreateInstanceRequest {
        name: format!("bench-vm-{idx}"),
        project: PROJECT.into(),
        flavor: FLAVOR.into(),
        image: IMAGE.into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    };
    match tokio::time::timeout(CALL_TIMEOUT, client.create_instance(req)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(s)) => Err((format!("{:?}", s.code()), s.message().to_string())),
        Err(_) => Err((
            CLIENT_TIMEOUT.into(),
            format!("no answer within {CALL_TIMEOUT:?}"),
        )),
    }
}

/// Fires the creates and gathers the outcomes, printing progress to stderr.
pub async fn run(targets: Targets, cfg: &LoadConfig) -> LoadResult {
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let started = Instant::now();
    match cfg.rate {
        None => closed_loop(&targets, cfg, tx),
        Some(rate) => open_loop(&targets, cfg, rate, tx),
    }

    let mut res = LoadResult {
        ok: 0,
        errors: BTreeMap::new(),
        first_error: BTreeMap::new(),
        duration: Duration::ZERO,
        latencies_us: Vec::with_capacity(usize::try_from(cfg.creates).unwrap_or(0)),
    };
    let mut done = 0u64;
    let mut last_report = Instant::now();
    // Ends when every sender is dropped, i.e. when every call has reported.
    while let Some(o) = rx.recv().await {
        done += 1;
        match o.result {
            Ok(()) => {
                res.ok += 1;
                res.latencies_us
                    .push(u64::try_from(o.latency.as_micros()).unwrap_or(u64::MAX));
            }
            Err((code, msg)) => {
                res.first_error.entry(code.clone()).or_insert(msg);
                *res.errors.entry(code).or_insert(0) += 1;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "bench: {done}/{} creates, {} ok, {} errors, {:.0} ok/s",
                cfg.creates,
                res.ok,
                done - res.ok,
                res.ok as f64 / secs.max(1e-9)
            );
        }
    }
    res.duration = started.elapsed();
    res.latencies_us.sort_unstable();
    res
}

/// `concurrency` workers, each sending its next call as soon as the previous one answers.
/// Latency is from send to answer.
fn closed_loop(targets: &Targets, cfg: &LoadConfig, tx: mpsc::UnboundedSender<Outcome>) {
    let next = Arc::new(AtomicU64::new(0));
    let workers = u64::try_from(cfg.concurrency)
        .unwrap_or(u64::MAX)
        .min(cfg.creates);
    for _ in 0..workers {
        let next = next.clone();
        let targets = targets.clone();
        let tx = tx.clone();
        let creates = cfg.creates;
        tokio::spawn(async move {
            loop {
                let idx = next.fetch_add(1, Ordering::Relaxed);
                if idx >= creates {
                    break;
                }
                let sent = Instant::now();
                let result = create(&targets, idx).await;
                let _ = tx.send(Outcome {
                    latency: sent.elapsed(),
                    result,
                });
            }
        });
    }
}

/// Calls scheduled at a fixed rate whatever the answers, at most `concurrency` in flight.
/// Latency is from the scheduled time, not the actual send: when the servers fall behind, the
/// wait for a free slot is part of what a client at that rate would see (no coordinated
/// omission).
fn open_loop(targets: &Targets, cfg: &LoadConfig, rate: f64, tx: mpsc::UnboundedSender<Outcome>) {
    let slots = Arc::new(Semaphore::new(cfg.concurrency));
    let targets = targets.clone();
    let creates = cfg.creates;
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for idx in 0..creates {
            let at = start + Duration::from_secs_f64(idx as f64 / rate);
            tokio::time::sleep_until(at).await;
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let targets = targets.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let result = create(&targets, idx).await;
                let _ = tx.send(Outcome {
                    latency: at.elapsed(),
                    result,
                });
                drop(permit);
            });
        }
    });
}

/// Nearest-rank percentile of sorted values, in milliseconds.
pub fn percentile_ms(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    sorted_us[i] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.50), 50.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&v, 1.0), 100.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
        assert_eq!(percentile_ms(&[7000], 0.9), 7.0);
    }
}
