//! `cloudctl host …`: register hypervisor hosts, change their state, get, list and delete them,
//! declare lost ones, and (through `join_token`) enroll agents.

use andromede_api::v1::{
    AllocationRatios, DeclareHostLostRequest, DeleteRequest, HostState, ListHostsRequest,
    RegisterHostRequest, Resources, SetHostStateRequest,
};
use anyhow::Result;

use super::{get_req, names, print_deleted, rref, Lookup};
use crate::cli::{HostCmd, HostRegister, HostStateArg};
use crate::client::{request_id, Ctx};
use crate::output::{print_list, print_one};

// The server's defaults for unset ratios, restated so a partial set of flags keeps them.
const DEFAULT_CPU_RATIO: f64 = 4.0;
const DEFAULT_MEMORY_RATIO: f64 = 1.0;
const DEFAULT_DISK_RATIO: f64 = 1.0;

pub async fn run(ctx: &Ctx, cmd: HostCmd) -> Result<()> {
    match cmd {
        HostCmd::Register(a) => register(ctx, a).await,
        HostCmd::SetState { reference, state } => {
            let req = SetHostStateRequest {
                r#ref: rref(&reference, None),
                state: host_state(state) as i32,
            };
            let host = ctx.call(ctx.infra().set_host_state(req)).await?;
            let names = names(ctx, &[Lookup::Datacenters]).await;
            print_one(ctx.output, &host, &names)
        }
        HostCmd::Get(r) => {
            let host = ctx
                .call(ctx.infra().get_host(get_req(ctx, &r.reference, None)))
                .await?;
            let names = names(ctx, &[Lookup::Datacenters]).await;
            print_one(ctx.output, &host, &names)
        }
        HostCmd::List { datacenter } => {
            let req = ListHostsRequest {
                datacenter: datacenter.unwrap_or_default(),
                read: ctx.read(),
                ..Default::default()
            };
            let list = ctx
                .list_all(req, |r| {
                    let mut c = ctx.infra();
                    async move { c.list_hosts(r).await }
                })
                .await?;
            let names = names(ctx, &[Lookup::Datacenters]).await;
            print_list(ctx.output, &list.hosts, &names)
        }
        HostCmd::Delete(r) => {
            let req = DeleteRequest {
                r#ref: rref(&r.reference, None),
            };
            let resp = ctx.call(ctx.infra().delete_host(req)).await?;
            print_deleted(ctx, "host", &r.reference, &resp)
        }
        HostCmd::DeclareLost(r) => {
            let req = DeclareHostLostRequest {
                r#ref: rref(&r.reference, None),
            };
            let host = ctx.call(ctx.infra().declare_host_lost(req)).await?;
            let names = names(ctx, &[Lookup::Datacenters]).await;
            print_one(ctx.output, &host, &names)
        }
        HostCmd::Orphans(r) => {
            let host = ctx
                .call(ctx.infra().get_host(get_req(ctx, &r.reference, None)))
                .await?;
            let items = host.orphans.map(|o| o.items).unwrap_or_default();
            let value = serde_json::to_value(&items)?;
            crate::output::print_value(ctx.output, &value, || {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|o| vec![o.kind.clone(), o.id.clone(), o.reason.clone()])
                    .collect();
                crate::output::list_table(&["KIND", "ID", "REASON"], &rows)
            })
        }
        HostCmd::JoinToken(c) => super::join_token::run(ctx, c).await,
    }
}

fn host_state(s: HostStateArg) -> HostState {
    match s {
        HostStateArg::Up => HostState::Up,
        HostStateArg::Down => HostState::Down,
        HostStateArg::Draining => HostState::Draining,
        HostStateArg::Disabled => HostState::Disabled,
    }
}

async fn register(ctx: &Ctx, a: HostRegister) -> Result<()> {
    let ratios = if a.cpu_ratio.is_some() || a.memory_ratio.is_some() || a.disk_ratio.is_some() {
        Some(AllocationRatios {
            cpu: a.cpu_ratio.unwrap_or(DEFAULT_CPU_RATIO),
            memory: a.memory_ratio.unwrap_or(DEFAULT_MEMORY_RATIO),
            disk: a.disk_ratio.unwrap_or(DEFAULT_DISK_RATIO),
        })
    } else {
        None
    };
    let req = RegisterHostRequest {
        name: a.name,
        datacenter: a.datacenter,
        capacity: Some(Resources {
            vcpus: a.vcpus,
            memory_mib: a.memory_mib,
            disk_gib: a.disk_gib,
        }),
        ratios,
        simulated: a.simulated,
        request_id: request_id(a.request_id),
    };
    let host = ctx
        .create_with_retry("host", || {
            let mut c = ctx.infra();
            let req = req.clone();
            async move { c.register_host(req).await }
        })
        .await?;
    let names = names(ctx, &[Lookup::Datacenters]).await;
    print_one(ctx.output, &host, &names)
}
