//! `andromede-agent`: the per-host agent binary. Enrolls once with a join token, then keeps a
//! stream to the control plane's leader and converges the host's guests and volumes.

use andromede_agent::hypervisor::fake::{FakeDriver, Faults};
use andromede_agent::hypervisor::{Hypervisor, Inventory};
use andromede_agent::reconcile::{Reconciler, Timing};
use andromede_agent::{identity, session, tls};
use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The Andromède host agent.
///
/// First start: `andromede-agent --server HOST:PORT --join-token TOKEN` (an admin creates the
/// token with `cloudctl host join-token create --datacenter DC`). The host identity it receives
/// is kept in --state-dir; later starts need no token.
#[derive(Debug, Parser)]
#[command(name = "andromede-agent", version)]
struct Args {
    /// Control-plane servers (any of them; the agent follows the leader). Repeat or comma-separate.
    #[arg(
        long = "server",
        env = "ANDROMEDE_SERVERS",
        value_delimiter = ',',
        required_unless_present = "delete_orphan"
    )]
    servers: Vec<String>,
    /// Confirms the deletion of a quarantined orphan (a guest or volume id that `cloudctl host
    /// orphans` lists) and exits: the running agent of this --state-dir deletes it on its next
    /// scan. Repeatable.
    #[arg(long, value_name = "ID")]
    delete_orphan: Vec<String>,
    /// The cluster CA (PEM, the first server's tls/ca.pem). Not needed with a join token from a
    /// TLS cluster: the token pins the CA, which the agent finds on first contact and keeps in
    /// --state-dir. With a CA the agent speaks TLS, trusts only servers the CA issued, and
    /// streams with the host certificate it was issued at enrollment. With neither, plaintext
    /// (servers run with --insecure-plaintext).
    #[arg(long, env = "ANDROMEDE_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Where the host identity is kept.
    #[arg(long, default_value = "/var/lib/andromede/agent")]
    state_dir: PathBuf,
    /// One-use join token for the first start (env ANDROMEDE_JOIN_TOKEN), as `cloudctl host
    /// join-token create` printed it (`<id>.<secret>.<ca-sha256>` from a TLS cluster).
    #[arg(long, env = "ANDROMEDE_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Name of this host in the region (defaults to the machine's hostname).
    #[arg(long)]
    hostname: Option<String>,
    /// Hypervisor driver: libvirt (real guests), or fake (simulated guests, for tests and
    /// benchmarks only). An unusable libvirt stops the agent, saying why.
    #[arg(long, default_value = "libvirt", value_parser = ["libvirt", "fake"])]
    driver: String,
    #[command(flatten)]
    libvirt: andromede_agent::drivers::LibvirtArgs,
    /// Fake driver: vCPUs, memory and disk the host reports.
    #[arg(long, default_value_t = 16)]
    fake_vcpus: u64,
    #[arg(long, default_value_t = 65536)]
    fake_memory_mib: u64,
    #[arg(long, default_value_t = 1000)]
    fake_disk_gib: u64,
    /// Fake driver fault: every start fails.
    #[arg(long)]
    fake_fail_start: bool,
    /// Fake driver fault: every define and start hangs this many milliseconds.
    #[arg(long)]
    fake_hang_ms: Option<u64>,
    /// Fake driver fault: guests die this many seconds after they start.
    #[arg(long)]
    fake_die_after_secs: Option<u64>,
    /// Seconds between heartbeats (keep well under the servers' --host-ttl-secs).
    #[arg(long, default_value_t = 2)]
    heartbeat_secs: u64,
    /// Seconds a graceful (ACPI) stop may take before the power is cut.
    #[arg(long, default_value_t = 30)]
    stop_timeout_secs: u64,
    /// Seconds between checks of a converged guest.
    #[arg(long, default_value_t = 10)]
    resync_secs: u64,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// The file under --state-dir where operators confirm orphan deletions.
const CONFIRMATIONS: &str = "confirmed-orphan-deletions";

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".into())
}

fn fake(a: &Args) -> Arc<dyn Hypervisor> {
    Arc::new(FakeDriver::new(
        Inventory {
            vcpus: a.fake_vcpus,
            memory_mib: a.fake_memory_mib,
            disk_gib: a.fake_disk_gib,
        },
        Faults {
            fail_start: a.fake_fail_start,
            hang: a.fake_hang_ms.map(Duration::from_millis),
            die_after: a.fake_die_after_secs.map(Duration::from_secs),
        },
    ))
}

fn driver(a: &Args) -> anyhow::Result<Arc<dyn Hypervisor>> {
    match a.driver.as_str() {
        "fake" => Ok(fake(a)),
        _ => andromede_agent::drivers::libvirt(&a.libvirt).context(
            "the libvirt driver is not usable (fix libvirt, see scripts/setup-libvirt.sh; \
             --driver fake runs simulated guests for tests)",
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr, like the server's: stdout is for what a command prints.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if a.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let confirmations = a.state_dir.join(CONFIRMATIONS);
    if !a.delete_orphan.is_empty() {
        for id in &a.delete_orphan {
            andromede_agent::reconcile::confirm_deletion(&confirmations, id)
                .with_context(|| format!("writing {}", confirmations.display()))?;
            println!("deletion of orphan {id} confirmed: the running agent deletes it within --resync-secs if it is quarantined here");
        }
        return Ok(());
    }
    anyhow::ensure!(a.heartbeat_secs > 0, "--heartbeat-secs must be at least 1");
    let hv = driver(&a)?;
    let files = tls::Files::in_dir(&a.state_dir);
    let (token, pin) = match a.join_token.as_deref() {
        Some(t) => {
            let (t, pin) = tls::split_token(t);
            (Some(t), pin)
        }
        None => (None, None),
    };
    let enrolled = identity::load(&a.state_dir)?;
    // The cluster CA: given, kept since enrollment, or (first start, with a pinned join token)
    // found on first contact. Once a host has one it never speaks plaintext again.
    let ca = match (&a.ca_cert, tls::read(&files.ca)?) {
        (Some(p), _) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading the cluster CA {}", p.display()))?,
        ),
        (None, Some(kept)) => Some(kept),
        (None, None) => match (&pin, &enrolled) {
            (Some(pin), None) => {
                let server = a.servers.first().context("no --server given")?.clone();
                let pin = pin.clone();
                let ca =
                    tokio::task::spawn_blocking(move || tls::discover(&server, &pin)).await??;
                tracing::info!("found the cluster CA by the join token's pin");
                Some(ca)
            }
            _ => None,
        },
    };
    if let (Some(pin), Some(ca)) = (&pin, &ca) {
        let have = andromede_pki::pin_of(ca).context("the cluster CA is not a PEM certificate")?;
        anyhow::ensure!(
            &have == pin,
            "the join token pins CA {pin}, but the cluster CA given is {have}: the token is for another cluster"
        );
    }
    let pool = session::Pool::with_ca(1, ca.clone());
    let id = match enrolled {
        Some(id) => {
            if a.join_token.is_some() {
                tracing::info!("already enrolled; ignoring --join-token");
            }
            id
        }
        None => {
            let token = token.as_deref().context(
                "this host is not enrolled yet: pass --join-token (cloudctl host join-token create --datacenter DC)",
            )?;
            let hv2 = hv.clone();
            let inv = tokio::task::spawn_blocking(move || hv2.inventory())
                .await?
                .context("reading the host inventory")?;
            let name = a.hostname.clone().unwrap_or_else(hostname);
            let credential = identity::pending_credential(&a.state_dir)?;
            // Over TLS the host's key is made here and only its CSR leaves the host.
            let csr = match &ca {
                Some(_) => tls::request(&tls::host_key(&files)?)?,
                None => String::new(),
            };
            let (id, cert) = session::enroll(
                &pool,
                &a.servers,
                token,
                &name,
                &credential,
                &csr,
                session::inventory(inv, hv.driver()),
            )
            .await?;
            if let Some(ca) = &ca {
                let cert = cert.context("the server issued no host certificate")?;
                tls::write(&files.ca, ca)?;
                tls::write(&files.cert, &cert.pem)?;
            }
            identity::save(&a.state_dir, &id)?;
            identity::enrolled(&a.state_dir);
            tracing::info!(host = %id.host_id, name = %id.host_name, datacenter = %id.datacenter_id, "enrolled");
            id
        }
    };
    let renewal = match &ca {
        Some(ca) => {
            let missing = |p: &std::path::Path| {
                format!(
                    "{} is missing: this host has no certificate; enroll it again with a new join token",
                    p.display()
                )
            };
            let key = tls::read(&files.key)?.with_context(|| missing(&files.key))?;
            let cert = tls::read(&files.cert)?.with_context(|| missing(&files.cert))?;
            let host = tls::HostTls::new(files.clone(), ca.clone(), key, cert);
            pool.present(host.clone());
            Some(session::Renewal {
                host,
                state_dir: a.state_dir.clone(),
            })
        }
        None => None,
    };
    let timing = Timing {
        stop_timeout: Duration::from_secs(a.stop_timeout_secs),
        resync: Duration::from_secs(a.resync_secs.max(1)),
        ..Default::default()
    };
    let (rec, reports) = Reconciler::new(hv.clone(), timing);
    rec.set_host_id(&id.host_id);
    rec.set_confirmations(confirmations);
    tracing::info!(host = %id.host_id, driver = hv.driver(), "agent running");
    let link = session::Link {
        servers: a.servers.clone(),
        heartbeat: Duration::from_secs(a.heartbeat_secs),
        pool,
        tls: renewal,
    };
    tokio::select! {
        r = session::run(link, id, rec, reports) => r.context("control plane")?,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; guests keep running"),
    }
    Ok(())
}
