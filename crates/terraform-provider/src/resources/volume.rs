//! `andromede_volume`: a block volume, created until AVAILABLE; every argument replaces it.

use std::time::Duration;

use andromede_api::v1::*;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Schema};
use tf_provider::value::{serde_as_vec, Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::api::{call, Api};
use crate::common::*;
use crate::resources::shared::*;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeState {
    pub id: Value<String>,
    pub name: Value<String>,
    pub project: Value<String>,
    pub size_gib: Value<i64>,
    pub countries: Value<Vec<String>>,
    pub datacenters: Value<Vec<String>>,
    pub near_instance: Value<String>,
    pub state: Value<String>,
    pub host: Value<String>,
    pub datacenter: Value<String>,
    pub country: Value<String>,
    pub attached_to: Value<String>,
    #[serde(with = "serde_as_vec")]
    pub timeouts: Value<Timeouts>,
}

pub struct VolumeResource(pub Shared);

pub fn volume_state_name(s: i32) -> String {
    andromede_api::v1::VolumeState::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("VOLUME_STATE_")
                .to_owned()
        })
        .unwrap_or_else(|_| format!("UNKNOWN({s})"))
}

pub fn volume_gone(v: &Volume) -> bool {
    matches!(
        andromede_api::v1::VolumeState::try_from(v.state),
        Ok(andromede_api::v1::VolumeState::Deleting | andromede_api::v1::VolumeState::Deleted)
    )
}

fn with_server(mut s: VolumeState, v: &Volume) -> VolumeState {
    s.id = known(&v.meta_id());
    s.state = known(&volume_state_name(v.state));
    s.host = known(&v.host_id);
    s.datacenter = known(&v.datacenter_id);
    s.country = known(&v.country);
    s.attached_to = known(&v.attached_to);
    s
}

/// Waits for AVAILABLE only: intermediate states the API may add (ATTACHING, DETACHING…) are
/// just more pending states here.
async fn wait_available(
    api: &Api,
    id: &str,
    name: &str,
    timeout: Duration,
) -> Result<Volume, WaitError> {
    until(&format!("volume {name}"), "AVAILABLE", timeout, || async {
        let v = call(api.volumes().get_volume(get_req(id, ""))).await?;
        let st = volume_state_name(v.state);
        Ok(match st.as_str() {
            "AVAILABLE" => Probe::Done(v),
            "ERROR" => Probe::Failed(format!("ERROR: {}", v.state_reason)),
            _ if volume_gone(&v) => Probe::Failed(st),
            _ => Probe::Pending(st),
        })
    })
    .await
}

pub async fn wait_volume_gone(
    api: &Api,
    id: &str,
    name: &str,
    timeout: Duration,
) -> Result<(), WaitError> {
    until_gone(
        &format!("volume {name}"),
        timeout,
        || async move { call(api.volumes().get_volume(get_req(id, ""))).await },
        |v: &Volume| Some(volume_state_name(v.state)).filter(|st| st != "DELETED"),
    )
    .await
}

#[async_trait]
impl Resource for VolumeResource {
    type State<'a> = VolumeState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut b = block(
            "A block volume, placed like an instance; attach it with andromede_volume_attachment.",
        );
        let s = AttributeType::String;
        let a = &mut b.attributes;
        project_scoped(a, "Volume id.");
        a.insert(
            "size_gib".into(),
            required(AttributeType::Number, "Size in GiB. Forces replacement."),
        );
        a.insert(
            "countries".into(),
            optional(
                strings(),
                "Placement constraint: only these countries. Forces replacement.",
            ),
        );
        a.insert(
            "datacenters".into(),
            optional(
                strings(),
                "Placement constraint: only these datacenters. Forces replacement.",
            ),
        );
        a.insert("near_instance".into(), optional(s.clone(), "Place on this instance's host (name or id) so it can be attached to it. Forces replacement."));
        a.insert(
            "state".into(),
            computed(s.clone(), "Lifecycle state, e.g. AVAILABLE or IN_USE."),
        );
        a.insert(
            "host".into(),
            computed(s.clone(), "Id of the host holding it."),
        );
        a.insert(
            "datacenter".into(),
            computed(s.clone(), "Id of its datacenter."),
        );
        a.insert("country".into(), computed(s.clone(), "Its country."));
        a.insert(
            "attached_to".into(),
            computed(s, "Id of the instance it is attached to, or empty."),
        );
        b.blocks.insert("timeouts".into(), timeouts_block());
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
        let v = read_found(
            diags,
            &format!("Reading volume {}", text(&state.name)),
            call(api.volumes().get_volume(get_req(&text(&state.id), ""))).await,
        )
        .filter(|v| !volume_gone(v))?;
        Some((with_server(state, &v), private))
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        check_timeouts(diags, &proposed.timeouts)?;
        unsigned(diags, &proposed.size_gib, "size_gib")?;
        let mut s = proposed;
        for v in [
            &mut s.id,
            &mut s.state,
            &mut s.host,
            &mut s.datacenter,
            &mut s.country,
            &mut s.attached_to,
        ] {
            *v = Value::Unknown;
        }
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
        check_timeouts(diags, &proposed.timeouts)?;
        let mut r = Vec::new();
        changed(&prior.name, &proposed.name, "name", &mut r);
        changed(&prior.project, &proposed.project, "project", &mut r);
        changed(&prior.size_gib, &proposed.size_gib, "size_gib", &mut r);
        changed(&prior.countries, &proposed.countries, "countries", &mut r);
        changed(
            &prior.datacenters,
            &proposed.datacenters,
            "datacenters",
            &mut r,
        );
        changed(
            &prior.near_instance,
            &proposed.near_instance,
            "near_instance",
            &mut r,
        );
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
        let timeout = timeout_for(diags, &planned.timeouts, Phase::Create)?;
        let name = text(&planned.name);
        let mut req = CreateVolumeRequest {
            name: name.clone(),
            project: text(&planned.project),
            size_gib: unsigned(diags, &planned.size_gib, "size_gib")?.unwrap_or(0),
            constraints: Some(PlacementConstraints {
                countries: list(&planned.countries),
                datacenter_ids: list(&planned.datacenters),
            }),
            near_instance: text(&planned.near_instance),
            request_id: String::new(),
        };
        req.request_id = request_id("volume", &req);
        let what = format!("Creating volume {name}");
        let (api, name) = (&api, &name);
        let v = create_anew(
            diags,
            &what,
            || {
                let mut c = api.volumes();
                let r = req.clone();
                async move { c.create_volume(r).await }
            },
            volume_gone,
            |old| {
                let old = old.meta_id();
                async move { wait_volume_gone(api, &old, name, timeout).await }
            },
        )
        .await?;
        let state = with_server(planned, &v);
        match waited(
            diags,
            &what,
            wait_available(api, &v.meta_id(), name, timeout).await,
        ) {
            Some(v) => Some((with_server(state, &v), private)),
            // Kept in the state (tainted) so the next apply replaces it instead of making a twin.
            None => Some((state, private)),
        }
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
        // Only `timeouts` can change in place.
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
        let timeout = timeout_for(diags, &prior.timeouts, Phase::Delete)?;
        let (id, name) = (text(&prior.id), text(&prior.name));
        let req = DeleteRequest {
            r#ref: Some(rref(&id, "")),
        };
        let what = format!("Deleting volume {name}");
        deleted(diags, &what, call(api.volumes().delete_volume(req)).await)?;
        waited(
            diags,
            &what,
            wait_volume_gone(&api, &id, &name, timeout).await,
        )
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let api = self.0.api(diags)?;
        let lookup = found(call(api.volumes().get_volume(import_req(&id))).await)
            .map(|v| v.filter(|v| !volume_gone(v)));
        let v = import_found(diags, "volume", &id, BY_PROJECT_NAME, lookup)?;
        let what = format!("Importing volume {id}");
        let meta = v.meta.clone().unwrap_or_default();
        let pname = answered(diags, &what, project_name(&api, &meta.project_id).await)?;
        let c = v.constraints.clone().unwrap_or_default();
        let dcs = answered(
            diags,
            &what,
            datacenter_names(&api, &c.datacenter_ids).await,
        )?;
        let s = VolumeState {
            name: known(&meta.name),
            project: known(&pname),
            size_gib: signed(v.size_gib),
            countries: server_list(&Value::Null, &c.countries),
            datacenters: server_list(&Value::Null, &dcs),
            ..Default::default()
        };
        Some((with_server(s, &v), ValueEmpty::Null))
    }
}
