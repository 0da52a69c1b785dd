//! The text of a failure: a gRPC status with its rich details, or a connection that could not
//! be set up. Each program adds its own hints (which flag or setting to change).

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the endpoint `{endpoint}` is not a valid URL: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error("the token contains characters not allowed in a gRPC header")]
    BadToken,
    #[error("cannot reach the Andromède API at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
}

/// The gRPC code as words, e.g. `invalid argument`.
pub fn code_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The server's whole answer: the code, its message kept as is (a refused placement explains
/// itself per filter over several lines) and every violation carried in the error details.
pub fn describe(status: &Status) -> String {
    let mut out = format!("{}: {}", code_words(status.code()), status.message());
    let details = status.get_error_details();
    if let Some(br) = details.bad_request() {
        for v in &br.field_violations {
            out.push_str(&format!("\n  - {}: {}", v.field, v.description));
        }
    }
    if let Some(pf) = details.precondition_failure() {
        for v in &pf.violations {
            let subject = if v.subject.is_empty() {
                &v.r#type
            } else {
                &v.subject
            };
            out.push_str(&format!("\n  - {subject}: {}", v.description));
        }
    }
    if let Some(qf) = details.quota_failure() {
        for v in &qf.violations {
            out.push_str(&format!("\n  - {}: {}", v.subject, v.description));
        }
    }
    if let Some(help) = details.help() {
        for link in &help.links {
            out.push_str(&format!("\n  see {}: {}", link.description, link.url));
        }
    }
    out
}

/// Whether an UNAVAILABLE came from the connection rather than from the server.
pub fn is_transport_failure(status: &Status) -> bool {
    let m = status.message().to_ascii_lowercase();
    status.code() == Code::Unavailable
        && (m.contains("transport") || m.contains("connect") || m.contains("connection"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn lists_field_violations() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("name", "must not be empty");
        details.add_bad_request_violation("size_gib", "must be positive");
        let status = Status::with_error_details(Code::InvalidArgument, "bad volume", details);
        assert_eq!(
            describe(&status),
            "invalid argument: bad volume\n  - name: must not be empty\n  - size_gib: must be positive"
        );
    }

    #[test]
    fn lists_quota_and_precondition_violations_and_keeps_multi_line_messages() {
        let mut details = ErrorDetails::new();
        details.add_quota_failure_violation("project acme", "vcpus 18/16");
        details.add_precondition_failure_violation("POLICY", "", "runs in US");
        let status = Status::with_error_details(
            Code::FailedPrecondition,
            "no host fits\n  policy: 3 excluded",
            details,
        );
        let text = describe(&status);
        assert!(
            text.starts_with("failed precondition: no host fits\n  policy: 3 excluded"),
            "{text}"
        );
        assert!(text.contains("\n  - project acme: vcpus 18/16"), "{text}");
        assert!(text.contains("\n  - POLICY: runs in US"), "{text}");
    }

    #[test]
    fn tells_transport_failures_from_server_answers() {
        assert!(is_transport_failure(&Status::unavailable(
            "transport error"
        )));
        assert!(!is_transport_failure(&Status::unavailable(
            "no Raft leader elected"
        )));
        assert!(!is_transport_failure(&Status::internal("connection reset")));
    }
}
