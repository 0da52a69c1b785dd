//! Output formats: tables for people, JSON and YAML (with enum names instead of numbers) for
//! scripts, and the writing to stdout.

use std::io::Write;

use andromede_api::v1::{
    DatacenterStatus, EventType, GroupPolicy, HostState, InstanceState, PowerIntent, Role,
    VolumeState,
};
use anyhow::Result;
use clap::ValueEnum;
use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;
use serde_json::Value;

use crate::views::{Names, Resource};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human-readable tables
    Table,
    /// JSON (lists are arrays; `events watch` prints one object per line)
    Json,
    /// YAML
    Yaml,
}

/// Which resource a JSON value holds, to know which of its integer fields are enums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Datacenter,
    Host,
    Flavor,
    Image,
    Project,
    Instance,
    ServerGroup,
    Volume,
    JoinToken,
    ApiToken,
    Event,
    /// No enum fields.
    Plain,
}

type Namer = fn(i32) -> Option<&'static str>;

fn enum_fields(kind: Kind) -> &'static [(&'static str, Namer)] {
    match kind {
        Kind::Datacenter => &[("status", |n| {
            DatacenterStatus::try_from(n).ok().map(|e| e.as_str_name())
        })],
        Kind::Host => &[("state", |n| {
            HostState::try_from(n).ok().map(|e| e.as_str_name())
        })],
        Kind::Instance => &[
            ("state", |n| {
                InstanceState::try_from(n).ok().map(|e| e.as_str_name())
            }),
            ("intent", |n| {
                PowerIntent::try_from(n).ok().map(|e| e.as_str_name())
            }),
        ],
        Kind::Volume => &[("state", |n| {
            VolumeState::try_from(n).ok().map(|e| e.as_str_name())
        })],
        // A project's `policy` is a message, only a server group's is an enum.
        Kind::ServerGroup => &[("policy", |n| {
            GroupPolicy::try_from(n).ok().map(|e| e.as_str_name())
        })],
        Kind::Event => &[("type", |n| {
            EventType::try_from(n).ok().map(|e| e.as_str_name())
        })],
        Kind::ApiToken => &[("role", |n| Role::try_from(n).ok().map(|e| e.as_str_name()))],
        Kind::Flavor | Kind::Image | Kind::Project | Kind::JoinToken | Kind::Plain => &[],
    }
}

/// Fields that are hashes of credentials: useless to a reader and a gift to an offline
/// guesser, so they never leave cloudctl, in any format.
fn secret_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Host => &["credential_sha256"],
        Kind::JoinToken | Kind::ApiToken => &["secret_sha256"],
        _ => &[],
    }
}

/// Every secret field of any kind, for documents whose kind is only known at run time
/// (the resource carried by an event).
const ALL_SECRET_FIELDS: &[&str] = &["credential_sha256", "secret_sha256"];

/// Removes the secret fields of a resource (or of each resource of an array).
pub fn strip_secrets(value: &mut Value, kind: Kind) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| strip_secrets(v, kind)),
        Value::Object(map) => {
            for field in secret_fields(kind) {
                map.remove(*field);
            }
        }
        _ => {}
    }
}

/// The JSON text of an event's resource without secret fields; the text is returned as is
/// when it holds none, so ordinary events keep the server's exact bytes.
pub fn strip_secrets_from_json(text: &str) -> String {
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(text) else {
        return text.to_owned();
    };
    let before = map.len();
    for field in ALL_SECRET_FIELDS {
        map.remove(*field);
    }
    if map.len() == before {
        return text.to_owned();
    }
    serde_json::to_string(&Value::Object(map)).unwrap_or_else(|_| text.to_owned())
}

/// Replaces the numeric enum fields of a resource (or of each resource of an array) by their
/// proto names; values outside the known range stay numbers so nothing is lost.
pub fn name_enums(value: &mut Value, kind: Kind) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| name_enums(v, kind)),
        Value::Object(map) => {
            for (field, namer) in enum_fields(kind) {
                let Some(slot) = map.get_mut(*field) else {
                    continue;
                };
                let Some(n) = slot.as_i64().and_then(|n| i32::try_from(n).ok()) else {
                    continue;
                };
                if let Some(name) = namer(n) {
                    *slot = Value::String(name.to_owned());
                }
            }
        }
        _ => {}
    }
}

/// The serde value of a resource, with enum names and without secret fields.
pub fn to_named_value<T: Serialize + ?Sized>(item: &T, kind: Kind) -> Result<Value> {
    let mut v = serde_json::to_value(item)?;
    name_enums(&mut v, kind);
    strip_secrets(&mut v, kind);
    Ok(v)
}

/// Writes text and a newline to stdout. A closed pipe surfaces as an `io::Error` that the
/// caller ends the program quietly on.
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// A structured value in the machine formats; `table` renders it for people.
pub fn print_value(
    format: OutputFormat,
    value: &Value,
    table: impl FnOnce() -> String,
) -> Result<()> {
    match format {
        OutputFormat::Table => emit(&table()),
        OutputFormat::Json => emit(&serde_json::to_string_pretty(value)?),
        OutputFormat::Yaml => emit(&serde_yaml::to_string(value)?),
    }
}

pub fn print_one<R: Resource>(format: OutputFormat, item: &R, names: &Names) -> Result<()> {
    let value = to_named_value(item, R::KIND)?;
    print_value(format, &value, || details_table(&item.details(names)))
}

pub fn print_list<R: Resource>(format: OutputFormat, items: &[R], names: &Names) -> Result<()> {
    let value = to_named_value(items, R::KIND)?;
    print_value(format, &value, || {
        let rows: Vec<Vec<String>> = items.iter().map(|i| i.row(names)).collect();
        list_table(R::HEADERS, &rows)
    })
}

fn new_table() -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t
}

/// Columns with a header line, like `kubectl get`.
pub fn list_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "(none)".to_owned();
    }
    let mut t = new_table();
    t.set_header(headers.iter().copied());
    for r in rows {
        t.add_row(r);
    }
    trim_lines(&t.to_string())
}

/// One `FIELD  value` line per field, for a single resource.
pub fn details_table(fields: &[(&str, String)]) -> String {
    let mut t = new_table();
    for (k, v) in fields {
        t.add_row(vec![k.to_string(), v.clone()]);
    }
    trim_lines(&t.to_string())
}

// The NOTHING preset keeps the cell padding, which leaves a leading space and trailing blanks.
fn trim_lines(s: &str) -> String {
    s.lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use andromede_api::v1::{
        Event, Host, Instance, JoinToken, Meta, Project, ServerGroup, SovereigntyPolicy,
    };
    use serde_json::json;

    fn value<T: Serialize + ?Sized>(item: &T, kind: Kind) -> Value {
        match to_named_value(item, kind) {
            Ok(v) => v,
            Err(e) => panic!("serializes: {e}"),
        }
    }

    #[test]
    fn instance_state_and_intent_become_names() {
        let inst = Instance {
            meta: Some(Meta {
                id: "i-1".into(),
                name: "web-1".into(),
                ..Meta::default()
            }),
            state: InstanceState::Running as i32,
            intent: PowerIntent::Stopped as i32,
            ..Instance::default()
        };
        let v = value(&inst, Kind::Instance);
        assert_eq!(v["state"], json!("INSTANCE_STATE_RUNNING"));
        assert_eq!(v["intent"], json!("POWER_INTENT_STOPPED"));
        assert_eq!(v["meta"]["name"], json!("web-1"));
    }

    #[test]
    fn lists_are_named_element_by_element() {
        let groups = vec![
            ServerGroup {
                policy: GroupPolicy::Affinity as i32,
                ..ServerGroup::default()
            },
            ServerGroup {
                policy: GroupPolicy::AntiAffinity as i32,
                ..ServerGroup::default()
            },
        ];
        let v = value(&groups, Kind::ServerGroup);
        assert_eq!(v[0]["policy"], json!("GROUP_POLICY_AFFINITY"));
        assert_eq!(v[1]["policy"], json!("GROUP_POLICY_ANTI_AFFINITY"));
    }

    #[test]
    fn project_policy_message_is_left_alone() {
        let p = Project {
            policy: Some(SovereigntyPolicy {
                allowed_countries: vec!["FR".into()],
                ..SovereigntyPolicy::default()
            }),
            ..Project::default()
        };
        let v = value(&p, Kind::Project);
        assert_eq!(v["policy"]["allowed_countries"], json!(["FR"]));
    }

    #[test]
    fn event_type_datacenter_status_and_unknown_values() {
        let e = Event {
            r#type: EventType::Deleted as i32,
            ..Event::default()
        };
        assert_eq!(value(&e, Kind::Event)["type"], json!("EVENT_TYPE_DELETED"));

        let mut v = json!({"status": 2, "state": 3});
        name_enums(&mut v, Kind::Datacenter);
        assert_eq!(
            v,
            json!({"status": "DATACENTER_STATUS_MAINTENANCE", "state": 3})
        );

        let mut v = json!({"state": 99});
        name_enums(&mut v, Kind::Volume);
        assert_eq!(v, json!({"state": 99}));

        let mut v = json!({"state": 1});
        name_enums(&mut v, Kind::Host);
        assert_eq!(v, json!({"state": "HOST_STATE_UP"}));
    }

    #[test]
    fn credential_hashes_are_stripped() {
        let hosts = vec![Host {
            driver: "libvirt".into(),
            credential_sha256: "ab".repeat(32),
            ..Host::default()
        }];
        let v = value(&hosts, Kind::Host);
        assert_eq!(v[0]["driver"], json!("libvirt"));
        assert!(v[0].get("credential_sha256").is_none(), "{v}");

        let t = JoinToken {
            datacenter_id: "dc-1".into(),
            secret_sha256: "cd".repeat(32),
            ..JoinToken::default()
        };
        let v = value(&t, Kind::JoinToken);
        assert_eq!(v["datacenter_id"], json!("dc-1"));
        assert!(v.get("secret_sha256").is_none(), "{v}");

        let stripped = strip_secrets_from_json(r#"{"driver":"fake","credential_sha256":"ab"}"#);
        assert_eq!(stripped, r#"{"driver":"fake"}"#);
        let untouched = r#"{"size_gib": 3, "name":"v"}"#;
        assert_eq!(strip_secrets_from_json(untouched), untouched);
        assert_eq!(strip_secrets_from_json("not json"), "not json");
    }

    #[test]
    fn tables_have_headers_and_rows() {
        let t = list_table(&["ID", "NAME"], &[vec!["1".into(), "a".into()]]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID"), "{t}");
        assert!(
            lines.iter().any(|l| l.starts_with('1') && l.ends_with('a')),
            "{t}"
        );
        assert_eq!(list_table(&["ID"], &[]), "(none)");
    }
}
