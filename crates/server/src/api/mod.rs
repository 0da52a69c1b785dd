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
use andromede_store::resource::Resource;
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

/// The project a reference names (by id or name).
pub fn project_id(s: &State, field: &str, r: &str) -> Result<String, ApiError> {
    if r.is_empty() {
        return Err(ApiError::invalid(field, "must name a project"));
    }
    s.find::<Project>("", r)
        .map(|p| p.meta().id.clone())
        .ok_or_else(|| ApiError::missing(field, format!("project {r:?} not found")))
}

/// A server group of project `pid` by id or name; another project's group is not found, even by id.
pub fn project_group<'a>(
    s: &'a State,
    pid: &str,
    r: &str,
) -> Option<&'a andromede_api::v1::ServerGroup> {
    s.find::<andromede_api::v1::ServerGroup>(pid, r)
        .filter(|g| g.meta().project_id == pid)
}

/// Finds a resource from a [`ResourceRef`]; names of project-owned kinds are scoped by `project`.
pub fn find<T: Resource>(s: &State, r: &Option<ResourceRef>) -> Result<T, ApiError>
where
    State: Table<T>,
{
    let r = r.clone().unwrap_or_default();
    if r.id_or_name.is_empty() {
        return Err(ApiError::invalid("ref.id_or_name", "must not be empty"));
    }
    let scope = if r.project.is_empty() {
        String::new()
    } else {
        project_id(s, "ref.project", &r.project)?
    };
    s.find::<T>(&scope, &r.id_or_name).cloned().ok_or_else(|| {
        ApiError::missing(
            "ref.id_or_name",
            format!("{} {:?} not found", T::KIND.name(), r.id_or_name),
        )
    })
}

/// One page of the resources of one kind, limited to one project when `project` names one,
/// with the next page's token.
pub fn list_in_project<T: Resource>(
    s: &State,
    project: &str,
    page: &paging::Page,
) -> Result<(Vec<T>, String), ApiError>
where
    State: Table<T>,
{
    let p = if project.is_empty() {
        None
    } else {
        Some(project_id(s, "project", project)?)
    };
    Ok(page.take(
        <State as Table<T>>::table(s)
            .values()
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
        let r = r.into_inner();
        let mut found = self
            .read(stale(&r.read), |s| find::<T>(s, &r.r#ref))
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
        let r = r.into_inner();
        let found: T = self.read(false, |s| find(s, &r.r#ref)).await??;
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
