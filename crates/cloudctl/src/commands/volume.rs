//! `cloudctl volume …`: create, get, list, delete, attach, detach and extend volumes,
//! optionally waiting for the outcome.

use std::time::Duration;

use andromede_api::v1::{
    AttachVolumeRequest, CreateVolumeRequest, DeleteRequest, DetachVolumeRequest,
    ExtendVolumeRequest, Volume, VolumeState,
};
use anyhow::Result;
use tonic::Code;

use super::instance::constraints;
use super::{fresh_get, get_req, id_of, label, list_req, names, print_gone, rref, Lookup};
use crate::cli::{
    VolumeAttach, VolumeCmd, VolumeCreate, VolumeDelete, VolumeDetach, VolumeExtend, WaitArgs,
};
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
                .list_all(list_req(ctx, project), |r| {
                    let mut c = ctx.volumes();
                    async move { c.list_volumes(r).await }
                })
                .await?;
            let names = names(ctx, LOOKUPS).await;
            print_list(ctx.output, &list.volumes, &names)
        }
        VolumeCmd::Delete(a) => delete(ctx, a).await,
        VolumeCmd::Attach(a) => attach(ctx, a).await,
        VolumeCmd::Detach(a) => detach(ctx, a).await,
        VolumeCmd::Extend(a) => extend(ctx, a).await,
    }
}

/// The state a `--wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// A new volume is ready.
    Available,
    /// An attach went through: ATTACHING gives way to IN_USE.
    Attached,
    /// A detach went through: DETACHING gives way to AVAILABLE.
    Detached,
    /// An extend is recorded: the volume has at least this many GiB and is usable.
    Grown(u64),
    Gone,
}

impl Goal {
    fn name(self) -> String {
        match self {
            Goal::Available | Goal::Detached => "AVAILABLE".to_owned(),
            Goal::Attached => "IN_USE".to_owned(),
            Goal::Grown(gib) => format!("{gib} GiB"),
            Goal::Gone => "deleted".to_owned(),
        }
    }
}

fn reason(vol: &Volume) -> String {
    if vol.state_reason.is_empty() {
        "no reason given".to_owned()
    } else {
        vol.state_reason.clone()
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
        Goal::Available | Goal::Detached => state == VolumeState::Available,
        Goal::Attached => state == VolumeState::InUse,
        Goal::Grown(gib) => {
            vol.size_gib >= gib && matches!(state, VolumeState::Available | VolumeState::InUse)
        }
        Goal::Gone => state == VolumeState::Deleted,
    };
    if reached {
        return Probe::Done(Some(vol));
    }
    if state == VolumeState::Error {
        return Probe::Failed(format!("ERROR: {}", reason(&vol)));
    }
    if goal != Goal::Gone && matches!(state, VolumeState::Deleting | VolumeState::Deleted) {
        return Probe::Failed(format!("it is {}", volume_state(vol.state)));
    }
    // The host puts a volume back where it was when it cannot attach or detach it; polling on
    // would only run into the timeout.
    if goal == Goal::Attached && state == VolumeState::Available {
        return Probe::Failed(format!(
            "the host could not attach it, it is AVAILABLE again: {}",
            reason(&vol)
        ));
    }
    if goal == Goal::Detached && state == VolumeState::InUse {
        return Probe::Failed(format!(
            "the host could not detach it, it is still IN_USE: {}",
            reason(&vol)
        ));
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
    let last = wait::until(&what, &goal.name(), Duration::from_secs(w.timeout), || {
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
        project: a.project.clone().unwrap_or_default(),
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
    finish(ctx, vol, a.wait, Goal::Attached, &a.volume).await
}

async fn detach(ctx: &Ctx, a: VolumeDetach) -> Result<()> {
    let req = DetachVolumeRequest {
        volume: rref(&a.volume, a.project.as_deref()),
    };
    let vol = ctx.call(ctx.volumes().detach_volume(req)).await?;
    finish(ctx, vol, a.wait, Goal::Detached, &a.volume).await
}

async fn extend(ctx: &Ctx, a: VolumeExtend) -> Result<()> {
    let req = ExtendVolumeRequest {
        volume: rref(&a.volume, a.project.as_deref()),
        size_gib: a.size,
    };
    let vol = ctx.call(ctx.volumes().extend_volume(req)).await?;
    finish(ctx, vol, a.wait, Goal::Grown(a.size), &a.volume).await
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
            judge(Some(with_state(VolumeState::InUse)), Goal::Attached),
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

    #[test]
    fn attach_and_detach_pass_through_their_transitional_states() {
        assert!(matches!(
            judge(Some(with_state(VolumeState::Attaching)), Goal::Attached),
            Probe::Pending(ref s) if s == "ATTACHING"
        ));
        assert!(matches!(
            judge(Some(with_state(VolumeState::Detaching)), Goal::Detached),
            Probe::Pending(ref s) if s == "DETACHING"
        ));
        assert!(matches!(
            judge(Some(with_state(VolumeState::Available)), Goal::Detached),
            Probe::Done(Some(_))
        ));
        // The host gave up: the volume went back to where it came from.
        let refused = Volume {
            state: VolumeState::Available as i32,
            state_reason: "guest has no free slot".into(),
            ..Volume::default()
        };
        assert!(matches!(
            judge(Some(refused), Goal::Attached),
            Probe::Failed(ref s) if s.contains("no free slot")
        ));
        assert!(matches!(
            judge(Some(with_state(VolumeState::InUse)), Goal::Detached),
            Probe::Failed(_)
        ));
    }

    #[test]
    fn extend_waits_for_the_size_in_a_usable_state() {
        let sized = |state: VolumeState, size_gib: u64| Volume {
            state: state as i32,
            size_gib,
            ..Volume::default()
        };
        assert!(matches!(
            judge(Some(sized(VolumeState::InUse, 20)), Goal::Grown(20)),
            Probe::Done(Some(_))
        ));
        assert!(matches!(
            judge(Some(sized(VolumeState::Available, 10)), Goal::Grown(20)),
            Probe::Pending(_)
        ));
        assert!(matches!(
            judge(Some(sized(VolumeState::Attaching, 20)), Goal::Grown(20)),
            Probe::Pending(_)
        ));
        assert!(matches!(
            judge(Some(sized(VolumeState::Error, 20)), Goal::Grown(20)),
            Probe::Failed(_)
        ));
    }
}
