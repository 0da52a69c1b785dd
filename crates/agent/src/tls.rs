//! The host's side of mutual TLS: the cluster CA (given, or found on first contact and checked
//! against the join token's pin), the host's own key (made here, never sent) and the
//! certificate the cluster issued for it, all kept in the state directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Pki(#[from] andromede_pki::PkiError),
    #[error("{0}")]
    Discovery(String),
    #[error("{0}")]
    Identity(#[from] crate::identity::IdentityError),
}

/// Where the host keeps its TLS files.
#[derive(Debug, Clone)]
pub struct Files {
    pub ca: PathBuf,
    pub key: PathBuf,
    pub cert: PathBuf,
}

impl Files {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            key: dir.join("host-key.pem"),
            cert: dir.join("host.pem"),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a file, `None` when it does not exist.
pub fn read(path: &Path) -> Result<Option<String>, TlsError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Writes a file atomically (temp file, fsync, rename), mode 0600.
pub fn write(path: &Path, text: &str) -> Result<(), TlsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(crate::identity::write_private(dir, path, text.as_bytes())?)
}

/// The host's key, made on first use and kept: enrollment retries and renewals reuse it, so
/// a certificate on disk always matches the key beside it.
pub fn host_key(files: &Files) -> Result<String, TlsError> {
    if let Some(k) = read(&files.key)? {
        return Ok(k);
    }
    let (key, _) = andromede_pki::new_request()?;
    write(&files.key, &key)?;
    Ok(key)
}

/// A certificate signing request for `key`.
pub fn request(key: &str) -> Result<String, TlsError> {
    Ok(andromede_pki::request_for(key)?)
}

/// What the agent presents and trusts over TLS; the certificate changes on renewal.
pub struct HostTls {
    pub files: Files,
    pub ca: String,
    pub key: String,
    cert: Mutex<String>,
}

impl HostTls {
    pub fn new(files: Files, ca: String, key: String, cert: String) -> Arc<Self> {
        Arc::new(Self {
            files,
            ca,
            key,
            cert: Mutex::new(cert),
        })
    }

    pub fn cert(&self) -> String {
        self.cert.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Keeps a renewed certificate (on disk first, so a crash never loses the one in use).
    pub fn renewed(&self, pem: &str) -> Result<(), TlsError> {
        write(&self.files.cert, pem)?;
        *self.cert.lock().unwrap_or_else(|p| p.into_inner()) = pem.to_string();
        Ok(())
    }
}

/// Splits a join token into what the server checks and the CA pin after it, if any.
pub fn split_token(token: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = token.trim().split('.').collect();
    match parts.as_slice() {
        [id, secret, pin] => (format!("{id}.{secret}"), Some(pin.to_ascii_lowercase())),
        _ => (token.trim().to_string(), None),
    }
}

/// Finds the cluster CA on first contact: a TLS handshake with `addr` whose chain must hold a
/// certificate with the pinned SHA-256. Nothing is sent over that connection; the CA found
/// is then trusted the normal way, so the server's own certificate is verified against it.
pub fn discover(addr: &str, pin: &str) -> Result<String, TlsError> {
    let bare = addr
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = match bare.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => bare,
    };
    let bad =
        |what: String| TlsError::Discovery(format!("finding the cluster CA at {addr}: {what}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = Arc::new(Capture {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(seen.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| bad(format!("{host:?}: {e}")))?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| bad(e.to_string()))?;
    let sock = std::net::ToSocketAddrs::to_socket_addrs(bare)
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("no address".into()))?;
    let mut tcp = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(5))
        .map_err(|e| bad(e.to_string()))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| bad(e.to_string()))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| bad(e.to_string()))?;
    }
    let chain = seen.chain.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for der in &chain {
        let pem = andromede_pki::pem_of_der(der);
        if andromede_pki::pin_of(&pem)? == pin {
            return Ok(pem);
        }
    }
    Err(bad(format!(
        "no certificate of the {} the server presented has the join token's pin: it is not this cluster, or the token is for another",
        chain.len()
    )))
}

/// Accepts any chain for the one discovery handshake, keeping it to be checked by pin.
#[derive(Debug)]
struct Capture {
    chain: Mutex<Vec<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        chain.push(end_entity.to_vec());
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_splits_off_its_pin() {
        assert_eq!(split_token("a.b"), ("a.b".into(), None));
        assert_eq!(split_token(" a.b.ABC "), ("a.b".into(), Some("abc".into())));
    }

    #[test]
    fn the_key_is_made_once_and_kept_private() {
        let d = tempfile::tempdir().unwrap();
        let f = Files::in_dir(d.path());
        let k = host_key(&f).unwrap();
        assert_eq!(host_key(&f).unwrap(), k);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&f.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(request(&k).unwrap().contains("CERTIFICATE REQUEST"));
    }
}
