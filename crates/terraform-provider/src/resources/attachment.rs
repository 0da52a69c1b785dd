//! `andromede_volume_attachment`: a volume attached to an instance, created until the volume is
//! IN_USE and attached to that instance, destroyed until it is AVAILABLE again.

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
use crate::resources::volume::{volume_gone, volume_state_name};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachmentState {
    pub id: Value<String>,
    pub volume: Value<String>,
    pub instance: Value<String>,
    pub project: Value<String>,
    pub volume_id: Value<String>,
    pub instance_id: Value<String>,
    #[serde(with = "serde_as_vec")]
    pub timeouts: Value<Timeouts>,
}

pub struct AttachmentResource(pub Shared);

/// `volume_id/instance_id`.
fn split_id(id: &str) -> (String, String) {
    match id.split_once('/') {
        Some((v, i)) => (v.to_owned(), i.to_owned()),
        None => (id.to_owned(), String::new()),
    }
}

async fn wait_attached(
    api: &Api,
    volume: &str,
    instance: &str,
    timeout: Duration,
) -> Result<Volume, WaitError> {
    until(
        &format!("volume {volume}"),
        &format!("IN_USE by {instance}"),
        timeout,
        || async {
            let v = call(api.volumes().get_volume(get_req(volume, ""))).await?;
            let st = volume_state_name(v.state);
            Ok(if st == "IN_USE" && v.attached_to == instance {
                Probe::Done(v)
            } else if st == "ERROR" || volume_gone(&v) {
                Probe::Failed(format!("{st}: {}", v.state_reason))
            } else {
                Probe::Pending(format!("{st}, attached to `{}`", v.attached_to))
            })
        },
    )
    .await
}

async fn wait_detached(api: &Api, volume: &str, timeout: Duration) -> Result<(), WaitError> {
    until(
        &format!("volume {volume}"),
        "AVAILABLE",
        timeout,
        || async {
            Ok(
                match found(call(api.volumes().get_volume(get_req(volume, ""))).await)? {
                    None => Probe::Done(()),
                    Some(v) if volume_gone(&v) => Probe::Done(()),
                    Some(v)
                        if volume_state_name(v.state) == "AVAILABLE"
                            && v.attached_to.is_empty() =>
                    {
                        Probe::Done(())
                    }
                    Some(v) if volume_state_name(v.state) == "ERROR" => {
                        Probe::Failed(format!("ERROR: {}", v.state_reason))
                    }
                    Some(v) => Probe::Pending(volume_state_name(v.state)),
                },
            )
        },
    )
    .await
}

#[async_trait]
impl Resource for AttachmentResource {
    type State<'a> = AttachmentState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut b =
            block("Attaches a volume to an instance (placed on the same host, see near_instance).");
        let s = AttributeType::String;
        let a = &mut b.attributes;
        a.insert("id".into(), computed(s.clone(), "VOLUME_ID/INSTANCE_ID."));
        a.insert(
            "volume".into(),
            required(
                s.clone(),
                "Volume id (or name with project). Forces replacement.",
            ),
        );
        a.insert(
            "instance".into(),
            required(
                s.clone(),
                "Instance id (or name with project). Forces replacement.",
            ),
        );
        a.insert("project".into(), optional(s.clone(), "Project, needed only when volume or instance are given by name. Forces replacement."));
        a.insert("volume_id".into(), computed(s.clone(), "Id of the volume."));
        a.insert("instance_id".into(), computed(s, "Id of the instance."));
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
        let (vid, iid) = split_id(&text(&state.id));
        read_found(
            diags,
            &format!("Reading attachment {}", text(&state.id)),
            call(api.volumes().get_volume(get_req(&vid, ""))).await,
        )
        // Detached (or attached elsewhere) outside Terraform counts as gone.
        .filter(|v| !volume_gone(v) && v.attached_to == iid)?;
        Some((state, private))
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        check_timeouts(diags, &proposed.timeouts)?;
        let mut s = proposed;
        s.id = Value::Unknown;
        s.volume_id = Value::Unknown;
        s.instance_id = Value::Unknown;
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
        changed(&prior.volume, &proposed.volume, "volume", &mut r);
        changed(&prior.instance, &proposed.instance, "instance", &mut r);
        changed(&prior.project, &proposed.project, "project", &mut r);
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
        let project = text(&planned.project);
        let what = format!(
            "Attaching volume {} to {}",
            text(&planned.volume),
            text(&planned.instance)
        );
        // Ids, because the wait compares the volume's attached_to with the instance id.
        let ids = async {
            let v = call(
                api.volumes()
                    .get_volume(get_req(&text(&planned.volume), &project)),
            )
            .await?;
            let i = call(
                api.compute()
                    .get_instance(get_req(&text(&planned.instance), &project)),
            )
            .await?;
            Ok::<_, tonic::Status>((v.meta_id(), i.meta_id()))
        };
        let (vid, iid) = answered(diags, &what, ids.await)?;
        let req = AttachVolumeRequest {
            volume: Some(rref(&vid, "")),
            instance: iid.clone(),
        };
        // Attaching twice to the same instance is what a retry would do; the wait tells.
        answered(diags, &what, call(api.volumes().attach_volume(req)).await)?;
        let mut state = planned;
        state.id = known(&format!("{vid}/{iid}"));
        state.volume_id = known(&vid);
        state.instance_id = known(&iid);
        // Kept in the state even when the wait fails, so that a destroy detaches it.
        waited(diags, &what, wait_attached(&api, &vid, &iid, timeout).await);
        Some((state, private))
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
        let timeout = timeout_for(diags, &prior.timeouts, Phase::Delete)?;
        let (vid, iid) = split_id(&text(&prior.id));
        let what = format!("Detaching volume {vid} from {iid}");
        let current = answered(
            diags,
            &what,
            found(call(api.volumes().get_volume(get_req(&vid, ""))).await),
        )?;
        if !current.is_some_and(|v| v.attached_to == iid && !volume_gone(&v)) {
            // Already detached (or gone): nothing to undo.
            return Some(());
        }
        let req = DetachVolumeRequest {
            volume: Some(rref(&vid, "")),
        };
        deleted(diags, &what, call(api.volumes().detach_volume(req)).await)?;
        waited(diags, &what, wait_detached(&api, &vid, timeout).await)
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let api = self.0.api(diags)?;
        let (vid, _) = split_id(&id);
        let Some(v) = answered(
            diags,
            &format!("Importing attachment {id}"),
            found(call(api.volumes().get_volume(get_req(&vid, ""))).await),
        )?
        .filter(|v| !v.attached_to.is_empty()) else {
            diags.root_error_short(format!(
                "volume `{id}` is not attached (import by VOLUME_ID)"
            ));
            return None;
        };
        let vid = v.meta_id();
        let s = AttachmentState {
            id: known(&format!("{vid}/{}", v.attached_to)),
            volume: known(&vid),
            instance: known(&v.attached_to),
            volume_id: known(&vid),
            instance_id: known(&v.attached_to),
            ..Default::default()
        };
        Some((s, ValueEmpty::Null))
    }
}
