//! The scheduler: filters then weighers over a snapshot of hosts, with a per-filter explanation.
//!
//! No I/O and no clock: the same snapshot and request always give the same answer, so the leader
//! can plan, the state machine can re-verify, and tests can property-check it.

use andromede_api::v1::{
    Datacenter, DatacenterStatus, GroupPolicy, Host, HostState, PlacementConstraints, Resources,
    SovereigntyPolicy,
};
use andromede_model::{capacity, policy};
use std::collections::{BTreeMap, HashMap};

/// How to choose among hosts that pass every filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Most free capacity first (spreads load and failure domains).
    #[default]
    Spread,
    /// Least free capacity first (keeps whole hosts empty).
    Pack,
}

/// A server group rule the new member must respect.
#[derive(Debug, Clone)]
pub struct GroupRule {
    pub policy: GroupPolicy,
    pub hard: bool,
    /// Hosts of the group's current members.
    pub member_hosts: Vec<String>,
}

/// What to place.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub policy: &'a SovereigntyPolicy,
    pub constraints: &'a PlacementConstraints,
    pub resources: Resources,
    pub group: Option<GroupRule>,
    /// Only this host (a volume placed next to its instance).
    pub pin_host: Option<String>,
    pub strategy: Strategy,
}

/// The state the scheduler reads.
pub trait Snapshot {
    fn hosts(&self) -> Box<dyn Iterator<Item = &Host> + '_>;
    /// Every host once, starting from the first id at or after `start` and wrapping around, so
    /// a sampled placement begins at a different place each time.
    fn hosts_from(&self, _start: &str) -> Box<dyn Iterator<Item = &Host> + '_> {
        self.hosts()
    }
    fn datacenter(&self, id: &str) -> Option<&Datacenter>;
    /// Resources held by in-flight plans on a host, not yet applied.
    fn reserved(&self, host_id: &str) -> Resources;
}

/// How many hosts one filter removed, grouped by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterResult {
    pub name: &'static str,
    pub excluded: u32,
    pub reasons: BTreeMap<String, u32>,
}

/// The full account of one placement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Explanation {
    pub hosts_considered: u32,
    pub filters: Vec<FilterResult>,
    pub candidates: u32,
    pub chosen: Option<Choice>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub host_id: String,
    pub datacenter_id: String,
}

pub const F_STATE: &str = "host state";
pub const F_DATACENTER: &str = "datacenter status";
pub const F_POLICY: &str = "project policy";
pub const F_CONSTRAINTS: &str = "request constraints";
pub const F_GROUP: &str = "server group";
pub const F_CAPACITY: &str = "capacity";
pub const F_PIN: &str = "instance host";

impl Explanation {
    /// One sentence, e.g. "12 hosts considered: 8 excluded by project policy (8 in DE, allowed
    /// countries: FR); 3 excluded by capacity (3 lack memory); 1 excluded by host state (1 draining)".
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} host{} considered",
            self.hosts_considered,
            if self.hosts_considered == 1 { "" } else { "s" }
        );
        let parts: Vec<String> = self
            .filters
            .iter()
            .filter(|f| f.excluded > 0)
            .map(|f| {
                let why: Vec<String> = f.reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                format!("{} excluded by {} ({})", f.excluded, f.name, why.join(", "))
            })
            .collect();
        if !parts.is_empty() {
            s.push_str(": ");
            s.push_str(&parts.join("; "));
        }
        match &self.chosen {
            Some(c) => s.push_str(&format!(
                "; {} candidate{}, chose host {}",
                self.candidates,
                if self.candidates == 1 { "" } else { "s" },
                c.host_id
            )),
            None => s.push_str("; no host fits"),
        }
        s
    }
}

struct Tally {
    filters: Vec<FilterResult>,
}

impl Tally {
    fn new() -> Self {
        let names = [
            F_STATE,
            F_DATACENTER,
            F_POLICY,
            F_CONSTRAINTS,
            F_PIN,
            F_GROUP,
            F_CAPACITY,
        ];
        Self {
            filters: names
                .iter()
                .map(|n| FilterResult {
                    name: n,
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn exclude(&mut self, filter: &'static str, reason: String) {
        if let Some(f) = self.filters.iter_mut().find(|f| f.name == filter) {
            f.excluded += 1;
            *f.reasons.entry(reason).or_insert(0) += 1;
        }
    }
}

fn state_word(s: i32) -> String {
    HostState::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("HOST_STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// Stop after this many fitting hosts, scanning from a random place: the best of a sample, as
/// Nomad and Sparrow do, instead of the best of all hosts. Keeps a placement's cost flat as the
/// region grows; a failed placement still scans every host, so its explanation is complete.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub start: &'a str,
    pub candidates: u32,
}

/// Runs every filter and weigher over every host; `chosen` is `None` when no host fits.
pub fn place(snapshot: &dyn Snapshot, req: &Request<'_>) -> Explanation {
    place_sampled(snapshot, req, None)
}

/// Like [`place`], stopping at `sample.candidates` fitting hosts. Soft server groups always scan
/// every host: the member they prefer may be anywhere.
pub fn place_sampled(
    snapshot: &dyn Snapshot,
    req: &Request<'_>,
    sample: Option<Sample<'_>>,
) -> Explanation {
    let sample = sample.filter(|_| req.group.as_ref().is_none_or(|g| g.hard));
    let mut tally = Tally::new();
    let mut considered = 0u32;
    // Policy and constraints depend only on the datacenter: evaluate each once.
    let mut dc_verdicts: HashMap<&str, Result<(), (&'static str, String)>> = HashMap::new();
    let in_group = |h: &str| {
        req.group
            .as_ref()
            .is_some_and(|g| g.member_hosts.iter().any(|m| m == h))
    };
    // (soft-group preference, weight, host id, datacenter id)
    let mut best: Option<(bool, f64, String, String)> = None;
    let mut candidates = 0u32;

    let hosts = match sample {
        Some(s) => snapshot.hosts_from(s.start),
        None => snapshot.hosts(),
    };
    for host in hosts {
        if sample.is_some_and(|s| candidates >= s.candidates) {
            break;
        }
        considered += 1;
        let Some(meta) = host.meta.as_ref() else {
            continue;
        };
        if host.state != HostState::Up as i32 {
            tally.exclude(F_STATE, state_word(host.state));
            continue;
        }
        let verdict = dc_verdicts
            .entry(host.datacenter_id.as_str())
            .or_insert_with(|| datacenter_verdict(snapshot, req, &host.datacenter_id));
        if let Err((f, why)) = verdict {
            tally.exclude(f, why.clone());
            continue;
        }
        if let Some(pin) = &req.pin_host {
            if *pin != meta.id {
                tally.exclude(F_PIN, "not the instance's host".into());
                continue;
            }
        }
        let member = in_group(&meta.id);
        if let Some(g) = req.group.as_ref().filter(|g| g.hard) {
            let affinity = g.policy == GroupPolicy::Affinity;
            if affinity && !g.member_hosts.is_empty() && !member {
                tally.exclude(F_GROUP, "not hosting the affinity group".into());
                continue;
            }
            if !affinity && member {
                tally.exclude(F_GROUP, "already hosting an anti-affinity member".into());
                continue;
            }
        }
        let free = capacity::free(host, &snapshot.reserved(&meta.id));
        if let Some(dim) = capacity::shortfall(&free, &req.resources) {
            tally.exclude(F_CAPACITY, format!("lack free {dim}"));
            continue;
        }
        candidates += 1;
        // Like Nova's RAM and CPU weighers: absolute free room, one vCPU weighing as one GiB.
        let free_room = free.memory_mib as f64 + free.vcpus as f64 * 1024.0;
        let weight = match req.strategy {
            Strategy::Spread => free_room,
            Strategy::Pack => -free_room,
        };
        let preferred = match &req.group {
            Some(g) if !g.hard => (g.policy == GroupPolicy::Affinity) == member,
            _ => true,
        };
        let better = match &best {
            None => true,
            Some((bp, bw, bid, _)) => {
                (preferred, weight, std::cmp::Reverse(meta.id.as_str())).partial_cmp(&(
                    *bp,
                    *bw,
                    std::cmp::Reverse(bid.as_str()),
                )) == Some(std::cmp::Ordering::Greater)
            }
        };
        if better {
            best = Some((
                preferred,
                weight,
                meta.id.clone(),
                host.datacenter_id.clone(),
            ));
        }
    }

    Explanation {
        hosts_considered: considered,
        filters: tally.filters,
        candidates,
        chosen: best.map(|(_, _, host_id, datacenter_id)| Choice {
            host_id,
            datacenter_id,
        }),
    }
}

/// The filters that depend only on a host's datacenter: its status, the project's policy (one
/// verdict, failing closed on an unknown datacenter) and the request's constraints. Shared by
/// [`place`] and [`verify`], so the plan and its apply-time check agree.
fn datacenter_verdict(
    snapshot: &dyn Snapshot,
    req: &Request<'_>,
    dc_id: &str,
) -> Result<(), (&'static str, String)> {
    let dc = snapshot.datacenter(dc_id);
    if let Some(dc) = dc.filter(|dc| dc.status != DatacenterStatus::Active as i32) {
        let status = DatacenterStatus::try_from(dc.status)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("DATACENTER_STATUS_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_else(|_| "unknown".into());
        return Err((
            F_DATACENTER,
            format!("in a datacenter not active ({status})"),
        ));
    }
    match (policy::verdict(req.policy, dc_id, dc), dc) {
        (Err(d), _) if d.is_unknown_place() => Err((F_DATACENTER, d.to_string())),
        (Err(d), _) => Err((F_POLICY, d.to_string())),
        (Ok(()), Some(dc)) if !policy::within_constraints(req.constraints, dc) => Err((
            F_CONSTRAINTS,
            format!(
                "in {} ({}), outside the requested countries/datacenters",
                dc.meta.as_ref().map_or("", |m| m.name.as_str()),
                dc.country
            ),
        )),
        (Ok(()), _) => Ok(()),
    }
}

/// Re-checks one chosen host at apply time: `Err` names what no longer holds. A datacenter that
/// went to maintenance or was retired since the plan is refused like at planning time.
pub fn verify(snapshot: &dyn Snapshot, req: &Request<'_>, host: &Host) -> Result<(), String> {
    if host.state != HostState::Up as i32 {
        return Err(format!("host is {}", state_word(host.state)));
    }
    datacenter_verdict(snapshot, req, &host.datacenter_id)
        .map_err(|(f, why)| format!("{f}: {why}"))?;
    let free = capacity::free(host, &Resources::default());
    if let Some(dim) = capacity::shortfall(&free, &req.resources) {
        return Err(format!("host lacks free {dim}"));
    }
    if let Some(g) = req.group.as_ref().filter(|g| g.hard) {
        let id = host.meta.as_ref().map_or("", |m| m.id.as_str());
        let member = g.member_hosts.iter().any(|m| m == id);
        let affinity = g.policy == GroupPolicy::Affinity;
        if (affinity && !g.member_hosts.is_empty() && !member) || (!affinity && member) {
            return Err("server group rule no longer holds".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
