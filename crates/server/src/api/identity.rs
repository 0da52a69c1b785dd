//! IdentityService: projects with their sovereignty policies and quotas.

use super::{check, find, meta, stale, upper, Api};
use crate::error::ApiError;
use crate::node::Proposal;
use crate::reply;
use andromede_api::v1::identity_service_server::IdentityService;
use andromede_api::v1::*;
use andromede_model::validate::Violations;
use andromede_store::resource::Resource;
use andromede_store::Command;
use tonic::{Request, Response, Status};

type R<T> = Result<Response<T>, Status>;

/// Validates and normalizes a policy (country codes upper-cased).
pub fn check_policy(v: &mut Violations, field: &str, p: &SovereigntyPolicy) -> SovereigntyPolicy {
    let p = SovereigntyPolicy {
        allowed_countries: upper(&p.allowed_countries),
        allowed_jurisdictions: upper(&p.allowed_jurisdictions),
        required_certifications: p.required_certifications.clone(),
        operator_immunity: p.operator_immunity,
    };
    v.countries(&format!("{field}.allowed_countries"), &p.allowed_countries);
    v.jurisdictions(
        &format!("{field}.allowed_jurisdictions"),
        &p.allowed_jurisdictions,
    );
    v.labels(
        &format!("{field}.required_certifications"),
        &p.required_certifications,
    );
    p
}

#[tonic::async_trait]
impl IdentityService for Api {
    async fn create_project(&self, r: Request<CreateProjectRequest>) -> R<Project> {
        let r = r.into_inner();
        let mut v = Violations::new();
        v.name("name", &r.name);
        v.text("description", &r.description, 1024);
        let policy = check_policy(&mut v, "policy", &r.policy.unwrap_or_default());
        v.request_id("request_id", &r.request_id);
        check(v)?;
        let p = Project {
            meta: meta(&r.name, "", &r.request_id),
            policy: Some(policy),
            quota: r.quota,
            usage: None,
            description: r.description,
        };
        let rep = self
            .node
            .submit(Proposal::Cmd(Command::CreateProject(p)))
            .await?;
        reply!(rep, Project)
    }

    async fn update_project(&self, r: Request<UpdateProjectRequest>) -> R<Project> {
        let r = r.into_inner();
        let mut v = Violations::new();
        let policy = r.policy.as_ref().map(|p| check_policy(&mut v, "policy", p));
        if let Some(d) = &r.description {
            v.text("description", d, 1024);
        }
        check(v)?;
        let p: Project = self.read(false, |s| find(s, &r.r#ref)).await??;
        let cmd = Command::UpdateProject {
            id: p.meta().id.clone(),
            policy,
            quota: r.quota,
            description: r.description,
            expected_generation: r.expected_generation,
        };
        let rep = self.node.submit(Proposal::Cmd(cmd)).await?;
        reply!(rep, Project)
    }

    async fn get_project(&self, r: Request<GetRequest>) -> R<Project> {
        self.get(r).await
    }

    async fn list_projects(&self, r: Request<ListRequest>) -> R<ListProjectsResponse> {
        let r = r.into_inner();
        let page = super::paging::Page::new(r.page_size, &r.page_token)?;
        let (projects, next_page_token) = self
            .read(stale(&r.read), |s| page.take(s.projects.values()))
            .await?;
        Ok(Response::new(ListProjectsResponse {
            projects,
            next_page_token,
        }))
    }

    async fn delete_project(&self, r: Request<DeleteRequest>) -> R<DeleteResponse> {
        self.delete::<Project>(r, |id| Command::DeleteProject { id })
            .await
    }

    async fn get_compliance_report(
        &self,
        r: Request<ComplianceReportRequest>,
    ) -> R<ComplianceReport> {
        let r = r.into_inner();
        let members = self.node.members();
        let applied = self
            .node
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        let report = self
            .read(stale(&r.read), |s| {
                let pid = super::project_id(s, "project", &r.project)?;
                let project = s.projects.get(&pid).cloned().ok_or_else(|| {
                    ApiError::missing("project", format!("project {:?} not found", r.project))
                })?;
                Ok::<_, ApiError>(compliance(s, &project, &members))
            })
            .await??;
        Ok(Response::new(ComplianceReport {
            generated_at_ms: crate::node::now_ms(),
            applied_index: applied,
            ..report
        }))
    }
}

/// One row of a compliance report: a resource (or a server) in a datacenter, judged now.
fn row(
    s: &andromede_store::State,
    pol: &SovereigntyPolicy,
    kind: &str,
    id: &str,
    name: &str,
    dc_id: &str,
) -> ComplianceRow {
    let mut row = ComplianceRow {
        kind: kind.into(),
        id: id.into(),
        name: name.into(),
        datacenter_id: dc_id.into(),
        ..Default::default()
    };
    let dc = s.datacenters.get(dc_id);
    if let Some(dc) = dc {
        let op = dc.operator.clone().unwrap_or_default();
        row.datacenter_name = dc.meta().name.clone();
        row.country = dc.country.clone();
        row.operator = format!("{} ({}, parent {})", op.name, op.country, op.parent_country);
    }
    match andromede_model::policy::verdict(pol, dc_id, dc) {
        Ok(()) => row.compliant = true,
        Err(d @ andromede_model::policy::Denial::NotLocated) => {
            row.reason = format!("{d} (declare it with cloudctl cluster locate)")
        }
        Err(d) => row.reason = d.to_string(),
    }
    row
}

/// Every instance and volume of `project`, and every server holding its metadata.
fn compliance(
    s: &andromede_store::State,
    project: &Project,
    members: &std::collections::BTreeMap<u64, String>,
) -> ComplianceReport {
    let pid = project.meta().id.clone();
    let pol = project.policy.clone().unwrap_or_default();
    let mut rows = Vec::new();
    for i in s.instances.values().filter(|i| i.meta().project_id == pid) {
        rows.push(row(
            s,
            &pol,
            "instance",
            &i.meta().id,
            &i.meta().name,
            &i.datacenter_id,
        ));
    }
    for v in s.volumes.values().filter(|v| v.meta().project_id == pid) {
        rows.push(row(
            s,
            &pol,
            "volume",
            &v.meta().id,
            &v.meta().name,
            &v.datacenter_id,
        ));
    }
    for (node, addr) in members {
        let dc = s.replicas.get(node).cloned().unwrap_or_default();
        rows.push(row(
            s,
            &pol,
            "control-plane server",
            &node.to_string(),
            addr,
            &dc,
        ));
    }
    ComplianceReport {
        project_id: pid,
        project_name: project.meta().name.clone(),
        policy: andromede_model::policy::describe(&pol),
        compliant: rows.iter().all(|r| r.compliant),
        rows,
        ..Default::default()
    }
}
