//! What the managed resources do alike: reads that turn NOT_FOUND into a null state, imports
//! that say what id they expect, deletes of what may already be gone, creates that get past a
//! twin still being deleted, and the lookups that give imports names instead of ids.

use std::future::Future;

use tf_provider::Diagnostics;
use tonic::Status;

use crate::api::{call, create_with_retry, Api};
use crate::common::{answered, found, get_req, waited, HasMeta, WaitError};

/// The import id of a resource named uniquely in its project.
pub const BY_PROJECT_NAME: &str = "import by id or PROJECT/NAME";
/// The import id of a cloud-wide resource (a project, a flavor).
pub const BY_NAME: &str = "import by id or name";

/// What a read found. `None` both after a failed call (reported under `what`) and when the
/// resource is gone: a read that returns no state tells Terraform it was deleted outside of it,
/// so the next plan creates it again.
pub fn read_found<T>(diags: &mut Diagnostics, what: &str, r: Result<T, Status>) -> Option<T> {
    answered(diags, what, found(r))?
}

/// What an import id names, `lookup` being its answer with NOT_FOUND (and whatever the caller
/// does not count, such as a resource being deleted) as `None`. A missing one is reported with
/// the kind of id expected (`by`), since a wrong form of id is the usual mistake.
pub fn import_found<T>(
    diags: &mut Diagnostics,
    kind: &str,
    id: &str,
    by: &str,
    lookup: Result<Option<T>, Status>,
) -> Option<T> {
    match answered(diags, &format!("Importing {kind} {id}"), lookup)? {
        Some(t) => Some(t),
        None => {
            diags.root_error_short(format!("no {kind} `{id}` ({by})"));
            None
        }
    }
}

/// A delete call: NOT_FOUND means someone deleted it already, which is what was asked.
pub fn deleted<T>(diags: &mut Diagnostics, what: &str, r: Result<T, Status>) -> Option<()> {
    answered(diags, what, found(r)).map(drop)
}

/// Sends a create. Its request id is derived from the configuration, so replacing a resource
/// with an unchanged one answers with the old one while it is being deleted: then this waits
/// for that one to go (`wait_gone`) and creates anew, which the server no longer deduplicates.
pub async fn create_anew<T, F, Fut, W, WFut>(
    diags: &mut Diagnostics,
    what: &str,
    mut attempt: F,
    being_deleted: impl Fn(&T) -> bool,
    wait_gone: W,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    W: FnOnce(&T) -> WFut,
    WFut: Future<Output = Result<(), WaitError>>,
{
    let first = answered(diags, what, create_with_retry(&mut attempt).await)?;
    if !being_deleted(&first) {
        return Some(first);
    }
    waited(diags, what, wait_gone(&first).await)?;
    answered(diags, what, create_with_retry(attempt).await)
}

/// The name of project `id`: imports fill names where the server keeps ids, so that they match
/// configurations, which use names.
pub async fn project_name(api: &Api, id: &str) -> Result<String, Status> {
    Ok(call(api.identity().get_project(get_req(id, "")))
        .await?
        .meta_name())
}

/// The names of datacenters given by id, in the same order, for the same reason.
pub async fn datacenter_names(api: &Api, ids: &[String]) -> Result<Vec<String>, Status> {
    let mut names = Vec::with_capacity(ids.len());
    for id in ids {
        names.push(
            call(api.infra().get_datacenter(get_req(id, "")))
                .await?
                .meta_name(),
        );
    }
    Ok(names)
}
