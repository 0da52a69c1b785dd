//! `terraform-provider-andromede`: started by Terraform, serves plugin protocol 6 over TLS on a
//! local socket (the go-plugin handshake and AutoMTLS come from the tf-provider crate).

mod api;
mod common;
mod data_sources;
mod provider;
mod resources;

fn main() -> anyhow::Result<()> {
    if std::env::var_os("PLUGIN_PROTOCOL_VERSIONS").is_none() {
        anyhow::bail!(
            "this is a Terraform plugin: Terraform starts it (see docs/terraform.md for local use)"
        );
    }
    // tf-provider's diagnostics append a backtrace whenever Rust backtraces are enabled (a
    // RUST_BACKTRACE left in the user's shell is enough), burying the server's message under
    // ~90 frames. They are kept only while the provider's debug logging is on. Set before the
    // runtime starts any thread, and before the first capture reads it.
    let keep = debug_logging(
        std::env::var("TF_LOG_PROVIDER").ok().as_deref(),
        std::env::var("TF_LOG").ok().as_deref(),
    );
    std::env::set_var("RUST_LIB_BACKTRACE", if keep { "1" } else { "0" });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(tf_provider::serve(
            "andromede",
            provider::AndromedeProvider::default(),
        ))
}

/// Whether Terraform runs the provider with debug (or trace) logging: `TF_LOG_PROVIDER` when
/// set, else `TF_LOG` (where `JSON` means trace).
fn debug_logging(provider_level: Option<&str>, level: Option<&str>) -> bool {
    let level = provider_level.filter(|l| !l.is_empty()).or(level);
    matches!(
        level.map(str::to_ascii_uppercase).as_deref(),
        Some("TRACE" | "DEBUG" | "JSON")
    )
}

#[cfg(test)]
mod tests {
    use super::debug_logging;

    #[test]
    fn backtraces_only_with_debug_logging() {
        assert!(!debug_logging(None, None));
        assert!(!debug_logging(None, Some("info")));
        assert!(debug_logging(None, Some("debug")));
        assert!(debug_logging(Some("TRACE"), Some("error")));
        assert!(!debug_logging(Some("warn"), Some("trace")));
    }
}
