//! `cloudctl placement explain`: a placement dry run, filter by filter.

use andromede_api::v1::ExplainRequest;
use anyhow::Result;

use super::instance::constraints;
use super::{names, Lookup};
use crate::cli::PlacementCmd;
use crate::client::Ctx;
use crate::output::{print_value, to_named_value, Kind};
use crate::views::explanation;

pub async fn run(ctx: &Ctx, cmd: PlacementCmd) -> Result<()> {
    let PlacementCmd::Explain(a) = cmd;
    let req = ExplainRequest {
        project: a.project.unwrap_or_default(),
        flavor: a.flavor.unwrap_or_default(),
        constraints: constraints(ctx, &a.constraints).await?,
        server_group: a.server_group.unwrap_or_default(),
        volume_gib: a.volume_gib.unwrap_or(0),
    };
    let exp = ctx.call(ctx.placement().explain(req)).await?;
    let names = names(ctx, &[Lookup::Hosts, Lookup::Datacenters]).await;
    let value = to_named_value(&exp, Kind::Plain)?;
    print_value(ctx.output, &value, || explanation(&exp, &names))
}
