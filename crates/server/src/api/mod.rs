//! The public gRPC services. Each call validates its input (naming every bad field), then either
//! reads the applied state behind a read barrier or submits a proposal through Raft.

pub mod cluster;
pub mod compute;
pub mod events;
pub mod identity;
pub mod infrastructure;
pub mod paging;
pub mod placement;
pub mod volumes;

use crate::error::ApiError;
use crate::node::Node;
use andromede_api::v1::{Meta, Project, ReadOptions, ResourceRef};
use andromede_auth::Principal;
use andromede_store::resource::{Kind, Resource};
use andromede_store::state::Table;
use andromede_store::State;
use std::sync::Arc;

/// Shared by every service implementation.
#[derive(Clone)]
pub struct Api {
    pub node: Arc<Node>,
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn meta(name: &str, project_id: &str, request_id: &str) -> Option<Meta> {
    Some(Meta {
        id: new_id(),
        name: name.to_string(),
        project_id: project_id.to_string(),
        request_id: request_id.to_string(),
        ..Default::default()
    })
}

pub fn stale(r: &Option<ReadOptions>) -> bool {
    r.as_ref().is_some_and(|o| o.stale)
}

/// The caller of a request, as the authorization layer (`crate::auth`) established it.
pub fn caller<T>(r: &tonic::Request<T>) -> Result<Principal, ApiError> {
    r.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("the call has no authenticated caller".into()))
}

/// Whether `caller` may see `r` at all. The cloud scope sees everything; a project sees its
/// own resources and project, and the shared catalog (datacenters, flavors, public images).
/// Anything else answers exactly as if it did not exist.
pub fn visible<T: Resource>(caller: &Principal, r: &T) -> bool {
    let Some(p) = caller.confined_to() else {
        return true;
    };
    let m = r.meta();
    match T::KIND {
        Kind::Project => m.id == p,
        Kind::Datacenter | Kind::Flavor => true,
        Kind::Image => m.project_id.is_empty() || m.project_id == p,
        Kind::Instance | Kind::Volume | Kind::ServerGroup | Kind::ApiToken => m.project_id == p,
        Kind::Host | Kind::JoinToken => false,
    }
}

/// The project a reference names (by id or name); an empty reference means the caller's own
/// project for a project-scoped caller.
pub fn project_id(s: &State, caller: &Principal, field: &str, r: &str) -> Result<String, ApiError> {
    if r.is_empty() {
        return caller
            .confined_to()
            .map(String::from)
            .ok_or_else(|| ApiError::invalid(field, "must name a project"));
    }
    s.find::<Project>("", r)
        .filter(|p| visible(caller, *p))
        .map(|p| p.meta().id.clone())
        .ok_or_else(|| ApiError::missing(field, format!("project {r:?} not found")))
}

/// A resource of project `pid` (or, for images, a public one) by id or name, as `caller`
/// sees it: an id from another project is not found.
pub fn find_in<'a, T: Resource>(
    s: &'a State,
    caller: &Principal,
    pid: &str,
    r: &str,
) -> Option<&'a T>
where
    State: Table<T>,
{
    s.find::<T>(pid, r)
        .filter(|x| x.meta().project_id == pid && visible(caller, *x))
}

/// A server group of project `pid` by id or name; another project's group is not found, even by id.
pub fn project_group<'a>(
    s: &'a State,
    caller: &Principal,
    pid: &str,
    r: &str,
) -> Option<&'a andromede_api::v1::ServerGroup> {
    find_in(s, caller, pid, r)
}

/// Checks a request's project reference: required from the cloud scope, optional (meaning
/// its own project) from a project-scoped caller.
pub fn project_ref(
    v: &mut andromede_model::validate::Violations,
    caller: &Principal,
    field: &str,
    r: &str,
) {
    if caller.confined_to().is_some() {
        v.optional_reference(field, r);
    } else {
        v.reference(field, r);
    }
}

/// Finds a resource from a [`ResourceRef`] as `caller` sees it; names of project-owned kinds
/// are scoped by `ref.project`, or the caller's project (images also fall back to public
/// ones); names of cloud-wide kinds are cloud-wide.
pub fn find<T: Resource>(
    s: &State,
    caller: &Principal,
    r: &Option<ResourceRef>,
) -> Result<T, ApiError>
where
    State: Table<T>,
{
    let r = r.clone().unwrap_or_default();
    if r.id_or_name.is_empty() {
        return Err(ApiError::invalid("ref.id_or_name", "must not be empty"));
    }
    let scope = if r.project.is_empty() {
        caller.confined_to().unwrap_or_default().to_string()
    } else {
        project_id(s, caller, "ref.project", &r.project)?
    };
    // Projects, the catalog and the infrastructure have cloud-wide names, whoever asks; an
    // image's name is the project's own first, then a public image's.
    let found = match T::KIND {
        Kind::Datacenter | Kind::Host | Kind::Flavor | Kind::Project | Kind::JoinToken => {
            s.find::<T>("", &r.id_or_name)
        }
        Kind::Image => s
            .find::<T>(&scope, &r.id_or_name)
            .or_else(|| s.find::<T>("", &r.id_or_name)),
        Kind::Instance | Kind::Volume | Kind::ServerGroup | Kind::ApiToken => {
            s.find::<T>(&scope, &r.id_or_name)
        }
    };
    found
        .filter(|x| visible(caller, *x))
        .cloned()
        .ok_or_else(|| {
            ApiError::missing(
                "ref.id_or_name",
                format!("{} {:?} not found", T::KIND.name(), r.id_or_name),
            )
        })
}

/// One page of the resources of one kind that `caller` sees, limited to one project when
/// `project` names one, with the next page's token.
pub fn list_in_project<T: Resource>(
    s: &State,
    caller: &Principal,
    project: &str,
    page: &paging::Page,
) -> Result<(Vec<T>, String), ApiError>
where
    State: Table<T>,
{
    let p = if project.is_empty() {
        None
    } else {
        Some(project_id(s, caller, "project", project)?)
    };
    Ok(page.take(
        <State as Table<T>>::table(s)
            .values()
            .filter(|x| visible(caller, *x))
            .filter(|x| p.as_ref().is_none_or(|p| x.meta().project_id == *p)),
    ))
}

impl Api {
    /// A `Get*` call: one resource by reference, behind the requested read barrier.
    pub async fn get<T: Resource>(
        &self,
        r: tonic::Request<andromede_api::v1::GetRequest>,
    ) -> Result<tonic::Response<T>, tonic::Status>
    where
        State: Table<T>,
    {
        let who = caller(&r)?;
        let r = r.into_inner();
        let mut found = self
            .read(stale(&r.read), |s| find::<T>(s, &who, &r.r#ref))
            .await??;
        found.redact();
        Ok(tonic::Response::new(found))
    }

    /// A `Delete*` call: finds the resource by reference, then submits `cmd` with its id.
    pub async fn delete<T: Resource>(
        &self,
        r: tonic::Request<andromede_api::v1::DeleteRequest>,
        cmd: impl FnOnce(String) -> andromede_store::Command,
    ) -> Result<tonic::Response<andromede_api::v1::DeleteResponse>, tonic::Status>
    where
        State: Table<T>,
    {
        let who = caller(&r)?;
        let r = r.into_inner();
        let found: T = self.read(false, |s| find(s, &who, &r.r#ref)).await??;
        let id = found.meta().id.clone();
        deleted(
            self.node
                .submit(crate::node::Proposal::Cmd(cmd(id)))
                .await?,
        )
    }

    /// Linearizable (unless `stale`) read of the applied state.
    pub async fn read<R>(&self, stale: bool, f: impl FnOnce(&State) -> R) -> Result<R, ApiError> {
        self.node.read_barrier(stale).await?;
        Ok(self.node.read(f))
    }
}

/// Turns a collected [`andromede_model::validate::Violations`] into an error if non-empty.
pub fn check(v: andromede_model::validate::Violations) -> Result<(), ApiError> {
    if v.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(v))
    }
}

/// Normalizes country codes to upper case before validation (users type `fr`).
pub fn upper(v: &[String]) -> Vec<String> {
    v.iter().map(|c| c.trim().to_ascii_uppercase()).collect()
}

/// Unwraps the expected reply variant into a gRPC response.
#[macro_export]
macro_rules! reply {
    ($r:expr, $v:ident) => {
        match $r {
            andromede_store::command::Reply::$v(mut x) => {
                andromede_store::resource::Resource::redact(&mut x);
                Ok(tonic::Response::new(x))
            }
            other => Err(tonic::Status::internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    };
}

/// A delete's reply as the API's `DeleteResponse`.
pub fn deleted(
    r: andromede_store::command::Reply,
) -> Result<tonic::Response<andromede_api::v1::DeleteResponse>, tonic::Status> {
    match r {
        andromede_store::command::Reply::Deleted { id, existed } => {
            Ok(tonic::Response::new(andromede_api::v1::DeleteResponse {
                id,
                deleted: existed,
            }))
        }
        other => Err(tonic::Status::internal(format!(
            "unexpected reply {other:?}"
        ))),
    }
}
