//! Turns failures (gRPC statuses with their rich details, connection problems, local errors)
//! into the text printed on stderr.

pub use andromede_client::code_words;
use andromede_client::{describe, is_transport_failure, ConnectError, DEFAULT_ENDPOINT};
use tonic::{Code, Status};

/// The full text for a failed call: the server's whole answer (see
/// [`andromede_client::describe`]) and a hint where the fix is a cloudctl setting.
pub fn format_status(status: &Status, endpoint: Option<&str>) -> String {
    let mut out = format!("error: {}", describe(status));
    match status.code() {
        Code::Unauthenticated
            if status.message().contains("revoked") || status.message().contains("expired") =>
        {
            out.push_str(
                "\nhint: this token no longer works; use another with --token, the ANDROMEDE_TOKEN \
                 variable or a profile (an admin of its scope makes one with `cloudctl token create`)",
            )
        }
        Code::Unauthenticated => out.push_str(
            "\nhint: pass a token with --token, the ANDROMEDE_TOKEN variable or a profile",
        ),
        Code::PermissionDenied => out.push_str(
            "\nhint: `cloudctl whoami` shows this token's scope and role; docs/security.md lists \
             what each role may call",
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

/// The text for any error ending the program.
pub fn format_error(err: &anyhow::Error, endpoint: Option<&str>) -> String {
    if let Some(status) = err.downcast_ref::<Status>() {
        return format_status(status, endpoint);
    }
    match err.downcast_ref::<ConnectError>() {
        Some(ce @ (ConnectError::Unreachable { .. } | ConnectError::BadEndpoint { .. })) => format!(
            "error: {ce}\n\
             hint: is a node running there? Set the address with --endpoint, the ANDROMEDE_ENDPOINT \
             variable or a profile (default {DEFAULT_ENDPOINT})"
        ),
        _ => format!("error: {err:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_the_answer_and_keeps_multi_line_messages() {
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
        let text = format_status(
            &Status::unauthenticated("token \"ci\" (t1) was revoked"),
            None,
        );
        assert!(
            text.contains("ANDROMEDE_TOKEN") && text.contains("cloudctl token create"),
            "{text}"
        );
        let text = format_status(&Status::permission_denied("a reader token may not…"), None);
        assert!(text.contains("cloudctl whoami"), "{text}");
        let text = format_status(&Status::unavailable("transport error"), Some("http://x:1"));
        assert!(
            text.contains("http://x:1") && text.contains("ANDROMEDE_ENDPOINT"),
            "{text}"
        );
        let err = anyhow::Error::from(ConnectError::Unreachable {
            endpoint: "http://x:1".into(),
            reason: "connection refused".into(),
        });
        let text = format_error(&err, None);
        assert!(
            text.starts_with("error: cannot reach the Andromède API at http://x:1")
                && text.contains("--endpoint"),
            "{text}"
        );
    }
}
