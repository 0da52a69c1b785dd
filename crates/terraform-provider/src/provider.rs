//! The provider itself: its `endpoint` / `token` / `ca_cert` configuration (or
//! ANDROMEDE_ENDPOINT / ANDROMEDE_TOKEN / ANDROMEDE_CA_CERT) and the table of resources and
//! data sources.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{Diagnostics, DynamicDataSource, DynamicResource, Provider};

use crate::api::{connect, DEFAULT_ENDPOINT};
use crate::common::{block, optional, schema, Shared};
use crate::data_sources::{DatacentersSource, FlavorSource, ImageSource};
use crate::resources::{attachment, flavor, instance, project, server_group, volume};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProviderConfig {
    pub endpoint: Value<String>,
    pub token: Value<String>,
    pub ca_cert: Value<String>,
}

#[derive(Default)]
pub struct AndromedeProvider {
    shared: Shared,
}

/// The configured value, else the variable, else nothing; empty counts as unset, since shells
/// make an exported empty variable easy to leave behind.
fn setting(v: &Value<String>, var: &str) -> Option<String> {
    v.as_ref_option()
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| std::env::var(var).ok().filter(|s| !s.is_empty()))
}

#[async_trait]
impl Provider for AndromedeProvider {
    type Config<'a> = ProviderConfig;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut b = block("Andromède, a sovereign IaaS control plane.");
        b.attributes.insert(
            "endpoint".into(),
            optional(
                AttributeType::String,
                "gRPC endpoint of any andromede-server node, e.g. http://127.0.0.1:7400 (default: ANDROMEDE_ENDPOINT, then http://127.0.0.1:7400).",
            ),
        );
        let mut token = optional(
            AttributeType::String,
            "Bearer token (default: ANDROMEDE_TOKEN).",
        );
        token.sensitive = true;
        b.attributes.insert("token".into(), token);
        b.attributes.insert(
            "ca_cert".into(),
            optional(
                AttributeType::String,
                "Path of the cluster CA certificate (PEM) an https endpoint is verified against, e.g. the first server's tls/ca.pem (default: ANDROMEDE_CA_CERT).",
            ),
        );
        schema(b)
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        _terraform_version: String,
        config: Self::Config<'a>,
    ) -> Option<()> {
        let endpoint = setting(&config.endpoint, "ANDROMEDE_ENDPOINT")
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let token = setting(&config.token, "ANDROMEDE_TOKEN");
        let ca = match setting(&config.ca_cert, "ANDROMEDE_CA_CERT") {
            None => None,
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(pem) => Some(pem),
                Err(e) => {
                    diags.root_error_short(format!(
                        "ca_cert: cannot read the cluster CA {path}: {e}"
                    ));
                    return None;
                }
            },
        };
        match connect(&endpoint, token.as_deref(), ca.as_deref()) {
            Ok(api) => {
                self.shared.set(api);
                Some(())
            }
            Err(e) => {
                diags.root_error_short(e.to_string());
                None
            }
        }
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        let s = &self.shared;
        let mut m: HashMap<String, Box<dyn DynamicResource>> = HashMap::new();
        m.insert(
            "project".into(),
            Box::new(project::ProjectResource(s.clone())),
        );
        m.insert(
            "instance".into(),
            Box::new(instance::InstanceResource(s.clone())),
        );
        m.insert("volume".into(), Box::new(volume::VolumeResource(s.clone())));
        m.insert(
            "volume_attachment".into(),
            Box::new(attachment::AttachmentResource(s.clone())),
        );
        m.insert(
            "server_group".into(),
            Box::new(server_group::ServerGroupResource(s.clone())),
        );
        m.insert("flavor".into(), Box::new(flavor::FlavorResource(s.clone())));
        Some(m)
    }

    fn get_data_sources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicDataSource>>> {
        let s = &self.shared;
        let mut m: HashMap<String, Box<dyn DynamicDataSource>> = HashMap::new();
        m.insert("datacenters".into(), Box::new(DatacentersSource(s.clone())));
        m.insert("flavor".into(), Box::new(FlavorSource(s.clone())));
        m.insert("image".into(), Box::new(ImageSource(s.clone())));
        Some(m)
    }
}
