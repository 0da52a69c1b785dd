//! `andromede_flavor`: an instance size (cloud-admin); replaced on any change.

use andromede_api::v1::*;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::api::{call, create_with_retry};
use crate::common::*;
use crate::resources::shared::*;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlavorState {
    pub id: Value<String>,
    pub name: Value<String>,
    pub vcpus: Value<i64>,
    pub memory_mib: Value<i64>,
    pub disk_gib: Value<i64>,
}

impl FlavorState {
    pub fn from_server(f: &Flavor) -> Self {
        let meta = f.meta.clone().unwrap_or_default();
        FlavorState {
            id: known(&meta.id),
            name: known(&meta.name),
            vcpus: signed(f.vcpus),
            memory_mib: signed(f.memory_mib),
            disk_gib: signed(f.disk_gib),
        }
    }
}

pub struct FlavorResource(pub Shared);

#[async_trait]
impl Resource for FlavorResource {
    type State<'a> = FlavorState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut b = block(
            "A flavor (instance size), public to every project. Needs the cloud-admin token.",
        );
        let a = &mut b.attributes;
        a.insert("id".into(), computed(AttributeType::String, "Flavor id."));
        a.insert(
            "name".into(),
            required(AttributeType::String, "Unique name. Forces replacement."),
        );
        a.insert(
            "vcpus".into(),
            required(AttributeType::Number, "Virtual CPUs. Forces replacement."),
        );
        a.insert(
            "memory_mib".into(),
            required(AttributeType::Number, "Memory in MiB. Forces replacement."),
        );
        a.insert(
            "disk_gib".into(),
            required(
                AttributeType::Number,
                "Root disk in GiB. Forces replacement.",
            ),
        );
        schema(b)
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let api = self.0.api(diags)?;
        let f = read_found(
            diags,
            &format!("Reading flavor {}", text(&state.name)),
            call(api.infra().get_flavor(get_req(&text(&state.id), ""))).await,
        )?;
        Some((FlavorState::from_server(&f), private))
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        unsigned(diags, &proposed.vcpus, "vcpus")?;
        unsigned(diags, &proposed.memory_mib, "memory_mib")?;
        unsigned(diags, &proposed.disk_gib, "disk_gib")?;
        let mut s = proposed;
        s.id = Value::Unknown;
        Some((s, ValueEmpty::Null))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let mut r = Vec::new();
        changed(&prior.name, &proposed.name, "name", &mut r);
        changed(&prior.vcpus, &proposed.vcpus, "vcpus", &mut r);
        changed(
            &prior.memory_mib,
            &proposed.memory_mib,
            "memory_mib",
            &mut r,
        );
        changed(&prior.disk_gib, &proposed.disk_gib, "disk_gib", &mut r);
        Some((proposed, private, r))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let api = self.0.api(diags)?;
        let name = text(&planned.name);
        let mut req = CreateFlavorRequest {
            name: name.clone(),
            vcpus: unsigned(diags, &planned.vcpus, "vcpus")?.unwrap_or(0),
            memory_mib: unsigned(diags, &planned.memory_mib, "memory_mib")?.unwrap_or(0),
            disk_gib: unsigned(diags, &planned.disk_gib, "disk_gib")?.unwrap_or(0),
            request_id: String::new(),
        };
        req.request_id = request_id("flavor", &req);
        let created = create_with_retry(|| {
            let mut c = api.infra();
            let r = req.clone();
            async move { c.create_flavor(r).await }
        })
        .await;
        let f = answered(diags, &format!("Creating flavor {name}"), created)?;
        Some((FlavorState::from_server(&f), private))
    }

    async fn update<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        Some((planned, private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let api = self.0.api(diags)?;
        let req = DeleteRequest {
            r#ref: Some(rref(&text(&prior.id), "")),
        };
        deleted(
            diags,
            &format!("Deleting flavor {}", text(&prior.name)),
            call(api.infra().delete_flavor(req)).await,
        )
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let api = self.0.api(diags)?;
        let lookup = found(call(api.infra().get_flavor(get_req(&id, ""))).await);
        let f = import_found(diags, "flavor", &id, BY_NAME, lookup)?;
        Some((FlavorState::from_server(&f), ValueEmpty::Null))
    }
}
