//! API token strings: `andro_<id>_<secret><checksum>`, recognisable by secret scanners (the
//! prefix) and checked for typos without a lookup (the CRC-32 checksum over what precedes it).

use sha2::{Digest, Sha256};

/// What every token starts with.
pub const PREFIX: &str = "andro_";
const ID_LEN: usize = 32;
const SECRET_LEN: usize = 64;
const CHECKSUM_LEN: usize = 8;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Why a presented string is not a well-formed token (no lookup has happened yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not an Andromède token (they start with {PREFIX})")]
    Prefix,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("malformed token: checksum mismatch (a character is wrong or missing)")]
    Checksum,
}

/// A well-formed token split into the id (looked up) and the secret (hashed and compared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToken {
    pub id: String,
    pub secret: String,
}

/// SHA-256 of `s` as lower-case hex. The secrets hashed are 256 random bits, so a fast hash is
/// as strong as a slow one here.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// 244 random bits (two version-4 UUIDs) as 64 hex characters.
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn checksum(body: &str) -> String {
    format!("{:08x}", CRC.checksum(body.as_bytes()))
}

/// A fresh token: its id and the full string to hand out once.
pub fn generate() -> (String, String) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let token = assemble(&id, &random_secret());
    (id, token)
}

/// The token string for an id and a secret.
pub fn assemble(id: &str, secret: &str) -> String {
    let body = format!("{PREFIX}{id}_{secret}");
    let sum = checksum(&body);
    format!("{body}{sum}")
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Splits a presented token, checking its shape and checksum.
pub fn parse(s: &str) -> Result<ParsedToken, TokenError> {
    let rest = s.strip_prefix(PREFIX).ok_or(TokenError::Prefix)?;
    if rest.len() != ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN || !rest.is_ascii() {
        return Err(TokenError::Malformed("wrong length"));
    }
    let (id, rest) = rest.split_at(ID_LEN);
    let rest = rest
        .strip_prefix('_')
        .ok_or(TokenError::Malformed("no separator after the id"))?;
    let (secret, sum) = rest.split_at(SECRET_LEN);
    if !is_hex(id) || !is_hex(secret) || !is_hex(sum) {
        return Err(TokenError::Malformed(
            "only lower-case hex after the prefix",
        ));
    }
    if checksum(&s[..s.len() - CHECKSUM_LEN]) != sum {
        return Err(TokenError::Checksum);
    }
    Ok(ParsedToken {
        id: id.to_string(),
        secret: secret.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_back() {
        let (id, t) = generate();
        assert!(t.starts_with("andro_"));
        let p = parse(&t).unwrap();
        assert_eq!(p.id, id);
        assert_eq!(assemble(&p.id, &p.secret), t);
    }

    #[test]
    fn typos_and_strangers_are_caught_without_a_lookup() {
        let (_, t) = generate();
        // One character changed anywhere after the prefix breaks the checksum or the shape.
        for i in PREFIX.len()..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'a' { b'b' } else { b'a' };
            let bad = String::from_utf8(b).unwrap();
            assert!(parse(&bad).is_err(), "accepted {bad}");
        }
        assert_eq!(parse("ghp_abc"), Err(TokenError::Prefix));
        assert_eq!(
            parse(&t[..t.len() - 1]),
            Err(TokenError::Malformed("wrong length"))
        );
        let upper = t.to_ascii_uppercase().replacen("ANDRO_", "andro_", 1);
        assert!(parse(&upper).is_err());
    }
}
