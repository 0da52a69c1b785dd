//! `andromede_server_group`: affinity or anti-affinity between instances; replaced on any change.

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
pub struct ServerGroupState {
    pub id: Value<String>,
    pub name: Value<String>,
    pub project: Value<String>,
    pub policy: Value<String>,
    pub hard: Value<bool>,
    pub members: Value<Vec<String>>,
}

pub struct ServerGroupResource(pub Shared);

fn policy_of(diags: &mut Diagnostics, v: &Value<String>) -> Option<GroupPolicy> {
    match v.as_ref_option().map(String::as_str) {
        Some("affinity") => Some(GroupPolicy::Affinity),
        Some("anti-affinity") => Some(GroupPolicy::AntiAffinity),
        Some(other) => {
            diags.error_short(
                format!("policy must be affinity or anti-affinity, not `{other}`"),
                AttributePath::new("policy"),
            );
            None
        }
        None => Some(GroupPolicy::Unspecified),
    }
}

fn policy_name(p: i32) -> &'static str {
    match GroupPolicy::try_from(p) {
        Ok(GroupPolicy::Affinity) => "affinity",
        _ => "anti-affinity",
    }
}

fn with_server(
    prior: &ServerGroupState,
    g: &ServerGroup,
    project: Value<String>,
) -> ServerGroupState {
    let meta = g.meta.clone().unwrap_or_default();
    ServerGroupState {
        id: known(&meta.id),
        name: known(&meta.name),
        project,
        policy: known(policy_name(g.policy)),
        hard: server_bool(&prior.hard, g.hard),
        members: Value::Value(g.members.clone()),
    }
}

#[async_trait]
impl Resource for ServerGroupResource {
    type State<'a> = ServerGroupState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut b = block(
            "A server group: its instances share a host (affinity) or are spread over hosts (anti-affinity).",
        );
        let a = &mut b.attributes;
        project_scoped(a, "Server group id.");
        a.insert(
            "policy".into(),
            required(
                AttributeType::String,
                "affinity or anti-affinity. Forces replacement.",
            ),
        );
        a.insert("hard".into(), optional(AttributeType::Bool, "Refuse placements that break the policy (default false: only prefer). Forces replacement."));
        a.insert(
            "members".into(),
            computed(strings(), "Ids of the member instances."),
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
        let g = read_found(
            diags,
            &format!("Reading server group {}", text(&state.name)),
            call(
                api.compute()
                    .get_server_group(get_req(&text(&state.id), "")),
            )
            .await,
        )?;
        Some((with_server(&state, &g, state.project.clone()), private))
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        policy_of(diags, &proposed.policy)?;
        let mut s = proposed;
        s.id = Value::Unknown;
        s.members = Value::Unknown;
        Some((s, ValueEmpty::Null))
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
        policy_of(diags, &proposed.policy)?;
        let mut r = Vec::new();
        changed(&prior.name, &proposed.name, "name", &mut r);
        changed(&prior.project, &proposed.project, "project", &mut r);
        changed(&prior.policy, &proposed.policy, "policy", &mut r);
        changed(&prior.hard, &proposed.hard, "hard", &mut r);
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
        let mut req = CreateServerGroupRequest {
            name: name.clone(),
            project: text(&planned.project),
            policy: policy_of(diags, &planned.policy)? as i32,
            hard: planned.hard.as_ref_option().copied().unwrap_or(false),
            request_id: String::new(),
        };
        req.request_id = request_id("server_group", &req);
        let created = create_with_retry(|| {
            let mut c = api.compute();
            let r = req.clone();
            async move { c.create_server_group(r).await }
        })
        .await;
        let g = answered(diags, &format!("Creating server group {name}"), created)?;
        Some((with_server(&planned, &g, planned.project.clone()), private))
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
            &format!("Deleting server group {}", text(&prior.name)),
            call(api.compute().delete_server_group(req)).await,
        )
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let api = self.0.api(diags)?;
        let lookup = found(call(api.compute().get_server_group(import_req(&id))).await);
        let g = import_found(diags, "server group", &id, BY_PROJECT_NAME, lookup)?;
        let pid = g
            .meta
            .as_ref()
            .map(|m| m.project_id.clone())
            .unwrap_or_default();
        let pname = answered(
            diags,
            &format!("Importing server group {id}"),
            project_name(&api, &pid).await,
        )?;
        Some((
            with_server(&ServerGroupState::default(), &g, known(&pname)),
            ValueEmpty::Null,
        ))
    }
}
