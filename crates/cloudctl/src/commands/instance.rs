//! `cloudctl instance …`: create instances, act on their power state, get, list and delete
//! them, optionally waiting for the outcome, and read their console log.

use std::io::Write;
use std::time::Duration;

use andromede_api::v1::{
    CreateInstanceRequest, GetConsoleLogRequest, Instance, InstanceActionRequest, InstanceState,
    PlacementConstraints,
};
use anyhow::{Context, Result};
use tonic::Code;

use super::{
    datacenter_ids, fresh_get, get_req, id_of, label, list_req, names, print_gone, rref, Lookup,
};
use crate::cli::{
    ConstraintArgs, InstanceAction, InstanceCmd, InstanceConsoleLog, InstanceCreate, WaitArgs,
};
use crate::client::{request_id, Ctx};
use crate::output::{print_list, print_one, print_value, OutputFormat};
use crate::views::instance_state;
use crate::wait::{self, Probe};

/// Everything an instance's table may want to name.
const LOOKUPS: &[Lookup] = &[
    Lookup::Hosts,
    Lookup::Datacenters,
    Lookup::Flavors,
    Lookup::Images,
    Lookup::Projects,
];

pub async fn run(ctx: &Ctx, cmd: InstanceCmd) -> Result<()> {
    match cmd {
        InstanceCmd::Create(a) => create(ctx, *a).await,
        InstanceCmd::Get(r) => {
            let inst = ctx
                .call(
                    ctx.compute()
                        .get_instance(get_req(ctx, &r.reference, r.project.as_deref())),
                )
                .await?;
            let names = names(ctx, LOOKUPS).await;
            print_one(ctx.output, &inst, &names)
        }
        InstanceCmd::List { project } => {
            let list = ctx
                .list_all(list_req(ctx, project), |r| {
                    let mut c = ctx.compute();
                    async move { c.list_instances(r).await }
                })
                .await?;
            let names = names(
                ctx,
                &[
                    Lookup::Hosts,
                    Lookup::Datacenters,
                    Lookup::Flavors,
                    Lookup::Projects,
                ],
            )
            .await;
            print_list(ctx.output, &list.instances, &names)
        }
        InstanceCmd::Start(a) => action(ctx, a, Action::Start).await,
        InstanceCmd::Stop(a) => action(ctx, a, Action::Stop).await,
        InstanceCmd::Reboot(a) => action(ctx, a, Action::Reboot).await,
        InstanceCmd::Delete(a) => action(ctx, a, Action::Delete).await,
        InstanceCmd::ConsoleLog(a) => console_log(ctx, a).await,
    }
}

async fn console_log(ctx: &Ctx, a: InstanceConsoleLog) -> Result<()> {
    let req = GetConsoleLogRequest {
        r#ref: rref(&a.target.reference, a.target.project.as_deref()),
        max_bytes: a.bytes,
    };
    let resp = ctx.call(ctx.compute().get_console_log(req)).await?;
    if ctx.output != OutputFormat::Table {
        // Serde would render the bytes as an array of numbers; text is what a script can use.
        let value = serde_json::json!({
            "host_id": resp.host_id,
            "data": String::from_utf8_lossy(&resp.data),
        });
        return print_value(ctx.output, &value, String::new);
    }
    if resp.data.is_empty() {
        // On stderr, so that a pipe still receives exactly the log.
        eprintln!("note: the console log of {} is empty", a.target.reference);
        return Ok(());
    }
    // The bytes go out unchanged (escape sequences, invalid UTF-8 and all) so that they can be
    // piped to a file or a pager.
    let mut out = std::io::stdout().lock();
    out.write_all(&resp.data)?;
    out.flush()?;
    Ok(())
}

/// The state a `--wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Running,
    Stopped,
    Gone,
}

impl Goal {
    fn name(self) -> &'static str {
        match self {
            Goal::Running => "RUNNING",
            Goal::Stopped => "STOPPED",
            Goal::Gone => "deleted",
        }
    }
}

/// Judges one observation of an instance against the goal; `None` means it no longer exists.
pub fn judge(found: Option<Instance>, goal: Goal) -> Probe<Option<Instance>> {
    let Some(inst) = found else {
        return match goal {
            Goal::Gone => Probe::Done(None),
            _ => Probe::Failed("it no longer exists".to_owned()),
        };
    };
    let state = InstanceState::try_from(inst.state).unwrap_or(InstanceState::Unspecified);
    let reached = match goal {
        Goal::Running => state == InstanceState::Running,
        Goal::Stopped => state == InstanceState::Stopped,
        Goal::Gone => state == InstanceState::Deleted,
    };
    if reached {
        return Probe::Done(Some(inst));
    }
    if state == InstanceState::Error {
        let reason = if inst.state_reason.is_empty() {
            "no reason given".to_owned()
        } else {
            inst.state_reason.clone()
        };
        return Probe::Failed(format!("ERROR: {reason}"));
    }
    if goal != Goal::Gone && matches!(state, InstanceState::Deleting | InstanceState::Deleted) {
        return Probe::Failed(format!("it is {}", instance_state(inst.state)));
    }
    let mut shown = instance_state(inst.state);
    if !inst.state_reason.is_empty() {
        shown.push_str(&format!(" ({})", inst.state_reason));
    }
    Probe::Pending(shown)
}

async fn wait_for(
    ctx: &Ctx,
    inst: &Instance,
    goal: Goal,
    timeout: u64,
) -> Result<Option<Instance>> {
    let id = id_of(inst.meta.as_ref());
    let what = format!("instance {}", label(inst.meta.as_ref(), &id));
    wait::until(&what, goal.name(), Duration::from_secs(timeout), || {
        let mut c = ctx.compute();
        let req = fresh_get(&id, None);
        let limit = ctx.request_timeout;
        async move {
            match crate::client::with_deadline(limit, c.get_instance(req)).await {
                Ok(i) => Ok(judge(Some(i), goal)),
                Err(s) if s.code() == Code::NotFound => Ok(judge(None, goal)),
                Err(s) => Err(s),
            }
        }
    })
    .await
}

/// Prints where a change ended: the instance, or a deletion notice once it is gone.
async fn print_outcome(
    ctx: &Ctx,
    original: &Instance,
    last: Option<Instance>,
    reference: &str,
) -> Result<()> {
    match last {
        Some(inst) if inst.state != InstanceState::Deleted as i32 => {
            let names = names(ctx, LOOKUPS).await;
            print_one(ctx.output, &inst, &names)
        }
        _ => print_gone(ctx, "instance", reference, &id_of(original.meta.as_ref())),
    }
}

fn read_user_data(a: &InstanceCreate) -> Result<String> {
    if let Some(path) = &a.user_data_file {
        return std::fs::read_to_string(path)
            .with_context(|| format!("cannot read user data from {}", path.display()));
    }
    Ok(a.user_data.clone().unwrap_or_default())
}

/// SSH keys as given, with `@PATH` replaced by the file's content.
fn read_ssh_keys(keys: &[String]) -> Result<Vec<String>> {
    keys.iter()
        .map(|k| match k.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .with_context(|| format!("cannot read SSH key from {path}")),
            None => Ok(k.clone()),
        })
        .collect()
}

pub async fn constraints(ctx: &Ctx, c: &ConstraintArgs) -> Result<Option<PlacementConstraints>> {
    if c.country.is_empty() && c.datacenter.is_empty() {
        return Ok(None);
    }
    Ok(Some(PlacementConstraints {
        countries: c.country.clone(),
        datacenter_ids: datacenter_ids(ctx, &c.datacenter).await?,
    }))
}

async fn create(ctx: &Ctx, a: InstanceCreate) -> Result<()> {
    let req = CreateInstanceRequest {
        name: a.name.clone(),
        project: a.project.clone().unwrap_or_default(),
        flavor: a.flavor.clone(),
        image: a.image.clone(),
        user_data: read_user_data(&a)?,
        ssh_keys: read_ssh_keys(&a.ssh_keys)?,
        server_group: a.server_group.clone().unwrap_or_default(),
        constraints: constraints(ctx, &a.constraints).await?,
        request_id: request_id(a.request_id.clone()),
    };
    let inst = ctx
        .create_with_retry("instance", || {
            let mut c = ctx.compute();
            let req = req.clone();
            async move { c.create_instance(req).await }
        })
        .await?;
    finish(ctx, inst, a.wait, Goal::Running, &a.name).await
}

async fn finish(ctx: &Ctx, inst: Instance, w: WaitArgs, goal: Goal, reference: &str) -> Result<()> {
    if !w.wait {
        let names = names(ctx, LOOKUPS).await;
        return print_one(ctx.output, &inst, &names);
    }
    let last = wait_for(ctx, &inst, goal, w.timeout).await?;
    print_outcome(ctx, &inst, last, reference).await
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Start,
    Stop,
    Reboot,
    Delete,
}

async fn action(ctx: &Ctx, a: InstanceAction, action: Action) -> Result<()> {
    let req = InstanceActionRequest {
        r#ref: rref(&a.target.reference, a.target.project.as_deref()),
    };
    let mut c = ctx.compute();
    let (inst, goal) = match action {
        Action::Start => (ctx.call(c.start_instance(req)).await?, Goal::Running),
        Action::Stop => (ctx.call(c.stop_instance(req)).await?, Goal::Stopped),
        Action::Reboot => (ctx.call(c.reboot_instance(req)).await?, Goal::Running),
        Action::Delete => (ctx.call(c.delete_instance(req)).await?, Goal::Gone),
    };
    finish(ctx, inst, a.wait, goal, &a.target.reference).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_state(state: InstanceState, reason: &str) -> Instance {
        Instance {
            state: state as i32,
            state_reason: reason.to_owned(),
            ..Instance::default()
        }
    }

    #[test]
    fn judges_progress_towards_each_goal() {
        assert!(matches!(
            judge(Some(with_state(InstanceState::Running, "")), Goal::Running),
            Probe::Done(Some(_))
        ));
        assert!(matches!(
            judge(Some(with_state(InstanceState::Creating, "")), Goal::Running),
            Probe::Pending(ref s) if s == "CREATING"
        ));
        assert!(matches!(
            judge(Some(with_state(InstanceState::Error, "no host fits")), Goal::Running),
            Probe::Failed(ref s) if s.contains("no host fits")
        ));
        assert!(matches!(judge(None, Goal::Gone), Probe::Done(None)));
        assert!(matches!(
            judge(Some(with_state(InstanceState::Deleted, "")), Goal::Gone),
            Probe::Done(Some(_))
        ));
        assert!(matches!(judge(None, Goal::Stopped), Probe::Failed(_)));
        assert!(matches!(
            judge(Some(with_state(InstanceState::Deleting, "")), Goal::Stopped),
            Probe::Failed(_)
        ));
    }
}
