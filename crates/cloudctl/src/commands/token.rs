//! `cloudctl token …` and `cloudctl whoami`: create API tokens (the secret printed once), list
//! and revoke them, and show the token in use.

use andromede_api::v1::{
    CreateTokenRequest, ListTokensRequest, RevokeTokenRequest, Role, WhoAmIRequest,
};
use anyhow::{bail, Result};

use super::{id_of, label, rref};
use crate::cli::{RoleArg, TokenCmd, TokenCreate};
use crate::client::{request_id, Ctx};
use crate::output::{name_enums, print_one, print_value, strip_secrets, to_named_value, Kind};
use crate::views::{token_created, token_list, Names};

pub async fn run(ctx: &Ctx, cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::Create(a) => create(ctx, a).await,
        TokenCmd::List { project, all } => list(ctx, project, all).await,
        TokenCmd::Revoke { reference, project } => {
            let req = RevokeTokenRequest {
                r#ref: rref(&reference, project.as_deref()),
            };
            let t = ctx.call(ctx.identity().revoke_token(req)).await?;
            let value = to_named_value(&t, Kind::ApiToken)?;
            print_value(ctx.output, &value, || {
                format!(
                    "revoked token {} ({})",
                    label(t.meta.as_ref(), &reference),
                    id_of(t.meta.as_ref())
                )
            })
        }
    }
}

/// `cloudctl whoami`.
pub async fn whoami(ctx: &Ctx) -> Result<()> {
    let t = ctx.call(ctx.identity().who_am_i(WhoAmIRequest {})).await?;
    print_one(ctx.output, &t, &Names::default())
}

fn role(r: RoleArg) -> Role {
    match r {
        RoleArg::Admin => Role::Admin,
        RoleArg::Member => Role::Member,
        RoleArg::Reader => Role::Reader,
    }
}

async fn create(ctx: &Ctx, a: TokenCreate) -> Result<()> {
    let req = CreateTokenRequest {
        name: a.name,
        project: a.project.unwrap_or_default(),
        role: role(a.role) as i32,
        ttl_secs: a.ttl.unwrap_or(0),
        request_id: request_id(a.request_id),
    };
    // Retried with the same request id: a retry after a lost answer gets the token the first
    // attempt made (without its secret, which only that attempt could show), never a second one.
    let resp = ctx
        .create_with_retry("token", || {
            let mut c = ctx.identity();
            let req = req.clone();
            async move { c.create_token(req).await }
        })
        .await?;
    if resp.secret.is_empty() {
        let t = resp.token.as_ref();
        bail!(
            "token {} ({}) was made by an earlier attempt with request id {} and its secret was \
             shown to that attempt only; revoke it (cloudctl token revoke {}) and create another",
            label(t.and_then(|t| t.meta.as_ref()), &req.name),
            id_of(t.and_then(|t| t.meta.as_ref())),
            req.request_id,
            id_of(t.and_then(|t| t.meta.as_ref())),
        );
    }
    let mut value = to_named_value(&resp, Kind::Plain)?;
    if let Some(inner) = value.get_mut("token") {
        name_enums(inner, Kind::ApiToken);
        strip_secrets(inner, Kind::ApiToken);
    }
    print_value(ctx.output, &value, || {
        token_created(&resp, &Names::default())
    })
}

async fn list(ctx: &Ctx, project: Option<String>, all: bool) -> Result<()> {
    let req = ListTokensRequest {
        project: project.unwrap_or_default(),
        include_inactive: all,
        read: ctx.read(),
        ..Default::default()
    };
    let list = ctx
        .list_all(req, |r| {
            let mut c = ctx.identity();
            async move { c.list_tokens(r).await }
        })
        .await?;
    // CREATED BY names the creating token when it is among those listed.
    let mut names = Names::default();
    for t in &list.tokens {
        names.add(t.meta.as_ref());
    }
    let value = to_named_value(&list.tokens, Kind::ApiToken)?;
    print_value(ctx.output, &value, || token_list(&list.tokens, all, &names))
}

#[cfg(test)]
mod tests {
    use super::*;
    use andromede_api::v1::{ApiToken, Meta};

    #[test]
    fn roles_map_to_the_contract() {
        assert_eq!(role(RoleArg::Admin), Role::Admin);
        assert_eq!(role(RoleArg::Member), Role::Member);
        assert_eq!(role(RoleArg::Reader), Role::Reader);
    }

    #[test]
    fn json_names_the_role_and_drops_the_hash() {
        let t = ApiToken {
            meta: Some(Meta {
                id: "t1".into(),
                ..Meta::default()
            }),
            role: Role::Member as i32,
            secret_sha256: "ab".repeat(32),
            ..ApiToken::default()
        };
        let v = to_named_value(&t, Kind::ApiToken).unwrap_or_default();
        assert_eq!(v["role"], serde_json::json!("ROLE_MEMBER"));
        assert!(v.get("secret_sha256").is_none(), "{v}");
    }
}
