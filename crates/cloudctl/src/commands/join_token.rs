//! `cloudctl host join-token …`: create the one-use tokens host agents enroll with, and list them.

use andromede_api::v1::{CreateJoinTokenRequest, ListJoinTokensRequest};
use anyhow::Result;

use super::{names, Lookup};
use crate::cli::JoinTokenCmd;
use crate::client::Ctx;
use crate::output::{print_list, print_value, strip_secrets, to_named_value, Kind};
use crate::views::join_token_created;

pub async fn run(ctx: &Ctx, cmd: JoinTokenCmd) -> Result<()> {
    match cmd {
        JoinTokenCmd::Create { datacenter, ttl } => {
            let req = CreateJoinTokenRequest {
                datacenter,
                // 0 asks the server for its default lifetime.
                ttl_seconds: ttl.unwrap_or(0),
            };
            // Not retried: a retry after a lost answer would mint a second token, and the first
            // one's secret would never be seen.
            let resp = ctx.call(ctx.infra().create_join_token(req)).await?;
            let mut value = to_named_value(&resp, Kind::Plain)?;
            if let Some(inner) = value.get_mut("join_token") {
                strip_secrets(inner, Kind::JoinToken);
            }
            let names = names(ctx, &[Lookup::Datacenters]).await;
            print_value(ctx.output, &value, || {
                join_token_created(&resp.token, resp.join_token.as_ref(), &names)
            })
        }
        JoinTokenCmd::List => {
            let req = ListJoinTokensRequest {
                read: ctx.read(),
                ..Default::default()
            };
            let list = ctx
                .list_all(req, |r| {
                    let mut c = ctx.infra();
                    async move { c.list_join_tokens(r).await }
                })
                .await?;
            let names = names(ctx, &[Lookup::Datacenters, Lookup::Hosts]).await;
            print_list(ctx.output, &list.join_tokens, &names)
        }
    }
}
