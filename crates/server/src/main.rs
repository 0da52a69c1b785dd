//! `andromede-server`: run a server of a region, or a whole single-node cloud for trying it out.

use andromede_server::config::Settings;
use andromede_server::serve;
use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "andromede-server",
    version,
    about = "Andromède control-plane server (API, scheduler, Raft)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one server of a region. Start the first with --init; add others with
    /// `cloudctl cluster add-learner` and `cloudctl cluster promote`.
    Run {
        /// TOML file with the same keys as the flags (snake_case); flags win.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Issue a server certificate from the cluster CA (the first server's <data-dir>/tls), for
    /// a server about to join: writes server.pem, server-key.pem and ca.pem into --out, which
    /// the joining server uses as <its data-dir>/tls (or through --tls-cert/--tls-key/--tls-ca).
    IssueCert {
        /// The directory holding ca.pem and ca-key.pem.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Raft id of the server the certificate is for.
        #[arg(long)]
        node_id: u64,
        /// Addresses or DNS names clients and servers reach it at (host or host:port); repeat.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Where to write the three files (must not hold them already).
        #[arg(long)]
        out: PathBuf,
        /// Also copy the CA key (ca-key.pem) into --out, so the new server can enroll hosts
        /// (it issues their certificates). Without it, agents enroll through servers that have it.
        #[arg(long)]
        with_ca_key: bool,
    },
    /// A single-node cloud: one FR datacenter, flavors, the test guest image, and a local agent
    /// (started from the andromede-agent binary next to this one) or, without one, simulated hosts.
    /// It serves TLS with a CA of its own and writes `<data-dir>/cloudctl.toml`, a ready cloudctl
    /// context (`export ANDROMEDE_CONFIG=<data-dir>/cloudctl.toml`).
    Dev {
        /// Simulated hosts to register on first start (default: 3 without a local agent, 0 with).
        #[arg(long)]
        hosts: Option<u32>,
        /// The agent binary for the local host (default: andromede-agent next to this binary).
        #[arg(long)]
        agent_bin: Option<PathBuf>,
        /// Run no local agent, only simulated hosts.
        #[arg(long)]
        no_agent: bool,
        /// The local agent's hypervisor driver: libvirt (real QEMU guests; the dev cloud stops
        /// if libvirt is not usable), or fake (simulated guests).
        #[arg(long, default_value = "libvirt", value_parser = ["libvirt", "fake"])]
        agent_driver: String,
        /// Where scripts/build-guest-image.sh put the test guest (registered as image `tiny`).
        #[arg(long, default_value = "target/guest")]
        guest_dir: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Settings,
    },
}

fn init_logs(format: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,sqlx=warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == Some("json") {
        b.json().init();
    } else {
        b.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The cloudctl profile file `dev` writes into its data directory.
const DEV_CONTEXT_FILE: &str = "cloudctl.toml";

/// Writes `<data-dir>/cloudctl.toml`: a cloudctl profile file whose current context, `dev`, is
/// this dev cloud, with absolute paths so that it works from any directory. It is rewritten at
/// every start, since it describes this dev cloud rather than anyone's choices, and holds no
/// secret: only the path of the token file.
fn write_dev_context(
    data_dir: &Path,
    endpoint: &str,
    ca_cert: Option<&Path>,
    token_file: &Path,
) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    #[derive(serde::Serialize)]
    struct Profile {
        endpoint: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        ca_cert: Option<PathBuf>,
        token_file: PathBuf,
    }
    #[derive(serde::Serialize)]
    struct ContextFile {
        current: &'static str,
        profiles: BTreeMap<&'static str, Profile>,
    }
    let profile = Profile {
        endpoint: endpoint.to_owned(),
        ca_cert: ca_cert.map(std::path::absolute).transpose()?,
        token_file: std::path::absolute(token_file)?,
    };
    let file = ContextFile {
        current: "dev",
        profiles: BTreeMap::from([("dev", profile)]),
    };
    let path = data_dir.join(DEV_CONTEXT_FILE);
    let text = format!(
        "# Written by `andromede-server dev` at each start: the cloudctl context of this dev cloud.\n\
         # Use it with `export ANDROMEDE_CONFIG=<this file>`; changes here are overwritten.\n\n{}",
        toml::to_string(&file)?
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run { config, settings } => {
            let s = settings.load(config.as_deref())?;
            init_logs(s.log_format.as_deref());
            let r = serve::resolve(s)?;
            let node = serve::start_node(&r).await?;
            serve::serve(&r, node, shutdown_signal()).await
        }
        Cmd::IssueCert {
            ca_dir,
            node_id,
            names,
            out,
            with_ca_key,
        } => {
            let ca_files = andromede_pki::CaFiles::in_dir(&ca_dir);
            let ca = andromede_pki::Ca::load(&ca_files)?;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let names = andromede_pki::names_of(&names);
            let (cert, key) = ca.issue_server(node_id, &names)?;
            let files = andromede_pki::ServerTls::in_dir(&out);
            andromede_pki::write_files(&[
                (&files.key, key.as_str(), true),
                (&files.cert, cert.as_str(), false),
                (&files.ca, ca.pem(), false),
            ])?;
            if with_ca_key {
                let key = std::fs::read_to_string(&ca_files.key)?;
                andromede_pki::write_private(&out.join("ca-key.pem"), &key)?;
            }
            eprintln!(
                "wrote {} (for {names:?}), its key and the CA into {}",
                files.cert.display(),
                out.display()
            );
            Ok(())
        }
        Cmd::Dev {
            hosts,
            agent_bin,
            no_agent,
            agent_driver,
            guest_dir,
            config,
            mut settings,
        } => {
            let agent_bin = match agent_bin {
                Some(p) => Some(p),
                None => std::env::current_exe()
                    .ok()
                    .and_then(|e| e.parent().map(|d| d.join("andromede-agent")))
                    .filter(|p| p.is_file()),
            }
            .filter(|_| !no_agent);
            if agent_bin.is_none() && !no_agent {
                eprintln!("andromede-server dev: no andromede-agent binary next to this one (build it with `cargo build -p andromede-agent`): using simulated hosts only");
            }
            let hosts = hosts.unwrap_or(if agent_bin.is_some() { 0 } else { 3 });
            settings.init = Some(true);
            let s = settings.load(config.as_deref())?;
            let token_file_given = s.bootstrap_token_file.is_some();
            init_logs(s.log_format.as_deref());
            let mut r = serve::resolve(s)?;
            // The data directory reaches libvirt through the local agent; libvirtd runs in `/`,
            // so a relative path (the default `andromede-data`) would point elsewhere there.
            std::fs::create_dir_all(&r.data_dir)?;
            r.data_dir = std::fs::canonicalize(&r.data_dir)?;
            if !token_file_given {
                r.bootstrap_token_file = r.data_dir.join(andromede_server::bootstrap::TOKEN_FILE);
            }
            let guest_dir = std::fs::canonicalize(&guest_dir).unwrap_or(guest_dir);
            let node = serve::start_node(&r).await?;
            let seeding = tokio::spawn(andromede_server::seed::seed(
                node.clone(),
                hosts,
                Some(guest_dir),
            ));
            let local = match &agent_bin {
                Some(_) if agent_driver == "fake" => {
                    "a local agent on the FAKE driver (guests are simulated, not real VMs)"
                }
                Some(_) => "a local agent on libvirt (real QEMU guests)",
                None => "simulated hosts only (no local agent)",
            };
            // The agent ending (libvirt unusable, say) ends the dev cloud: it never carries on
            // without the host it promised.
            let (agent_done, agent_ended) = tokio::sync::oneshot::channel::<anyhow::Error>();
            let agent = agent_bin.map(|bin| {
                let fut = andromede_server::seed::local_agent(
                    node.clone(),
                    bin,
                    r.listen.clone(),
                    r.data_dir.clone(),
                    agent_driver,
                    r.tls
                        .as_ref()
                        .map(|t| std::fs::canonicalize(&t.ca_file).unwrap_or(t.ca_file.clone())),
                );
                tokio::spawn(async move {
                    if let Err(e) = fut.await {
                        let _ = agent_done.send(e);
                    }
                })
            });
            let ca_file = r
                .tls
                .as_ref()
                .map(|t| std::fs::canonicalize(&t.ca_file).unwrap_or(t.ca_file.clone()));
            let (endpoint, ca_line) = match &ca_file {
                Some(ca) => (
                    format!("https://{}", r.listen),
                    format!("  export ANDROMEDE_CA_CERT={}\n", ca.display()),
                ),
                None => (format!("http://{}", r.listen), String::new()),
            };
            // The same settings as a ready cloudctl context: one variable instead of three.
            let context_line = match write_dev_context(
                &r.data_dir,
                &endpoint,
                ca_file.as_deref(),
                &r.bootstrap_token_file,
            ) {
                Ok(path) => format!(
                    "\nOr use the cloudctl context it wrote, {}:\n\n  export ANDROMEDE_CONFIG={}\n  cloudctl config get-contexts\n",
                    path.display(),
                    path.display()
                ),
                Err(e) => {
                    eprintln!("andromede-server dev: no cloudctl context written: {e:#}");
                    String::new()
                }
            };
            eprintln!(
                "\nAndromède is starting on {endpoint} (data in {}) with {local}.\nThe first cloud-admin token is in {} (mode 0600). Point cloudctl at it:\n\n  export ANDROMEDE_ENDPOINT={endpoint}\n{ca_line}  export ANDROMEDE_TOKEN=$(cat {})\n  cloudctl host list\n{context_line}",
                r.data_dir.display(),
                r.bootstrap_token_file.display(),
                r.bootstrap_token_file.display()
            );
            let failure = std::sync::Arc::new(std::sync::Mutex::new(None::<anyhow::Error>));
            let failed = failure.clone();
            let stop = async move {
                tokio::select! {
                    _ = shutdown_signal() => {}
                    Ok(e) = agent_ended => {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    }
                }
            };
            let res = serve::serve(&r, node, stop).await;
            seeding.abort();
            if let Some(a) = agent {
                a.abort();
            }
            if let Some(e) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(e.context("the dev cloud stopped because its local agent stopped"));
            }
            res
        }
    }
}
