//! `cloudctl volume …`: create, get, list, delete, attach and detach volumes, optionally
//! waiting for the outcome.

use std::time::Duration;

use andromede_api::v1::{
    AttachVolumeRequest, CreateVolumeRequest, DeleteRequest, DetachVolumeRequest, Volume,
    VolumeState,
};
use anyhow::Result;
use tonic::Code;

use super::instance::constraints;
use super::{fresh_get, get_req, id_of, label, list_req, names, print_gone, rref, Lookup};
use crate::cli::{VolumeAttach, VolumeCmd, VolumeCreate, VolumeDelete, VolumeDetach, WaitArgs};
use crate::client::{request_id, with_deadline, Ctx};
use crate::output::{print_list, print_one};
use crate::views::volume_state;
use crate::wait::{self, Probe};

const LOOKUPS: &[Lookup] = &[
    Lookup::Hosts,
    Lookup::Datacenters,
    Lookup::Instances,
    Lookup::Projects,
];

pub async fn run(ctx: &Ctx, cmd: VolumeCmd) -> Result<()> {
    match cmd {
        VolumeCmd::Create(a) => create(ctx, a).await,
        VolumeCmd::Get(r) => {
            let vol = ctx
                .call(
                    ctx.volumes()
                        .get_volume(get_req(ctx, &r.reference, r.project.as_deref())),
                )
                .await?;
            let names = names(ctx, LOOKUPS).await;
            print_one(ctx.output, &vol, &names)
        }
        VolumeCmd::List { project } => {
            let list = ctx
                .call(ctx.volumes().list_volumes(list_req(ctx, project)))
                .await?;
            let names = names(ctx, LOOKUPS).await;
            print_list(ctx.output, &list.volumes, &names)
        }
        VolumeCmd::Delete(a) => delete(ctx, a).await,
        VolumeCmd::Attach(a) => attach(ctx, a).await,
        VolumeCmd::Detach(a) => detach(ctx, a).await,
    }
}

/// The state a `--wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Available,
    InUse,
    Gone,
}

impl Goal {
    fn name(self) -> &'static str {
        match self {
            Goal::Available => "AVAILABLE",
            Goal::InUse => "IN_USE",
            Goal::Gone => "deleted",
        }
    }
}

/// Judges one observation of a volume against the goal; `None` means it no longer exists.
pub fn judge(found: Option<Volume>, goal: Goal) -> Probe<Option<Volume>> {
    let Some(vol) = found else {
        return match goal {
            Goal::Gone => Probe::Done(None),
            _ => Probe::Failed("it no longer exists".to_owned()),
        };
    };
    let state = VolumeState::try_from(vol.state).unwrap_or(VolumeState::Unspecified);
    let reached = match goal {
        Goal::Available => state == VolumeState::Available,
        Goal::InUse => state == VolumeState::InUse,
        Goal::Gone => state == VolumeState::Deleted,
    };
    if reached {
        return Probe::Done(Some(vol));
    }
    if state == VolumeState::Error {
        let reason = if vol.state_reason.is_empty() {
            "no reason given".to_owned()
        } else {
            vol.state_reason.clone()
        };
        return Probe::Failed(format!("ERROR: {reason}"));
    }
    if goal != Goal::Gone && matches!(state, VolumeState::Deleting | VolumeState::Deleted) {
        return Probe::Failed(format!("it is {}", volume_state(vol.state)));
    }
    Probe::Pending(volume_state(vol.state))
}

async fn finish(ctx: &Ctx, vol: Volume, w: WaitArgs, goal: Goal, reference: &str) -> Result<()> {
    if !w.wait {
        let names = names(ctx, LOOKUPS).await;
        return print_one(ctx.output, &vol, &names);
    }
    let id = id_of(vol.meta.as_ref());
    let what = format!("volume {}", label(vol.meta.as_ref(), &id));
    let last = wait::until(&what, goal.name(), Duration::from_secs(w.timeout), || {
        let mut c = ctx.volumes();
        let req = fresh_get(&id, None);
        let limit = ctx.request_timeout;
        async move {
            match with_deadline(limit, c.get_volume(req)).await {
                Ok(v) => Ok(judge(Some(v), goal)),
                Err(s) if s.code() == Code::NotFound => Ok(judge(None, goal)),
                Err(s) => Err(s),
            }
        }
    })
    .await?;
    match last {
        Some(v) if v.state != VolumeState::Deleted as i32 => {
            let names = names(ctx, LOOKUPS).await;
            print_one(ctx.output, &v, &names)
        }
        _ => print_gone(ctx, "volume", reference, &id),
    }
}

async fn create(ctx: &Ctx, a: VolumeCreate) -> Result<()> {
    let req = CreateVolumeRequest {
        name: a.name.clone(),
        project: a.project.clone(),
        size_gib: a.size_gib,
        constraints: constraints(ctx, &a.constraints).await?,
        near_instance: a.near_instance.clone().unwrap_or_default(),
        request_id: request_id(a.request_id.clone()),
    };
    let vol = ctx
        .create_with_retry("volume", || {
            let mut c = ctx.volumes();
            let req = req.clone();
            async move { c.create_volume(req).await }
        })
        .await?;
    finish(ctx, vol, a.wait, Goal::Available, &a.name).await
}

async fn delete(ctx: &Ctx, a: VolumeDelete) -> Result<()> {
    let req = DeleteRequest {
        r#ref: rref(&a.target.reference, a.target.project.as_deref()),
    };
    let vol = ctx.call(ctx.volumes().delete_volume(req)).await?;
    finish(ctx, vol, a.wait, Goal::Gone, &a.target.reference).await
}

async fn attach(ctx: &Ctx, a: VolumeAttach) -> Result<()> {
    let req = AttachVolumeRequest {
        volume: rref(&a.volume, a.project.as_deref()),
        instance: a.instance.clone(),
    };
    let vol = ctx.call(ctx.volumes().attach_volume(req)).await?;
    finish(ctx, vol, a.wait, Goal::InUse, &a.volume).await
}

async fn detach(ctx: &Ctx, a: VolumeDetach) -> Result<()> {
    let req = DetachVolumeRequest {
        volume: rref(&a.volume, a.project.as_deref()),
    };
    let vol = ctx.call(ctx.volumes().detach_volume(req)).await?;
    finish(ctx, vol, a.wait, Goal::Available, &a.volume).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_state(state: VolumeState) -> Volume {
        Volume {
            state: state as i32,
            ..Volume::default()
        }
    }

    #[test]
    fn judges_progress_towards_each_goal() {
        assert!(matches!(
            judge(Some(with_state(VolumeState::InUse)), Goal::InUse),
            Probe::Done(Some(_))
        ));
        assert!(matches!(
            judge(Some(with_state(VolumeState::Creating)), Goal::Available),
            Probe::Pending(ref s) if s == "CREATING"
        ));
        assert!(matches!(
            judge(Some(with_state(VolumeState::Error)), Goal::Available),
            Probe::Failed(_)
        ));
        assert!(matches!(judge(None, Goal::Gone), Probe::Done(None)));
        assert!(matches!(
            judge(Some(with_state(VolumeState::Deleting)), Goal::Gone),
            Probe::Pending(_)
        ));
    }
}
