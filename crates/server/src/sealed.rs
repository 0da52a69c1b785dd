//! Tenant secrets at rest: an instance's user-data is sealed with the cluster's data key
//! (AES-256-GCM, bound to the instance id) before it is proposed, so the Raft log, snapshots
//! and SQLite only ever hold ciphertext. It is opened for the instance's API readers and for the
//! host that boots it.

use andromede_api::v1::Instance;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;

/// What a sealed value starts with: the format version and the id of the key that sealed it.
const PREFIX: &str = "sealed:v1:";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealed with data key {0}, which this server does not hold")]
    OtherKey(String),
    #[error("a sealed value is damaged: {0}")]
    Damaged(&'static str),
    #[error("the system random source failed")]
    Random,
}

/// The cluster's data key. Every server holds the same one (a file given to each, like the
/// cluster credential); it is never replicated.
pub struct DataKey {
    id: String,
    key: LessSafeKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey({})", self.id)
    }
}

impl DataKey {
    /// A key from its 64 hex characters; its id is the first 16 hex characters of its SHA-256.
    pub fn from_hex(hex_key: &str) -> Result<Self, String> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| "not hexadecimal".to_string())?;
        if bytes.len() != 32 {
            return Err(format!("{} bytes, not 32", bytes.len()));
        }
        let id = andromede_auth::sha256_hex(hex_key.trim())[..16].to_string();
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| "rejected by AES-256-GCM")?;
        Ok(Self {
            id,
            key: LessSafeKey::new(key),
        })
    }

    /// The key in `path`; on a server initializing the cluster, a new one written there.
    pub fn load(path: &Path, create: bool) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let t = andromede_auth::token::random_secret();
                crate::bootstrap::write_private(path, &t)?;
                tracing::info!(file = %path.display(), "wrote this cluster's data key; give a copy to every joining server as --data-key-file");
                t
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "{} is missing: a joining server needs a copy of the first server's data key (--data-key-file)",
                path.display()
            ),
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        };
        Self::from_hex(&text)
            .map_err(|e| anyhow::anyhow!("the data key in {}: {e}", path.display()))
    }

    /// Seals `plain` for the resource `id` (empty stays empty).
    pub fn seal(&self, id: &str, plain: &str) -> Result<String, SealError> {
        if plain.is_empty() {
            return Ok(String::new());
        }
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut buf = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(id.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SealError::Damaged("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!(
            "{PREFIX}{}:{}",
            self.id,
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// Opens what [`seal`](Self::seal) made for `id`; a value that was never sealed (written
    /// before sealing existed) comes back as it is.
    pub fn open(&self, id: &str, value: &str) -> Result<String, SealError> {
        let Some(rest) = value.strip_prefix(PREFIX) else {
            return Ok(value.to_string());
        };
        let (key_id, body) = rest
            .split_once(':')
            .ok_or(SealError::Damaged("no key id"))?;
        if key_id != self.id {
            return Err(SealError::OtherKey(key_id.to_string()));
        }
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| SealError::Damaged("not base64"))?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Damaged("too short"));
        }
        let mut ct = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes)
            .map_err(|_| SealError::Damaged("bad nonce"))?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(id.as_bytes()), &mut ct)
            .map_err(|_| SealError::Damaged("authentication failed"))?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Damaged("not UTF-8"))
    }

    /// Opens an instance's user-data in place; one that cannot be opened is cleared and
    /// logged, never passed on as ciphertext.
    pub fn open_instance(&self, i: &mut Instance) {
        let id = i.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default();
        match self.open(&id, &i.user_data) {
            Ok(p) => i.user_data = p,
            Err(e) => {
                tracing::error!(instance = %id, "user-data not readable: {e}");
                i.user_data.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        DataKey::from_hex(&"ab".repeat(32)).unwrap()
    }

    #[test]
    fn sealed_values_open_only_for_their_resource_and_key() {
        let k = key();
        let s = k
            .seal("inst-1", "#cloud-config\npassword: hunter2")
            .unwrap();
        assert!(s.starts_with(PREFIX) && !s.contains("hunter2"), "{s}");
        assert_eq!(
            k.open("inst-1", &s).unwrap(),
            "#cloud-config\npassword: hunter2"
        );
        // Moved to another instance, it does not open.
        assert!(matches!(k.open("inst-2", &s), Err(SealError::Damaged(_))));
        let other = DataKey::from_hex(&"cd".repeat(32)).unwrap();
        assert!(matches!(
            other.open("inst-1", &s),
            Err(SealError::OtherKey(_))
        ));
        // Two seals of one value differ (fresh nonces).
        assert_ne!(
            s,
            k.seal("inst-1", "#cloud-config\npassword: hunter2")
                .unwrap()
        );
        assert_eq!(k.seal("x", "").unwrap(), "");
        assert_eq!(
            k.open("x", "plain from before").unwrap(),
            "plain from before"
        );
        let mut damaged = s.clone();
        damaged.pop();
        assert!(k.open("inst-1", &damaged).is_err());
        assert!(DataKey::from_hex("abcd").is_err());
    }
}
