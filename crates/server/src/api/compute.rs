//! ComputeService: instances (placed by the leader's scheduler) and server groups.

use super::paging::Page;
use super::{
    caller, check, find, list_in_project, meta, project_id, project_ref, stale, upper, Api,
};
use crate::error::ApiError;
use crate::node::Proposal;
use crate::reply;
use andromede_api::v1::compute_service_server::ComputeService;
use andromede_api::v1::*;
use andromede_model::{policy, validate as val, validate::Violations};
use andromede_store::command::InstanceAction as A;
use andromede_store::resource::Resource;
use andromede_store::{Command, State};
use tonic::{Request, Response, Status};

type R<T> = Result<Response<T>, Status>;

/// Validates constraints and resolves datacenter names to ids.
pub fn resolve_constraints(
    s: &State,
    v: &mut Violations,
    c: &Option<PlacementConstraints>,
) -> PlacementConstraints {
    let c = c.clone().unwrap_or_default();
    let countries = upper(&c.countries);
    v.countries("constraints.countries", &countries);
    v.list_len("constraints.datacenter_ids", &c.datacenter_ids);
    let mut ids = Vec::new();
    for (i, d) in c.datacenter_ids.iter().enumerate() {
        match s.find::<Datacenter>("", d) {
            Some(dc) => ids.push(dc.meta().id.clone()),
            None => v.add(
                format!("constraints.datacenter_ids[{i}]"),
                format!("datacenter {d:?} does not exist"),
            ),
        }
    }
    PlacementConstraints {
        countries,
        datacenter_ids: ids,
    }
}

/// Refuses constraints that would widen the project's policy, naming the policy.
pub fn check_within_policy(
    s: &State,
    p: &Project,
    c: &PlacementConstraints,
) -> Result<(), ApiError> {
    let pol = p.policy.clone().unwrap_or_default();
    policy::check_narrowing(&pol, c, |id| s.datacenters.get(id)).map_err(|w| {
        ApiError::refused(
            &w.field,
            format!(
                "{} is outside the sovereignty policy of project {} ({}); a request may only narrow its project's policy",
                w.value,
                p.meta().name,
                w.policy
            ),
        )
    })
}

impl Api {
    /// The instance as its API readers see it: user-data opened.
    fn opened(&self, r: R<Instance>) -> R<Instance> {
        r.map(|mut resp| {
            self.node.data_key.open_instance(resp.get_mut());
            resp
        })
    }

    async fn action(&self, r: Request<InstanceActionRequest>, a: A) -> R<Instance> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let inst: Instance = self.read(false, |s| find(s, &who, &r.r#ref)).await??;
        let cmd = Command::InstanceAction {
            id: inst.meta().id.clone(),
            action: a,
        };
        let rep = self.node.submit(Proposal::Cmd(cmd)).await?;
        self.opened(reply!(rep, Instance))
    }
}

#[tonic::async_trait]
impl ComputeService for Api {
    async fn create_instance(&self, r: Request<CreateInstanceRequest>) -> R<Instance> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let mut v = Violations::new();
        v.name("name", &r.name);
        project_ref(&mut v, &who, "project", &r.project);
        v.reference("flavor", &r.flavor);
        v.reference("image", &r.image);
        v.text("user_data", &r.user_data, val::MAX_USER_DATA);
        if r.ssh_keys.len() > val::MAX_SSH_KEYS {
            v.add("ssh_keys", format!("at most {} keys", val::MAX_SSH_KEYS));
        }
        for (i, k) in r.ssh_keys.iter().enumerate() {
            if k.is_empty() {
                v.add(format!("ssh_keys[{i}]"), "must not be empty");
            }
            v.text(&format!("ssh_keys[{i}]"), k, val::MAX_SSH_KEY);
        }
        v.optional_reference("server_group", &r.server_group);
        v.request_id("request_id", &r.request_id);
        check(v)?;
        self.node.read_barrier(false).await?;
        let inst = self.node.read(|s| -> Result<Instance, ApiError> {
            let mut v = Violations::new();
            let constraints = resolve_constraints(s, &mut v, &r.constraints);
            let pid = project_id(s, &who, "project", &r.project)?;
            let flavor = s.find::<Flavor>("", &r.flavor).cloned();
            if flavor.is_none() {
                v.add("flavor", format!("flavor {:?} does not exist", r.flavor));
            }
            let image = s
                .find::<Image>(&pid, &r.image)
                .or_else(|| s.find::<Image>("", &r.image))
                .filter(|i| i.meta().project_id.is_empty() || i.meta().project_id == pid)
                .cloned();
            if image.is_none() {
                v.add("image", format!("image {:?} does not exist", r.image));
            }
            let group = if r.server_group.is_empty() {
                String::new()
            } else {
                match super::project_group(s, &who, &pid, &r.server_group) {
                    Some(g) => g.meta().id.clone(),
                    None => {
                        v.add(
                            "server_group",
                            format!("server group {:?} does not exist", r.server_group),
                        );
                        String::new()
                    }
                }
            };
            check(v)?;
            let (Some(flavor), Some(image)) = (flavor, image) else {
                return Err(ApiError::Internal("flavor or image vanished".into()));
            };
            let project = s
                .projects
                .get(&pid)
                .ok_or_else(|| ApiError::NotFound(format!("project {pid} not found")))?;
            check_within_policy(s, project, &constraints)?;
            let meta = meta(&r.name, &pid, &r.request_id);
            let id = meta.as_ref().map(|m| m.id.clone()).unwrap_or_default();
            // Sealed before it is proposed: the log and the state only hold ciphertext.
            let user_data = self
                .node
                .data_key
                .seal(&id, &r.user_data)
                .map_err(|e| ApiError::Internal(format!("sealing user_data: {e}")))?;
            Ok(Instance {
                meta,
                flavor_id: flavor.meta().id.clone(),
                image_id: image.meta().id.clone(),
                user_data,
                ssh_keys: r.ssh_keys.clone(),
                server_group_id: group,
                constraints: Some(constraints),
                state: InstanceState::Pending as i32,
                resources: Some(Resources {
                    vcpus: flavor.vcpus,
                    memory_mib: flavor.memory_mib,
                    disk_gib: flavor.disk_gib.max(image.min_disk_gib),
                }),
                intent: PowerIntent::Running as i32,
                ..Default::default()
            })
        })?;
        let rep = self.node.submit(Proposal::PlaceInstance(inst)).await?;
        self.opened(reply!(rep, Instance))
    }

    async fn get_instance(&self, r: Request<GetRequest>) -> R<Instance> {
        self.opened(self.get(r).await)
    }

    async fn list_instances(&self, r: Request<ListRequest>) -> R<ListInstancesResponse> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let page = Page::new(r.page_size, &r.page_token)?;
        let (mut instances, next_page_token) = self
            .read(stale(&r.read), |s| {
                list_in_project::<Instance>(s, &who, &r.project, &page)
            })
            .await??;
        // User-data can be large (and secret): only GetInstance returns it.
        instances.iter_mut().for_each(|i| i.user_data.clear());
        Ok(Response::new(ListInstancesResponse {
            instances,
            next_page_token,
        }))
    }

    async fn start_instance(&self, r: Request<InstanceActionRequest>) -> R<Instance> {
        self.action(r, A::Start).await
    }

    async fn stop_instance(&self, r: Request<InstanceActionRequest>) -> R<Instance> {
        self.action(r, A::Stop).await
    }

    async fn reboot_instance(&self, r: Request<InstanceActionRequest>) -> R<Instance> {
        self.action(r, A::Reboot).await
    }

    async fn delete_instance(&self, r: Request<InstanceActionRequest>) -> R<Instance> {
        self.action(r, A::Delete).await
    }

    async fn get_console_log(&self, r: Request<GetConsoleLogRequest>) -> R<GetConsoleLogResponse> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let mut v = Violations::new();
        if r.max_bytes > 1 << 20 {
            v.add("max_bytes", "must be at most 1048576 (1 MiB)");
        }
        check(v)?;
        let max_bytes = if r.max_bytes == 0 {
            64 * 1024
        } else {
            r.max_bytes
        };
        let (inst, simulated) = self
            .read(false, |s| {
                let i: Instance = find(s, &who, &r.r#ref)?;
                let sim = s.hosts.get(&i.host_id).is_some_and(|h| h.simulated);
                Ok::<_, ApiError>((i, sim))
            })
            .await??;
        if simulated {
            return Err(ApiError::Precondition(format!(
                "instance {} runs on a simulated host, which has no console",
                inst.meta().name
            ))
            .into());
        }
        let id = inst.meta().id.clone();
        let mut last = ApiError::Unavailable("no Raft leader elected; retry later".into());
        for _ in 0..20 {
            let res = match self.node.leader() {
                Some((l, _)) if l == self.node.id => {
                    self.node
                        .agents
                        .console_log(&inst.host_id, &id, max_bytes)
                        .await
                }
                Some((_, addr)) => {
                    let req = ConsoleLogRequest {
                        request_id: 0,
                        instance_id: id.clone(),
                        max_bytes,
                    };
                    self.node.peers.console_log(&addr, req).await
                }
                None => Err(ApiError::NotLeader),
            };
            match res {
                Ok(data) => {
                    return Ok(Response::new(GetConsoleLogResponse {
                        data,
                        host_id: inst.host_id.clone(),
                    }))
                }
                Err(ApiError::NotLeader) => last = ApiError::NotLeader,
                Err(e) => return Err(e.into()),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(last.into())
    }

    async fn create_server_group(&self, r: Request<CreateServerGroupRequest>) -> R<ServerGroup> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let mut v = Violations::new();
        v.name("name", &r.name);
        project_ref(&mut v, &who, "project", &r.project);
        let gp = GroupPolicy::try_from(r.policy).ok();
        v.enum_value("policy", gp.is_some(), false, r.policy);
        v.request_id("request_id", &r.request_id);
        check(v)?;
        let pid = self
            .read(false, |s| project_id(s, &who, "project", &r.project))
            .await??;
        let g = ServerGroup {
            meta: meta(&r.name, &pid, &r.request_id),
            policy: r.policy,
            hard: r.hard,
            members: vec![],
        };
        let rep = self
            .node
            .submit(Proposal::Cmd(Command::CreateServerGroup(g)))
            .await?;
        reply!(rep, ServerGroup)
    }

    async fn get_server_group(&self, r: Request<GetRequest>) -> R<ServerGroup> {
        self.get(r).await
    }

    async fn list_server_groups(&self, r: Request<ListRequest>) -> R<ListServerGroupsResponse> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let page = Page::new(r.page_size, &r.page_token)?;
        let (server_groups, next_page_token) = self
            .read(stale(&r.read), |s| {
                list_in_project::<ServerGroup>(s, &who, &r.project, &page)
            })
            .await??;
        Ok(Response::new(ListServerGroupsResponse {
            server_groups,
            next_page_token,
        }))
    }

    async fn delete_server_group(&self, r: Request<DeleteRequest>) -> R<DeleteResponse> {
        self.delete::<ServerGroup>(r, |id| Command::DeleteServerGroup { id })
            .await
    }
}
