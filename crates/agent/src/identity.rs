//! The host identity an agent receives at enrollment, kept in its state directory (mode 0600)
//! so restarts reconnect without a new join token.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub host_id: String,
    pub host_name: String,
    pub datacenter_id: String,
    pub credential: String,
    /// When the host certificate is due for renewal (0: no certificate, plaintext).
    #[serde(default)]
    pub renew_after_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid identity file: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn file(dir: &Path) -> PathBuf {
    dir.join("identity.json")
}

fn pending_file(dir: &Path) -> PathBuf {
    dir.join("enrolling")
}

/// The credential for an enrollment in progress, created and kept on disk before the first
/// attempt: a retry after a crash or a lost answer presents the same one and gets the same host.
pub fn pending_credential(dir: &Path) -> Result<String, IdentityError> {
    let path = pending_file(dir);
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(IdentityError::Io { path, source }),
    }
    let cred = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    write_private(dir, &path, cred.as_bytes())?;
    Ok(cred)
}

/// Drops the pending credential once the identity is saved.
pub fn enrolled(dir: &Path) {
    let _ = std::fs::remove_file(pending_file(dir));
}

pub fn load(dir: &Path) -> Result<Option<Identity>, IdentityError> {
    let path = file(dir);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| IdentityError::Parse { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Io { path, source }),
    }
}

/// Writes the identity atomically (temp file, fsync, rename) so a crash never leaves half a file.
pub fn save(dir: &Path, id: &Identity) -> Result<(), IdentityError> {
    let path = file(dir);
    let body = serde_json::to_vec_pretty(id).map_err(|source| IdentityError::Parse {
        path: path.clone(),
        source,
    })?;
    write_private(dir, &path, &body)
}

/// Writes a mode-0600 file atomically (temp file, fsync, rename).
pub(crate) fn write_private(dir: &Path, path: &Path, body: &[u8]) -> Result<(), IdentityError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IdentityError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(body).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        assert!(load(d.path()).unwrap().is_none());
        let id = Identity {
            host_id: "h".into(),
            host_name: "n".into(),
            datacenter_id: "dc".into(),
            credential: "c".into(),
            renew_after_ms: 0,
        };
        let c1 = pending_credential(d.path()).unwrap();
        assert_eq!(
            pending_credential(d.path()).unwrap(),
            c1,
            "a retry reuses it"
        );
        save(d.path(), &id).unwrap();
        enrolled(d.path());
        assert_ne!(pending_credential(d.path()).unwrap(), c1);
        let back = load(d.path()).unwrap().unwrap();
        assert_eq!(back.host_id, "h");
        let mode = std::fs::metadata(d.path().join("identity.json"))
            .unwrap()
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
    }
}
