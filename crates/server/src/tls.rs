//! The server's TLS identity: given files, the ones in the data directory, or on the first
//! server of a new cluster a new cluster CA and a certificate from it. Plaintext only when asked.

use andromede_pki::ServerTls;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// What the listener serves with and what peers are trusted by, as PEM.
#[derive(Clone)]
pub struct Tls {
    pub cert: String,
    pub key: String,
    pub ca: String,
    /// Where the CA certificate is, for the operator and the clients.
    pub ca_file: PathBuf,
}

/// Settings that choose the TLS identity.
pub struct Choice<'a> {
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub ca: Option<&'a Path>,
    pub plaintext: bool,
}

/// The TLS identity, or `None` for plaintext (asked for, and warned about).
pub fn resolve(
    c: Choice<'_>,
    data_dir: &Path,
    init: bool,
    node_id: u64,
    addrs: &[&str],
) -> anyhow::Result<Option<Tls>> {
    if c.plaintext {
        tracing::warn!("serving plaintext (--insecure-plaintext): tokens and user-data cross the network in the clear");
        return Ok(None);
    }
    let dir = data_dir.join("tls");
    let default = ServerTls::in_dir(&dir);
    let files = ServerTls {
        cert: c.cert.map_or(default.cert.clone(), Path::to_path_buf),
        key: c.key.map_or(default.key.clone(), Path::to_path_buf),
        ca: c.ca.map_or(default.ca.clone(), Path::to_path_buf),
    };
    if !files.exists() {
        let given = c.cert.is_some() || c.key.is_some() || c.ca.is_some();
        anyhow::ensure!(
            init && !given,
            "no TLS certificate: {} (with its key and the cluster CA) is missing. A joining server needs a certificate from the cluster CA (`andromede-server issue-cert` on the first server, then --tls-cert, --tls-key and --tls-ca), or --insecure-plaintext",
            files.cert.display()
        );
        let names = andromede_pki::names_of(addrs);
        let cluster = uuid::Uuid::new_v4().simple().to_string();
        ServerTls::create_with_ca(&dir, &cluster[..12], &node_id.to_string(), &names)
            .context("creating the cluster CA")?;
        tracing::info!(ca = %default.ca.display(), names = ?names, "made a new cluster CA and this server's certificate; clients trust the CA file");
    }
    let (cert, key, ca) = files.read().context("reading the TLS files")?;
    Ok(Some(Tls {
        cert,
        key,
        ca,
        ca_file: files.ca,
    }))
}
