//! Table views of each resource: the list columns and the single-resource details.

use std::collections::HashMap;

use andromede_api::v1::{
    ApiToken, ClusterStatus, CreateTokenResponse, Datacenter, DatacenterStatus, Event, EventType,
    Flavor, GroupPolicy, Host, HostState, Image, Instance, InstanceState, JoinToken, Meta,
    PlacementConstraints, PlacementExplanation, PowerIntent, Project, Quota, Resources, Role,
    ServerGroup, Usage, Volume, VolumeState,
};
use serde::Serialize;

use crate::output::Kind;

/// Names of the resources other resources point at, for tables that show names, not ids.
#[derive(Default)]
pub struct Names(HashMap<String, String>);

impl Names {
    pub fn add(&mut self, meta: Option<&Meta>) {
        if let Some(m) = meta {
            if !m.id.is_empty() && !m.name.is_empty() {
                self.0.insert(m.id.clone(), m.name.clone());
            }
        }
    }

    /// The name for an id, or the id itself when unknown; `-` when empty.
    pub fn of(&self, id: &str) -> String {
        if id.is_empty() {
            return "-".to_owned();
        }
        self.0.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    /// `name (id)` for detail views, where both are worth seeing.
    pub fn long(&self, id: &str) -> String {
        match self.0.get(id) {
            Some(name) if !id.is_empty() => format!("{name} ({id})"),
            _ => dash(id),
        }
    }
}

/// A resource that renders as a table row and as a details table.
pub trait Resource: Serialize {
    const KIND: Kind;
    const HEADERS: &'static [&'static str];
    fn row(&self, names: &Names) -> Vec<String>;
    fn details(&self, names: &Names) -> Vec<(&'static str, String)>;
}

pub fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

fn id_of(meta: Option<&Meta>) -> String {
    meta.map(|m| m.id.clone()).unwrap_or_default()
}

fn name_of(meta: Option<&Meta>) -> String {
    meta.map(|m| m.name.clone()).unwrap_or_default()
}

/// Strips the enum's prefix: `INSTANCE_STATE_RUNNING` becomes `RUNNING`.
fn short(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_owned()
}

fn unknown(n: i32) -> String {
    format!("UNKNOWN({n})")
}

pub fn instance_state(n: i32) -> String {
    InstanceState::try_from(n)
        .map(|s| short(s.as_str_name(), "INSTANCE_STATE_"))
        .unwrap_or_else(|_| unknown(n))
}

pub fn volume_state(n: i32) -> String {
    VolumeState::try_from(n)
        .map(|s| short(s.as_str_name(), "VOLUME_STATE_"))
        .unwrap_or_else(|_| unknown(n))
}

fn host_state(n: i32) -> String {
    HostState::try_from(n)
        .map(|s| short(s.as_str_name(), "HOST_STATE_"))
        .unwrap_or_else(|_| unknown(n))
}

fn dc_status(n: i32) -> String {
    DatacenterStatus::try_from(n)
        .map(|s| short(s.as_str_name(), "DATACENTER_STATUS_"))
        .unwrap_or_else(|_| unknown(n))
}

fn intent(n: i32) -> String {
    PowerIntent::try_from(n)
        .map(|s| short(s.as_str_name(), "POWER_INTENT_"))
        .unwrap_or_else(|_| unknown(n))
}

fn group_policy(n: i32) -> String {
    GroupPolicy::try_from(n)
        .map(|s| short(s.as_str_name(), "GROUP_POLICY_"))
        .unwrap_or_else(|_| unknown(n))
}

pub fn event_type(n: i32) -> String {
    EventType::try_from(n)
        .map(|s| short(s.as_str_name(), "EVENT_TYPE_"))
        .unwrap_or_else(|_| unknown(n))
}

/// Milliseconds since the epoch as UTC RFC 3339, e.g. `2025-03-01T12:00:00Z`.
pub fn timestamp(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm, to avoid a date crate for one conversion.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn meta_details(meta: Option<&Meta>, fields: &mut Vec<(&'static str, String)>) {
    if let Some(m) = meta {
        fields.push(("generation", m.generation.to_string()));
        fields.push(("created", timestamp(m.created_at_ms)));
        fields.push(("updated", timestamp(m.updated_at_ms)));
        if !m.request_id.is_empty() {
            fields.push(("request id", m.request_id.clone()));
        }
    }
}

fn head(meta: Option<&Meta>, names: &Names) -> Vec<(&'static str, String)> {
    let mut fields = vec![("id", dash(&id_of(meta))), ("name", dash(&name_of(meta)))];
    if let Some(m) = meta.filter(|m| !m.project_id.is_empty()) {
        fields.push(("project", names.long(&m.project_id)));
    }
    fields
}

fn constraints(c: Option<&PlacementConstraints>, names: &Names) -> String {
    let Some(c) = c else {
        return "-".to_owned();
    };
    let mut parts = Vec::new();
    if !c.countries.is_empty() {
        parts.push(format!("countries {}", c.countries.join(",")));
    }
    if !c.datacenter_ids.is_empty() {
        let dcs: Vec<String> = c.datacenter_ids.iter().map(|d| names.of(d)).collect();
        parts.push(format!("datacenters {}", dcs.join(",")));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join("; ")
    }
}

impl Resource for Datacenter {
    const KIND: Kind = Kind::Datacenter;
    const HEADERS: &'static [&'static str] = &[
        "ID",
        "NAME",
        "COUNTRY",
        "JURISDICTIONS",
        "OPERATOR",
        "CERTIFICATIONS",
        "STATUS",
    ];

    fn row(&self, _names: &Names) -> Vec<String> {
        vec![
            id_of(self.meta.as_ref()),
            name_of(self.meta.as_ref()),
            dash(&self.country),
            list(&self.jurisdictions),
            self.operator
                .as_ref()
                .map(|o| {
                    if o.parent_country.is_empty() || o.parent_country == o.country {
                        format!("{} ({})", o.name, o.country)
                    } else {
                        format!("{} ({}, parent {})", o.name, o.country, o.parent_country)
                    }
                })
                .unwrap_or_else(|| "-".to_owned()),
            list(&self.certifications),
            dc_status(self.status),
        ]
    }

    fn details(&self, names: &Names) -> Vec<(&'static str, String)> {
        let mut f = head(self.meta.as_ref(), names);
        f.push(("country", dash(&self.country)));
        f.push(("jurisdictions", list(&self.jurisdictions)));
        f.push(("status", dc_status(self.status)));
        if let Some(o) = &self.operator {
            f.push(("operator", dash(&o.name)));
            f.push(("operator country", dash(&o.country)));
            f.push(("parent country", dash(&o.parent_country)));
            f.push((
                "largest non-EU holder",
                format!("{}%", o.largest_non_eu_holder_percent),
            ));
            f.push(("total non-EU share", format!("{}%", o.total_non_eu_percent)));
        }
        f.push(("certifications", list(&self.certifications)));
        meta_details(self.meta.as_ref(), &mut f);
        f
    }
}

/// `used/effective` where effective is the capacity times the overcommit ratio.
fn usage_of(used: u64, capacity: u64, ratio: f64) -> String {
    format!("{used}/{}", usage_cap(capacity, ratio))
}

fn ratio_triplet(h: &Host) -> (f64, f64, f64) {
    h.ratios
        .as_ref()
        .map(|r| (r.cpu, r.memory, r.disk))
        .unwrap_or((0.0, 0.0, 0.0))
}

impl Resource for Host {
    const KIND: Kind = Kind::Host;
    const HEADERS: &'static [&'static str] = &[
        "ID",
        "NAME",
        "DATACENTER",
        "STATE",
        "VCPUS USED/CAP",
        "MEMORY MIB USED/CAP",
        "DISK GIB USED/CAP",
        "SIMULATED",
        "DRIVER",
        "AGENT VERSION",
        "ORPHANS",
    ];

    fn row(&self, names: &Names) -> Vec<String> {
        let cap = self.capacity.unwrap_or_default();
        let used = self.used.unwrap_or_default();
        let (rc, rm, rd) = ratio_triplet(self);
        vec![
            id_of(self.meta.as_ref()),
            name_of(self.meta.as_ref()),
            names.of(&self.datacenter_id),
            host_state(self.state),
            usage_of(used.vcpus, cap.vcpus, rc),
            usage_of(used.memory_mib, cap.memory_mib, rm),
            usage_of(used.disk_gib, cap.disk_gib, rd),
            if self.simulated { "yes" } else { "no" }.to_owned(),
            dash(&self.driver),
            dash(&self.agent_version),
            self.orphans
                .as_ref()
                .map_or(0, |o| o.items.len())
                .to_string(),
        ]
    }

    fn details(&self, names: &Names) -> Vec<(&'static str, String)> {
        let cap = self.capacity.unwrap_or_default();
        let used = self.used.unwrap_or_default();
        let (rc, rm, rd) = ratio_triplet(self);
        let mut f = head(self.meta.as_ref(), names);
        f.push(("datacenter", names.long(&self.datacenter_id)));
        f.push(("state", host_state(self.state)));
        f.push(("simulated", self.simulated.to_string()));
        f.push(("driver", dash(&self.driver)));
        f.push(("agent version", dash(&self.agent_version)));
        f.push((
            "orphans",
            self.orphans
                .as_ref()
                .map_or(0, |o| o.items.len())
                .to_string(),
        ));
        f.push((
            "vcpus",
            format!(
                "{} used of {} ({} physical x{rc})",
                used.vcpus,
                usage_cap(cap.vcpus, rc),
                cap.vcpus
            ),
        ));
        f.push((
            "memory",
            format!(
                "{} MiB used of {} ({} physical x{rm})",
                used.memory_mib,
                usage_cap(cap.memory_mib, rm),
                cap.memory_mib
            ),
        ));
        f.push((
            "disk",
            format!(
                "{} GiB used of {} ({} physical x{rd})",
                used.disk_gib,
                usage_cap(cap.disk_gib, rd),
                cap.disk_gib
            ),
        ));
        meta_details(self.meta.as_ref(), &mut f);
        f
    }
}

// An unset ratio (0) means no overcommit information, so the physical capacity is shown.
fn usage_cap(capacity: u64, ratio: f64) -> u64 {
    if ratio > 0.0 {
        (capacity as f64 * ratio).floor() as u64
    } else {
        capacity
    }
}

impl Resource for Flavor {
    const KIND: Kind = Kind::Flavor;
    const HEADERS: &'static [&'static str] = &["ID", "NAME", "VCPUS", "MEMORY MIB", "DISK GIB"];

    fn row(&self, _names: &Names) -> Vec<String> {
        vec![
            id_of(self.meta.as_ref()),
            name_of(self.meta.as_ref()),
            self.vcpus.to_string(),
            self.memory_mib.to_string(),
            self.disk_gib.to_string(),
        ]
    }

    fn details(&self, names: &Names) -> Vec<(&'static str, String)> {
        let mut f = head(self.meta.as_ref(), names);
        f.push(("vcpus", self.vcpus.to_string()));
        f.push(("memory mib", self.memory_mib.to_string()));
        f.push(("disk gib", self.disk_gib.to_string()));
        meta_details(self.meta.as_ref(), &mut f);
        f
    }
}

impl Resource for Image {
    const KIND: Kind = Kind::Image;
    const HEADERS: &'static [&'static str] =
        &["ID", "NAME", "FORMAT", "MIN DISK GIB", "PROJECT", "SOURCE"];

    fn row(&self, names: &Names) -> Vec<String> {
        let project = self
            .meta
            .as_ref()
            .map(|m| m.project_id.as_str())
            .unwrap_or("");
        vec![
            id_of(self.meta.as_ref()),
            name_of(self.meta.as_ref()),
            dash(&self.format),
            self.min_disk_gib.to_string(),
            if project.is_empty() {
                "(public)".to_owned()
            } else {
                names.of(project)
            },
            dash(&self.source),
        ]
    }

    fn details(&self, names: &Names) -> Vec<(&'static str, String)> {
        let mut f = head(self.meta.as_ref(), names);
        f.push(("format", dash(&self.format)));
        f.push(("source", dash(&self.source)));
        f.push(("sha256", dash(&self.checksum_sha256)));
        f.push(("min disk gib", self.min_disk_gib.to_string()));
        if let Some(k) = &self.kernel {
            f.push(("kernel", dash(&k.source)));
            f.push(("kernel sha256", dash(&k.checksum_sha256)));
        }
        if let Some(i) = &self.initrd {
            f.push(("initrd", dash(&i.source)));
            f.push(("initrd sha256", dash(&i.checksum_sha256)));
        }
        if self.kernel.is_some() || !self.cmdline.is_empty() {
            f.push(("cmdline", dash(&self.cmdline)));
        }
        if self.meta.as_ref().is_none_or(|m| m.project_id.is_empty()) {
            f.push(("visibility", "public".to_owned()));
        }
        meta_details(self.meta.as_ref(), &mut f);
        f
    }
}

fn of_quota(used: u64, limit: Option<u64>) -> String {
    match limit {
        Some(l) => format!("{used}/{l}"),
        None => format!("{used}/-"),
    }
}

fn quota_cells(usage: &Usage, quota: &Quota) -> [String; 5] {
    [
        of_quota(usage.instances, quota.instances),
        of_quota(usage.vcpus, quota.vcpus),
        of_quota(usage.memory_mib, quota.memory_mib),
        of_quota(usage.volumes, quota.volumes),
        of_quota(usage.volume_gib, quota.volume_gib),
    ]
}

impl Resource for Project {
    const KIND: Kind = Kind::Project;
    const HEADERS: &'static [&'static str] = &[
        "ID",
        "NAME",
        "COUNTRIES",
        "JURISDICTIONS",
        "CERTS",
        "IMMUNITY",
        "INSTANCES",
        "VCPUS",
        "MEMORY MIB",
        "VOLUMES",
        "VOLUME GIB",
    ];

    fn row(&self, _names: &Names) -> Vec<String> {
        let p = self.policy.clone().unwrap_or_default();
        let [i, c, m, v, g] = quota_cells(
            &self.usage.unwrap_or_default(),
            &self.quota.unwrap_or_default(),
        );
        vec![
            id_of(self.meta.as_ref()),
            name_of(self.meta.as_ref()),
            if p.allowed_countries.is_empty() {
                "any".to_owned()
            } else {
                p.allowed_countries.join(",")
            },
            if p.allowed_jurisdictions.is_empty() {
                "any".to_owned()
            } else {
                p.allowed_jurisdictions.join(",")
            },
            list(&p.required_certifications),
            if p.operator_immunity { "required" } else { "-" }.to_owned(),
            i,
            c,
            m,
            v,
            g,
        ]
    }

    fn details(&self, names: &Names) -> Vec<(&'static str, String)> {
        let p = self.policy.clone().unwrap_or_default();
        let [i, c, m, v, g] = quota_cells(
            &self.usage.unwrap_or_default(),
            &self.quota.unwrap_or_default(),
        );
        let mut f = head(self.meta.as_ref(), names);
        f.push(("description", dash(&self.description)));
        f.push((
            "allowed countries",
            if p.allowed_countries.is_empty() {
                "any".to_owned()
            } else {
                p.allowed_countries.join(",")
            },
        ));
        f.push((
            "allowed jurisdictions",
            if p.allowed_jurisdictions.is_empty() {
                "any".to_owned()
            } else {
                p.allowed_jurisdictions.join(",")
            },
        ));
        f.push(("required certifications", list(&p.required_certifications)));
        f.push((
            "operator immunity",
            if p.operator_immunity {
                "required"
            } else {
                "not required"
            }
            .to_owned(),
        ));
        f.push(("instances used/quota", i));
        f.push(("vcpus used/quota", c));
        f.push(("memory mib used/quota", m));
        f.push(("volumes used/quota", v));
        f.push(("volume gib used/quota", g));
        meta_details(self.meta.as_ref(), &mut f);
        f
    }
}

fn resources(r: Option<&Resources>) -> String {
    match r {
        Some(r) => format!(
            "{} vcpus, {} MiB, {} GiB",
            r.vcpus, r.memory_mib, r.disk_gib
        ),
        None => "-".to_owned(),
    }
}

impl Resource for Instance {
    const KIND: Kind = Kind::Instance;
    const HEADERS: &'static [&'static str] = &[
        "ID",
        "NAME",
        "STATE",
        "HOST",
        "DATACENTER",
        "COUNTRY",
        "FLAVOR",
        "PROJECT",
    ];

    fn row(&self, names: &Names) -> Vec<String> {
        let project = self
            .meta
            .as_ref()
            .map(|m| m.project_id.as_str())
            .unwrap_or("");
        vec![
            id_of(self.meta.as_ref()),
            name_of(self.meta.as_ref()),
            instance_state(self.state),
            names.of(&self.host_id),
            names.of(&self.datacenter_id),
            dash(&self.country),
            names.of(&self.flavor_id),
            names.of(project),
        ]
    }

    fn details(&self, names: &Names) -> Vec<(&'static str, String)> {
        let mut f = head(self.meta.as_ref(), names);
        f.push(("state", instance_state(self.state)));
        if !self.state_reason.is_empty() {
            f.push(("state reason", self.state_reason.clone()));
        }
        f.push(("intent", intent(self.intent)));
        f.push(("host", names.long(&self.host_id)));
        f.push(("datacenter", names.long(&self.datacenter_id)));
        f.push(("country", dash(&self.country)));
        f.push(("flavor", names.long(&self.flavor_id)));
        f.push(("image", names.long(&self.image_id)));
        f.push(("resources", resources(self.resources.as_ref())));
        f.push(("server group", names.long(&self.server_group_id)));
        f.push(("constraints", constraints(self.constraints.as_ref(), names)));
        f.push(("ssh keys", self.ssh_keys.len().to_string()));
        f.push(("user data", format!("{} bytes", self.user_data.len())));
        f.push(("reboots", self.reboot_serial.to_string()));
        meta_details(self.meta.as_ref(), &mut f);
        f
    }
}

impl Resource for ServerGroup {
    const KIND: Kind = Kind::ServerGroup;
    const HEADERS: &'static [&'static str] =
        &["ID", "NAME", "PROJECT", "POLICY", "HARD", "MEMBERS"];

    fn row(&self, names: &Names) -> Vec<String> {
        let project = self
            .meta
            .as_ref()
            .map(|m| m.project_id.as_str())
            .unwrap_or("");
        vec![
            id_of(self.meta.as_ref()),
            name_of(self.meta.as_ref()),
            names.of(project),
            group_policy(self.policy),
            if self.hard { "yes" } else { "no" }.to_owned(),
            self.members.len().to_string(),
        ]
    }

    fn details(&self, names: &Names) -> Vec<(&'static str, String)> {
        let mut f = head(self.meta.as_ref(), names);
        f.push(("policy", group_policy(self.policy)));
        f.push(("hard", self.hard.to_string()));
        let members: Vec<String> = self.members.iter().map(|m| names.of(m)).collect();
        f.push(("members", list(&members)));
        meta_details(self.meta.as_ref(), &mut f);
        f
    }
}

impl Resource for Volume {
    const KIND: Kind = Kind::Volume;
    const HEADERS: &'static [&'static str] = &[
        "ID",
        "NAME",
        "SIZE GIB",
        "STATE",
        "ATTACHED TO",
        "HOST",
        "DATACENTER",
        "COUNTRY",
    ];

    fn row(&self, names: &Names) -> Vec<String> {
        vec![
            id_of(self.meta.as_ref()),
            name_of(self.meta.as_ref()),
            self.size_gib.to_string(),
            volume_state(self.state),
            names.of(&self.attached_to),
            names.of(&self.host_id),
            names.of(&self.datacenter_id),
            dash(&self.country),
        ]
    }

    fn details(&self, names: &Names) -> Vec<(&'static str, String)> {
        let mut f = head(self.meta.as_ref(), names);
        f.push(("size gib", self.size_gib.to_string()));
        f.push(("state", volume_state(self.state)));
        if !self.state_reason.is_empty() {
            f.push(("state reason", self.state_reason.clone()));
        }
        f.push(("attached to", names.long(&self.attached_to)));
        f.push(("host", names.long(&self.host_id)));
        f.push(("datacenter", names.long(&self.datacenter_id)));
        f.push(("country", dash(&self.country)));
        f.push(("constraints", constraints(self.constraints.as_ref(), names)));
        meta_details(self.meta.as_ref(), &mut f);
        f
    }
}

impl Resource for JoinToken {
    const KIND: Kind = Kind::JoinToken;
    const HEADERS: &'static [&'static str] = &["ID", "DATACENTER", "EXPIRES", "USED BY HOST"];

    fn row(&self, names: &Names) -> Vec<String> {
        vec![
            id_of(self.meta.as_ref()),
            names.of(&self.datacenter_id),
            expiry(self.expires_at_ms, now_ms()),
            names.of(&self.used_by_host),
        ]
    }

    fn details(&self, names: &Names) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("id", dash(&id_of(self.meta.as_ref()))),
            ("datacenter", names.long(&self.datacenter_id)),
            ("expires", expiry(self.expires_at_ms, now_ms())),
            ("used by host", names.long(&self.used_by_host)),
        ];
        meta_details(self.meta.as_ref(), &mut f);
        f
    }
}

/// The expiry time, marked once it has passed so stale tokens stand out in a list.
fn expiry(expires_at_ms: i64, now_ms: i64) -> String {
    let at = timestamp(expires_at_ms);
    if expires_at_ms > 0 && expires_at_ms <= now_ms {
        format!("{at} (expired)")
    } else {
        at
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Where a token acts: `cloud`, or its project's name (the id when the name is unknown).
pub fn token_scope(t: &ApiToken) -> String {
    let pid = t.meta.as_ref().map_or("", |m| m.project_id.as_str());
    if pid.is_empty() {
        "cloud".to_owned()
    } else if t.project_name.is_empty() {
        pid.to_owned()
    } else {
        t.project_name.clone()
    }
}

/// The role as people say it: `cloud-admin`, `cloud-reader`, `admin`, `member` or `reader`.
pub fn token_role(t: &ApiToken) -> String {
    if !t.role_name.is_empty() {
        return t.role_name.clone();
    }
    let cloud = t.meta.as_ref().is_none_or(|m| m.project_id.is_empty());
    let role = Role::try_from(t.role)
        .map(|r| short(r.as_str_name(), "ROLE_").to_ascii_lowercase())
        .unwrap_or_else(|_| unknown(t.role));
    if cloud {
        format!("cloud-{role}")
    } else {
        role
    }
}

/// `active`, `expired` or `revoked` at `now_ms`.
pub fn token_state(t: &ApiToken, now_ms: i64) -> &'static str {
    if t.revoked_at_ms != 0 {
        "revoked"
    } else if t.expires_at_ms != 0 && t.expires_at_ms <= now_ms {
        "expired"
    } else {
        "active"
    }
}

fn token_expiry(expires_at_ms: i64, now_ms: i64) -> String {
    if expires_at_ms == 0 {
        "never".to_owned()
    } else {
        expiry(expires_at_ms, now_ms)
    }
}

impl Resource for ApiToken {
    const KIND: Kind = Kind::ApiToken;
    const HEADERS: &'static [&'static str] = &[
        "ID",
        "NAME",
        "SCOPE",
        "ROLE",
        "CREATED BY",
        "CREATED",
        "EXPIRES",
    ];

    fn row(&self, names: &Names) -> Vec<String> {
        vec![
            id_of(self.meta.as_ref()),
            name_of(self.meta.as_ref()),
            token_scope(self),
            token_role(self),
            names.of(&self.created_by),
            timestamp(self.meta.as_ref().map_or(0, |m| m.created_at_ms)),
            token_expiry(self.expires_at_ms, now_ms()),
        ]
    }

    fn details(&self, names: &Names) -> Vec<(&'static str, String)> {
        let now = now_ms();
        let pid = self.meta.as_ref().map_or("", |m| m.project_id.as_str());
        let mut f = vec![
            ("id", dash(&id_of(self.meta.as_ref()))),
            ("name", dash(&name_of(self.meta.as_ref()))),
            (
                "scope",
                if pid.is_empty() {
                    "cloud".to_owned()
                } else {
                    format!("project {} ({pid})", token_scope(self))
                },
            ),
            ("role", token_role(self)),
            ("state", token_state(self, now).to_owned()),
            ("expires", token_expiry(self.expires_at_ms, now)),
            ("created by", names.long(&self.created_by)),
        ];
        if self.revoked_at_ms != 0 {
            f.push(("revoked", timestamp(self.revoked_at_ms)));
        }
        meta_details(self.meta.as_ref(), &mut f);
        f
    }
}

/// The table of `token list`: the STATE column only when revoked and expired tokens are listed.
pub fn token_list(tokens: &[ApiToken], with_state: bool, names: &Names) -> String {
    let now = now_ms();
    let mut headers = ApiToken::HEADERS.to_vec();
    if with_state {
        headers.push("STATE");
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            let mut row = t.row(names);
            if with_state {
                row.push(token_state(t, now).to_owned());
            }
            row
        })
        .collect();
    crate::output::list_table(&headers, &rows)
}

/// What `token create` prints for people: the secret first and alone on its line, since it is
/// never shown again, then what the token may do.
pub fn token_created(resp: &CreateTokenResponse, names: &Names) -> String {
    let mut out = format!(
        "Token secret (it will NOT be shown again; store it now, the cloud keeps only its SHA-256):\n\n    {}\n\n",
        resp.secret
    );
    if let Some(t) = &resp.token {
        let now = now_ms();
        out.push_str(&crate::output::details_table(&[
            ("id", dash(&id_of(t.meta.as_ref()))),
            ("name", dash(&name_of(t.meta.as_ref()))),
            ("scope", token_scope(t)),
            ("role", token_role(t)),
            ("expires", token_expiry(t.expires_at_ms, now)),
            ("created by", names.long(&t.created_by)),
        ]));
        out.push_str("\n\n");
    }
    out.push_str(
        "Use it as ANDROMEDE_TOKEN (or a profile's `token`); `cloudctl whoami` then shows who it is.",
    );
    out
}

/// What `host join-token create` prints for people: the token first and alone on its line,
/// since it cannot be shown again, then what it is for.
pub fn join_token_created(token: &str, jt: Option<&JoinToken>, names: &Names) -> String {
    let mut out = format!(
        "Join token (shown only once; store it now, it cannot be retrieved later):\n\n    {token}\n\n"
    );
    if let Some(jt) = jt {
        out.push_str(&crate::output::details_table(&[
            ("id", dash(&id_of(jt.meta.as_ref()))),
            ("datacenter", names.long(&jt.datacenter_id)),
            ("expires", expiry(jt.expires_at_ms, now_ms())),
        ]));
        out.push_str("\n\n");
    }
    out.push_str(&format!(
        "Enroll a host with: andromede-agent --server HOST:PORT --join-token {token}"
    ));
    out
}

/// One line per event for `events watch`.
pub fn event_line(e: &Event) -> String {
    let mut line = format!(
        "{} #{} {} {} {}",
        timestamp(e.at_ms),
        e.revision,
        event_type(e.r#type),
        dash(&e.kind),
        if e.name.is_empty() {
            dash(&e.id)
        } else {
            format!("{} ({})", e.name, e.id)
        },
    );
    if !e.project_id.is_empty() {
        line.push_str(&format!(" project={}", e.project_id));
    }
    line.push_str(&format!(" gen={}", e.generation));
    line
}

/// Header, members and indexes of `cluster status`.
pub fn cluster_status(s: &ClusterStatus) -> String {
    let leader = if s.leader_id == 0 {
        "none".to_owned()
    } else {
        s.leader_id.to_string()
    };
    let summary = crate::output::details_table(&[
        ("node", format!("{} ({})", s.node_id, dash(&s.state))),
        ("leader", leader),
        ("term", s.term.to_string()),
        ("last log index", s.last_log_index.to_string()),
        ("committed index", s.committed_index.to_string()),
        ("applied index", s.applied_index.to_string()),
        ("snapshot index", s.snapshot_index.to_string()),
        ("connected agents", s.connected_agents.to_string()),
    ]);
    let rows: Vec<Vec<String>> = s
        .members
        .iter()
        .map(|m| {
            vec![
                m.node_id.to_string(),
                dash(&m.addr),
                dash(&m.role),
                if m.leader { "*" } else { "" }.to_owned(),
                m.matched_index.to_string(),
                if m.datacenter_id.is_empty() {
                    "(not located)".to_owned()
                } else {
                    m.datacenter_id.clone()
                },
            ]
        })
        .collect();
    let members = crate::output::list_table(
        &[
            "NODE ID",
            "ADDR",
            "ROLE",
            "LEADER",
            "MATCHED INDEX",
            "DATACENTER",
        ],
        &rows,
    );
    format!("{summary}\n\n{members}")
}

/// The filter-by-filter account of `placement explain`.
pub fn explanation(e: &PlacementExplanation, names: &Names) -> String {
    let mut out = String::new();
    if !e.summary.is_empty() {
        out.push_str(&e.summary);
        out.push_str("\n\n");
    }
    out.push_str(&crate::output::details_table(&[
        ("hosts considered", e.hosts_considered.to_string()),
        ("candidates", e.candidates.to_string()),
        (
            "chosen host",
            if e.chosen_host_id.is_empty() {
                "none fits".to_owned()
            } else {
                names.long(&e.chosen_host_id)
            },
        ),
        ("chosen datacenter", names.long(&e.chosen_datacenter_id)),
    ]));
    let rows: Vec<Vec<String>> = e
        .filters
        .iter()
        .map(|f| {
            vec![
                f.filter.clone(),
                f.excluded.to_string(),
                if f.reasons.is_empty() {
                    "-".to_owned()
                } else {
                    f.reasons.join("\n")
                },
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str("\n\n");
        out.push_str(&crate::output::list_table(
            &["FILTER", "EXCLUDED", "REASONS"],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(timestamp(0), "-");
        assert_eq!(timestamp(1_000), "1970-01-01T00:00:01Z");
        assert_eq!(timestamp(1_709_294_400_000), "2024-03-01T12:00:00Z");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn short_state_names() {
        assert_eq!(instance_state(InstanceState::HostLost as i32), "HOST_LOST");
        assert_eq!(volume_state(VolumeState::InUse as i32), "IN_USE");
        assert_eq!(volume_state(VolumeState::Attaching as i32), "ATTACHING");
        assert_eq!(volume_state(VolumeState::Detaching as i32), "DETACHING");
        assert_eq!(instance_state(77), "UNKNOWN(77)");
    }

    #[test]
    fn host_usage_counts_overcommit() {
        assert_eq!(usage_of(3, 16, 4.0), "3/64");
        assert_eq!(usage_of(3, 16, 0.0), "3/16");
    }

    #[test]
    fn hosts_show_driver_and_agent_but_no_credential() {
        let h = Host {
            driver: "libvirt".into(),
            agent_version: "0.1.0".into(),
            credential_sha256: "ab".repeat(32),
            ..Host::default()
        };
        let row = h.row(&Names::default());
        assert_eq!(row.len(), Host::HEADERS.len());
        assert!(row.contains(&"libvirt".to_owned()) && row.contains(&"0.1.0".to_owned()));
        let details = h.details(&Names::default());
        assert!(details
            .iter()
            .any(|(k, v)| *k == "driver" && v == "libvirt"));
        let all: Vec<&String> = row.iter().chain(details.iter().map(|(_, v)| v)).collect();
        assert!(all.iter().all(|v| !v.contains("abab")), "{all:?}");
        assert_eq!(Host::default().row(&Names::default())[9], "-");
    }

    #[test]
    fn join_tokens_mark_expiry_and_hide_the_secret() {
        assert_eq!(
            expiry(1_000, 2_000),
            "1970-01-01T00:00:01Z (expired)".to_owned()
        );
        assert_eq!(expiry(3_000, 2_000), "1970-01-01T00:00:03Z");
        let t = JoinToken {
            datacenter_id: "dc-1".into(),
            secret_sha256: "cd".repeat(32),
            ..JoinToken::default()
        };
        let row = t.row(&Names::default());
        assert_eq!(row.len(), JoinToken::HEADERS.len());
        assert_eq!(row[3], "-", "unused");
        assert!(row.iter().all(|v| !v.contains("cdcd")), "{row:?}");
        let text = join_token_created("jt-1.s3cret", Some(&t), &Names::default());
        assert!(text.contains("\n    jt-1.s3cret\n"), "{text}");
        assert!(!text.contains("cdcd"), "{text}");
    }

    #[test]
    fn tokens_show_scope_role_state_and_the_secret_once() {
        let token = |project: &str, role: Role| ApiToken {
            meta: Some(Meta {
                id: "t1".into(),
                name: "ci".into(),
                project_id: project.into(),
                ..Meta::default()
            }),
            role: role as i32,
            created_by: "bootstrap".into(),
            secret_sha256: "ab".repeat(32),
            ..ApiToken::default()
        };
        let cloud = token("", Role::Reader);
        assert_eq!(
            (token_scope(&cloud), token_role(&cloud)),
            ("cloud".into(), "cloud-reader".into())
        );
        let mut member = token("p-1", Role::Member);
        assert_eq!(
            (token_scope(&member), token_role(&member)),
            ("p-1".into(), "member".into())
        );
        member.project_name = "acme".into();
        member.role_name = "member".into();
        assert_eq!(token_scope(&member), "acme");
        assert_eq!(token_state(&member, 5), "active");
        member.expires_at_ms = 5;
        assert_eq!(token_state(&member, 5), "expired");
        member.revoked_at_ms = 1;
        assert_eq!(token_state(&member, 5), "revoked");

        let plain = token_list(std::slice::from_ref(&cloud), false, &Names::default());
        let header = plain.lines().next().unwrap_or_default();
        assert!(
            header.contains("CREATED BY") && !header.contains("STATE"),
            "{plain}"
        );
        assert!(
            plain.contains("never") && plain.contains("bootstrap"),
            "{plain}"
        );
        let all = token_list(&[cloud.clone(), member], true, &Names::default());
        assert!(
            all.lines().next().unwrap_or_default().ends_with("STATE"),
            "{all}"
        );
        assert!(all.contains("revoked") && all.contains("acme"), "{all}");
        assert!(!all.contains("abab"), "{all}");

        let resp = CreateTokenResponse {
            token: Some(cloud),
            secret: "andro_s3cret".into(),
        };
        let text = token_created(&resp, &Names::default());
        assert_eq!(text.matches("andro_s3cret").count(), 1, "{text}");
        assert!(
            text.contains("\n    andro_s3cret\n") && text.contains("NOT be shown again"),
            "{text}"
        );
    }

    #[test]
    fn names_fall_back_to_ids() {
        let mut n = Names::default();
        n.add(Some(&Meta {
            id: "h-1".into(),
            name: "par1-h01".into(),
            ..Meta::default()
        }));
        assert_eq!(n.of("h-1"), "par1-h01");
        assert_eq!(n.long("h-1"), "par1-h01 (h-1)");
        assert_eq!(n.of("h-2"), "h-2");
        assert_eq!(n.of(""), "-");
    }
}
