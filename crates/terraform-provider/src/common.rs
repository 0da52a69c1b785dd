//! What every resource shares: the configured API handle, conversions between Terraform values
//! and API fields, the `timeouts` block, waiting for an end state, and stable request ids.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use andromede_api::v1::{Datacenter, Flavor, Image, Instance, Meta, Project, ServerGroup, Volume};
use serde::{Deserialize, Serialize};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};
use tonic::Status;

use crate::api::{describe, Api};

/// Filled by `ConfigureProvider`; resources are built before it runs, so they hold this cell.
#[derive(Clone, Default)]
pub struct Shared(Arc<RwLock<Option<Api>>>);

impl Shared {
    pub fn set(&self, api: Api) {
        if let Ok(mut slot) = self.0.write() {
            *slot = Some(api);
        }
    }

    pub fn api(&self, diags: &mut Diagnostics) -> Option<Api> {
        let api = self.0.read().ok().and_then(|slot| slot.clone());
        if api.is_none() {
            diags.root_error_short("the andromede provider is not configured");
        }
        api
    }
}

/// Reports a failed call as one diagnostic whose detail is the server's whole explanation.
pub fn call_failed(diags: &mut Diagnostics, what: String, status: &Status) {
    diags.root_error(what, describe(status));
}

/// The answer of a call, or `None` once its failure is reported under `what`, so that callers
/// can stop with `?`.
pub fn answered<T>(diags: &mut Diagnostics, what: &str, r: Result<T, Status>) -> Option<T> {
    r.map_err(|s| call_failed(diags, what.to_owned(), &s)).ok()
}

/// The end of a wait, or `None` once its failure is reported under `what`.
pub fn waited<T>(diags: &mut Diagnostics, what: &str, r: Result<T, WaitError>) -> Option<T> {
    r.map_err(|e| {
        let text = match e {
            WaitError::TimedOut { .. } => {
                format!("{e}: raise the `timeouts` block and apply again")
            }
            e => e.to_string(),
        };
        diags.root_error(what.to_owned(), text)
    })
    .ok()
}

// ---- API resources -----------------------------------------------------------------------

/// The `meta` every API resource carries; prost makes it optional, and a missing one reads as
/// empty ids and names rather than as an error.
pub trait HasMeta {
    fn meta_ref(&self) -> Option<&Meta>;

    fn meta_id(&self) -> String {
        self.meta_ref().map(|m| m.id.clone()).unwrap_or_default()
    }

    fn meta_name(&self) -> String {
        self.meta_ref().map(|m| m.name.clone()).unwrap_or_default()
    }
}

macro_rules! has_meta {
    ($($t:ty),*) => {
        $(impl HasMeta for $t {
            fn meta_ref(&self) -> Option<&Meta> {
                self.meta.as_ref()
            }
        })*
    };
}
has_meta!(
    Datacenter,
    Flavor,
    Image,
    Instance,
    Project,
    ServerGroup,
    Volume
);

// ---- values ------------------------------------------------------------------------------

/// The string, or "" when null or unknown.
pub fn text(v: &Value<String>) -> String {
    v.as_ref_option().cloned().unwrap_or_default()
}

pub fn list(v: &Value<Vec<String>>) -> Vec<String> {
    v.as_ref_option().cloned().unwrap_or_default()
}

pub fn known(s: &str) -> Value<String> {
    Value::Value(s.to_owned())
}

/// The API has no null strings: an empty one stays null in Terraform when it is not set.
pub fn opt_text(s: &str) -> Value<String> {
    if s.is_empty() {
        Value::Null
    } else {
        Value::Value(s.to_owned())
    }
}

/// A list read back from the server, kept in the configuration's order (and null when the
/// configuration leaves it unset) as long as it holds the same items; the server may normalise
/// case or order.
pub fn server_list(prior: &Value<Vec<String>>, server: &[String]) -> Value<Vec<String>> {
    let norm = |items: &[String]| {
        let mut v: Vec<String> = items.iter().map(|s| s.to_ascii_uppercase()).collect();
        v.sort();
        v
    };
    match prior {
        Value::Null if server.is_empty() => Value::Null,
        Value::Value(p) if norm(p) == norm(server) => prior.clone(),
        _ if server.is_empty() => Value::Null,
        _ => Value::Value(server.to_vec()),
    }
}

pub fn server_bool(prior: &Value<bool>, server: bool) -> Value<bool> {
    match prior {
        Value::Null if !server => Value::Null,
        _ => Value::Value(server),
    }
}

pub fn changed<T: PartialEq>(
    a: &Value<T>,
    b: &Value<T>,
    name: &'static str,
    out: &mut Vec<AttributePath>,
) {
    if a != b {
        out.push(AttributePath::new(name));
    }
}

/// A number from Terraform that must fit the API's unsigned fields.
pub fn unsigned(
    diags: &mut Diagnostics,
    v: &Value<i64>,
    name: &'static str,
) -> Option<Option<u64>> {
    match v {
        Value::Value(n) => match u64::try_from(*n) {
            Ok(n) => Some(Some(n)),
            Err(_) => {
                diags.error_short(
                    format!("{name} must not be negative"),
                    AttributePath::new(name),
                );
                None
            }
        },
        _ => Some(None),
    }
}

pub fn signed(n: u64) -> Value<i64> {
    Value::Value(i64::try_from(n).unwrap_or(i64::MAX))
}

// ---- schema shorthands -------------------------------------------------------------------

/// A schema block with its description, attributes to be added.
pub fn block(doc: &str) -> Block {
    Block {
        description: Description::plain(doc),
        ..Default::default()
    }
}

/// Every schema of this provider is at version 1: no state upgrade has been needed yet.
pub fn schema(block: Block) -> Option<Schema> {
    Some(Schema { version: 1, block })
}

/// `id`, `name` and `project` of a resource named uniquely within its project; a new name or
/// project is a new resource.
pub fn project_scoped(a: &mut HashMap<String, Attribute>, id_doc: &str) {
    let s = AttributeType::String;
    a.insert("id".into(), computed(s.clone(), id_doc));
    a.insert(
        "name".into(),
        required(
            s.clone(),
            "Name, unique in the project. Forces replacement.",
        ),
    );
    a.insert(
        "project".into(),
        required(s, "Project name or id. Forces replacement."),
    );
}

fn attr(t: AttributeType, c: AttributeConstraint, doc: &str) -> Attribute {
    Attribute {
        attr_type: t,
        description: Description::plain(doc),
        constraint: c,
        ..Default::default()
    }
}
pub fn required(t: AttributeType, doc: &str) -> Attribute {
    attr(t, AttributeConstraint::Required, doc)
}
pub fn optional(t: AttributeType, doc: &str) -> Attribute {
    attr(t, AttributeConstraint::Optional, doc)
}
pub fn optional_computed(t: AttributeType, doc: &str) -> Attribute {
    attr(t, AttributeConstraint::OptionalComputed, doc)
}
pub fn computed(t: AttributeType, doc: &str) -> Attribute {
    attr(t, AttributeConstraint::Computed, doc)
}
pub fn strings() -> AttributeType {
    AttributeType::List(Box::new(AttributeType::String))
}

// ---- timeouts ----------------------------------------------------------------------------

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The `timeouts { create = "10m" delete = "5m" update = "10m" }` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeouts {
    pub create: Value<String>,
    pub update: Value<String>,
    pub delete: Value<String>,
}

pub fn timeouts_block() -> tf_provider::schema::NestedBlock {
    let mut b = Block {
        description: Description::plain(
            "How long create, update and delete wait for the end state, e.g. \"90s\", \"10m\", \"1h\" (default 10m).",
        ),
        ..Default::default()
    };
    for (name, doc) in [
        (
            "create",
            "Wait this long for a create to reach its end state.",
        ),
        ("update", "Wait this long for an in-place update to finish."),
        ("delete", "Wait this long for the resource to be gone."),
    ] {
        b.attributes
            .insert(name.to_owned(), optional(AttributeType::String, doc));
    }
    tf_provider::schema::NestedBlock::Optional(b)
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("`{0}` is not a duration: use a number followed by s, m or h, e.g. 90s, 10m, 1h")]
pub struct BadDuration(String);

pub fn parse_duration(s: &str) -> Result<Duration, BadDuration> {
    let s = s.trim();
    let bad = || BadDuration(s.to_owned());
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

pub enum Phase {
    Create,
    Update,
    Delete,
}

/// The timeout for one phase, from the block or the default; a bad value is an error on it.
pub fn timeout_for(diags: &mut Diagnostics, t: &Value<Timeouts>, phase: Phase) -> Option<Duration> {
    let (name, v) = match (t, phase) {
        (Value::Value(t), Phase::Create) => ("create", &t.create),
        (Value::Value(t), Phase::Update) => ("update", &t.update),
        (Value::Value(t), Phase::Delete) => ("delete", &t.delete),
        _ => return Some(DEFAULT_TIMEOUT),
    };
    match v {
        Value::Value(s) => match parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                diags.error_short(
                    e.to_string(),
                    AttributePath::new("timeouts").index(0).attribute(name),
                );
                None
            }
        },
        _ => Some(DEFAULT_TIMEOUT),
    }
}

/// Checks the block at plan time, so a typo fails the plan rather than the apply.
pub fn check_timeouts(diags: &mut Diagnostics, t: &Value<Timeouts>) -> Option<()> {
    timeout_for(diags, t, Phase::Create)?;
    timeout_for(diags, t, Phase::Update)?;
    timeout_for(diags, t, Phase::Delete)?;
    Some(())
}

// ---- waiting -----------------------------------------------------------------------------

pub use andromede_client::wait::{until_gone, Probe, WaitError};

/// Polls until `probe` is done or failed, or `timeout` passes (the client crate's loop, with
/// nothing to show while it runs).
pub async fn until<T, F, Fut>(
    what: &str,
    target: &str,
    timeout: Duration,
    probe: F,
) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Probe<T>, Status>>,
{
    andromede_client::wait::until(what, target, timeout, |_| {}, probe).await
}

// ---- idempotency -------------------------------------------------------------------------

/// A request id derived from what is being created, so an apply that times out, or is retried
/// after a crash, sends the same id and the server answers with the first result instead of
/// making a twin. The server forgets ids of deleted resources, so re-creating one after a
/// destroy is a fresh create.
pub fn request_id<T: Serialize>(kind: &str, fields: &T) -> String {
    let body = serde_json::to_string(fields).unwrap_or_default();
    let name = format!("terraform-provider-andromede/{kind}/{body}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

/// Splits an import id: `PROJECT/NAME` or a bare id (or cloud-wide name).
pub fn import_ref(id: &str) -> (String, String) {
    match id.split_once('/') {
        Some((project, name)) => (project.to_owned(), name.to_owned()),
        None => (String::new(), id.to_owned()),
    }
}

/// The lookup of an import id given as `PROJECT/NAME` or a bare id.
pub fn import_req(id: &str) -> andromede_api::v1::GetRequest {
    let (project, name) = import_ref(id);
    get_req(&name, &project)
}

/// A string read back from the server: empty stays as the configuration had it (null or "").
pub fn server_text(prior: &Value<String>, server: &str) -> Value<String> {
    if server.is_empty() && prior != &Value::Value(String::new()) {
        Value::Null
    } else {
        Value::Value(server.to_owned())
    }
}

pub fn get_req(id_or_name: &str, project: &str) -> andromede_api::v1::GetRequest {
    andromede_api::v1::GetRequest {
        r#ref: Some(rref(id_or_name, project)),
        read: None,
    }
}

pub fn rref(id_or_name: &str, project: &str) -> andromede_api::v1::ResourceRef {
    andromede_api::v1::ResourceRef {
        id_or_name: id_or_name.to_owned(),
        project: project.to_owned(),
    }
}

/// NOT_FOUND as `None`: for reads, a resource deleted outside Terraform.
pub fn found<T>(r: Result<T, Status>) -> Result<Option<T>, Status> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn request_ids_are_stable_and_distinct() {
        let a = request_id("instance", &("p", "web-1"));
        assert_eq!(a, request_id("instance", &("p", "web-1")));
        assert_ne!(a, request_id("instance", &("p", "web-2")));
        assert_ne!(a, request_id("volume", &("p", "web-1")));
    }

    #[test]
    fn server_lists_keep_the_configured_shape() {
        let prior = Value::Value(vec!["fr".to_owned(), "DE".to_owned()]);
        assert_eq!(server_list(&prior, &["DE".into(), "FR".into()]), prior);
        assert_eq!(server_list(&Value::Null, &[]), Value::Null);
        assert_eq!(
            server_list(&Value::Null, &["FR".into()]),
            Value::Value(vec!["FR".to_owned()])
        );
    }

    #[test]
    fn import_ids() {
        assert_eq!(import_ref("p/web"), ("p".to_owned(), "web".to_owned()));
        assert_eq!(import_ref("abc"), (String::new(), "abc".to_owned()));
    }
}
