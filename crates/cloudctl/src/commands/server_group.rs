//! `cloudctl server-group …`: create, get, list and delete affinity and anti-affinity groups.

use andromede_api::v1::{CreateServerGroupRequest, DeleteRequest, GroupPolicy};
use anyhow::Result;

use super::{get_req, list_req, names, print_deleted, rref, Lookup};
use crate::cli::{GroupPolicyArg, ServerGroupCmd};
use crate::client::{request_id, Ctx};
use crate::output::{print_list, print_one};

pub async fn run(ctx: &Ctx, cmd: ServerGroupCmd) -> Result<()> {
    match cmd {
        ServerGroupCmd::Create {
            name,
            project,
            policy,
            hard,
            request_id: rid,
        } => {
            let req = CreateServerGroupRequest {
                name,
                project: project.unwrap_or_default(),
                policy: match policy {
                    GroupPolicyArg::Affinity => GroupPolicy::Affinity,
                    GroupPolicyArg::AntiAffinity => GroupPolicy::AntiAffinity,
                } as i32,
                hard,
                request_id: request_id(rid),
            };
            let group = ctx
                .create_with_retry("server group", || {
                    let mut c = ctx.compute();
                    let req = req.clone();
                    async move { c.create_server_group(req).await }
                })
                .await?;
            let names = names(ctx, &[Lookup::Projects]).await;
            print_one(ctx.output, &group, &names)
        }
        ServerGroupCmd::Get(r) => {
            let group = ctx
                .call(ctx.compute().get_server_group(get_req(
                    ctx,
                    &r.reference,
                    r.project.as_deref(),
                )))
                .await?;
            let names = names(ctx, &[Lookup::Projects, Lookup::Instances]).await;
            print_one(ctx.output, &group, &names)
        }
        ServerGroupCmd::List { project } => {
            let list = ctx
                .list_all(list_req(ctx, project), |r| {
                    let mut c = ctx.compute();
                    async move { c.list_server_groups(r).await }
                })
                .await?;
            let names = names(ctx, &[Lookup::Projects]).await;
            print_list(ctx.output, &list.server_groups, &names)
        }
        ServerGroupCmd::Delete(r) => {
            let req = DeleteRequest {
                r#ref: rref(&r.reference, r.project.as_deref()),
            };
            let resp = ctx.call(ctx.compute().delete_server_group(req)).await?;
            print_deleted(ctx, "server group", &r.reference, &resp)
        }
    }
}
