//! `andromede-bench`: starts a local multi-node cluster, loads it with instance creations and
//! prints one JSON report on stdout.

mod client;
mod cluster;
mod fleet;
mod load;
mod procstat;
mod setup;

use anyhow::Context;
use clap::Parser;
use cluster::Cluster;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Streams per HTTP/2 connection the create phase aims for; more connections are opened per
/// node when the concurrency needs it.
const STREAMS_PER_CONN: usize = 64;
/// How often the memory of the servers is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

#[derive(Parser, Debug)]
#[command(
    name = "andromede-bench",
    version,
    about = "Measure instance-creation throughput and latency of a local Andromède cluster"
)]
struct Args {
    /// The andromede-server binary (default: next to this executable).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Servers in the cluster, all voters.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    nodes: u64,
    /// Simulated hosts to register (64 vCPU, 256 GiB, 4 TiB each).
    #[arg(long, default_value_t = 1000)]
    hosts: u32,
    /// CreateInstance calls to send.
    #[arg(long, default_value_t = 5000)]
    creates: u64,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    concurrency: u64,
    /// Node N listens on 127.0.0.1:(base-port + N - 1).
    #[arg(long, default_value_t = 17400)]
    base_port: u16,
    /// Where the servers keep their data and logs (default: a fresh temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Open loop: schedule this many creates per second instead of sending the next call as
    /// soon as one answers.
    #[arg(long)]
    rate: Option<f64>,
    /// Keep the work directory (data and server logs) after the run.
    #[arg(long)]
    keep: bool,
    /// Who runs the hosts: `simulated` (the control plane's own simulator, no agents) or
    /// `fake-agent` (one real agent per host on the fake hypervisor driver, all in this process,
    /// each enrolled with a join token and holding its own stream).
    #[arg(long, default_value = "simulated", value_parser = ["simulated", "fake-agent"])]
    hosts_driver: String,
    /// How clients, servers and agents talk: `tls` (the servers' default: TLS to the API,
    /// mutual TLS between servers and from agents) or `plaintext` (--insecure-plaintext).
    #[arg(long, default_value = "tls", value_parser = ["tls", "plaintext"])]
    transport: String,
    /// Whose token sends the creates: `project-member` (a member token of the bench project, as
    /// a tenant would) or `cloud-admin` (the run's bootstrap token).
    #[arg(long, default_value = "project-member", value_parser = ["project-member", "cloud-admin"])]
    caller: String,
}

#[derive(Serialize)]
struct Report {
    nodes: u64,
    hosts: u32,
    creates: u64,
    concurrency: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<f64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    duration_s: f64,
    creates_per_s: f64,
    latency_ms: Latency,
    register_hosts_s: f64,
    hosts_driver: String,
    transport: String,
    caller: String,
    /// Fake-agent runs: seconds from the first create until every created instance was RUNNING
    /// (reported by its agent), and the rate that makes.
    #[serde(skip_serializing_if = "Option::is_none")]
    all_running_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    running_per_s: Option<f64>,
    /// Leader when the create phase started and when it ended (0: none known).
    leader_start: u64,
    leader_end: u64,
    /// Raft term increments during the create phase, i.e. election rounds: usually a leader
    /// whose heartbeats came late under load.
    elections: u64,
    servers: Vec<ServerReport>,
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

#[derive(Serialize)]
struct ServerReport {
    node_id: u64,
    cpu_s: f64,
    peak_rss_mib: f64,
}

/// Rounds for a readable report; the measurements are not more precise than this anyway.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn default_server_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = exe
        .parent()
        .context("this executable has no parent directory")?;
    Ok(dir.join("andromede-server"))
}

async fn run(args: &Args, cluster: &mut Cluster) -> anyhow::Result<Report> {
    let server_bin = match &args.server_bin {
        Some(p) => p.clone(),
        None => default_server_bin()?,
    };
    anyhow::ensure!(
        server_bin.is_file(),
        "no server binary at {}: build it with `cargo build --release -p andromede-server` or \
         pass --server-bin",
        server_bin.display()
    );
    eprintln!(
        "bench: starting {} server(s) from {} in {}",
        args.nodes,
        server_bin.display(),
        cluster.work_path().display()
    );
    let leader = cluster
        .start(&server_bin, args.nodes, args.base_port)
        .await?;
    let leader_index = cluster
        .servers
        .iter()
        .position(|s| s.node_id == leader)
        .unwrap_or(0);

    let pids: Vec<Option<u32>> = cluster.servers.iter().map(|s| s.pid()).collect();
    let sampler = procstat::Sampler::start(pids.clone(), SAMPLE_EVERY);

    let setup_conn = cluster.conn(leader_index).await?;
    let agents = args.hosts_driver == "fake-agent";
    let mut register_time = setup::build(&setup_conn, if agents { 0 } else { args.hosts }).await?;
    let _fleet = if agents {
        let started = std::time::Instant::now();
        let servers = cluster.servers.iter().map(|s| s.addr.clone()).collect();
        let inv = andromede_agent::hypervisor::Inventory {
            vcpus: setup::HOST_VCPUS,
            memory_mib: setup::HOST_MEMORY_MIB,
            disk_gib: setup::HOST_DISK_GIB,
        };
        let ca = cluster.ca().map(str::to_owned);
        let f = fleet::start(&setup_conn, servers, setup::DATACENTER, args.hosts, inv, ca).await?;
        fleet::wait_connected(&setup_conn, args.hosts).await?;
        register_time = started.elapsed();
        eprintln!(
            "bench: {} agents enrolled and connected in {:.1}s",
            args.hosts,
            register_time.as_secs_f64()
        );
        Some(f)
    } else {
        None
    };

    let concurrency = usize::try_from(args.concurrency).unwrap_or(usize::MAX);
    let per_node = usize::try_from(args.nodes).unwrap_or(1).max(1);
    let conns_per_node = concurrency.div_ceil(per_node * STREAMS_PER_CONN).max(1);
    let caller = match args.caller.as_str() {
        "cloud-admin" => None,
        _ => Some(setup::member_token(&setup_conn).await?),
    };
    let mut targets = Vec::new();
    for i in 0..cluster.servers.len() {
        let mut conns = Vec::with_capacity(conns_per_node);
        for _ in 0..conns_per_node {
            conns.push(match &caller {
                Some(t) => cluster.conn_as(i, t).await?,
                None => cluster.conn(i).await?,
            });
        }
        targets.push(conns);
    }

    let before = cluster.leadership().await;
    let ticks = procstat::clock_ticks();
    let cpu_before: Vec<Option<u64>> = pids
        .iter()
        .map(|p| p.and_then(procstat::cpu_ticks))
        .collect();
    eprintln!(
        "bench: {} creates, {} in flight, over {} node(s) x {} connection(s){}",
        args.creates,
        args.concurrency,
        args.nodes,
        conns_per_node,
        match args.rate {
            Some(r) => format!(", open loop at {r}/s"),
            None => String::new(),
        }
    );
    let load_started = std::time::Instant::now();
    let res = load::run(
        Arc::new(targets),
        &load::LoadConfig {
            creates: args.creates,
            concurrency,
            rate: args.rate,
        },
    )
    .await;
    let all_running = if agents {
        let t = fleet::wait_running(&setup_conn, setup::PROJECT, res.ok, load_started).await?;
        eprintln!("bench: all {} instances RUNNING after {t:.1}s", res.ok);
        Some(t)
    } else {
        None
    };
    let cpu_after: Vec<Option<u64>> = pids
        .iter()
        .map(|p| p.and_then(procstat::cpu_ticks))
        .collect();
    let peaks = sampler.finish(&pids);
    let after = cluster.leadership().await;

    for (code, msg) in &res.first_error {
        eprintln!("bench: first {code} error: {msg}");
    }
    let dead = cluster.dead();
    if !dead.is_empty() {
        eprintln!("bench: server(s) {dead:?} exited during the run");
    }

    let servers = cluster
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let cpu = match (
                cpu_before.get(i).copied().flatten(),
                cpu_after.get(i).copied().flatten(),
            ) {
                (Some(a), Some(b)) => b.saturating_sub(a) as f64 / ticks,
                _ => 0.0,
            };
            ServerReport {
                node_id: s.node_id,
                cpu_s: round3(cpu),
                peak_rss_mib: round3(peaks.get(i).map(|p| p.rss_kib).unwrap_or(0) as f64 / 1024.0),
            }
        })
        .collect();
    let duration = res.duration.as_secs_f64();
    let lat = &res.latencies_us;
    Ok(Report {
        nodes: args.nodes,
        hosts: args.hosts,
        creates: args.creates,
        concurrency: args.concurrency,
        rate: args.rate,
        ok: res.ok,
        errors: res.errors,
        duration_s: round3(duration),
        creates_per_s: round3(res.ok as f64 / duration.max(1e-9)),
        latency_ms: Latency {
            p50: round3(load::percentile_ms(lat, 0.50)),
            p90: round3(load::percentile_ms(lat, 0.90)),
            p99: round3(load::percentile_ms(lat, 0.99)),
            max: round3(lat.last().copied().unwrap_or(0) as f64 / 1000.0),
        },
        register_hosts_s: round3(register_time.as_secs_f64()),
        hosts_driver: args.hosts_driver.clone(),
        transport: args.transport.clone(),
        caller: args.caller.clone(),
        all_running_s: all_running.map(round3),
        running_per_s: all_running.map(|t| round3(res.ok as f64 / t.max(1e-9))),
        leader_start: before.map(|(l, _)| l).unwrap_or(0),
        leader_end: after.map(|(l, _)| l).unwrap_or(0),
        elections: match (before, after) {
            (Some((_, a)), Some((_, b))) => b.saturating_sub(a),
            _ => 0,
        },
        servers,
    })
}

/// Resolves on Ctrl-C or SIGTERM, so that either still tears the servers down.
async fn interrupted() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(r) = args.rate {
        if !(r.is_finite() && r > 0.0) {
            eprintln!("bench: --rate must be a positive number");
            return std::process::ExitCode::FAILURE;
        }
    }
    let mut cluster = match Cluster::new(args.work_dir.clone(), args.keep, args.transport == "tls")
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = tokio::select! {
        r = run(&args, &mut cluster) => r,
        _ = interrupted() => Err(anyhow::anyhow!("interrupted")),
    };
    if result.is_err() && !cluster.servers.is_empty() {
        eprintln!("bench: last server log lines:\n{}", cluster.log_tails(15));
    }
    cluster.shutdown().await;
    match result {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(json) => {
                println!("{json}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench: encoding the report: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
