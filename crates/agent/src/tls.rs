//! The host's side of mutual TLS: the cluster CA (given, or found on first contact and checked
//! against the join token's pin), the host's own key (made here, never sent) and the
//! certificate the cluster issued for it, all kept in the state directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// Finds the cluster CA on first contact by the join token's pin (see
/// [`andromede_pki::discover`]).
pub fn discover(addr: &str, pin: &str) -> Result<String, TlsError> {
    Ok(andromede_pki::discover(addr, pin)?)
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
