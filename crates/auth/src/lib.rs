//! Identities of the cloud: the API token format, the roles a token carries, and the one table
//! mapping every RPC to the access it needs (enforced by the server before any handler runs).

pub mod access;
pub mod token;

pub use access::{access, Access, Principal, ACCESS};
pub use token::{generate, parse, sha256_hex, ParsedToken, TokenError};
