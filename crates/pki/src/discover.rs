//! Finding the cluster CA on first contact: one TLS handshake whose presented chain must hold
//! the certificate a join token pins (its SHA-256), as kubeadm's discovery hash does.

use crate::PkiError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Finds the cluster CA on first contact: a TLS handshake with `addr` whose chain must hold a
/// certificate with the pinned SHA-256. Nothing is sent over that connection; the CA found
/// is then trusted the normal way, so the server's own certificate is verified against it.
pub fn discover(addr: &str, pin: &str) -> Result<String, PkiError> {
    let bare = addr
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = match bare.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => bare,
    };
    let bad =
        |what: String| PkiError::Discovery(format!("finding the cluster CA at {addr}: {what}"));
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
        let pem = crate::pem_of_der(der);
        if crate::pin_of(&pem)? == pin {
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
