//! The cluster's certificates: a CA made when the cluster is initialized, and the server
//! certificates it issues (for the names and addresses clients use), all as PEM files.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
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

fn validity(p: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back, for clocks a little behind.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(days);
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
        validity(&mut p, CA_DAYS);
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

    /// A server certificate for `names` (DNS names or IP addresses), as (certificate, key) PEM.
    pub fn issue_server(&self, id: &str, names: &[String]) -> Result<(String, String), PkiError> {
        let mut p = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Andromède");
        dn.push(DnType::CommonName, format!("andromede-server {id}"));
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut p, SERVER_DAYS);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
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
        server_id: &str,
        names: &[String],
    ) -> Result<Self, PkiError> {
        let ca = Ca::create(&CaFiles::in_dir(dir), cluster)?;
        let files = Self::in_dir(dir);
        let (cert, key) = ca.issue_server(server_id, names)?;
        write(&files.key, &key, true)?;
        write(&files.cert, &cert, false)?;
        Ok(files)
    }

    /// Reads the three files, as (certificate, key, CA) PEM.
    pub fn read(&self) -> Result<(String, String, String), PkiError> {
        Ok((read(&self.cert)?, read(&self.key)?, read(&self.ca)?))
    }
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
        let files = ServerTls::create_with_ca(d.path(), "c1", "1", &["127.0.0.1".into()]).unwrap();
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
        again.issue_server("2", &["10.0.0.2".into()]).unwrap();
        // Never overwritten.
        assert!(Ca::create(&CaFiles::in_dir(d.path()), "c2").is_err());
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
