//! `terraform-provider-andromede`: started by Terraform, serves plugin protocol 6 over TLS on a
//! local socket (the go-plugin handshake and AutoMTLS come from the tf-provider crate).

mod api;
mod common;
mod data_sources;
mod provider;
mod resources;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("PLUGIN_PROTOCOL_VERSIONS").is_none() {
        anyhow::bail!(
            "this is a Terraform plugin: Terraform starts it (see docs/terraform.md for local use)"
        );
    }
    tf_provider::serve("andromede", provider::AndromedeProvider::default()).await
}
