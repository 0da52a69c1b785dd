//! `andromede_project`: a tenant with its sovereignty policy and quotas, updated in place.

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
pub struct ProjectState {
    pub id: Value<String>,
    pub name: Value<String>,
    pub description: Value<String>,
    pub allowed_countries: Value<Vec<String>>,
    pub allowed_jurisdictions: Value<Vec<String>>,
    pub required_certifications: Value<Vec<String>>,
    pub operator_immunity: Value<bool>,
    pub quota_instances: Value<i64>,
    pub quota_vcpus: Value<i64>,
    pub quota_memory_mib: Value<i64>,
    pub quota_volumes: Value<i64>,
    pub quota_volume_gib: Value<i64>,
}

pub struct ProjectResource(pub Shared);

impl ProjectState {
    fn policy(&self) -> SovereigntyPolicy {
        SovereigntyPolicy {
            allowed_countries: list(&self.allowed_countries),
            allowed_jurisdictions: list(&self.allowed_jurisdictions),
            required_certifications: list(&self.required_certifications),
            operator_immunity: self
                .operator_immunity
                .as_ref_option()
                .copied()
                .unwrap_or(false),
        }
    }

    fn quota(&self, diags: &mut Diagnostics) -> Option<Quota> {
        Some(Quota {
            instances: unsigned(diags, &self.quota_instances, "quota_instances")?,
            vcpus: unsigned(diags, &self.quota_vcpus, "quota_vcpus")?,
            memory_mib: unsigned(diags, &self.quota_memory_mib, "quota_memory_mib")?,
            volumes: unsigned(diags, &self.quota_volumes, "quota_volumes")?,
            volume_gib: unsigned(diags, &self.quota_volume_gib, "quota_volume_gib")?,
        })
    }

    /// The server's view, shaped like `prior` where both mean the same.
    fn from_server(prior: &ProjectState, p: &Project) -> ProjectState {
        let meta = p.meta.clone().unwrap_or_default();
        let policy = p.policy.clone().unwrap_or_default();
        let quota = p.quota.unwrap_or_default();
        let q = |v: Option<u64>| v.map(signed).unwrap_or(Value::Null);
        ProjectState {
            id: known(&meta.id),
            name: known(&meta.name),
            description: server_text(&prior.description, &p.description),
            allowed_countries: server_list(&prior.allowed_countries, &policy.allowed_countries),
            allowed_jurisdictions: server_list(
                &prior.allowed_jurisdictions,
                &policy.allowed_jurisdictions,
            ),
            required_certifications: server_list(
                &prior.required_certifications,
                &policy.required_certifications,
            ),
            operator_immunity: server_bool(&prior.operator_immunity, policy.operator_immunity),
            quota_instances: q(quota.instances),
            quota_vcpus: q(quota.vcpus),
            quota_memory_mib: q(quota.memory_mib),
            quota_volumes: q(quota.volumes),
            quota_volume_gib: q(quota.volume_gib),
        }
    }
}

#[async_trait]
impl Resource for ProjectResource {
    type State<'a> = ProjectState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut b = block(
            "A project (tenant): its sovereignty policy restricts where its resources may run, its quotas how much they may use.",
        );
        let a = &mut b.attributes;
        a.insert("id".into(), computed(AttributeType::String, "Project id."));
        a.insert(
            "name".into(),
            required(
                AttributeType::String,
                "Unique name. Changing it replaces the project.",
            ),
        );
        a.insert(
            "description".into(),
            optional(AttributeType::String, "Free text, updated in place."),
        );
        a.insert(
            "allowed_countries".into(),
            optional(
                strings(),
                "ISO 3166-1 alpha-2 countries resources may run in; unset means any.",
            ),
        );
        a.insert(
            "allowed_jurisdictions".into(),
            optional(
                strings(),
                "Jurisdictions (EU, EEA or a country code) resources may run in; unset means any.",
            ),
        );
        a.insert(
            "required_certifications".into(),
            optional(
                strings(),
                "Certifications every datacenter used must hold, e.g. secnumcloud.",
            ),
        );
        a.insert(
            "operator_immunity".into(),
            optional(
                AttributeType::Bool,
                "Require operators immune from non-EU law (SecNumCloud 3.2 §19.6).",
            ),
        );
        for (name, doc) in [
            (
                "quota_instances",
                "Maximum number of instances; unset is unlimited.",
            ),
            (
                "quota_vcpus",
                "Maximum vCPUs over all instances; unset is unlimited.",
            ),
            (
                "quota_memory_mib",
                "Maximum memory (MiB) over all instances; unset is unlimited.",
            ),
            (
                "quota_volumes",
                "Maximum number of volumes; unset is unlimited.",
            ),
            (
                "quota_volume_gib",
                "Maximum volume size (GiB) in total; unset is unlimited.",
            ),
        ] {
            a.insert(name.into(), optional(AttributeType::Number, doc));
        }
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
        let p = read_found(
            diags,
            &format!("Reading project {}", text(&state.name)),
            call(api.identity().get_project(get_req(&text(&state.id), ""))).await,
        )?;
        Some((ProjectState::from_server(&state, &p), private))
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        proposed.quota(diags)?;
        let mut state = proposed;
        state.id = Value::Unknown;
        Some((state, ValueEmpty::Null))
    }

    async fn plan_update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        proposed.quota(diags)?;
        let mut replace = Vec::new();
        changed(&prior.name, &proposed.name, "name", &mut replace);
        Some((proposed, private, replace))
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
        let req = CreateProjectRequest {
            name: name.clone(),
            description: text(&planned.description),
            policy: Some(planned.policy()),
            quota: Some(planned.quota(diags)?),
            request_id: request_id("project", &(&name,)),
        };
        let created = create_with_retry(|| {
            let mut c = api.identity();
            let r = req.clone();
            async move { c.create_project(r).await }
        })
        .await;
        let p = answered(diags, &format!("Creating project {name}"), created)?;
        Some((ProjectState::from_server(&planned, &p), private))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let api = self.0.api(diags)?;
        let (policy, quota) = (planned.policy(), planned.quota(diags)?);
        // Only what changed is sent: a project admin may change the description and narrow the
        // policy, while a quota in the request, even an unchanged one, is the cloud-admin's.
        let req = UpdateProjectRequest {
            r#ref: Some(rref(&text(&prior.id), "")),
            policy: (policy != prior.policy()).then_some(policy),
            quota: (quota != prior.quota(diags)?).then_some(quota),
            description: Some(text(&planned.description)),
            expected_generation: 0,
        };
        let p = answered(
            diags,
            &format!("Updating project {}", text(&prior.name)),
            call(api.identity().update_project(req)).await,
        )?;
        Some((ProjectState::from_server(&planned, &p), private))
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
            &format!("Deleting project {}", text(&prior.name)),
            call(api.identity().delete_project(req)).await,
        )
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let api = self.0.api(diags)?;
        let lookup = found(call(api.identity().get_project(get_req(&id, ""))).await);
        let p = import_found(diags, "project", &id, BY_NAME, lookup)?;
        Some((
            ProjectState::from_server(&ProjectState::default(), &p),
            ValueEmpty::Null,
        ))
    }
}
