//! Thousands of real agents on the fake hypervisor driver in this one process: each enrolls with
//! its own join token and keeps its own stream, exactly as `andromede-agent --driver fake` would.

use crate::client::{retry, Conn};
use andromede_agent::hypervisor::fake::{FakeDriver, Faults};
use andromede_agent::hypervisor::Inventory;
use andromede_agent::reconcile::{Reconciler, Timing};
use andromede_agent::session::{self, Link, Pool};
use andromede_agent::tls::HostTls;
use andromede_api::v1::{ClusterStatusRequest, CreateJoinTokenRequest, InstanceState, ListRequest};
use andromede_client::paging::all_pages;
use andromede_client::wait::{self, Probe};
use futures::{StreamExt, TryStreamExt};
use std::path::Path;
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
    ca: Option<String>,
) -> anyhow::Result<Fleet> {
    // Over TLS every agent has its own key and certificate, so its own connection; the shared
    // pool only carries enrollments (which present no certificate).
    let pool = Pool::with_ca((hosts as usize).div_ceil(AGENTS_PER_CONN), ca.clone());
    let started = Instant::now();
    let ids = futures::stream::iter(1..=hosts)
        .map(|i| {
            let (pool, servers, ca) = (pool.clone(), servers.clone(), ca.clone());
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
                let (key, csr) = match &ca {
                    Some(_) => andromede_pki::new_request()?,
                    None => (String::new(), String::new()),
                };
                let name = format!("fake-{i:05}");
                let (id, cert) =
                    session::enroll(&pool, &servers, &token, &name, "", &csr, inv).await?;
                let host_pool = match (&ca, cert) {
                    (Some(ca), Some(cert)) => {
                        // Kept in memory only: a bench run never lives long enough to renew.
                        let files = andromede_agent::tls::Files::in_dir(Path::new("/nonexistent"));
                        Some(Pool::for_host(HostTls::new(
                            files,
                            ca.clone(),
                            key,
                            cert.pem,
                        )))
                    }
                    (Some(_), None) => anyhow::bail!("the server issued {name} no certificate"),
                    _ => None,
                };
                anyhow::Ok((id, host_pool))
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
    for (id, host_pool) in ids {
        let hv = Arc::new(FakeDriver::new(inventory, Faults::default()));
        let timing = Timing {
            resync: Duration::from_secs(60),
            ..Default::default()
        };
        let (rec, reports) = Reconciler::new(hv, timing);
        let link = Link {
            servers: servers.clone(),
            heartbeat: Duration::from_secs(3),
            pool: host_pool.unwrap_or_else(|| pool.clone()),
            tls: None,
        };
        tasks.push(tokio::spawn(async move {
            if let Err(e) = session::run(link, id, rec, reports).await {
                eprintln!("bench: agent stopped: {e}");
            }
        }));
    }
    Ok(Fleet { tasks })
}

/// How long the fleet gets to connect, and its instances to run.
const FLEET_TIMEOUT: Duration = Duration::from_secs(600);

/// Waits until the leader counts `hosts` agents connected (every stream is open).
pub async fn wait_connected(conn: &Conn, hosts: u32) -> anyhow::Result<()> {
    let what = format!("the fleet of {hosts} agents");
    wait::until(
        &what,
        "connected",
        FLEET_TIMEOUT,
        |_| {},
        || async {
            let st = conn
                .call(conn.cluster().status(ClusterStatusRequest {}))
                .await?;
            Ok(if st.connected_agents >= u64::from(hosts) {
                Probe::Done(())
            } else {
                Probe::Pending(format!("{} connected", st.connected_agents))
            })
        },
    )
    .await?;
    Ok(())
}

/// Waits until `want` instances of `project` are RUNNING; returns seconds since `since`.
pub async fn wait_running(
    conn: &Conn,
    project: &str,
    want: u64,
    since: Instant,
) -> anyhow::Result<f64> {
    let running = InstanceState::Running as i32;
    let what = format!("{want} instances of {project}");
    wait::until(
        &what,
        "RUNNING",
        FLEET_TIMEOUT,
        |_| {},
        || async {
            let req = ListRequest {
                project: project.into(),
                ..Default::default()
            };
            let list = all_pages(req, |r| {
                let mut c = conn.compute();
                conn.call(async move { c.list_instances(r).await })
            })
            .await?
            .instances;
            let n = list.iter().filter(|i| i.state == running).count() as u64;
            Ok(if n >= want {
                Probe::Done(since.elapsed().as_secs_f64())
            } else {
                Probe::Pending(format!("{n} RUNNING"))
            })
        },
    )
    .await
    .map_err(Into::into)
}
