//! The one client of the Andromède API, shared by cloudctl, the Terraform provider and the bench:
//! the authenticated channel ([`Client`]), deadlines and retries ([`retry`]), waiting for a
//! state ([`wait`]), following list pages ([`paging`]) and the text of a failed call ([`errors`]).

pub mod errors;
pub mod paging;
pub mod retry;
pub mod wait;

mod connection;

pub use connection::{BearerAuth, Client, ClientBuilder, Svc};
pub use errors::{code_words, describe, is_transport_failure, ConnectError};
pub use retry::{is_transient, with_deadline, Retry};

/// Where clients connect when nothing says otherwise.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7400";

/// One unary call waits this long unless told otherwise; long waits are polls of short calls.
pub const DEFAULT_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
