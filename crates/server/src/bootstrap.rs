//! What the first server of a new cluster makes for its operator: the first cloud-admin token,
//! the cluster's shared server credential and its data key (`crate::sealed`), each in a 0600
//! file of the data directory.

use crate::node::{Node, Proposal};
use andromede_api::v1::{ApiToken, Meta, Role};
use andromede_store::Command;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The first cloud-admin token's file name in the data directory.
pub const TOKEN_FILE: &str = "bootstrap-admin-token";
/// The data key's file name in the data directory.
pub const DATA_KEY_FILE: &str = "data-key";
/// The cluster credential's file name in the data directory.
pub const CLUSTER_TOKEN_FILE: &str = "cluster-token";

/// Writes `contents` (and a newline) to a new file only its owner can read.
pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    Ok(andromede_pki::write_private(
        path,
        &format!("{contents}\n"),
    )?)
}

/// The cluster credential: the one in the data directory, or on a server initializing the
/// cluster a new one written there. A joining server must be given the first one's.
pub fn cluster_token(data_dir: &Path, init: bool) -> anyhow::Result<String> {
    let path = data_dir.join(CLUSTER_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => anyhow::bail!("{} is empty", path.display()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("reading {}", path.display()))
        }
        Err(_) => {}
    }
    anyhow::ensure!(
        init,
        "a joining server needs --cluster-token (or ANDROMEDE_CLUSTER_TOKEN): the value in the first server's data directory, file {CLUSTER_TOKEN_FILE}"
    );
    let t = andromede_auth::token::random_secret();
    write_private(&path, &t)?;
    tracing::info!(file = %path.display(), "wrote this cluster's server credential; give it to every joining server as --cluster-token");
    Ok(t)
}

/// The token in `path`, or a new one written there.
fn token_file(path: &Path) -> anyhow::Result<andromede_auth::ParsedToken> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (_, t) = andromede_auth::generate();
            write_private(path, &t)?;
            t
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    andromede_auth::parse(text.trim()).with_context(|| format!("the token in {}", path.display()))
}

/// On a new cluster (no token at all yet), creates the first cloud-admin token from
/// `path` (written first, so an acknowledged token is always in the file). Retries until this
/// server leads and the token is committed.
pub async fn first_token(node: Arc<Node>, path: PathBuf) {
    loop {
        if node.read(|s| !s.api_tokens.is_empty()) {
            return;
        }
        if node.leader().is_some_and(|(l, _)| l == node.id) {
            match propose(&node, &path).await {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "the first cloud-admin token is in this file (mode 0600)");
                    return;
                }
                Err(e) => tracing::warn!("creating the first cloud-admin token: {e:#}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn propose(node: &Node, path: &Path) -> anyhow::Result<()> {
    let t = token_file(path)?;
    let token = ApiToken {
        meta: Some(Meta {
            id: t.id.clone(),
            name: "bootstrap".into(),
            ..Default::default()
        }),
        role: Role::Admin as i32,
        role_name: "cloud-admin".into(),
        created_by: "bootstrap".into(),
        secret_sha256: andromede_auth::sha256_hex(&t.secret),
        ..Default::default()
    };
    match node
        .submit(Proposal::Cmd(Command::CreateApiToken(token)))
        .await
    {
        Ok(_) => Ok(()),
        // Committed by an earlier attempt whose answer was lost.
        Err(_) if node.read(|s| s.api_tokens.contains_key(&t.id)) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}
