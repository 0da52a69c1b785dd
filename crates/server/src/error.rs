//! API errors and their precise gRPC status codes, with google.rpc field violations.

use andromede_model::validate::Violations;
use andromede_store::command::{CmdError, CmdErrorCode};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request")]
    Invalid(Violations),
    #[error("{0}")]
    Cmd(CmdError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    /// No host passed the filters; the message is the per-filter explanation.
    #[error("no host fits: {0}")]
    NoHost(String),
    #[error("{0}")]
    Unavailable(String),
    /// This node lost leadership while handling a write; the caller retries elsewhere.
    #[error("not the leader")]
    NotLeader,
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        let mut v = Violations::new();
        v.add(field, description);
        ApiError::Invalid(v)
    }

    /// `NOT_FOUND` for what a request field names.
    pub fn missing(field: &str, message: impl Into<String>) -> Self {
        ApiError::Cmd(CmdError::new(CmdErrorCode::NotFound, message).field(field))
    }

    /// `PERMISSION_DENIED` for what a field asks beyond the caller's role.
    pub fn denied(field: &str, message: impl Into<String>) -> Self {
        ApiError::Cmd(CmdError::new(CmdErrorCode::PermissionDenied, message).field(field))
    }

    /// `FAILED_PRECONDITION` caused by a request field's value.
    pub fn refused(field: &str, message: impl Into<String>) -> Self {
        ApiError::Cmd(CmdError::new(CmdErrorCode::FailedPrecondition, message).field(field))
    }
}

fn bad_request(code: Code, message: String, fields: Vec<(String, String)>) -> Status {
    let mut d = ErrorDetails::new();
    for (f, desc) in fields {
        d.add_bad_request_violation(f, desc);
    }
    Status::with_error_details(code, message, d)
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e {
            ApiError::Invalid(v) => {
                let msg =
                    v.0.iter()
                        .map(|x| format!("{}: {}", x.field, x.description))
                        .collect::<Vec<_>>()
                        .join("; ");
                bad_request(
                    Code::InvalidArgument,
                    format!("invalid request: {msg}"),
                    v.0.into_iter().map(|x| (x.field, x.description)).collect(),
                )
            }
            ApiError::Cmd(c) => {
                let code = match c.code {
                    CmdErrorCode::InvalidArgument => Code::InvalidArgument,
                    CmdErrorCode::NotFound => Code::NotFound,
                    CmdErrorCode::AlreadyExists => Code::AlreadyExists,
                    CmdErrorCode::FailedPrecondition => Code::FailedPrecondition,
                    CmdErrorCode::ResourceExhausted => Code::ResourceExhausted,
                    CmdErrorCode::Aborted => Code::Aborted,
                    CmdErrorCode::PermissionDenied => Code::PermissionDenied,
                };
                match c.field {
                    // The message names the field too: people read the message, not the details.
                    Some(f) => {
                        let message = if c.message.starts_with(&format!("{f}: ")) {
                            c.message.clone()
                        } else {
                            format!("{f}: {}", c.message)
                        };
                        bad_request(code, message, vec![(f, c.message)])
                    }
                    None => Status::new(code, c.message),
                }
            }
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::Precondition(m) => Status::failed_precondition(m),
            ApiError::NoHost(m) => Status::resource_exhausted(format!("no host fits: {m}")),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::NotLeader => Status::unavailable("leadership changed; retry"),
            ApiError::Internal(m) => Status::internal(m),
        }
    }
}
