//! IdentityService: projects with their sovereignty policies and quotas.

use super::{check, deleted, find, meta, stale, upper, Api};
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
        let projects = self
            .read(stale(&r.read), |s| s.projects.values().cloned().collect())
            .await?;
        Ok(Response::new(ListProjectsResponse { projects }))
    }

    async fn delete_project(&self, r: Request<DeleteRequest>) -> R<DeleteResponse> {
        let r = r.into_inner();
        let p: Project = self.read(false, |s| find(s, &r.r#ref)).await??;
        let id = p.meta().id.clone();
        deleted(
            self.node
                .submit(Proposal::Cmd(Command::DeleteProject { id }))
                .await?,
        )
    }
}
