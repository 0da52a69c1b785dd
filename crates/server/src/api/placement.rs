//! PlacementService: the scheduler as a dry run, explaining every filter.

use super::compute::{check_within_policy, resolve_constraints};
use super::{caller, check, project_id, project_ref, Api};
use crate::error::ApiError;
use crate::node::PlanInput;
use andromede_api::v1::placement_service_server::PlacementService;
use andromede_api::v1::*;
use andromede_model::validate::{self as val, Violations};
use andromede_store::resource::Resource;
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl PlacementService for Api {
    async fn explain(
        &self,
        r: Request<ExplainRequest>,
    ) -> Result<Response<PlacementExplanation>, Status> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let mut v = Violations::new();
        project_ref(&mut v, &who, "project", &r.project);
        if r.flavor.is_empty() && r.volume_gib == 0 {
            v.add("flavor", "give a flavor (instance) or volume_gib (volume)");
        }
        if r.volume_gib > val::MAX_DISK_GIB {
            v.add(
                "volume_gib",
                format!("must be at most {}", val::MAX_DISK_GIB),
            );
        }
        check(v)?;
        self.node.read_barrier(false).await?;
        let (input, resources) = self.node.read(|s| -> Result<_, ApiError> {
            let mut v = Violations::new();
            let constraints = resolve_constraints(s, &mut v, &r.constraints);
            let pid = project_id(s, &who, "project", &r.project)?;
            let resources = if r.flavor.is_empty() {
                Resources {
                    disk_gib: r.volume_gib,
                    ..Default::default()
                }
            } else {
                match s.find::<Flavor>("", &r.flavor) {
                    Some(f) => Resources {
                        vcpus: f.vcpus,
                        memory_mib: f.memory_mib,
                        disk_gib: f.disk_gib,
                    },
                    None => {
                        v.add("flavor", format!("flavor {:?} does not exist", r.flavor));
                        Resources::default()
                    }
                }
            };
            let group = if r.server_group.is_empty() {
                None
            } else {
                let g = super::project_group(s, &who, &pid, &r.server_group);
                if g.is_none() {
                    v.add(
                        "server_group",
                        format!("server group {:?} does not exist", r.server_group),
                    );
                }
                g.and_then(|g| s.group_rule(&g.meta().id))
            };
            check(v)?;
            let project = s
                .projects
                .get(&pid)
                .ok_or_else(|| ApiError::NotFound(format!("project {pid} not found")))?;
            check_within_policy(s, project, &constraints)?;
            Ok((
                PlanInput {
                    policy: project.policy.clone().unwrap_or_default(),
                    constraints,
                    group,
                    pin_host: None,
                },
                resources,
            ))
        })?;
        let e = self.node.explain(input, resources);
        Ok(Response::new(PlacementExplanation {
            hosts_considered: e.hosts_considered,
            filters: e
                .filters
                .iter()
                .map(|f| FilterOutcome {
                    filter: f.name.to_string(),
                    excluded: f.excluded,
                    reasons: f.reasons.iter().map(|(r, n)| format!("{n} {r}")).collect(),
                })
                .collect(),
            // Tenants see datacenters, not the host inventory.
            chosen_host_id: e
                .chosen
                .as_ref()
                .filter(|_| who.confined_to().is_none())
                .map(|c| c.host_id.clone())
                .unwrap_or_default(),
            chosen_datacenter_id: e
                .chosen
                .as_ref()
                .map(|c| c.datacenter_id.clone())
                .unwrap_or_default(),
            candidates: e.candidates,
            summary: e.summary(),
        }))
    }
}
