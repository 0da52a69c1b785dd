//! `cloudctl project …`: create, update, get, list and delete projects, with their sovereignty
//! policy and quota.

use andromede_api::v1::{
    CreateProjectRequest, DeleteRequest, Quota, SovereigntyPolicy, UpdateProjectRequest,
};
use anyhow::{bail, Result};

use super::{fresh_get, get_req, id_of, list_req, print_deleted, rref};
use crate::cli::{PolicyArgs, ProjectCmd, ProjectCreate, ProjectUpdate, QuotaArgs};
use crate::client::{request_id, Ctx};
use crate::output::{print_list, print_one};
use crate::views::Names;

pub async fn run(ctx: &Ctx, cmd: ProjectCmd) -> Result<()> {
    match cmd {
        ProjectCmd::Create(a) => create(ctx, a).await,
        ProjectCmd::Update(a) => update(ctx, a).await,
        ProjectCmd::Get(r) => {
            let p = ctx
                .call(ctx.identity().get_project(get_req(ctx, &r.reference, None)))
                .await?;
            print_one(ctx.output, &p, &Names::default())
        }
        ProjectCmd::List => {
            let list = ctx
                .list_all(list_req(ctx, None), |r| {
                    let mut c = ctx.identity();
                    async move { c.list_projects(r).await }
                })
                .await?;
            print_list(ctx.output, &list.projects, &Names::default())
        }
        ProjectCmd::Delete(r) => {
            let req = DeleteRequest {
                r#ref: rref(&r.reference, None),
            };
            let resp = ctx.call(ctx.identity().delete_project(req)).await?;
            print_deleted(ctx, "project", &r.reference, &resp)
        }
    }
}

fn policy_given(p: &PolicyArgs) -> bool {
    !p.allow_country.is_empty()
        || !p.allow_jurisdiction.is_empty()
        || !p.require_cert.is_empty()
        || p.operator_immunity.is_some()
}

fn quota_given(q: &QuotaArgs) -> bool {
    q.quota_instances.is_some()
        || q.quota_vcpus.is_some()
        || q.quota_memory_mib.is_some()
        || q.quota_volumes.is_some()
        || q.quota_volume_gib.is_some()
}

/// Applies the quota flags over `base`: a flag replaces its limit, `unlimited` removes it.
pub fn merge_quota(base: Quota, q: &QuotaArgs) -> Quota {
    let pick = |flag: Option<crate::cli::QuotaLimit>, current: Option<u64>| match flag {
        Some(limit) => limit.as_option(),
        None => current,
    };
    Quota {
        instances: pick(q.quota_instances, base.instances),
        vcpus: pick(q.quota_vcpus, base.vcpus),
        memory_mib: pick(q.quota_memory_mib, base.memory_mib),
        volumes: pick(q.quota_volumes, base.volumes),
        volume_gib: pick(q.quota_volume_gib, base.volume_gib),
    }
}

/// Which policy lists `project update` empties.
#[derive(Debug, Default, Clone, Copy)]
pub struct Clears {
    pub countries: bool,
    pub jurisdictions: bool,
    pub certs: bool,
}

/// Applies the policy flags over `base`: a given list replaces the current one.
pub fn merge_policy(
    mut base: SovereigntyPolicy,
    p: &PolicyArgs,
    clears: Clears,
) -> SovereigntyPolicy {
    if !p.allow_country.is_empty() || clears.countries {
        base.allowed_countries = p.allow_country.clone();
    }
    if !p.allow_jurisdiction.is_empty() || clears.jurisdictions {
        base.allowed_jurisdictions = p.allow_jurisdiction.clone();
    }
    if !p.require_cert.is_empty() || clears.certs {
        base.required_certifications = p.require_cert.clone();
    }
    if let Some(v) = p.operator_immunity {
        base.operator_immunity = v;
    }
    base
}

async fn create(ctx: &Ctx, a: ProjectCreate) -> Result<()> {
    let req = CreateProjectRequest {
        name: a.name,
        description: a.description.unwrap_or_default(),
        policy: policy_given(&a.policy)
            .then(|| merge_policy(SovereigntyPolicy::default(), &a.policy, Clears::default())),
        quota: quota_given(&a.quota).then(|| merge_quota(Quota::default(), &a.quota)),
        request_id: request_id(a.request_id),
    };
    let p = ctx
        .create_with_retry("project", || {
            let mut c = ctx.identity();
            let req = req.clone();
            async move { c.create_project(req).await }
        })
        .await?;
    print_one(ctx.output, &p, &Names::default())
}

async fn update(ctx: &Ctx, a: ProjectUpdate) -> Result<()> {
    let clears = Clears {
        countries: a.clear_allow_country,
        jurisdictions: a.clear_allow_jurisdiction,
        certs: a.clear_require_cert,
    };
    let touches_policy =
        policy_given(&a.policy) || clears.countries || clears.jurisdictions || clears.certs;
    let touches_quota = quota_given(&a.quota);
    if !touches_policy && !touches_quota && a.description.is_none() {
        bail!(
            "nothing to update: give --description, a policy flag (--allow-*, --require-cert, \
             --operator-immunity, --clear-*) or a --quota-* flag"
        );
    }

    let mut reference = a.reference.clone();
    let mut expected_generation = a.expected_generation.unwrap_or(0);
    let (mut policy, mut quota) = (None, None);
    if touches_policy || touches_quota {
        // Policy and quota are replaced whole by the contract, so the flags are merged into the
        // current values, tied to the generation read so a concurrent change is not overwritten.
        let current = ctx
            .call(ctx.identity().get_project(fresh_get(&a.reference, None)))
            .await?;
        reference = id_of(current.meta.as_ref());
        if expected_generation == 0 {
            expected_generation = current.meta.as_ref().map(|m| m.generation).unwrap_or(0);
        }
        if touches_policy {
            policy = Some(merge_policy(
                current.policy.unwrap_or_default(),
                &a.policy,
                clears,
            ));
        }
        if touches_quota {
            quota = Some(merge_quota(current.quota.unwrap_or_default(), &a.quota));
        }
    }

    let req = UpdateProjectRequest {
        r#ref: rref(&reference, None),
        policy,
        quota,
        description: a.description,
        expected_generation,
    };
    let p = ctx.call(ctx.identity().update_project(req)).await?;
    print_one(ctx.output, &p, &Names::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::QuotaLimit;

    #[test]
    fn quota_flags_replace_or_lift_single_limits() {
        let base = Quota {
            instances: Some(5),
            vcpus: Some(10),
            memory_mib: None,
            volumes: Some(2),
            volume_gib: Some(100),
        };
        let flags = QuotaArgs {
            quota_instances: Some(QuotaLimit::Limited(8)),
            quota_vcpus: Some(QuotaLimit::Unlimited),
            quota_memory_mib: Some(QuotaLimit::Limited(4096)),
            ..QuotaArgs::default()
        };
        let q = merge_quota(base, &flags);
        assert_eq!(q.instances, Some(8));
        assert_eq!(q.vcpus, None);
        assert_eq!(q.memory_mib, Some(4096));
        assert_eq!(q.volumes, Some(2));
        assert_eq!(q.volume_gib, Some(100));
    }

    #[test]
    fn policy_flags_replace_lists_and_keep_the_rest() {
        let base = SovereigntyPolicy {
            allowed_countries: vec!["FR".into()],
            allowed_jurisdictions: vec!["EU".into()],
            required_certifications: vec!["secnumcloud".into()],
            operator_immunity: true,
        };
        let flags = PolicyArgs {
            allow_country: vec!["FR".into(), "DE".into()],
            operator_immunity: Some(false),
            ..PolicyArgs::default()
        };
        let clears = Clears {
            certs: true,
            ..Clears::default()
        };
        let p = merge_policy(base, &flags, clears);
        assert_eq!(p.allowed_countries, ["FR", "DE"]);
        assert_eq!(p.allowed_jurisdictions, ["EU"]);
        assert!(p.required_certifications.is_empty());
        assert!(!p.operator_immunity);
    }
}
