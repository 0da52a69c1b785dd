//! The server's TLS identity: given files, the ones in the data directory, or on the first
//! server of a new cluster a new cluster CA and a certificate from it. Plaintext only when asked.
//! With the CA key, the server also issues host certificates.

use andromede_api::v1::HostCertificate;
use andromede_pki::{Ca, CaFiles, ServerTls};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What the listener serves with and what peers are trusted by, as PEM.
#[derive(Clone)]
pub struct Tls {
    pub cert: String,
    pub key: String,
    pub ca: String,
    /// Where the CA certificate is, for the operator and the clients.
    pub ca_file: PathBuf,
    /// The CA's SHA-256 (hex), which join tokens carry so agents can pin it.
    pub pin: String,
    /// The CA itself when this server holds its key: it then issues host certificates.
    pub issuer: Option<Arc<Issuer>>,
}

/// Settings that choose the TLS identity.
pub struct Choice<'a> {
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub ca: Option<&'a Path>,
    pub ca_key: Option<&'a Path>,
    pub plaintext: bool,
    pub host_cert_ttl: Duration,
}

/// Issues host certificates from the cluster CA.
pub struct Issuer {
    ca: Ca,
    host_ttl: Duration,
}

impl Issuer {
    /// A certificate for the key in `csr`, naming `host_id` and `datacenter_id` (both taken
    /// from the replicated state by the caller). Renewal is due when a third of it is left.
    pub fn host(
        &self,
        csr: &str,
        host_id: &str,
        datacenter_id: &str,
    ) -> Result<(andromede_pki::Issued, HostCertificate), andromede_pki::PkiError> {
        let issued = self
            .ca
            .issue_host(csr, host_id, datacenter_id, self.host_ttl)?;
        let ttl_ms = i64::try_from(self.host_ttl.as_millis()).unwrap_or(i64::MAX / 4);
        let cert = HostCertificate {
            pem: issued.pem.clone(),
            not_after_ms: issued.not_after_ms,
            renew_after_ms: issued.not_after_ms - ttl_ms / 3,
        };
        Ok((issued, cert))
    }
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
        ServerTls::create_with_ca(&dir, &cluster[..12], node_id, &names)
            .context("creating the cluster CA")?;
        tracing::info!(ca = %default.ca.display(), names = ?names, "made a new cluster CA and this server's certificate; clients trust the CA file");
    }
    let (cert, key, ca) = files.read().context("reading the TLS files")?;
    let pin = andromede_pki::pin_of(&ca)
        .with_context(|| format!("{} is not a PEM certificate", files.ca.display()))?;
    let key_file = c
        .ca_key
        .map_or_else(|| dir.join("ca-key.pem"), Path::to_path_buf);
    let issuer = if key_file.is_file() {
        let ca_files = CaFiles {
            cert: files.ca.clone(),
            key: key_file,
        };
        let ca = Ca::load(&ca_files).context("loading the cluster CA")?;
        Some(Arc::new(Issuer {
            ca,
            host_ttl: c.host_cert_ttl,
        }))
    } else {
        anyhow::ensure!(
            c.ca_key.is_none(),
            "--tls-ca-key {} does not exist",
            key_file.display()
        );
        tracing::warn!(key = %key_file.display(), "no cluster CA key: this server cannot enroll hosts (enrollment through it fails; give it --tls-ca-key)");
        None
    };
    Ok(Some(Tls {
        cert,
        key,
        ca,
        ca_file: files.ca,
        pin,
        issuer,
    }))
}
