//! `cloudctl cluster …`: Raft status and membership changes.

use andromede_api::v1::{
    AddLearnerRequest, ClusterStatusRequest, InitializeRequest, LocateNodeRequest, PromoteRequest,
    RemoveNodeRequest,
};
use anyhow::Result;

use crate::cli::ClusterCmd;
use crate::client::Ctx;
use crate::output::{print_value, to_named_value, Kind};
use crate::views::cluster_status;

pub async fn run(ctx: &Ctx, cmd: ClusterCmd) -> Result<()> {
    let mut c = ctx.cluster();
    let status = match cmd {
        ClusterCmd::Status => ctx.call(c.status(ClusterStatusRequest {})).await?,
        ClusterCmd::Init => ctx.call(c.initialize(InitializeRequest {})).await?,
        ClusterCmd::AddLearner {
            node_id,
            addr,
            datacenter,
        } => {
            ctx.call(c.add_learner(AddLearnerRequest {
                node_id,
                addr,
                datacenter,
            }))
            .await?
        }
        ClusterCmd::Locate {
            node_id,
            datacenter,
        } => {
            ctx.call(c.locate_node(LocateNodeRequest {
                node_id,
                datacenter,
            }))
            .await?
        }
        ClusterCmd::Promote { node_ids } => {
            ctx.call(c.promote(PromoteRequest { node_ids })).await?
        }
        ClusterCmd::Remove { node_id } => {
            ctx.call(c.remove_node(RemoveNodeRequest { node_id }))
                .await?
        }
    };
    let value = to_named_value(&status, Kind::Plain)?;
    print_value(ctx.output, &value, || cluster_status(&status))
}
