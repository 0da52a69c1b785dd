//! Thousands of real agents on the fake hypervisor driver in this one process: each enrolls with
//! its own join token and keeps its own stream, exactly as `andromede-agent --driver fake` would.

use crate::client::{retry, Conn};
use andromede_agent::hypervisor::fake::{FakeDriver, Faults};
use andromede_agent::hypervisor::Inventory;
use andromede_agent::reconcile::{Reconciler, Timing};
use andromede_agent::session::{self, Link, Pool};
use andromede_api::v1::CreateJoinTokenRequest;
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Agents per HTTP/2 connection; the server accepts a few hundred streams on each.
const AGENTS_PER_CONN: usize = 100;
const ENROLL_CONCURRENCY: usize = 64;

pub struct Fleet {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Enrolls `hosts` fake-driver agents in `datacenter` and starts their streams. Returns once every
/// host is enrolled (not yet necessarily connected).
pub async fn start(
    conn: &Conn,
    servers: Vec<String>,
    datacenter: &str,
    hosts: u32,
    inventory: Inventory,
) -> anyhow::Result<Fleet> {
    let pool = Pool::new((hosts as usize).div_ceil(AGENTS_PER_CONN));
    let started = Instant::now();
    let ids = futures::stream::iter(1..=hosts)
        .map(|i| {
            let (pool, servers) = (pool.clone(), servers.clone());
            async move {
                let token = retry(&format!("join token {i}"), || {
                    let mut c = conn.infra();
                    async move {
                        c.create_join_token(CreateJoinTokenRequest {
                            datacenter: datacenter.into(),
                            ttl_seconds: 3600,
                        })
                        .await
                    }
                })
                .await?
                .token;
                let inv = session::inventory(inventory, "fake");
                let id = session::enroll(&pool, &servers, &token, &format!("fake-{i:05}"), "", inv)
                    .await?;
                anyhow::Ok(id)
            }
        })
        .buffer_unordered(ENROLL_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    eprintln!(
        "bench: enrolled {hosts} fake-driver agents in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let mut tasks = Vec::with_capacity(ids.len());
    for id in ids {
        let hv = Arc::new(FakeDriver::new(inventory, Faults::default()));
        let timing = Timing {
            resync: Duration::from_secs(60),
            ..Default::default()
        };
        let (rec, reports) = Reconciler::new(hv, timing);
        let link = Link {
            servers: servers.clone(),
            heartbeat: Duration::from_secs(3),
            pool: pool.clone(),
        };
        tasks.push(tokio::spawn(async move {
            if let Err(e) = session::run(link, id, rec, reports).await {
                eprintln!("bench: agent stopped: {e}");
            }
        }));
    }
    Ok(Fleet { tasks })
}

/// Waits until the leader counts `hosts` agents connected (every stream is open).
pub async fn wait_connected(conn: &Conn, hosts: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let st = conn
            .cluster()
            .status(andromede_api::v1::ClusterStatusRequest {})
            .await?
            .into_inner();
        if st.connected_agents >= u64::from(hosts) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {hosts} agents connected after 10 minutes",
            st.connected_agents
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until `want` instances of `project` are RUNNING; returns seconds since `since`.
pub async fn wait_running(
    conn: &Conn,
    project: &str,
    want: u64,
    since: Instant,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let running = andromede_api::v1::InstanceState::Running as i32;
    loop {
        let list = conn
            .compute()
            .max_decoding_message_size(256 << 20)
            .list_instances(andromede_api::v1::ListRequest {
                project: project.into(),
                read: None,
            })
            .await?
            .into_inner()
            .instances;
        let n = list.iter().filter(|i| i.state == running).count() as u64;
        if n >= want {
            return Ok(since.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {n} of {want} instances RUNNING after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
