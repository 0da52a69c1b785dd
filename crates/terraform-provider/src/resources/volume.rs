//! `andromede_volume`: a block volume, created until AVAILABLE; every argument replaces it.

use std::time::Duration;

use andromede_api::v1::*;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Block, Description, Schema};
use tf_provider::value::{serde_as_vec, Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::api::{call, create_with_retry, Api};
use crate::common::*;

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
    s.id = known(&v.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default());
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
    until(&format!("volume {name}"), "deleted", timeout, || async {
        Ok(
            match found(call(api.volumes().get_volume(get_req(id, ""))).await)? {
                None => Probe::Done(()),
                Some(v) if volume_state_name(v.state) == "DELETED" => Probe::Done(()),
                Some(v) => Probe::Pending(volume_state_name(v.state)),
            },
        )
    })
    .await
}

#[async_trait]
impl Resource for VolumeResource {
    type State<'a> = VolumeState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut b = Block {
            description: Description::plain("A block volume, placed like an instance; attach it with andromede_volume_attachment."),
            ..Default::default()
        };
        let s = AttributeType::String;
        let a = &mut b.attributes;
        a.insert("id".into(), computed(s.clone(), "Volume id."));
        a.insert(
            "name".into(),
            required(
                s.clone(),
                "Name, unique in the project. Forces replacement.",
            ),
        );
        a.insert(
            "project".into(),
            required(s.clone(), "Project name or id. Forces replacement."),
        );
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
        Some(Schema {
            version: 1,
            block: b,
        })
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let api = self.0.api(diags)?;
        match found(call(api.volumes().get_volume(get_req(&text(&state.id), ""))).await) {
            Ok(Some(v)) if !volume_gone(&v) => Some((with_server(state, &v), private)),
            Ok(_) => None,
            Err(s) => {
                call_failed(diags, format!("Reading volume {}", text(&state.name)), &s);
                None
            }
        }
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
        let mut v = match create_with_retry(|| {
            let mut c = api.volumes();
            let r = req.clone();
            async move { c.create_volume(r).await }
        })
        .await
        {
            Ok(v) => v,
            Err(s) => {
                call_failed(diags, what, &s);
                return None;
            }
        };
        if volume_gone(&v) {
            // Same request id as a volume being deleted: wait for it to go, then create anew.
            let old = v.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default();
            if let Err(e) = wait_volume_gone(&api, &old, &name, timeout).await {
                diags.root_error(what, e.to_string());
                return None;
            }
            v = match create_with_retry(|| {
                let mut c = api.volumes();
                let r = req.clone();
                async move { c.create_volume(r).await }
            })
            .await
            {
                Ok(v) => v,
                Err(s) => {
                    call_failed(diags, what, &s);
                    return None;
                }
            };
        }
        let id = v.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default();
        let state = with_server(planned, &v);
        match wait_available(&api, &id, &name, timeout).await {
            Ok(v) => Some((with_server(state, &v), private)),
            Err(e) => {
                diags.root_error(what, e.to_string());
                Some((state, private))
            }
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
        if let Err(s) = found(call(api.volumes().delete_volume(req)).await) {
            call_failed(diags, format!("Deleting volume {name}"), &s);
            return None;
        }
        match wait_volume_gone(&api, &id, &name, timeout).await {
            Ok(()) => Some(()),
            Err(e) => {
                diags.root_error(format!("Deleting volume {name}"), e.to_string());
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let api = self.0.api(diags)?;
        let (project, name) = import_ref(&id);
        let v = match found(call(api.volumes().get_volume(get_req(&name, &project))).await) {
            Ok(Some(v)) if !volume_gone(&v) => v,
            Ok(_) => {
                diags.root_error_short(format!("no volume `{id}` (import by id or PROJECT/NAME)"));
                return None;
            }
            Err(s) => {
                call_failed(diags, format!("Importing volume {id}"), &s);
                return None;
            }
        };
        let meta = v.meta.clone().unwrap_or_default();
        let pname = match call(api.identity().get_project(get_req(&meta.project_id, ""))).await {
            Ok(p) => p.meta.map(|m| m.name).unwrap_or_default(),
            Err(s) => {
                call_failed(diags, format!("Importing volume {id}"), &s);
                return None;
            }
        };
        let c = v.constraints.clone().unwrap_or_default();
        let mut dcs = Vec::new();
        for d in &c.datacenter_ids {
            match call(api.infra().get_datacenter(get_req(d, ""))).await {
                Ok(dc) => dcs.push(dc.meta.map(|m| m.name).unwrap_or_default()),
                Err(s) => {
                    call_failed(diags, format!("Importing volume {id}"), &s);
                    return None;
                }
            }
        }
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
