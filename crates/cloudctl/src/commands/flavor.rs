//! `cloudctl flavor …`: create, get, list and delete flavors.

use andromede_api::v1::{CreateFlavorRequest, DeleteRequest};
use anyhow::Result;

use super::{get_req, list_req, print_deleted, rref};
use crate::cli::FlavorCmd;
use crate::client::{request_id, Ctx};
use crate::output::{print_list, print_one};
use crate::views::Names;

pub async fn run(ctx: &Ctx, cmd: FlavorCmd) -> Result<()> {
    match cmd {
        FlavorCmd::Create {
            name,
            vcpus,
            memory_mib,
            disk_gib,
            request_id: rid,
        } => {
            let req = CreateFlavorRequest {
                name,
                vcpus,
                memory_mib,
                disk_gib,
                request_id: request_id(rid),
            };
            let flavor = ctx
                .create_with_retry("flavor", || {
                    let mut c = ctx.infra();
                    let req = req.clone();
                    async move { c.create_flavor(req).await }
                })
                .await?;
            print_one(ctx.output, &flavor, &Names::default())
        }
        FlavorCmd::Get(r) => {
            let flavor = ctx
                .call(ctx.infra().get_flavor(get_req(ctx, &r.reference, None)))
                .await?;
            print_one(ctx.output, &flavor, &Names::default())
        }
        FlavorCmd::List => {
            let list = ctx
                .list_all(list_req(ctx, None), |r| {
                    let mut c = ctx.infra();
                    async move { c.list_flavors(r).await }
                })
                .await?;
            print_list(ctx.output, &list.flavors, &Names::default())
        }
        FlavorCmd::Delete(r) => {
            let req = DeleteRequest {
                r#ref: rref(&r.reference, None),
            };
            let resp = ctx.call(ctx.infra().delete_flavor(req)).await?;
            print_deleted(ctx, "flavor", &r.reference, &resp)
        }
    }
}
