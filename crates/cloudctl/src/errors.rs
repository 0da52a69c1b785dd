//! Turns failures (gRPC statuses with their rich details, connection problems, local errors)
//! into the text printed on stderr.

use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::client::ConnectError;

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

/// The full text for a failed call: the code, the server's message as is (placement
/// explanations span several lines) and every violation from the rich error details.
pub fn format_status(status: &Status, endpoint: Option<&str>) -> String {
    let mut out = format!("error: {}: {}", code_words(status.code()), status.message());
    let details = status.get_error_details();
    if let Some(br) = details.bad_request() {
        for v in &br.field_violations {
            out.push_str(&format!("\n  - {}: {}", v.field, v.description));
        }
    }
    if let Some(pf) = details.precondition_failure() {
        for v in &pf.violations {
            let subject = if v.subject.is_empty() {
                v.r#type.as_str()
            } else {
                v.subject.as_str()
            };
            out.push_str(&format!("\n  - {}: {}", subject, v.description));
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
    match status.code() {
        Code::Unauthenticated => out.push_str(
            "\nhint: pass a token with --token, the ANDROMEDE_TOKEN variable or a profile",
        ),
        Code::Unavailable if is_transport_failure(status) => {
            if let Some(ep) = endpoint {
                out.push_str(&format!(
                    "\nhint: the connection to {ep} failed; check that a node runs there \
                     (set --endpoint or ANDROMEDE_ENDPOINT)"
                ));
            }
        }
        _ => {}
    }
    out
}

fn is_transport_failure(status: &Status) -> bool {
    let m = status.message().to_ascii_lowercase();
    m.contains("transport") || m.contains("connect") || m.contains("connection")
}

/// The text for any error ending the program.
pub fn format_error(err: &anyhow::Error, endpoint: Option<&str>) -> String {
    if let Some(status) = err.downcast_ref::<Status>() {
        return format_status(status, endpoint);
    }
    if let Some(ce) = err.downcast_ref::<ConnectError>() {
        return format!("error: {ce}");
    }
    format!("error: {err:#}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn lists_field_violations() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("name", "must not be empty");
        details.add_bad_request_violation("size_gib", "must be positive");
        let status = Status::with_error_details(Code::InvalidArgument, "bad volume", details);
        assert_eq!(
            format_status(&status, None),
            "error: invalid argument: bad volume\n  - name: must not be empty\n  - size_gib: must be positive"
        );
    }

    #[test]
    fn lists_quota_and_precondition_violations() {
        let mut details = ErrorDetails::new();
        details.add_quota_failure_violation("project acme", "vcpus 18/16");
        details.add_precondition_failure_violation("POLICY", "instance web-1", "runs in US");
        let status = Status::with_error_details(Code::FailedPrecondition, "refused", details);
        let text = format_status(&status, None);
        assert!(
            text.starts_with("error: failed precondition: refused"),
            "{text}"
        );
        assert!(text.contains("\n  - project acme: vcpus 18/16"), "{text}");
        assert!(text.contains("\n  - instance web-1: runs in US"), "{text}");
    }

    #[test]
    fn keeps_multi_line_messages() {
        let status = Status::resource_exhausted("no host fits\n  country: 3 excluded");
        assert_eq!(
            format_status(&status, None),
            "error: resource exhausted: no host fits\n  country: 3 excluded"
        );
    }

    #[test]
    fn hints_at_the_token_and_endpoint() {
        assert!(
            format_status(&Status::unauthenticated("no token"), None).contains("ANDROMEDE_TOKEN")
        );
        let text = format_status(&Status::unavailable("transport error"), Some("http://x:1"));
        assert!(
            text.contains("http://x:1") && text.contains("ANDROMEDE_ENDPOINT"),
            "{text}"
        );
    }
}
