//! The cluster's certificates: a CA made when the cluster is initialized, and the server
//! certificates it issues: servers (for the names and addresses clients use, and as peers of
//! each other) and hosts (from the agent's own key, bound to the host and its datacenter).

mod discover;
mod peer;

pub use discover::discover;
pub use peer::{peer_of, Peer, PeerRole};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Cert(#[from] rcgen::Error),
    #[error("{path} does not hold a usable {what}")]
    Unusable { path: PathBuf, what: &'static str },
    #[error("not a PEM certificate signing request")]
    BadRequest,
    #[error("not a PEM certificate")]
    BadCertificate,
    #[error("{0}")]
    Discovery(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a new file; keys get mode 0600.
fn write(path: &Path, text: &str, private: bool) -> Result<(), PkiError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = o.open(path).map_err(io(path))?;
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Writes a new file only its owner can read (mode 0600), creating its directory.
pub fn write_private(path: &Path, text: &str) -> Result<(), PkiError> {
    write(path, text, true)
}

/// Writes new files (`(path, text, private)`), none of which may exist yet.
pub fn write_files(files: &[(&Path, &str, bool)]) -> Result<(), PkiError> {
    for (p, _, _) in files {
        if p.exists() {
            return Err(PkiError::Io {
                path: p.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
            });
        }
    }
    for (p, t, private) in files {
        write(p, t, *private)?;
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(io(path))
}

/// Validity of what the CA issues, and of the CA itself.
const SERVER_DAYS: i64 = 398;
const CA_DAYS: i64 = 3650;

fn validity(p: &mut CertificateParams, lifetime: time::Duration) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back, for clocks a little behind.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + lifetime;
    // Random and positive: a serial names one certificate, and revocation goes by it. The first
    // byte is never zero, so the encoding keeps all sixteen bytes.
    let mut serial = *uuid::Uuid::new_v4().as_bytes();
    serial[0] = 1 + serial[0] % 0x7f;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
}

fn uri(u: String) -> Result<SanType, PkiError> {
    Ok(SanType::URI(u.try_into()?))
}

/// A certificate the CA issued, with what the replicated state records of it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub pem: String,
    /// Lowercase hex, as [`peer_of`] reads it back.
    pub serial: String,
    pub not_after_ms: i64,
}

impl Issued {
    fn of(cert: &rcgen::Certificate, p: &CertificateParams) -> Self {
        // The serial as the certificate encodes it (DER drops leading zero bytes), so that it
        // is exactly what a listener reads back from the peer certificate.
        let serial = x509_parser::parse_x509_certificate(cert.der())
            .map(|(_, c)| peer::hex(c.raw_serial()))
            .unwrap_or_default();
        Self {
            pem: cert.pem(),
            serial,
            not_after_ms: (p.not_after.unix_timestamp_nanos() / 1_000_000) as i64,
        }
    }
}

/// The cluster CA: its certificate and signing key.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: String,
}

/// Where a CA keeps its files in a directory.
pub struct CaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CaFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("ca.pem"),
            key: dir.join("ca-key.pem"),
        }
    }
}

impl Ca {
    /// A new CA named after `cluster`, written to `files` (which must not exist yet).
    pub fn create(files: &CaFiles, cluster: &str) -> Result<Self, PkiError> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Andromède");
        dn.push(
            DnType::CommonName,
            format!("Andromède cluster CA {cluster}"),
        );
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut p, time::Duration::days(CA_DAYS));
        let key = KeyPair::generate()?;
        let cert = p.self_signed(&key)?;
        let pem = cert.pem();
        write(&files.key, &key.serialize_pem(), true)?;
        write(&files.cert, &pem, false)?;
        Ok(Self { cert, key, pem })
    }

    /// The CA in `files`.
    pub fn load(files: &CaFiles) -> Result<Self, PkiError> {
        let pem = read(&files.cert)?;
        let key = KeyPair::from_pem(&read(&files.key)?).map_err(|_| PkiError::Unusable {
            path: files.key.clone(),
            what: "CA key",
        })?;
        let params = CertificateParams::from_ca_cert_pem(&pem).map_err(|_| PkiError::Unusable {
            path: files.cert.clone(),
            what: "CA certificate",
        })?;
        // Rebuilt from its own parameters and key: the same subject and key, so what it signs
        // chains to the certificate on disk.
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key, pem })
    }

    /// The CA certificate, as clients are given it.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The SHA-256 of the CA certificate (hex): what a join token pins.
    pub fn pin(&self) -> String {
        pin_of(&self.pem).unwrap_or_default()
    }

    /// What a server certificate for Raft id `node_id` and `names` says.
    fn server_params(node_id: u64, names: &[String]) -> Result<CertificateParams, PkiError> {
        let mut p = CertificateParams::new(names.to_vec())?;
        p.subject_alt_names
            .push(uri(format!("{}{node_id}", peer::SERVER_URN))?);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Andromède");
        dn.push(DnType::CommonName, format!("andromede-server {node_id}"));
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity(&mut p, time::Duration::days(SERVER_DAYS));
        Ok(p)
    }

    /// A server certificate for Raft id `node_id` and `names` (DNS names or IP addresses), as
    /// (certificate, key) PEM. It serves clients and authenticates the server to its peers.
    pub fn issue_server(
        &self,
        node_id: u64,
        names: &[String],
    ) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate()?;
        let cert = Self::server_params(node_id, names)?.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A server certificate for the key in `csr_pem` (the joining server made it and keeps
    /// it); only the key is taken from the request.
    pub fn issue_server_for(
        &self,
        csr_pem: &str,
        node_id: u64,
        names: &[String],
    ) -> Result<Issued, PkiError> {
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|_| PkiError::BadRequest)?;
        csr.params = Self::server_params(node_id, names)?;
        let cert = csr.signed_by(&self.cert, &self.key)?;
        Ok(Issued::of(&cert, cert.params()))
    }

    /// A host certificate for the key in `csr_pem`, valid `lifetime`. Whatever the request
    /// asks for is dropped: the certificate names the host and datacenter given here (from the
    /// replicated state) and authenticates a client only, so it never passes as a server.
    pub fn issue_host(
        &self,
        csr_pem: &str,
        host_id: &str,
        datacenter_id: &str,
        lifetime: std::time::Duration,
    ) -> Result<Issued, PkiError> {
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|_| PkiError::BadRequest)?;
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![
            uri(format!("{}{host_id}", peer::HOST_URN))?,
            uri(format!("{}{datacenter_id}", peer::DATACENTER_URN))?,
        ];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Andromède");
        dn.push(DnType::CommonName, format!("andromede-host {host_id}"));
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(
            &mut p,
            time::Duration::try_from(lifetime).unwrap_or(time::Duration::days(30)),
        );
        csr.params = p;
        let cert = csr.signed_by(&self.cert, &self.key)?;
        Ok(Issued::of(&cert, cert.params()))
    }
}

/// A server's TLS files: its certificate and key, and the CA its peers' certificates come from.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl ServerTls {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("server.pem"),
            key: dir.join("server-key.pem"),
            ca: dir.join("ca.pem"),
        }
    }

    pub fn exists(&self) -> bool {
        self.cert.is_file() && self.key.is_file() && self.ca.is_file()
    }

    /// Makes a new CA in `dir` and a certificate for this server from it.
    pub fn create_with_ca(
        dir: &Path,
        cluster: &str,
        node_id: u64,
        names: &[String],
    ) -> Result<Self, PkiError> {
        let ca = Ca::create(&CaFiles::in_dir(dir), cluster)?;
        let files = Self::in_dir(dir);
        let (cert, key) = ca.issue_server(node_id, names)?;
        write(&files.key, &key, true)?;
        write(&files.cert, &cert, false)?;
        Ok(files)
    }

    /// Reads the three files, as (certificate, key, CA) PEM.
    pub fn read(&self) -> Result<(String, String, String), PkiError> {
        Ok((read(&self.cert)?, read(&self.key)?, read(&self.ca)?))
    }
}

/// A new key (it never leaves the caller) and a certificate signing request for it, as
/// (key, request) PEM.
pub fn new_request() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let csr = CertificateParams::default().serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// A certificate signing request for the key in `key_pem`.
pub fn request_for(key_pem: &str) -> Result<String, PkiError> {
    let key = KeyPair::from_pem(key_pem)?;
    Ok(CertificateParams::default()
        .serialize_request(&key)?
        .pem()?)
}

/// PEM text of one DER certificate.
pub fn pem_of_der(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Whether `pem` is a certificate signing request this CA can sign.
pub fn is_request(pem: &str) -> bool {
    CertificateSigningRequestParams::from_pem(pem).is_ok()
}

/// The DER bytes of the first certificate in `pem`.
pub fn der_of(pem: &str) -> Result<Vec<u8>, PkiError> {
    let (_, p) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| PkiError::BadCertificate)?;
    if p.label != "CERTIFICATE" {
        return Err(PkiError::BadCertificate);
    }
    Ok(p.contents)
}

/// The SHA-256 (hex) of the first certificate in `pem`, as join tokens pin the CA.
pub fn pin_of(pem: &str) -> Result<String, PkiError> {
    Ok(peer::hex(&sha2::Sha256::digest(der_of(pem)?)))
}

/// The identity in a PEM certificate (the agent reads its own back).
pub fn peer_of_pem(pem: &str) -> Option<Peer> {
    peer_of(&der_of(pem).ok()?)
}

/// The names a server certificate covers: the host parts of the given addresses
/// (`host:port`, with or without a scheme), plus `localhost` when one is a loopback address.
pub fn names_of(addrs: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for a in addrs {
        let a = a
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = match a.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => a,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host == "0.0.0.0" || host == "::" {
            continue;
        }
        if !names.iter().any(|n| n == host) {
            names.push(host.to_string());
        }
    }
    if names.iter().any(|n| n == "127.0.0.1" || n == "::1")
        && !names.iter().any(|n| n == "localhost")
    {
        names.push("localhost".into());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_issues_and_reloads() {
        let d = tempfile::tempdir().unwrap();
        let files = ServerTls::create_with_ca(d.path(), "c1", 1, &["127.0.0.1".into()]).unwrap();
        assert!(files.exists());
        let (cert, key, ca) = files.read().unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = Ca::load(&CaFiles::in_dir(d.path())).unwrap();
        assert_eq!(again.pem(), ca);
        let (server, _) = again.issue_server(2, &["10.0.0.2".into()]).unwrap();
        let (_, csr) = new_request().unwrap();
        let joined = again
            .issue_server_for(&csr, 3, &["10.0.0.3".into()])
            .unwrap();
        assert_eq!(
            peer_of_pem(&joined.pem).map(|p| p.role),
            Some(PeerRole::Server { node_id: 3 })
        );
        assert_eq!(
            peer_of_pem(&server).map(|p| p.role),
            Some(PeerRole::Server { node_id: 2 })
        );
        // Never overwritten.
        assert!(Ca::create(&CaFiles::in_dir(d.path()), "c2").is_err());
    }

    #[test]
    fn a_host_certificate_names_what_the_ca_says_only() {
        let d = tempfile::tempdir().unwrap();
        let ca = Ca::create(&CaFiles::in_dir(d.path()), "c1").unwrap();
        // The request asks for a server identity and a DNS name; neither survives.
        let key = KeyPair::generate().unwrap();
        let mut asked = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        asked
            .subject_alt_names
            .push(uri("urn:andromede:server:1".into()).unwrap());
        let csr = asked.serialize_request(&key).unwrap().pem().unwrap();
        let issued = ca
            .issue_host(&csr, "h-1", "dc-a", std::time::Duration::from_secs(3600))
            .unwrap();
        let peer = peer_of_pem(&issued.pem).unwrap();
        assert_eq!(
            peer.role,
            PeerRole::Host {
                host_id: "h-1".into(),
                datacenter_id: "dc-a".into()
            }
        );
        assert_eq!(peer.serial, issued.serial);
        assert_eq!(peer.not_after_ms / 1000, issued.not_after_ms / 1000);
        assert!(!issued.pem.contains("evil"));
        let der = der_of(&issued.pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(
            eku.client_auth && !eku.server_auth,
            "never a server certificate"
        );
        // The serial recorded is the one a listener reads back, whatever its bytes: many
        // issues, so a leading byte that DER would drop cannot slip by.
        for _ in 0..300 {
            let i = ca
                .issue_host(&csr, "h-1", "dc-a", std::time::Duration::from_secs(60))
                .unwrap();
            assert_eq!(peer_of_pem(&i.pem).unwrap().serial, i.serial);
        }
        // Two issues never share a serial.
        let again = ca
            .issue_host(&csr, "h-1", "dc-a", std::time::Duration::from_secs(3600))
            .unwrap();
        assert_ne!(again.serial, issued.serial);
        assert!(ca
            .issue_host("junk", "h", "d", std::time::Duration::from_secs(60))
            .is_err());
        let (_, own) = new_request().unwrap();
        ca.issue_host(&own, "h-2", "dc-b", std::time::Duration::from_secs(60))
            .unwrap();
        assert_eq!(ca.pin().len(), 64);
        assert_eq!(pin_of(ca.pem()).unwrap(), ca.pin());
    }

    #[test]
    fn names_come_from_addresses() {
        assert_eq!(
            names_of(&[
                "127.0.0.1:7400",
                "http://10.0.0.5:7400",
                "0.0.0.0:1",
                "srv.example:9"
            ]),
            vec!["127.0.0.1", "10.0.0.5", "srv.example", "localhost"]
        );
    }
}
