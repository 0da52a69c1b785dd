//! Dispatch of subcommands to their handlers, and the helpers they share (references, name
//! lookups for tables, delete confirmations).

mod cluster;
mod compliance;
pub mod config;
mod datacenter;
mod events;
mod flavor;
mod host;
mod image;
mod instance;
mod join_token;
mod placement;
mod project;
mod server_group;
mod token;
mod volume;

use std::future::Future;
use std::time::Duration;

use andromede_api::v1::{
    DeleteResponse, GetRequest, ListDatacentersRequest, ListDatacentersResponse,
    ListFlavorsResponse, ListHostsRequest, ListHostsResponse, ListImagesResponse,
    ListInstancesResponse, ListProjectsResponse, ListRequest, Meta, ReadOptions, ResourceRef,
};
use andromede_client::paging::{all_pages, PagedRequest, PagedResponse};
use anyhow::Result;
use tokio::task::JoinSet;
use tonic::{Code, Status};

use crate::cli::Command;
use crate::client::Ctx;
use crate::output::{print_value, to_named_value, Kind, OutputFormat};
use crate::views::Names;

/// Longest a cosmetic name lookup may delay a table.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(ctx: &Ctx, command: Command) -> Result<()> {
    match command {
        Command::Datacenter(c) => datacenter::run(ctx, c).await,
        Command::Host(c) => host::run(ctx, c).await,
        Command::Flavor(c) => flavor::run(ctx, c).await,
        Command::Image(c) => image::run(ctx, c).await,
        Command::Project(c) => project::run(ctx, c).await,
        Command::Instance(c) => instance::run(ctx, c).await,
        Command::ServerGroup(c) => server_group::run(ctx, c).await,
        Command::Volume(c) => volume::run(ctx, c).await,
        Command::Placement(c) => placement::run(ctx, c).await,
        Command::Events(c) => events::run(ctx, c).await,
        Command::Cluster(c) => cluster::run(ctx, c).await,
        Command::Compliance(c) => compliance::run(ctx, c).await,
        Command::Token(c) => token::run(ctx, c).await,
        Command::Whoami => token::whoami(ctx).await,
        // Handled before connecting, since they need no server.
        Command::Completions { .. } | Command::Config(_) => Ok(()),
    }
}

/// A reference by id or name, scoped to a project when one is given.
pub fn rref(id_or_name: &str, project: Option<&str>) -> Option<ResourceRef> {
    Some(ResourceRef {
        id_or_name: id_or_name.to_owned(),
        project: project.unwrap_or_default().to_owned(),
    })
}

pub fn get_req(ctx: &Ctx, id_or_name: &str, project: Option<&str>) -> GetRequest {
    GetRequest {
        r#ref: rref(id_or_name, project),
        read: ctx.read(),
    }
}

/// A linearizable read, for polling and read-modify-write: `--stale` would risk acting on a
/// copy that lags behind the change just made.
pub fn fresh_get(id_or_name: &str, project: Option<&str>) -> GetRequest {
    GetRequest {
        r#ref: rref(id_or_name, project),
        read: Some(ReadOptions { stale: false }),
    }
}

pub fn list_req(ctx: &Ctx, project: Option<String>) -> ListRequest {
    ListRequest {
        project: project.unwrap_or_default(),
        read: ctx.read(),
        ..Default::default()
    }
}

pub fn id_of(meta: Option<&Meta>) -> String {
    meta.map(|m| m.id.clone()).unwrap_or_default()
}

/// What a human calls a resource in messages: its name, else its id.
pub fn label(meta: Option<&Meta>, fallback: &str) -> String {
    match meta {
        Some(m) if !m.name.is_empty() => m.name.clone(),
        Some(m) if !m.id.is_empty() => m.id.clone(),
        _ => fallback.to_owned(),
    }
}

pub fn print_deleted(ctx: &Ctx, kind: &str, reference: &str, resp: &DeleteResponse) -> Result<()> {
    let value = to_named_value(resp, Kind::Plain)?;
    print_value(ctx.output, &value, || {
        if resp.deleted {
            format!("deleted {kind} {reference} ({})", resp.id)
        } else {
            format!("{kind} {reference} was already gone")
        }
    })
}

/// The confirmation of a delete that was waited for until the resource disappeared.
pub fn print_gone(ctx: &Ctx, kind: &str, reference: &str, id: &str) -> Result<()> {
    let resp = DeleteResponse {
        id: id.to_owned(),
        deleted: true,
    };
    print_deleted(ctx, kind, reference, &resp)
}

/// Resources whose names a table may show instead of ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Datacenters,
    Hosts,
    Flavors,
    Images,
    Projects,
    Instances,
}

/// Fetches, concurrently and best effort, the names tables show; only in table output, since
/// JSON and YAML carry ids. A caller not allowed to list something simply sees ids there.
pub async fn names(ctx: &Ctx, want: &[Lookup]) -> Names {
    let mut names = Names::default();
    if ctx.output != OutputFormat::Table {
        return names;
    }
    // Names are cosmetic: the contacted node's copy is good enough and spares the leader.
    let read = Some(ReadOptions { stale: true });
    let mut set: JoinSet<Option<Vec<Meta>>> = JoinSet::new();
    // One lookup task: `$method` of `$client` page after page, keeping the metas of `$items`.
    macro_rules! spawn_lookup {
        ($client:expr, $method:ident, $req:expr, $resp:ty, $items:ident) => {{
            let c = $client;
            set.spawn(lookup(
                $req,
                move |r| {
                    let mut c = c.clone();
                    async move { c.$method(r).await }
                },
                |l: $resp| l.$items.into_iter().filter_map(|x| x.meta).collect(),
            ));
        }};
    }
    for w in want {
        match w {
            Lookup::Datacenters => spawn_lookup!(
                ctx.infra(),
                list_datacenters,
                ListDatacentersRequest {
                    read,
                    ..Default::default()
                },
                ListDatacentersResponse,
                datacenters
            ),
            Lookup::Hosts => spawn_lookup!(
                ctx.infra(),
                list_hosts,
                ListHostsRequest {
                    read,
                    ..Default::default()
                },
                ListHostsResponse,
                hosts
            ),
            Lookup::Flavors => spawn_lookup!(
                ctx.infra(),
                list_flavors,
                list_of(read),
                ListFlavorsResponse,
                flavors
            ),
            Lookup::Images => spawn_lookup!(
                ctx.infra(),
                list_images,
                list_of(read),
                ListImagesResponse,
                images
            ),
            Lookup::Projects => spawn_lookup!(
                ctx.identity(),
                list_projects,
                list_of(read),
                ListProjectsResponse,
                projects
            ),
            Lookup::Instances => spawn_lookup!(
                ctx.compute(),
                list_instances,
                list_of(read),
                ListInstancesResponse,
                instances
            ),
        }
    }
    while let Some(done) = set.join_next().await {
        if let Ok(Some(metas)) = done {
            for m in &metas {
                names.add(Some(m));
            }
        }
    }
    names
}

fn list_of(read: Option<ReadOptions>) -> ListRequest {
    ListRequest {
        read,
        ..Default::default()
    }
}

/// One name lookup: every page of a list within [`LOOKUP_TIMEOUT`], or nothing.
async fn lookup<Req, Resp, F, Fut>(
    req: Req,
    mut fetch: F,
    metas: fn(Resp) -> Vec<Meta>,
) -> Option<Vec<Meta>>
where
    Req: PagedRequest,
    Resp: PagedResponse,
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let all = all_pages(req, |r| {
        let page = fetch(r);
        async move { page.await.map(tonic::Response::into_inner) }
    });
    let list = tokio::time::timeout(LOOKUP_TIMEOUT, all).await.ok()?.ok()?;
    Some(metas(list))
}

/// Turns datacenter names given as constraints into ids, which is what the contract carries.
/// A reference the caller may not look up is passed on unchanged for the server to judge.
pub async fn datacenter_ids(ctx: &Ctx, refs: &[String]) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(refs.len());
    for r in refs {
        let found = ctx
            .call(ctx.infra().get_datacenter(get_req(ctx, r, None)))
            .await;
        match found {
            Ok(dc) => {
                let id = id_of(dc.meta.as_ref());
                ids.push(if id.is_empty() { r.clone() } else { id });
            }
            Err(s) if s.code() == Code::NotFound => {
                anyhow::bail!("datacenter `{r}` not found (see `cloudctl datacenter list`)")
            }
            Err(_) => ids.push(r.clone()),
        }
    }
    Ok(ids)
}
