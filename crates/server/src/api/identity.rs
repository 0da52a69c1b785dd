//! IdentityService: projects with their sovereignty policies and quotas, and the API tokens
//! that act in them.

use super::{caller, check, find, meta, stale, upper, visible, Api};
use crate::error::ApiError;
use crate::node::Proposal;
use crate::reply;
use andromede_api::v1::identity_service_server::IdentityService;
use andromede_api::v1::*;
use andromede_auth::access::role_name;
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
        let who = caller(&r)?;
        let r = r.into_inner();
        let mut v = Violations::new();
        let policy = r.policy.as_ref().map(|p| check_policy(&mut v, "policy", p));
        if let Some(d) = &r.description {
            v.text("description", d, 1024);
        }
        check(v)?;
        let p: Project = self.read(false, |s| find(s, &who, &r.r#ref)).await??;
        let mut expected_generation = r.expected_generation;
        if !who.is_cloud_admin() {
            // A project admin may narrow its policy, never widen it or touch the quota.
            if r.quota.is_some() {
                return Err(
                    ApiError::denied("quota", "only a cloud-admin token changes quotas").into(),
                );
            }
            if let Some(new) = &policy {
                let old = p.policy.clone().unwrap_or_default();
                if let Some((field, why)) = andromede_model::policy::widens(&old, new) {
                    return Err(ApiError::denied(
                        &field,
                        format!("{why}; a project admin may only narrow the policy, a cloud-admin widens it"),
                    )
                    .into());
                }
                // Judged against the policy read here, so the change applies to that one only.
                if expected_generation == 0 {
                    expected_generation = p.meta().generation;
                }
            }
        }
        let cmd = Command::UpdateProject {
            id: p.meta().id.clone(),
            policy,
            quota: r.quota,
            description: r.description,
            expected_generation,
        };
        let rep = self.node.submit(Proposal::Cmd(cmd)).await?;
        reply!(rep, Project)
    }

    async fn get_project(&self, r: Request<GetRequest>) -> R<Project> {
        self.get(r).await
    }

    async fn list_projects(&self, r: Request<ListRequest>) -> R<ListProjectsResponse> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let page = super::paging::Page::new(r.page_size, &r.page_token)?;
        let (projects, next_page_token) = self
            .read(stale(&r.read), |s| {
                page.take(s.projects.values().filter(|p| visible(&who, *p)))
            })
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
        let who = caller(&r)?;
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
                let pid = super::project_id(s, &who, "project", &r.project)?;
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

    async fn create_token(&self, r: Request<CreateTokenRequest>) -> R<CreateTokenResponse> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let mut v = Violations::new();
        v.name("name", &r.name);
        v.optional_reference("project", &r.project);
        let role = Role::try_from(r.role)
            .ok()
            .filter(|x| *x != Role::Unspecified);
        if role.is_none() {
            v.add("role", "must be ROLE_READER, ROLE_MEMBER or ROLE_ADMIN");
        }
        // Ten years: beyond that a token is better made without an expiry, on purpose.
        if r.ttl_secs > 10 * 365 * 24 * 3600 {
            v.add(
                "ttl_secs",
                "must be at most 315360000 (ten years); 0 never expires",
            );
        }
        v.request_id("request_id", &r.request_id);
        check(v)?;
        let role = role.unwrap_or(Role::Reader);
        // A project-scoped creator makes tokens for its own project; the cloud scope makes
        // cloud tokens unless it names a project.
        let pid = if r.project.is_empty() && who.confined_to().is_none() {
            None
        } else {
            Some(
                self.read(false, |s| super::project_id(s, &who, "project", &r.project))
                    .await??,
            )
        };
        if pid.is_none() && role == Role::Member {
            return Err(ApiError::invalid(
                "role",
                "the cloud scope has ROLE_ADMIN (cloud-admin) and ROLE_READER (cloud-reader)",
            )
            .into());
        }
        let wanted = role_name(pid.is_none(), role);
        if !who.may_grant(pid.as_deref(), role) {
            return Err(ApiError::denied(
                "role",
                format!(
                    "a {} token cannot create a {wanted} token{}",
                    role_name(who.project_id.is_none(), who.role),
                    if pid.is_none() {
                        " in the cloud scope"
                    } else {
                        ""
                    }
                ),
            )
            .into());
        }
        let (id, secret) = andromede_auth::generate();
        let now = crate::node::now_ms();
        let ttl_ms = i64::try_from(r.ttl_secs).unwrap_or(i64::MAX / 1000) * 1000;
        let mut m = meta(&r.name, pid.as_deref().unwrap_or_default(), &r.request_id);
        if let Some(m) = m.as_mut() {
            m.id = id.clone();
        }
        let parsed = andromede_auth::parse(&secret)
            .map_err(|e| ApiError::Internal(format!("a fresh token does not parse: {e}")))?;
        let t = ApiToken {
            meta: m,
            role: role as i32,
            role_name: wanted.into(),
            created_by: who.token_id.clone(),
            expires_at_ms: if r.ttl_secs == 0 {
                0
            } else {
                now.saturating_add(ttl_ms)
            },
            revoked_at_ms: 0,
            secret_sha256: andromede_auth::sha256_hex(&parsed.secret),
            project_name: String::new(),
        };
        let rep = self
            .node
            .submit(Proposal::Cmd(Command::CreateApiToken(t)))
            .await?;
        let andromede_store::command::Reply::ApiToken(mut t) = rep else {
            return Err(Status::internal("unexpected reply to CreateApiToken"));
        };
        t.redact();
        // A retried request returns the token the first attempt made, whose secret was shown
        // to that attempt only.
        let secret = if t.meta().id == id {
            secret
        } else {
            String::new()
        };
        let t = self.node.read(|s| named(s, t));
        Ok(Response::new(CreateTokenResponse {
            token: Some(t),
            secret,
        }))
    }

    async fn list_tokens(&self, r: Request<ListTokensRequest>) -> R<ListTokensResponse> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let page = super::paging::Page::new(r.page_size, &r.page_token)?;
        let now = crate::node::now_ms();
        let (tokens, next_page_token) = self
            .read(stale(&r.read), |s| {
                let p = if r.project.is_empty() {
                    None
                } else {
                    Some(super::project_id(s, &who, "project", &r.project)?)
                };
                Ok::<_, ApiError>(
                    page.take(
                        s.api_tokens
                            .values()
                            .filter(|t| visible(&who, *t))
                            .filter(|t| p.as_ref().is_none_or(|p| t.meta().project_id == *p))
                            .filter(|t| r.include_inactive || active(t, now)),
                    ),
                )
            })
            .await??;
        let tokens = self.node.read(|s| {
            tokens
                .into_iter()
                .map(|mut t| {
                    t.redact();
                    named(s, t)
                })
                .collect()
        });
        Ok(Response::new(ListTokensResponse {
            tokens,
            next_page_token,
        }))
    }

    async fn revoke_token(&self, r: Request<RevokeTokenRequest>) -> R<ApiToken> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let t: ApiToken = self.read(false, |s| find(s, &who, &r.r#ref)).await??;
        let rep = self
            .node
            .submit(Proposal::Cmd(Command::RevokeApiToken {
                id: t.meta().id.clone(),
            }))
            .await?;
        let andromede_store::command::Reply::ApiToken(mut t) = rep else {
            return Err(Status::internal("unexpected reply to RevokeApiToken"));
        };
        t.redact();
        Ok(Response::new(self.node.read(|s| named(s, t))))
    }

    async fn who_am_i(&self, r: Request<WhoAmIRequest>) -> R<ApiToken> {
        let who = caller(&r)?;
        let t = self
            .node
            .read(|s| {
                s.api_tokens
                    .get(&who.token_id)
                    .cloned()
                    .map(|t| named(s, t))
            })
            .ok_or_else(|| Status::unauthenticated("this token no longer exists"))?;
        let mut t = t;
        t.redact();
        Ok(Response::new(t))
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

/// Whether a token can still be used at `now`.
fn active(t: &ApiToken, now: i64) -> bool {
    t.revoked_at_ms == 0 && (t.expires_at_ms == 0 || now < t.expires_at_ms)
}

/// The token with its project's name filled in, for display.
fn named(s: &andromede_store::State, mut t: ApiToken) -> ApiToken {
    t.project_name = s
        .projects
        .get(&t.meta().project_id)
        .map(|p| p.meta().name.clone())
        .unwrap_or_default();
    t
}
