//! Server settings: every one can come from the TOML config file or a flag (flags win).

use serde::Deserialize;
use std::path::PathBuf;

/// Settings as flags; the same keys (snake_case) are read from `--config FILE`.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Raft node id of this server (unique in the region, never reused; > 0).
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Address the gRPC listener binds (public API and server-to-server calls).
    #[arg(long)]
    pub listen: Option<String>,
    /// Address other servers use to reach this one (defaults to --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Directory for the Raft log, the SQLite state and snapshots.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// With --init on a new cluster: the file holding the first cloud-admin token (read when
    /// it exists, else written, mode 0600). Default: bootstrap-admin-token in the data directory.
    #[arg(long)]
    pub bootstrap_token_file: Option<PathBuf>,
    /// Over --insecure-plaintext only: the shared secret servers call each other with (env
    /// ANDROMEDE_CLUSTER_TOKEN). Default: the first server makes one in its data directory
    /// (cluster-token). Over TLS servers prove themselves by their certificates instead.
    #[arg(long, env = "ANDROMEDE_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,
    /// The cluster's data key, which seals tenant secrets (user-data) at rest. Default:
    /// data-key in the data directory, made by the first server; every joining server needs a
    /// copy of it.
    #[arg(long)]
    pub data_key_file: Option<PathBuf>,
    /// This server's TLS certificate (PEM). Default: tls/server.pem in the data directory, which
    /// the first server (--init) makes with a new cluster CA (tls/ca.pem).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM). Default: tls/server-key.pem in the data directory.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// The CA that issued the servers' certificates, trusted when this server calls another.
    /// Default: tls/ca.pem in the data directory.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// The key of the cluster CA (PEM), with which this server issues host certificates at
    /// enrollment and renewal. Default: tls/ca-key.pem in the data directory when it exists.
    #[arg(long)]
    pub tls_ca_key: Option<PathBuf>,
    /// Lifetime of host certificates in seconds (default 30 days); agents renew them over
    /// their stream when a third of it is left.
    #[arg(long)]
    pub host_cert_ttl_secs: Option<u64>,
    /// Serve plaintext HTTP/2 instead of TLS: tokens and user-data then cross the network in
    /// the clear. Only for a private test network.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[serde(default)]
    pub insecure_plaintext: Option<bool>,
    /// Prometheus metrics listener, e.g. 127.0.0.1:9400 (off when unset).
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Initialize a new single-node cluster on first start (never on a joining node).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[serde(default)]
    pub init: Option<bool>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout in milliseconds (the maximum is twice this).
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,
    /// Build a snapshot (and compact the log) every this many applied entries.
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// Log entries kept behind the last snapshot for slow followers.
    #[arg(long)]
    pub keep_logs: Option<u64>,
    /// Placement strategy: spread (default) or pack.
    #[arg(long)]
    pub strategy: Option<String>,
    /// Seconds without a heartbeat after which a host's agent counts as gone: the host goes
    /// down and its instances HOST_LOST (default 10).
    #[arg(long)]
    pub host_ttl_secs: Option<u64>,
    /// Concurrent gRPC streams (calls) one client connection may open (default 256).
    #[arg(long)]
    pub max_concurrent_streams: Option<u32>,
    /// Seconds a call may take before it fails with DEADLINE_EXCEEDED (default 30); a stream's
    /// messages (watch, agent) are not bounded by it, only its opening.
    #[arg(long)]
    pub request_timeout_secs: Option<u64>,
    /// Concurrent event watches this server serves; more are refused with RESOURCE_EXHAUSTED
    /// (default 1024).
    #[arg(long)]
    pub max_watches: Option<usize>,
    /// Host enrollments one peer address may attempt per second (default 5, in bursts of four
    /// times that); more answer RESOURCE_EXHAUSTED before the join token is even looked at.
    #[arg(long)]
    pub enrollments_per_sec: Option<u32>,
}

impl Settings {
    /// Fills every unset flag from the config file's values.
    pub fn merge(self, file: Settings) -> Settings {
        Settings {
            node_id: self.node_id.or(file.node_id),
            listen: self.listen.or(file.listen),
            advertise: self.advertise.or(file.advertise),
            data_dir: self.data_dir.or(file.data_dir),
            bootstrap_token_file: self.bootstrap_token_file.or(file.bootstrap_token_file),
            cluster_token: self.cluster_token.or(file.cluster_token),
            data_key_file: self.data_key_file.or(file.data_key_file),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_ca: self.tls_ca.or(file.tls_ca),
            tls_ca_key: self.tls_ca_key.or(file.tls_ca_key),
            host_cert_ttl_secs: self.host_cert_ttl_secs.or(file.host_cert_ttl_secs),
            insecure_plaintext: self.insecure_plaintext.or(file.insecure_plaintext),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            init: self.init.or(file.init),
            log_format: self.log_format.or(file.log_format),
            heartbeat_ms: self.heartbeat_ms.or(file.heartbeat_ms),
            election_timeout_ms: self.election_timeout_ms.or(file.election_timeout_ms),
            snapshot_every: self.snapshot_every.or(file.snapshot_every),
            keep_logs: self.keep_logs.or(file.keep_logs),
            strategy: self.strategy.or(file.strategy),
            host_ttl_secs: self.host_ttl_secs.or(file.host_ttl_secs),
            max_concurrent_streams: self.max_concurrent_streams.or(file.max_concurrent_streams),
            request_timeout_secs: self.request_timeout_secs.or(file.request_timeout_secs),
            max_watches: self.max_watches.or(file.max_watches),
            enrollments_per_sec: self.enrollments_per_sec.or(file.enrollments_per_sec),
        }
    }

    pub fn load(self, path: Option<&std::path::Path>) -> anyhow::Result<Settings> {
        match path {
            None => Ok(self),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("reading config {}: {e}", p.display()))?;
                let file: Settings = toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("config {}: {e}", p.display()))?;
                Ok(self.merge(file))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file() {
        let flags = Settings {
            node_id: Some(2),
            ..Default::default()
        };
        let file: Settings =
            toml::from_str("node_id = 1\nlisten = \"127.0.0.1:1\"\nheartbeat_ms = 10").unwrap();
        let s = flags.merge(file);
        assert_eq!(s.node_id, Some(2));
        assert_eq!(s.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(s.heartbeat_ms, Some(10));
        assert!(toml::from_str::<Settings>("bogus = 1").is_err());
    }
}
