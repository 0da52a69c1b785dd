//! Who a certificate speaks for. The CA writes the role and ids into URI names
//! (`urn:andromede:server:<id>`, `urn:andromede:host:<id>` with `urn:andromede:datacenter:<id>`)
//! and the extended key usage; a listener reads them back from a verified peer certificate.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

pub(crate) const SERVER_URN: &str = "urn:andromede:server:";
pub(crate) const HOST_URN: &str = "urn:andromede:host:";
pub(crate) const DATACENTER_URN: &str = "urn:andromede:datacenter:";

/// The identity a cluster certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRole {
    /// A control-plane server (Raft id).
    Server { node_id: u64 },
    /// A host's agent, bound to one host in one datacenter.
    Host {
        host_id: String,
        datacenter_id: String,
    },
}

/// A peer certificate read back: its role, serial (lowercase hex) and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub role: PeerRole,
    pub serial: String,
    pub not_after_ms: i64,
}

/// Reads the identity from a DER certificate the TLS layer has already verified against the
/// cluster CA. `None` for a certificate that names no role, names two, or whose key usage does
/// not fit it (a host certificate is for client authentication only).
pub fn peer_of(der: &[u8]) -> Option<Peer> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut server = None;
    let mut host = None;
    let mut datacenter = None;
    let mut roles = 0;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            let GeneralName::URI(u) = n else { continue };
            if let Some(id) = u.strip_prefix(SERVER_URN) {
                server = id.parse::<u64>().ok();
                roles += 1;
            } else if let Some(id) = u.strip_prefix(HOST_URN) {
                host = Some(id.to_string());
                roles += 1;
            } else if let Some(id) = u.strip_prefix(DATACENTER_URN) {
                datacenter = Some(id.to_string());
            }
        }
    }
    let eku = cert.extended_key_usage().ok().flatten().map(|e| e.value);
    let server_auth = eku.is_some_and(|e| e.server_auth);
    let client_auth = eku.is_some_and(|e| e.client_auth);
    let role = match (roles, server, host, datacenter) {
        (1, Some(node_id), None, None) if server_auth && client_auth => {
            PeerRole::Server { node_id }
        }
        (1, None, Some(host_id), Some(datacenter_id))
            if client_auth && !server_auth && !host_id.is_empty() && !datacenter_id.is_empty() =>
        {
            PeerRole::Host {
                host_id,
                datacenter_id,
            }
        }
        _ => return None,
    };
    Some(Peer {
        role,
        serial: hex(cert.raw_serial()),
        not_after_ms: cert.validity().not_after.timestamp().saturating_mul(1000),
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
