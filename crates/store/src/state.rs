//! The deterministic state of a region and the one function that applies commands to it.
//!
//! Apply never reads a clock or a random source: the proposer stamps time into the envelope and
//! picks ids, so every replica reaches the same state from the same log.

use crate::command::{
    CmdError, CmdErrorCode as Code, Command, Envelope, InstanceAction, Reply, Response, VolumeOp,
    PROTOCOL_VERSION,
};
use crate::resource::{Kind, Resource};
use andromede_api::v1::{
    ApiToken, Datacenter, Event, EventType, Flavor, GroupPolicy, Host, HostState, Image, Instance,
    InstanceState as IS, JoinToken, Project, Resources, ServerGroup, Usage, Volume,
    VolumeState as VS,
};
use andromede_model::{capacity, jurisdiction, lifecycle, policy, quota};
use andromede_placement::{GroupRule, Request, Snapshot, Strategy};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use crate::retention::EVENT_RING;
use crate::retention::{EventRing, REQUEST_ID_WINDOW_MS};

/// Everything the region knows. Cloned cheaply enough for snapshots of the scheduler's view.
#[derive(Debug, Default, Clone)]
pub struct State {
    pub datacenters: BTreeMap<String, Datacenter>,
    pub hosts: BTreeMap<String, Host>,
    pub flavors: BTreeMap<String, Flavor>,
    pub images: BTreeMap<String, Image>,
    pub projects: BTreeMap<String, Project>,
    pub instances: BTreeMap<String, Instance>,
    pub volumes: BTreeMap<String, Volume>,
    pub groups: BTreeMap<String, ServerGroup>,
    pub join_tokens: BTreeMap<String, JoinToken>,
    /// API tokens, revoked and expired ones included (so a caller learns which it is).
    pub api_tokens: BTreeMap<String, ApiToken>,
    /// Control-plane servers' declared datacenters: node id → datacenter id. Every server holds
    /// all the region's metadata, so each one must be where every project allows.
    pub replicas: BTreeMap<u64, String>,
    pub replicas_dirty: bool,
    /// `kind/project/name` → id, for unique names and lookups by name.
    pub names: HashMap<String, String>,
    /// `project/request_id` → what that create made, so retried creates return the first result.
    pub request_ids: HashMap<String, RequestId>,
    /// `(expires_at_ms, key)` of request ids whose resource is gone, soonest first.
    pub request_expiry: BTreeSet<(i64, String)>,
    /// Revision of the last event.
    pub revision: u64,
    pub events: EventRing,
    /// What the last apply changed, drained by the persistence layer.
    pub dirty: BTreeSet<(Kind, String)>,
    pub new_request_ids: Vec<(String, Option<RequestId>)>,
    pub new_events: Vec<Event>,
}

/// What a create with a client request id made (`kind:id`) and when. Once the resource is gone
/// the entry expires [`REQUEST_ID_WINDOW_MS`] after the create, or at the deletion if later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId {
    pub target: String,
    pub at_ms: i64,
    pub expires_at_ms: Option<i64>,
}

/// One changed row, serialized for its table; `None` in [`Changes::rows`] means deleted.
#[derive(Debug, Clone)]
pub struct Row {
    pub project_id: String,
    pub name: String,
    pub generation: u64,
    pub body: String,
}

/// What a batch of applies changed, taken under the state lock and written without it.
#[derive(Debug, Default)]
pub struct Changes {
    pub rows: Vec<(Kind, String, Option<Row>)>,
    /// The replica locations as JSON, when they changed.
    pub replicas: Option<String>,
    /// Request ids recorded or changed (`Some`) and expired (`None`).
    pub request_ids: Vec<(String, Option<RequestId>)>,
    pub events: Vec<Event>,
    pub revision: u64,
}

fn row_of<T: Resource>(t: &BTreeMap<String, T>, id: &str) -> Option<Row> {
    t.get(id).map(|r| {
        let m = r.meta();
        Row {
            project_id: m.project_id.clone(),
            name: m.name.clone(),
            generation: m.generation,
            body: serde_json::to_string(r).unwrap_or_default(),
        }
    })
}

pub fn name_key(kind: Kind, project: &str, name: &str) -> String {
    format!("{}/{}/{}", kind.name(), project, name)
}

fn err(code: Code, msg: impl Into<String>) -> CmdError {
    CmdError::new(code, msg)
}

/// The map of one kind, chosen by type.
pub trait Table<T: Resource> {
    fn table(&self) -> &BTreeMap<String, T>;
    fn table_mut(&mut self) -> &mut BTreeMap<String, T>;
}

macro_rules! table {
    ($t:ty, $f:ident) => {
        impl Table<$t> for State {
            fn table(&self) -> &BTreeMap<String, $t> {
                &self.$f
            }
            fn table_mut(&mut self) -> &mut BTreeMap<String, $t> {
                &mut self.$f
            }
        }
    };
}
table!(Datacenter, datacenters);
table!(Host, hosts);
table!(Flavor, flavors);
table!(Image, images);
table!(Project, projects);
table!(Instance, instances);
table!(Volume, volumes);
table!(ServerGroup, groups);
table!(JoinToken, join_tokens);
table!(ApiToken, api_tokens);

impl Snapshot for State {
    fn hosts(&self) -> Box<dyn Iterator<Item = &Host> + '_> {
        Box::new(self.hosts.values())
    }
    fn hosts_from(&self, start: &str) -> Box<dyn Iterator<Item = &Host> + '_> {
        let start = start.to_string();
        Box::new(
            self.hosts
                .range(start.clone()..)
                .chain(self.hosts.range(..start))
                .map(|(_, h)| h),
        )
    }
    fn datacenter(&self, id: &str) -> Option<&Datacenter> {
        self.datacenters.get(id)
    }
    fn reserved(&self, _host_id: &str) -> Resources {
        Resources::default()
    }
}

impl State {
    /// Finds a resource by id, or by name within `project` (empty for cloud-wide kinds).
    pub fn find<T: Resource>(&self, project: &str, id_or_name: &str) -> Option<&T>
    where
        Self: Table<T>,
    {
        let t = <Self as Table<T>>::table(self);
        if let Some(r) = t.get(id_or_name) {
            return Some(r);
        }
        self.names
            .get(&name_key(T::KIND, project, id_or_name))
            .and_then(|id| t.get(id))
    }

    fn get_mut<T: Resource>(&mut self, id: &str) -> Result<&mut T, CmdError>
    where
        Self: Table<T>,
    {
        <Self as Table<T>>::table_mut(self)
            .get_mut(id)
            .ok_or_else(|| CmdError::not_found(T::KIND.name(), id))
    }

    fn get<T: Resource>(&self, id: &str) -> Result<&T, CmdError>
    where
        Self: Table<T>,
    {
        <Self as Table<T>>::table(self)
            .get(id)
            .ok_or_else(|| CmdError::not_found(T::KIND.name(), id))
    }

    /// Inserts a new resource, enforcing a unique id and a unique name in its scope.
    fn insert<T: Resource>(&mut self, mut r: T, at_ms: i64) -> Result<T, CmdError>
    where
        Self: Table<T>,
    {
        let m = r.meta_mut();
        m.generation = 1;
        m.created_at_ms = at_ms;
        m.updated_at_ms = at_ms;
        let (id, project, name) = (m.id.clone(), m.project_id.clone(), m.name.clone());
        let key = name_key(T::KIND, &project, &name);
        if self.names.contains_key(&key) {
            return Err(err(
                Code::AlreadyExists,
                format!("a {} named {name:?} already exists", T::KIND.name()),
            )
            .field("name"));
        }
        if <Self as Table<T>>::table(self).contains_key(&id) {
            return Err(err(Code::AlreadyExists, format!("id {id} already in use")));
        }
        let req = r.meta().request_id.clone();
        if !req.is_empty() {
            let k = format!("{project}/{req}");
            let v = RequestId {
                target: format!("{}:{id}", T::KIND.name()),
                at_ms,
                expires_at_ms: None,
            };
            // A create reusing the id of a deleted resource takes the entry over.
            if let Some(old) = self.request_ids.insert(k.clone(), v.clone()) {
                if let Some(t) = old.expires_at_ms {
                    self.request_expiry.remove(&(t, k.clone()));
                }
            }
            self.new_request_ids.push((k, Some(v)));
        }
        self.names.insert(key, id.clone());
        <Self as Table<T>>::table_mut(self).insert(id.clone(), r.clone());
        self.touched::<T>(&id, EventType::Created, at_ms);
        Ok(r)
    }

    /// Bumps the generation of a changed resource and records it for persistence and watchers.
    fn updated<T: Resource>(&mut self, id: &str, at_ms: i64) -> T
    where
        Self: Table<T>,
    {
        if let Some(r) = <Self as Table<T>>::table_mut(self).get_mut(id) {
            let m = r.meta_mut();
            m.generation += 1;
            m.updated_at_ms = at_ms;
        }
        self.touched::<T>(id, EventType::Updated, at_ms);
        <Self as Table<T>>::table(self)
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    fn remove<T: Resource>(&mut self, id: &str, at_ms: i64) -> Option<T>
    where
        Self: Table<T>,
    {
        let r = <Self as Table<T>>::table_mut(self).remove(id)?;
        let m = r.meta();
        self.names
            .remove(&name_key(T::KIND, &m.project_id, &m.name));
        self.dirty.insert((T::KIND, id.to_string()));
        self.push_event(EventType::Deleted, &r, at_ms);
        self.request_id_orphaned(T::KIND, &m.project_id, &m.request_id, id, at_ms);
        Some(r)
    }

    /// Starts the expiry of the request id that created a now deleted resource.
    fn request_id_orphaned(&mut self, kind: Kind, project: &str, req: &str, id: &str, at_ms: i64) {
        if req.is_empty() {
            return;
        }
        let k = format!("{project}/{req}");
        let Some(e) = self.request_ids.get_mut(&k) else {
            return;
        };
        if e.expires_at_ms.is_some() || e.target != format!("{}:{id}", kind.name()) {
            return;
        }
        let t = e.at_ms.saturating_add(REQUEST_ID_WINDOW_MS).max(at_ms);
        e.expires_at_ms = Some(t);
        let e = e.clone();
        self.request_expiry.insert((t, k.clone()));
        self.new_request_ids.push((k, Some(e)));
    }

    /// Forgets the request ids whose time has come, by the envelope's clock (never a local one).
    fn expire_request_ids(&mut self, now_ms: i64) {
        while let Some((t, k)) = self.request_expiry.first().cloned() {
            if t > now_ms {
                break;
            }
            self.request_expiry.pop_first();
            if self
                .request_ids
                .get(&k)
                .is_some_and(|e| e.expires_at_ms == Some(t))
            {
                self.request_ids.remove(&k);
                self.new_request_ids.push((k, None));
            }
        }
    }

    /// Rebuilds the expiry order after loading request ids from disk. Entries from before
    /// expiry was recorded whose resource is gone get the window counted from their create.
    pub fn reindex_request_ids(&mut self) {
        self.request_expiry.clear();
        let orphans: Vec<String> = self
            .request_ids
            .iter()
            .filter(|(_, e)| e.expires_at_ms.is_none() && self.target(&e.target).is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for k in orphans {
            if let Some(e) = self.request_ids.get_mut(&k) {
                e.expires_at_ms = Some(e.at_ms.saturating_add(REQUEST_ID_WINDOW_MS));
            }
        }
        for (k, e) in &self.request_ids {
            if let Some(t) = e.expires_at_ms {
                self.request_expiry.insert((t, k.clone()));
            }
        }
    }

    fn touched<T: Resource>(&mut self, id: &str, ty: EventType, at_ms: i64)
    where
        Self: Table<T>,
    {
        self.dirty.insert((T::KIND, id.to_string()));
        if let Some(r) = <Self as Table<T>>::table(self).get(id).cloned() {
            self.push_event(ty, &r, at_ms);
        }
    }

    fn push_event<T: Resource>(&mut self, ty: EventType, r: &T, at_ms: i64) {
        self.revision += 1;
        let json = crate::retention::event_json(r);
        let m = r.meta();
        let ev = Event {
            revision: self.revision,
            r#type: ty as i32,
            kind: T::KIND.name().into(),
            id: m.id.clone(),
            name: m.name.clone(),
            project_id: m.project_id.clone(),
            generation: m.generation,
            resource_json: json,
            at_ms,
        };
        self.events.push(ev.clone());
        self.new_events.push(ev);
    }

    /// Marks a token revoked (idempotent) and frees its name.
    fn revoke_token(&mut self, id: &str, at: i64) -> Result<ApiToken, CmdError> {
        let t = self.get::<ApiToken>(id)?;
        if t.revoked_at_ms != 0 {
            return Ok(t.clone());
        }
        // The cloud never locks its own operators out: another active cloud-admin token must
        // exist before the last one goes.
        let cloud_admin = |t: &ApiToken| {
            t.meta().project_id.is_empty()
                && t.role == andromede_api::v1::Role::Admin as i32
                && t.revoked_at_ms == 0
                && (t.expires_at_ms == 0 || at < t.expires_at_ms)
        };
        if cloud_admin(t)
            && !self
                .api_tokens
                .values()
                .any(|o| o.meta().id != id && cloud_admin(o))
        {
            return Err(err(
                Code::FailedPrecondition,
                "this is the last active cloud-admin token: create another one before revoking it",
            ));
        }
        let t = self.get_mut::<ApiToken>(id)?;
        t.revoked_at_ms = at;
        let m = t.meta().clone();
        self.names
            .remove(&name_key(Kind::ApiToken, &m.project_id, &m.name));
        Ok(self.updated::<ApiToken>(id, at))
    }

    /// The resource a create with this request id already made, if any.
    pub fn replay(&self, project: &str, request_id: &str) -> Option<Reply> {
        if request_id.is_empty() {
            return None;
        }
        let v = self.request_ids.get(&format!("{project}/{request_id}"))?;
        self.target(&v.target)
    }

    /// The resource a `kind:id` request-id target names, if it still exists.
    fn target(&self, target: &str) -> Option<Reply> {
        let (kind, id) = target.split_once(':')?;
        let r = match kind {
            "datacenter" => Reply::Datacenter(self.datacenters.get(id)?.clone()),
            "host" => Reply::Host(self.hosts.get(id)?.clone()),
            "flavor" => Reply::Flavor(self.flavors.get(id)?.clone()),
            "image" => Reply::Image(self.images.get(id)?.clone()),
            "project" => Reply::Project(self.projects.get(id)?.clone()),
            "instance" => Reply::Instance(self.instances.get(id)?.clone()),
            "volume" => Reply::Volume(self.volumes.get(id)?.clone()),
            "server_group" => Reply::ServerGroup(self.groups.get(id)?.clone()),
            "join_token" => Reply::JoinToken(self.join_tokens.get(id)?.clone()),
            "api_token" => Reply::ApiToken(self.api_tokens.get(id)?.clone()),
            _ => return None,
        };
        Some(r)
    }

    /// Applies one log entry. Errors are part of the replicated outcome, never a replica fault.
    pub fn apply(&mut self, env: &Envelope) -> Response {
        self.expire_request_ids(env.at_ms);
        if env.version > PROTOCOL_VERSION {
            // Refuse loudly: a newer leader wrote a command this build cannot interpret.
            return Response(Err(err(
                Code::FailedPrecondition,
                format!(
                    "command protocol v{} is newer than this server's v{PROTOCOL_VERSION}",
                    env.version
                ),
            )));
        }
        Response(self.apply_cmd(&env.cmd, env.at_ms))
    }

    fn apply_cmd(&mut self, cmd: &Command, at: i64) -> Result<Reply, CmdError> {
        match cmd {
            Command::CreateDatacenter(dc) => {
                if let Some(r) = self.replay("", &dc.meta().request_id) {
                    return Ok(r);
                }
                let mut dc = dc.clone();
                dc.jurisdictions = jurisdiction::jurisdictions_of(&dc.country);
                self.insert(dc, at).map(Reply::Datacenter)
            }
            Command::UpdateDatacenter {
                id,
                country,
                operator,
                certifications,
                status,
                expected_generation,
            } => {
                let dc: &mut Datacenter = self.get_mut(id)?;
                check_generation(dc.meta().generation, *expected_generation)?;
                if let Some(c) = country {
                    dc.country = c.clone();
                    dc.jurisdictions = jurisdiction::jurisdictions_of(c);
                }
                if let Some(o) = operator {
                    dc.operator = Some(o.clone());
                }
                if let Some(c) = certifications {
                    dc.certifications = c.clone();
                }
                if let Some(s) = status {
                    dc.status = *s as i32;
                }
                let reply = self.updated(id, at);
                self.recheck_compliance(at, |dc, _| dc == id);
                Ok(Reply::Datacenter(reply))
            }
            Command::DeleteDatacenter { id } => {
                if let Some(node) = self
                    .replicas
                    .iter()
                    .find(|(_, dc)| *dc == id)
                    .map(|(n, _)| n)
                {
                    return Err(err(
                        Code::FailedPrecondition,
                        format!("control-plane server {node} runs in this datacenter; locate it elsewhere or remove it from the cluster first"),
                    ));
                }
                let n = self
                    .hosts
                    .values()
                    .filter(|h| h.datacenter_id == *id)
                    .count();
                self.delete_if_unused::<Datacenter>(id, at, n, |n| {
                    format!("datacenter still has {n} host(s); delete them first")
                })
            }
            Command::RegisterHost(h) => {
                if let Some(r) = self.replay("", &h.meta().request_id) {
                    return Ok(r);
                }
                if !self.datacenters.contains_key(&h.datacenter_id) {
                    return Err(
                        CmdError::not_found("datacenter", &h.datacenter_id).field("datacenter")
                    );
                }
                let mut h = h.clone();
                h.used = Some(Resources::default());
                self.insert(h, at).map(Reply::Host)
            }
            Command::SetHostState { id, state } => {
                let h: &mut Host = self.get_mut(id)?;
                if h.state == *state as i32 {
                    return Ok(Reply::Host(h.clone()));
                }
                h.state = *state as i32;
                Ok(Reply::Host(self.updated(id, at)))
            }
            Command::DeleteHost { id } => {
                let n = self.instances.values().filter(|i| i.host_id == *id).count()
                    + self.volumes.values().filter(|v| v.host_id == *id).count();
                self.delete_if_unused::<Host>(id, at, n, |n| {
                    format!("host still holds {n} instance(s) or volume(s)")
                })
            }
            Command::CreateFlavor(f) => {
                if let Some(r) = self.replay("", &f.meta().request_id) {
                    return Ok(r);
                }
                self.insert(f.clone(), at).map(Reply::Flavor)
            }
            Command::DeleteFlavor { id } => Ok(self.delete_plain::<Flavor>(id, at)),
            Command::CreateImage(i) => {
                if let Some(r) = self.replay(&i.meta().project_id, &i.meta().request_id) {
                    return Ok(r);
                }
                self.insert(i.clone(), at).map(Reply::Image)
            }
            Command::DeleteImage { id } => {
                // Refused while used: an agent re-creates a guest's root disk from its image
                // after a restart, so a running guest must never lose it.
                let users = self.instance_names(|i| i.image_id == *id);
                self.delete_if_unused::<Image>(id, at, users.len(), |n| {
                    format!(
                        "image is used by {n} instance(s): {}; delete them first",
                        users.join(", ")
                    )
                })
            }
            Command::CreateProject(p) => {
                if let Some(r) = self.replay("", &p.meta().request_id) {
                    return Ok(r);
                }
                self.within_replicas(&p.policy.clone().unwrap_or_default())?;
                let mut p = p.clone();
                p.usage = Some(Usage::default());
                self.insert(p, at).map(Reply::Project)
            }
            Command::UpdateProject {
                id,
                policy: new_policy,
                quota: new_quota,
                description,
                expected_generation,
            } => {
                let p: &Project = self.get(id)?;
                check_generation(p.meta().generation, *expected_generation)?;
                if let Some(pol) = new_policy {
                    self.within_replicas(pol)?;
                    let offenders = self.offenders(id, pol);
                    if !offenders.is_empty() {
                        return Err(err(
                            Code::FailedPrecondition,
                            format!(
                                "the new policy ({}) would be violated by: {}",
                                policy::describe(pol),
                                offenders.join(", ")
                            ),
                        )
                        .field("policy"));
                    }
                }
                let p: &mut Project = self.get_mut(id)?;
                if let Some(pol) = new_policy {
                    p.policy = Some(pol.clone());
                }
                if let Some(q) = new_quota {
                    p.quota = Some(*q);
                }
                if let Some(d) = description {
                    p.description = d.clone();
                }
                let reply = self.updated(id, at);
                if new_policy.is_some() {
                    self.recheck_compliance(at, |_, project| project == id);
                }
                Ok(Reply::Project(reply))
            }
            Command::DeleteProject { id } => {
                // The refusal names what is left (a few of them), so the user knows what to delete.
                const NAMED: usize = 5;
                let owned = |m: &andromede_api::v1::Meta| m.project_id == *id;
                let mut left: Vec<String> = Vec::new();
                left.extend(
                    self.instances
                        .values()
                        .map(|i| i.meta())
                        .filter(|m| owned(m))
                        .map(|m| format!("instance {}", m.name)),
                );
                left.extend(
                    self.volumes
                        .values()
                        .map(|v| v.meta())
                        .filter(|m| owned(m))
                        .map(|m| format!("volume {}", m.name)),
                );
                left.extend(
                    self.groups
                        .values()
                        .map(|g| g.meta())
                        .filter(|m| owned(m))
                        .map(|m| format!("server group {}", m.name)),
                );
                left.sort();
                let project = self
                    .projects
                    .get(id)
                    .map_or_else(|| id.clone(), |p| p.meta().name.clone());
                let r = self.delete_if_unused::<Project>(id, at, left.len(), |n| {
                    let mut named = left[..n.min(NAMED)].join(", ");
                    if n > NAMED {
                        named.push_str(&format!(" and {} more", n - NAMED));
                    }
                    format!("project {project} still owns {named}; delete them first")
                })?;
                // A deleted project's tokens die with it.
                let tokens: Vec<String> = self
                    .api_tokens
                    .values()
                    .filter(|t| t.meta().project_id == *id && t.revoked_at_ms == 0)
                    .map(|t| t.meta().id.clone())
                    .collect();
                for t in tokens {
                    self.revoke_token(&t, at)?;
                }
                Ok(r)
            }
            Command::CreateInstance(inst) => self.create_instance(inst, at),
            Command::InstanceAction { id, action } => self.instance_action(id, *action, at),
            Command::ObserveInstances(obs) => {
                for (id, observed, reason) in obs {
                    self.observe_instance(id, *observed, reason, at);
                }
                Ok(Reply::Done)
            }
            Command::CreateServerGroup(g) => {
                if let Some(r) = self.replay(&g.meta().project_id, &g.meta().request_id) {
                    return Ok(r);
                }
                self.get::<Project>(&g.meta().project_id)
                    .map_err(|e| e.field("project"))?;
                let mut g = g.clone();
                g.members.clear();
                self.insert(g, at).map(Reply::ServerGroup)
            }
            Command::DeleteServerGroup { id } => {
                let users = self.instance_names(|i| i.server_group_id == *id);
                self.delete_if_unused::<ServerGroup>(id, at, users.len(), |n| {
                    format!(
                        "server group still has {n} member(s): {}; delete them first",
                        users.join(", ")
                    )
                })
            }
            Command::CreateVolume(v) => self.create_volume(v, at),
            Command::VolumeOp {
                id,
                op,
                instance_id,
            } => self.volume_op(id, *op, instance_id, at),
            Command::ObserveVolumes(obs) => {
                for (id, observed, reason) in obs {
                    self.observe_volume(id, *observed, reason, at);
                }
                Ok(Reply::Done)
            }
            Command::CreateApiToken(t) => {
                let p = &t.meta().project_id;
                if let Some(r) = self.replay(p, &t.meta().request_id) {
                    return Ok(r);
                }
                if !p.is_empty() {
                    self.get::<Project>(p).map_err(|e| e.field("project"))?;
                }
                self.insert(t.clone(), at).map(Reply::ApiToken)
            }
            Command::RevokeApiToken { id } => self.revoke_token(id, at).map(Reply::ApiToken),
            Command::CreateJoinToken(t) => {
                self.get::<Datacenter>(&t.datacenter_id)
                    .map_err(|e| e.field("datacenter"))?;
                self.insert(t.clone(), at).map(Reply::JoinToken)
            }
            Command::EnrollHost {
                token_id,
                secret_sha256,
                host,
            } => self.enroll_host(token_id, secret_sha256, host, at),
            Command::HostLost { id, reason } => self.host_lost(id, reason, at),
            Command::HostSeen {
                id,
                capacity,
                driver,
                agent_version,
            } => {
                let h: &mut Host = self.get_mut(id)?;
                let mut changed = false;
                if h.state == HostState::Down as i32 {
                    h.state = HostState::Up as i32;
                    changed = true;
                }
                if capacity.is_some() && h.capacity != *capacity {
                    h.capacity = *capacity;
                    changed = true;
                }
                if h.driver != *driver || h.agent_version != *agent_version {
                    h.driver = driver.clone();
                    h.agent_version = agent_version.clone();
                    changed = true;
                }
                if !changed {
                    return Ok(Reply::Host(h.clone()));
                }
                Ok(Reply::Host(self.updated(id, at)))
            }
            Command::DeclareHostLost { id } => self.declare_host_lost(id, at),
            Command::ExtendVolume { id, size_gib } => self.extend_volume(id, *size_gib, at),
            Command::LocateReplica {
                node_id,
                datacenter_id,
            } => {
                let dc: &Datacenter = self.get(datacenter_id).map_err(|e| e.field("datacenter"))?;
                let excluded: Vec<String> = self
                    .projects
                    .values()
                    .filter_map(|p| {
                        let pol = p.policy.clone().unwrap_or_default();
                        policy::verdict(&pol, datacenter_id, Some(dc))
                            .err()
                            .map(|d| format!("{} ({d})", p.meta().name))
                    })
                    .collect();
                if !excluded.is_empty() {
                    return Err(err(
                        Code::FailedPrecondition,
                        format!(
                            "server {node_id} cannot hold the region's metadata in datacenter {} ({}): the policy of project(s) {} excludes it",
                            dc.meta().name,
                            dc.country,
                            excluded.join(", ")
                        ),
                    )
                    .field("datacenter"));
                }
                self.replicas.insert(*node_id, datacenter_id.clone());
                self.replicas_dirty = true;
                Ok(Reply::Done)
            }
            Command::ForgetReplica { node_id } => {
                if self.replicas.remove(node_id).is_some() {
                    self.replicas_dirty = true;
                }
                Ok(Reply::Done)
            }
            Command::HostOrphans { id, orphans } => {
                let h: &mut Host = self.get_mut(id)?;
                if h.orphans == *orphans {
                    return Ok(Reply::Host(h.clone()));
                }
                h.orphans = orphans.clone();
                Ok(Reply::Host(self.updated(id, at)))
            }
            Command::HostCertificate {
                id,
                serial,
                not_after_ms,
            } => {
                let h: &mut Host = self.get_mut(id)?;
                if h.cert_serial == *serial {
                    return Ok(Reply::Host(h.clone()));
                }
                h.previous_cert_serial = std::mem::replace(&mut h.cert_serial, serial.clone());
                h.cert_not_after_ms = *not_after_ms;
                Ok(Reply::Host(self.updated(id, at)))
            }
        }
    }

    /// Flags (or clears) every instance and volume matching `which(datacenter, project)` whose
    /// project's policy no longer allows its datacenter, after a datacenter or a policy changed.
    /// Flagged resources stay where they are: nothing is moved silently.
    fn recheck_compliance(&mut self, at: i64, which: impl Fn(&str, &str) -> bool) {
        let verdict = |s: &Self, dc_id: &str, project_id: &str| -> String {
            let pol = s
                .projects
                .get(project_id)
                .and_then(|p| p.policy.clone())
                .unwrap_or_default();
            let dc = s.datacenters.get(dc_id);
            policy::verdict(&pol, dc_id, dc)
                .err()
                .map(|d| match dc {
                    Some(dc) => format!("datacenter {} is no longer allowed: {d}", dc.meta().name),
                    None => format!("not provably allowed: {d}"),
                })
                .unwrap_or_default()
        };
        let changed_i: Vec<(String, String)> = self
            .instances
            .iter()
            .filter(|(_, i)| which(&i.datacenter_id, &i.meta().project_id))
            .map(|(id, i)| (id, i, verdict(self, &i.datacenter_id, &i.meta().project_id)))
            .filter(|(_, i, v)| *v != i.non_compliant_reason)
            .map(|(id, _, v)| (id.clone(), v))
            .collect();
        let changed_v: Vec<(String, String)> = self
            .volumes
            .iter()
            .filter(|(_, x)| which(&x.datacenter_id, &x.meta().project_id))
            .map(|(id, x)| (id, x, verdict(self, &x.datacenter_id, &x.meta().project_id)))
            .filter(|(_, x, v)| *v != x.non_compliant_reason)
            .map(|(id, _, v)| (id.clone(), v))
            .collect();
        for (id, v) in changed_i {
            if let Some(i) = self.instances.get_mut(&id) {
                i.non_compliant_reason = v;
                self.updated::<Instance>(&id, at);
            }
        }
        for (id, v) in changed_v {
            if let Some(x) = self.volumes.get_mut(&id) {
                x.non_compliant_reason = v;
                self.updated::<Volume>(&id, at);
            }
        }
    }

    /// Refuses a project policy that a located control-plane server falls outside of: that
    /// server holds the project's names, user-data and keys too.
    fn within_replicas(&self, pol: &andromede_api::v1::SovereigntyPolicy) -> Result<(), CmdError> {
        for (node, dc_id) in &self.replicas {
            let dc = self.datacenters.get(dc_id);
            if let Err(d) = policy::verdict(pol, dc_id, dc) {
                let place = dc.map_or_else(
                    || format!("datacenter {dc_id}"),
                    |dc| format!("datacenter {} ({})", dc.meta().name, dc.country),
                );
                return Err(err(
                    Code::FailedPrecondition,
                    format!(
                        "the policy ({}) excludes control-plane server {node} in {place}, which holds every project's metadata: {d}",
                        policy::describe(pol),
                    ),
                )
                .field("policy"));
            }
        }
        Ok(())
    }

    /// Judges a presented join token: `Ok(Some(host))` when the agent that already used it
    /// retries (same credential) after a lost answer, `Ok(None)` when it can enroll a host now.
    /// The API asks this before proposing an enrollment, and apply asks again.
    pub fn join_token_check(
        &self,
        token_id: &str,
        secret_sha256: &str,
        credential_sha256: &str,
        at: i64,
    ) -> Result<Option<Host>, CmdError> {
        let denied = |m: &str| err(Code::PermissionDenied, m).field("join_token");
        let Some(t) = self.join_tokens.get(token_id) else {
            return Err(denied("join token not recognised"));
        };
        if t.secret_sha256 != secret_sha256 {
            return Err(denied("join token not recognised"));
        }
        if let Some(h) = self.hosts.get(&t.used_by_host) {
            if !credential_sha256.is_empty() && h.credential_sha256 == credential_sha256 {
                return Ok(Some(h.clone()));
            }
        }
        if !t.used_by_host.is_empty() {
            return Err(denied("join token already used (tokens are single-use)"));
        }
        if at >= t.expires_at_ms {
            return Err(denied("join token expired; ask an admin for a new one"));
        }
        Ok(None)
    }

    fn enroll_host(
        &mut self,
        token_id: &str,
        secret_sha256: &str,
        host: &Host,
        at: i64,
    ) -> Result<Reply, CmdError> {
        if let Some(h) =
            self.join_token_check(token_id, secret_sha256, &host.credential_sha256, at)?
        {
            return Ok(Reply::Host(h));
        }
        let Some(t) = self.join_tokens.get(token_id) else {
            return Err(CmdError::not_found("join token", token_id));
        };
        let dc = t.datacenter_id.clone();
        if !self.datacenters.contains_key(&dc) {
            return Err(CmdError::not_found("datacenter", &dc));
        }
        let mut h = host.clone();
        h.datacenter_id = dc;
        h.used = Some(Resources::default());
        h.state = HostState::Up as i32;
        h.simulated = false;
        let h = self.insert(h, at).map_err(|e| match e.field {
            Some(_) => e.field("hostname"),
            None => e,
        })?;
        if let Some(t) = self.join_tokens.get_mut(token_id) {
            t.used_by_host = h.meta().id.clone();
            self.updated::<JoinToken>(token_id, at);
        }
        Ok(Reply::Host(h))
    }

    fn host_lost(&mut self, id: &str, reason: &str, at: i64) -> Result<Reply, CmdError> {
        let h: &mut Host = self.get_mut(id)?;
        if h.state == HostState::Down as i32 {
            return Ok(Reply::Host(h.clone()));
        }
        h.state = HostState::Down as i32;
        let lost: Vec<String> = self
            .instances
            .values()
            .filter(|i| i.host_id == id)
            .filter(|i| {
                !matches!(
                    IS::try_from(i.state),
                    Ok(IS::Deleting | IS::Deleted | IS::Pending | IS::HostLost)
                )
            })
            .map(|i| i.meta().id.clone())
            .collect();
        for i in lost {
            if let Some(inst) = self.instances.get_mut(&i) {
                inst.state = IS::HostLost as i32;
                inst.state_reason = reason.to_string();
                self.updated::<Instance>(&i, at);
            }
        }
        Ok(Reply::Host(self.updated(id, at)))
    }

    fn declare_host_lost(&mut self, id: &str, at: i64) -> Result<Reply, CmdError> {
        let h: &Host = self.get(id)?;
        if h.state != HostState::Down as i32 {
            return Err(err(
                Code::FailedPrecondition,
                "only a down host can be declared lost (its agent must have missed its heartbeats)",
            ));
        }
        let deleting: Vec<String> = self
            .instances
            .values()
            .filter(|i| i.host_id == id && i.state == IS::Deleting as i32)
            .map(|i| i.meta().id.clone())
            .collect();
        for i in deleting {
            self.release_instance(&i, at);
        }
        let vols: Vec<String> = self
            .volumes
            .values()
            .filter(|v| v.host_id == id && v.state == VS::Deleting as i32)
            .map(|v| v.meta().id.clone())
            .collect();
        for v in vols {
            self.release_volume(&v, at);
        }
        Ok(Reply::Host(self.hosts.get(id).cloned().unwrap_or_default()))
    }

    fn extend_volume(&mut self, id: &str, size_gib: u64, at: i64) -> Result<Reply, CmdError> {
        let v: &Volume = self.get(id)?;
        if size_gib <= v.size_gib {
            return Err(err(
                Code::InvalidArgument,
                format!(
                    "must be larger than the current {} GiB (volumes never shrink)",
                    v.size_gib
                ),
            )
            .field("size_gib"));
        }
        if !matches!(VS::try_from(v.state), Ok(VS::Available | VS::InUse)) {
            return Err(err(
                Code::FailedPrecondition,
                format!(
                    "cannot extend a volume that is {}",
                    lifecycle::volume_state_name(VS::try_from(v.state).unwrap_or(VS::Error))
                ),
            ));
        }
        let grow = size_gib - v.size_gib;
        let project: &Project = self.get(&v.meta().project_id)?;
        let delta = Usage {
            volume_gib: grow,
            ..Default::default()
        };
        quota::check(
            project.quota.as_ref(),
            &project.usage.unwrap_or_default(),
            &delta,
        )
        .map_err(|q| err(Code::ResourceExhausted, q))?;
        let res = Resources {
            disk_gib: grow,
            ..Default::default()
        };
        let host: &Host = self.get(&v.host_id)?;
        let free = capacity::free(host, &Resources::default());
        if capacity::shortfall(&free, &res).is_some() {
            return Err(err(
                Code::ResourceExhausted,
                format!(
                    "host {} has {} GiB of disk free, {grow} GiB more are needed",
                    host.meta().name,
                    free.disk_gib
                ),
            )
            .field("size_gib"));
        }
        let (host_id, project_id) = (v.host_id.clone(), v.meta().project_id.clone());
        let v: &mut Volume = self.get_mut(id)?;
        v.size_gib = size_gib;
        let v = self.updated::<Volume>(id, at);
        self.charge_host(&host_id, &res, true, at);
        self.charge_project(&project_id, &delta, true, at);
        Ok(Reply::Volume(v))
    }

    /// Deletes a resource nothing depends on any more; `blockers` counts what still does.
    fn delete_if_unused<T: Resource>(
        &mut self,
        id: &str,
        at: i64,
        blockers: usize,
        why: impl FnOnce(usize) -> String,
    ) -> Result<Reply, CmdError>
    where
        Self: Table<T>,
    {
        if blockers > 0 && <Self as Table<T>>::table(self).contains_key(id) {
            return Err(err(Code::FailedPrecondition, why(blockers)));
        }
        Ok(self.delete_plain::<T>(id, at))
    }

    fn delete_plain<T: Resource>(&mut self, id: &str, at: i64) -> Reply
    where
        Self: Table<T>,
    {
        let existed = self.remove::<T>(id, at).is_some();
        Reply::Deleted {
            id: id.to_string(),
            existed,
        }
    }

    /// The instances `uses` selects, as "name (project P)", for a refusal that names them.
    fn instance_names(&self, uses: impl Fn(&Instance) -> bool) -> Vec<String> {
        self.instances
            .values()
            .filter(|i| uses(i))
            .map(|i| {
                let project = self
                    .projects
                    .get(&i.meta().project_id)
                    .map_or(i.meta().project_id.as_str(), |p| p.meta().name.as_str());
                format!("{} (project {project})", i.meta().name)
            })
            .collect()
    }

    /// Resources of a project that a candidate policy would not allow, as "kind name (reason)".
    pub fn offenders(
        &self,
        project_id: &str,
        pol: &andromede_api::v1::SovereigntyPolicy,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |kind: &str, name: &str, dc_id: &str| {
            if let Err(d) = policy::verdict(pol, dc_id, self.datacenters.get(dc_id)) {
                out.push(format!("{kind} {name} ({d})"));
            }
        };
        for i in self
            .instances
            .values()
            .filter(|i| i.meta().project_id == project_id)
        {
            check("instance", &i.meta().name, &i.datacenter_id);
        }
        for v in self
            .volumes
            .values()
            .filter(|v| v.meta().project_id == project_id)
        {
            check("volume", &v.meta().name, &v.datacenter_id);
        }
        out
    }

    /// The group rule a new member of `group_id` must respect.
    pub fn group_rule(&self, group_id: &str) -> Option<GroupRule> {
        let g = self.groups.get(group_id)?;
        Some(GroupRule {
            policy: GroupPolicy::try_from(g.policy).unwrap_or(GroupPolicy::AntiAffinity),
            hard: g.hard,
            member_hosts: g
                .members
                .iter()
                .filter_map(|m| self.instances.get(m))
                .map(|i| i.host_id.clone())
                .collect(),
        })
    }

    fn create_instance(&mut self, inst: &Instance, at: i64) -> Result<Reply, CmdError> {
        let m = inst.meta();
        if let Some(r) = self.replay(&m.project_id, &m.request_id) {
            return Ok(r);
        }
        let project: &Project = self.get(&m.project_id).map_err(|e| e.field("project"))?;
        let res = inst.resources.unwrap_or_default();
        let delta = instance_usage(&res);
        quota::check(
            project.quota.as_ref(),
            &project.usage.unwrap_or_default(),
            &delta,
        )
        .map_err(|q| err(Code::ResourceExhausted, q))?;
        let pol = project.policy.clone().unwrap_or_default();
        if self
            .names
            .contains_key(&name_key(Kind::Instance, &m.project_id, &m.name))
        {
            return Err(err(
                Code::AlreadyExists,
                format!("an instance named {:?} already exists", m.name),
            )
            .field("name"));
        }
        let group = if inst.server_group_id.is_empty() {
            None
        } else {
            let g: &ServerGroup = self
                .get(&inst.server_group_id)
                .map_err(|e| e.field("server_group"))?;
            if g.meta().project_id != m.project_id {
                return Err(CmdError::not_found("server group", &inst.server_group_id)
                    .field("server_group"));
            }
            self.group_rule(&inst.server_group_id)
        };
        let host: &Host = self.get(&inst.host_id)?;
        let constraints = inst.constraints.clone().unwrap_or_default();
        let req = Request {
            policy: &pol,
            constraints: &constraints,
            resources: res,
            group,
            pin_host: None,
            strategy: Strategy::Spread,
        };
        andromede_placement::verify(self, &req, host)
            .map_err(|why| err(Code::Aborted, format!("placement no longer valid: {why}")))?;
        let mut inst = inst.clone();
        inst.datacenter_id = host.datacenter_id.clone();
        inst.country = self
            .datacenters
            .get(&host.datacenter_id)
            .map(|d| d.country.clone())
            .unwrap_or_default();
        inst.state = IS::Scheduled as i32;
        let host_id = inst.host_id.clone();
        let project_id = m.project_id.clone();
        let group_id = inst.server_group_id.clone();
        let inst = self.insert(inst, at)?;
        self.charge_host(&host_id, &res, true, at);
        self.charge_project(&project_id, &delta, true, at);
        if !group_id.is_empty() {
            if let Ok(g) = self.get_mut::<ServerGroup>(&group_id) {
                g.members.push(inst.meta().id.clone());
                self.updated::<ServerGroup>(&group_id, at);
            }
        }
        Ok(Reply::Instance(inst))
    }

    fn charge_host(&mut self, host_id: &str, res: &Resources, add: bool, at: i64) {
        if let Some(h) = self.hosts.get_mut(host_id) {
            let used = h.used.unwrap_or_default();
            h.used = Some(if add {
                capacity::add(&used, res)
            } else {
                capacity::sub(&used, res)
            });
            self.updated::<Host>(host_id, at);
        }
    }

    fn charge_project(&mut self, project_id: &str, delta: &Usage, add: bool, at: i64) {
        if let Some(p) = self.projects.get_mut(project_id) {
            let used = p.usage.unwrap_or_default();
            p.usage = Some(if add {
                quota::add(&used, delta)
            } else {
                quota::sub(&used, delta)
            });
            self.updated::<Project>(project_id, at);
        }
    }

    fn instance_action(
        &mut self,
        id: &str,
        action: InstanceAction,
        at: i64,
    ) -> Result<Reply, CmdError> {
        let inst: &mut Instance = self.get_mut(id)?;
        let from = IS::try_from(inst.state).unwrap_or(IS::Error);
        let a = match action {
            InstanceAction::Start => lifecycle::Action::Start,
            InstanceAction::Stop => lifecycle::Action::Stop,
            InstanceAction::Reboot => lifecycle::Action::Reboot,
            InstanceAction::Delete => lifecycle::Action::Delete,
        };
        match lifecycle::request(from, a)
            .map_err(|e| err(Code::FailedPrecondition, e.to_string()))?
        {
            lifecycle::Outcome::AlreadySatisfied => Ok(Reply::Instance(inst.clone())),
            lifecycle::Outcome::Queued(to) => {
                inst.state = to as i32;
                inst.state_reason.clear();
                inst.intent = match action {
                    InstanceAction::Stop => andromede_api::v1::PowerIntent::Stopped,
                    InstanceAction::Delete => andromede_api::v1::PowerIntent::Deleted,
                    _ => andromede_api::v1::PowerIntent::Running,
                } as i32;
                if action == InstanceAction::Reboot {
                    inst.reboot_serial += 1;
                }
                Ok(Reply::Instance(self.updated(id, at)))
            }
        }
    }

    fn observe_instance(&mut self, id: &str, observed: IS, reason: &str, at: i64) {
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        let from = IS::try_from(inst.state).unwrap_or(IS::Error);
        let Some(to) = lifecycle::observe(from, observed) else {
            return;
        };
        if to == IS::Deleted {
            self.release_instance(id, at);
            return;
        }
        inst.state = to as i32;
        inst.state_reason = reason.to_string();
        self.updated::<Instance>(id, at);
    }

    /// Frees everything a deleted instance held and forgets it.
    fn release_instance(&mut self, id: &str, at: i64) {
        let Some(inst) = self.remove::<Instance>(id, at) else {
            return;
        };
        let res = inst.resources.unwrap_or_default();
        self.charge_host(&inst.host_id, &res, false, at);
        let delta = instance_usage(&res);
        self.charge_project(&inst.meta().project_id, &delta, false, at);
        if let Some(g) = self.groups.get_mut(&inst.server_group_id) {
            g.members.retain(|m| m != id);
            self.updated::<ServerGroup>(&inst.server_group_id, at);
        }
        let attached: Vec<String> = self
            .volumes
            .values()
            .filter(|v| v.attached_to == id)
            .map(|v| v.meta().id.clone())
            .collect();
        for v in attached {
            if let Some(vol) = self.volumes.get_mut(&v) {
                vol.attached_to.clear();
                vol.state = VS::Available as i32;
                self.updated::<Volume>(&v, at);
            }
        }
    }

    fn create_volume(&mut self, v: &Volume, at: i64) -> Result<Reply, CmdError> {
        let m = v.meta();
        if let Some(r) = self.replay(&m.project_id, &m.request_id) {
            return Ok(r);
        }
        let project: &Project = self.get(&m.project_id).map_err(|e| e.field("project"))?;
        let delta = volume_usage(v.size_gib);
        quota::check(
            project.quota.as_ref(),
            &project.usage.unwrap_or_default(),
            &delta,
        )
        .map_err(|q| err(Code::ResourceExhausted, q))?;
        let pol = project.policy.clone().unwrap_or_default();
        let host: &Host = self.get(&v.host_id)?;
        let constraints = v.constraints.clone().unwrap_or_default();
        let res = Resources {
            disk_gib: v.size_gib,
            ..Default::default()
        };
        let req = Request {
            policy: &pol,
            constraints: &constraints,
            resources: res,
            group: None,
            pin_host: None,
            strategy: Strategy::Spread,
        };
        andromede_placement::verify(self, &req, host)
            .map_err(|why| err(Code::Aborted, format!("placement no longer valid: {why}")))?;
        let mut v = v.clone();
        v.datacenter_id = host.datacenter_id.clone();
        v.country = self
            .datacenters
            .get(&host.datacenter_id)
            .map(|d| d.country.clone())
            .unwrap_or_default();
        v.state = VS::Creating as i32;
        let (host_id, project_id) = (v.host_id.clone(), m.project_id.clone());
        let v = self.insert(v, at)?;
        self.charge_host(&host_id, &res, true, at);
        self.charge_project(&project_id, &delta, true, at);
        Ok(Reply::Volume(v))
    }

    fn volume_op(
        &mut self,
        id: &str,
        op: VolumeOp,
        instance_id: &str,
        at: i64,
    ) -> Result<Reply, CmdError> {
        let vol: &Volume = self.get(id)?;
        let from = VS::try_from(vol.state).unwrap_or(VS::Error);
        let action = match op {
            VolumeOp::Attach => lifecycle::VolumeAction::Attach,
            VolumeOp::Detach => lifecycle::VolumeAction::Detach,
            VolumeOp::Delete => lifecycle::VolumeAction::Delete,
        };
        if op == VolumeOp::Attach
            && vol.attached_to == instance_id
            && matches!(from, VS::InUse | VS::Attaching)
        {
            return Ok(Reply::Volume(vol.clone()));
        }
        let outcome = lifecycle::volume_request(from, action)
            .map_err(|e| err(Code::FailedPrecondition, e.to_string()))?;
        if op == VolumeOp::Attach {
            let inst: &Instance = self.get(instance_id).map_err(|e| e.field("instance"))?;
            if inst.meta().project_id != vol.meta().project_id {
                return Err(CmdError::not_found("instance", instance_id).field("instance"));
            }
            if inst.host_id != vol.host_id {
                return Err(err(
                    Code::FailedPrecondition,
                    format!(
                        "volume {} lives on host {} and instance {} on host {}: host-local volumes attach only on their own host (create the volume with near_instance)",
                        vol.meta().name, vol.host_id, inst.meta().name, inst.host_id
                    ),
                )
                .field("instance"));
            }
            if matches!(IS::try_from(inst.state), Ok(IS::Deleting | IS::Deleted)) {
                return Err(
                    err(Code::FailedPrecondition, "instance is being deleted").field("instance")
                );
            }
        }
        match outcome {
            lifecycle::VolumeOutcome::AlreadySatisfied => Ok(Reply::Volume(vol.clone())),
            lifecycle::VolumeOutcome::Queued(to) => {
                let vol: &mut Volume = self.get_mut(id)?;
                vol.state = to as i32;
                vol.state_reason.clear();
                // A detach keeps `attached_to` until the host confirms it, so the host knows
                // which guest to detach from.
                if op == VolumeOp::Attach {
                    vol.attached_to = instance_id.to_string();
                }
                Ok(Reply::Volume(self.updated(id, at)))
            }
        }
    }

    fn observe_volume(&mut self, id: &str, observed: VS, reason: &str, at: i64) {
        let Some(vol) = self.volumes.get_mut(id) else {
            return;
        };
        let from = VS::try_from(vol.state).unwrap_or(VS::Error);
        let Some(to) = lifecycle::observe_volume(from, observed) else {
            return;
        };
        if to == VS::Deleted {
            self.release_volume(id, at);
            return;
        }
        if to == VS::Available {
            vol.attached_to.clear();
        }
        vol.state = to as i32;
        vol.state_reason = reason.to_string();
        self.updated::<Volume>(id, at);
    }

    /// Frees what a deleted volume held and forgets it.
    fn release_volume(&mut self, id: &str, at: i64) {
        let Some(v) = self.remove::<Volume>(id, at) else {
            return;
        };
        let res = Resources {
            disk_gib: v.size_gib,
            ..Default::default()
        };
        self.charge_host(&v.host_id, &res, false, at);
        let delta = volume_usage(v.size_gib);
        self.charge_project(&v.meta().project_id, &delta, false, at);
    }

    /// Drains what changed since the last call.
    pub fn take_changes(&mut self) -> Changes {
        let rows = std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|(kind, id)| {
                let row = match kind {
                    Kind::Datacenter => row_of(&self.datacenters, &id),
                    Kind::Host => row_of(&self.hosts, &id),
                    Kind::Flavor => row_of(&self.flavors, &id),
                    Kind::Image => row_of(&self.images, &id),
                    Kind::Project => row_of(&self.projects, &id),
                    Kind::Instance => row_of(&self.instances, &id),
                    Kind::Volume => row_of(&self.volumes, &id),
                    Kind::ServerGroup => row_of(&self.groups, &id),
                    Kind::JoinToken => row_of(&self.join_tokens, &id),
                    Kind::ApiToken => row_of(&self.api_tokens, &id),
                };
                (kind, id, row)
            })
            .collect();
        let replicas = std::mem::take(&mut self.replicas_dirty)
            .then(|| serde_json::to_string(&self.replicas).unwrap_or_default());
        Changes {
            rows,
            replicas,
            request_ids: std::mem::take(&mut self.new_request_ids),
            events: std::mem::take(&mut self.new_events),
            revision: self.revision,
        }
    }

    /// Rebuilds the name and request-id indexes after loading tables from disk.
    pub fn reindex(&mut self) {
        self.names.clear();
        fn idx<T: Resource>(names: &mut HashMap<String, String>, t: &BTreeMap<String, T>) {
            for r in t.values() {
                let m = r.meta();
                names.insert(name_key(T::KIND, &m.project_id, &m.name), m.id.clone());
            }
        }
        idx(&mut self.names, &self.datacenters);
        idx(&mut self.names, &self.hosts);
        idx(&mut self.names, &self.flavors);
        idx(&mut self.names, &self.images);
        idx(&mut self.names, &self.projects);
        idx(&mut self.names, &self.instances);
        idx(&mut self.names, &self.volumes);
        idx(&mut self.names, &self.groups);
        idx(&mut self.names, &self.join_tokens);
        // A revoked token's name is free for a new one.
        for t in self.api_tokens.values().filter(|t| t.revoked_at_ms == 0) {
            let m = t.meta();
            self.names.insert(
                name_key(Kind::ApiToken, &m.project_id, &m.name),
                m.id.clone(),
            );
        }
    }
}

/// What one instance counts against its project's quota.
fn instance_usage(res: &Resources) -> Usage {
    Usage {
        instances: 1,
        vcpus: res.vcpus,
        memory_mib: res.memory_mib,
        ..Default::default()
    }
}

/// What one volume counts against its project's quota.
fn volume_usage(size_gib: u64) -> Usage {
    Usage {
        volumes: 1,
        volume_gib: size_gib,
        ..Default::default()
    }
}

fn check_generation(current: u64, expected: u64) -> Result<(), CmdError> {
    if expected != 0 && expected != current {
        return Err(err(
            Code::Aborted,
            format!("generation mismatch: expected {expected}, current {current}"),
        )
        .field("expected_generation"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "state/tests.rs"]
mod tests;
