//! `andromede_instance`: a virtual machine, created until RUNNING, started and stopped in place
//! through `power_state`; every other attribute replaces it.

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
pub struct InstanceState {
    pub id: Value<String>,
    pub name: Value<String>,
    pub project: Value<String>,
    pub flavor: Value<String>,
    pub image: Value<String>,
    pub user_data: Value<String>,
    pub ssh_keys: Value<Vec<String>>,
    pub server_group: Value<String>,
    pub countries: Value<Vec<String>>,
    pub datacenters: Value<Vec<String>>,
    pub power_state: Value<String>,
    pub state: Value<String>,
    pub host: Value<String>,
    pub datacenter: Value<String>,
    pub country: Value<String>,
    #[serde(with = "serde_as_vec")]
    pub timeouts: Value<Timeouts>,
}

pub struct InstanceResource(pub Shared);

const RUNNING: &str = "RUNNING";
const STOPPED: &str = "STOPPED";

fn state_name(s: i32) -> String {
    andromede_api::v1::InstanceState::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("INSTANCE_STATE_")
                .to_owned()
        })
        .unwrap_or_else(|_| format!("UNKNOWN({s})"))
}

fn power_of(i: &Instance) -> &'static str {
    match PowerIntent::try_from(i.intent) {
        Ok(PowerIntent::Stopped) => STOPPED,
        _ => RUNNING,
    }
}

/// Fills the computed attributes from the server; the arguments stay as configured, since the
/// server keeps ids where the configuration may use names and never changes them.
fn with_server(mut s: InstanceState, i: &Instance) -> InstanceState {
    s.id = known(&i.meta_id());
    s.state = known(&state_name(i.state));
    s.host = known(&i.host_id);
    s.datacenter = known(&i.datacenter_id);
    s.country = known(&i.country);
    s.power_state = known(power_of(i));
    s
}

fn is_gone(i: &Instance) -> bool {
    matches!(
        andromede_api::v1::InstanceState::try_from(i.state),
        Ok(andromede_api::v1::InstanceState::Deleting | andromede_api::v1::InstanceState::Deleted)
    )
}

/// Waits until the instance is in `target` (RUNNING or STOPPED); ERROR ends the wait.
async fn wait_power(
    api: &Api,
    id: &str,
    name: &str,
    target: &'static str,
    timeout: Duration,
) -> Result<Instance, WaitError> {
    until(&format!("instance {name}"), target, timeout, || async {
        let i = call(api.compute().get_instance(get_req(id, ""))).await?;
        let st = state_name(i.state);
        Ok(if st == target {
            Probe::Done(i)
        } else if st == "ERROR" || is_gone(&i) {
            Probe::Failed(format!("{st}: {}", i.state_reason))
        } else {
            Probe::Pending(st)
        })
    })
    .await
}

async fn wait_gone(api: &Api, id: &str, name: &str, timeout: Duration) -> Result<(), WaitError> {
    until_gone(
        &format!("instance {name}"),
        timeout,
        || async move { call(api.compute().get_instance(get_req(id, ""))).await },
        |i: &Instance| Some(state_name(i.state)).filter(|st| st != "DELETED"),
    )
    .await
}

fn check_power(diags: &mut Diagnostics, v: &Value<String>) -> Option<()> {
    match v {
        Value::Value(p) if p != RUNNING && p != STOPPED => {
            diags.error_short(
                format!("power_state must be {RUNNING} or {STOPPED}, not `{p}`"),
                AttributePath::new("power_state"),
            );
            None
        }
        _ => Some(()),
    }
}

async fn set_power(
    api: &Api,
    id: &str,
    name: &str,
    target: &'static str,
    timeout: Duration,
) -> Result<Instance, WaitError> {
    let req = InstanceActionRequest {
        r#ref: Some(rref(id, "")),
    };
    let sent = if target == STOPPED {
        call(api.compute().stop_instance(req)).await
    } else {
        call(api.compute().start_instance(req)).await
    };
    sent.map_err(|status| WaitError::Api {
        what: format!("instance {name}"),
        target: target.to_owned(),
        status,
    })?;
    wait_power(api, id, name, target, timeout).await
}

#[async_trait]
impl Resource for InstanceResource {
    type State<'a> = InstanceState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut b = block(
            "A virtual machine, placed by the scheduler inside its project's sovereignty policy and the constraints given here.",
        );
        let s = AttributeType::String;
        let a = &mut b.attributes;
        project_scoped(a, "Instance id.");
        a.insert(
            "flavor".into(),
            required(s.clone(), "Flavor name or id. Forces replacement."),
        );
        a.insert(
            "image".into(),
            required(s.clone(), "Image name or id. Forces replacement."),
        );
        let mut ud = optional(s.clone(), "Cloud-init user data. Forces replacement.");
        ud.sensitive = true;
        a.insert("user_data".into(), ud);
        a.insert(
            "ssh_keys".into(),
            optional(strings(), "Public SSH keys. Forces replacement."),
        );
        a.insert(
            "server_group".into(),
            optional(s.clone(), "Server group name or id. Forces replacement."),
        );
        a.insert("countries".into(), optional(strings(), "Placement constraint: only these countries (narrows the project policy). Forces replacement."));
        a.insert(
            "datacenters".into(),
            optional(
                strings(),
                "Placement constraint: only these datacenters (names or ids). Forces replacement.",
            ),
        );
        a.insert(
            "power_state".into(),
            optional_computed(s.clone(), "RUNNING (default) or STOPPED; changed in place."),
        );
        a.insert(
            "state".into(),
            computed(
                s.clone(),
                "Lifecycle state as the server reports it, e.g. RUNNING.",
            ),
        );
        a.insert(
            "host".into(),
            computed(s.clone(), "Id of the host it runs on."),
        );
        a.insert(
            "datacenter".into(),
            computed(s.clone(), "Id of the datacenter it runs in."),
        );
        a.insert("country".into(), computed(s, "Country it runs in."));
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
        let i = read_found(
            diags,
            &format!("Reading instance {}", text(&state.name)),
            call(api.compute().get_instance(get_req(&text(&state.id), ""))).await,
        )
        .filter(|i| !is_gone(i))?;
        Some((with_server(state, &i), private))
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        check_power(diags, &proposed.power_state)?;
        check_timeouts(diags, &proposed.timeouts)?;
        let mut s = proposed;
        s.id = Value::Unknown;
        s.host = Value::Unknown;
        s.datacenter = Value::Unknown;
        s.country = Value::Unknown;
        if s.power_state.is_null() {
            s.power_state = known(RUNNING);
        }
        s.state = match &s.power_state {
            Value::Value(p) => known(p),
            _ => Value::Unknown,
        };
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
        check_power(diags, &proposed.power_state)?;
        check_timeouts(diags, &proposed.timeouts)?;
        let mut r = Vec::new();
        changed(&prior.name, &proposed.name, "name", &mut r);
        changed(&prior.project, &proposed.project, "project", &mut r);
        changed(&prior.flavor, &proposed.flavor, "flavor", &mut r);
        changed(&prior.image, &proposed.image, "image", &mut r);
        changed(&prior.user_data, &proposed.user_data, "user_data", &mut r);
        changed(&prior.ssh_keys, &proposed.ssh_keys, "ssh_keys", &mut r);
        changed(
            &prior.server_group,
            &proposed.server_group,
            "server_group",
            &mut r,
        );
        changed(&prior.countries, &proposed.countries, "countries", &mut r);
        changed(
            &prior.datacenters,
            &proposed.datacenters,
            "datacenters",
            &mut r,
        );
        let mut s = proposed;
        if s.power_state != prior.power_state {
            s.state = match &s.power_state {
                Value::Value(p) => known(p),
                _ => Value::Unknown,
            };
        }
        Some((s, private, r))
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
        let mut req = CreateInstanceRequest {
            name: name.clone(),
            project: text(&planned.project),
            flavor: text(&planned.flavor),
            image: text(&planned.image),
            user_data: text(&planned.user_data),
            ssh_keys: list(&planned.ssh_keys),
            server_group: text(&planned.server_group),
            constraints: Some(PlacementConstraints {
                countries: list(&planned.countries),
                datacenter_ids: list(&planned.datacenters),
            }),
            request_id: String::new(),
        };
        let mut key = req.clone();
        key.user_data = String::new();
        req.request_id = request_id("instance", &key);
        let what = format!("Creating instance {name}");
        let (api, name) = (&api, &name);
        let inst = create_anew(
            diags,
            &what,
            || {
                let mut c = api.compute();
                let r = req.clone();
                async move { c.create_instance(r).await }
            },
            is_gone,
            |old| {
                let old = old.meta_id();
                async move { wait_gone(api, &old, name, timeout).await }
            },
        )
        .await?;
        let id = inst.meta_id();
        let mut state = with_server(planned.clone(), &inst);
        // On a failed wait the instance is kept in the state (tainted) so the next apply replaces
        // it instead of making a twin.
        let Some(i) = waited(
            diags,
            &what,
            wait_power(api, &id, name, RUNNING, timeout).await,
        ) else {
            return Some((state, private));
        };
        state = with_server(state, &i);
        if planned.power_state == known(STOPPED) {
            let stopped = set_power(api, &id, name, STOPPED, timeout).await;
            match waited(diags, &format!("Stopping instance {name}"), stopped) {
                Some(i) => state = with_server(state, &i),
                None => return Some((state, private)),
            }
        }
        Some((state, private))
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
        let timeout = timeout_for(diags, &planned.timeouts, Phase::Update)?;
        let (id, name) = (text(&prior.id), text(&prior.name));
        let mut state = planned.clone();
        state.state = prior.state.clone();
        if planned.power_state != prior.power_state {
            let target = if planned.power_state == known(STOPPED) {
                STOPPED
            } else {
                RUNNING
            };
            match set_power(&api, &id, &name, target, timeout).await {
                Ok(i) => state = with_server(state, &i),
                Err(e) => {
                    diags.root_error(
                        format!("Changing the power state of instance {name}"),
                        e.to_string(),
                    );
                    return Some((prior, private));
                }
            }
        }
        Some((state, private))
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
        let req = InstanceActionRequest {
            r#ref: Some(rref(&id, "")),
        };
        let what = format!("Deleting instance {name}");
        deleted(diags, &what, call(api.compute().delete_instance(req)).await)?;
        waited(diags, &what, wait_gone(&api, &id, &name, timeout).await)
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let api = self.0.api(diags)?;
        let lookup = found(call(api.compute().get_instance(import_req(&id))).await)
            .map(|i| i.filter(|i| !is_gone(i)));
        let i = import_found(diags, "instance", &id, BY_PROJECT_NAME, lookup)?;
        let s = answered(
            diags,
            &format!("Importing instance {id}"),
            imported(&api, &i).await,
        )?;
        Some((s, ValueEmpty::Null))
    }
}

/// Names where the server keeps ids, so that an imported instance matches a configuration
/// written with names.
async fn imported(api: &Api, i: &Instance) -> Result<InstanceState, tonic::Status> {
    let meta = i.meta.clone().unwrap_or_default();
    let pname = project_name(api, &meta.project_id).await?;
    let flavor = call(api.infra().get_flavor(get_req(&i.flavor_id, ""))).await?;
    let image = call(
        api.infra()
            .get_image(get_req(&i.image_id, &meta.project_id)),
    )
    .await?;
    let group = if i.server_group_id.is_empty() {
        Value::Null
    } else {
        let g = call(
            api.compute()
                .get_server_group(get_req(&i.server_group_id, &meta.project_id)),
        )
        .await?;
        known(&g.meta_name())
    };
    let c = i.constraints.clone().unwrap_or_default();
    let dcs = datacenter_names(api, &c.datacenter_ids).await?;
    let s = InstanceState {
        name: known(&meta.name),
        project: known(&pname),
        flavor: known(&flavor.meta_name()),
        image: known(&image.meta_name()),
        user_data: opt_text(&i.user_data),
        ssh_keys: server_list(&Value::Null, &i.ssh_keys),
        server_group: group,
        countries: server_list(&Value::Null, &c.countries),
        datacenters: server_list(&Value::Null, &dcs),
        ..Default::default()
    };
    Ok(with_server(s, i))
}
