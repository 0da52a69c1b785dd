//! `cloudctl datacenter …`: create, update, get, list and delete datacenters.

use andromede_api::v1::{
    CreateDatacenterRequest, DatacenterStatus, DeleteRequest, ListDatacentersRequest, Operator,
    UpdateDatacenterRequest,
};
use anyhow::{bail, Result};

use super::{fresh_get, get_req, id_of, print_deleted, rref};
use crate::cli::{DatacenterCmd, DatacenterCreate, DatacenterStatusArg, DatacenterUpdate};
use crate::client::{request_id, Ctx};
use crate::output::{print_list, print_one};
use crate::views::Names;

pub async fn run(ctx: &Ctx, cmd: DatacenterCmd) -> Result<()> {
    match cmd {
        DatacenterCmd::Create(a) => create(ctx, a).await,
        DatacenterCmd::Update(a) => update(ctx, a).await,
        DatacenterCmd::Get(r) => {
            let dc = ctx
                .call(ctx.infra().get_datacenter(get_req(ctx, &r.reference, None)))
                .await?;
            print_one(ctx.output, &dc, &Names::default())
        }
        DatacenterCmd::List {
            country,
            jurisdiction,
        } => {
            let req = ListDatacentersRequest {
                country: country.unwrap_or_default(),
                jurisdiction: jurisdiction.unwrap_or_default(),
                read: ctx.read(),
                ..Default::default()
            };
            let list = ctx
                .list_all(req, |r| {
                    let mut c = ctx.infra();
                    async move { c.list_datacenters(r).await }
                })
                .await?;
            print_list(ctx.output, &list.datacenters, &Names::default())
        }
        DatacenterCmd::Delete(r) => {
            let req = DeleteRequest {
                r#ref: rref(&r.reference, None),
            };
            let resp = ctx.call(ctx.infra().delete_datacenter(req)).await?;
            print_deleted(ctx, "datacenter", &r.reference, &resp)
        }
    }
}

fn status(s: DatacenterStatusArg) -> DatacenterStatus {
    match s {
        DatacenterStatusArg::Active => DatacenterStatus::Active,
        DatacenterStatusArg::Maintenance => DatacenterStatus::Maintenance,
        DatacenterStatusArg::Retired => DatacenterStatus::Retired,
    }
}

async fn create(ctx: &Ctx, a: DatacenterCreate) -> Result<()> {
    let req = CreateDatacenterRequest {
        name: a.name,
        country: a.country,
        operator: Some(Operator {
            name: a.operator_name,
            parent_country: a
                .parent_country
                .unwrap_or_else(|| a.operator_country.clone()),
            country: a.operator_country,
            largest_non_eu_holder_percent: a.largest_non_eu_holder_percent.unwrap_or(0.0),
            total_non_eu_percent: a.total_non_eu_percent.unwrap_or(0.0),
        }),
        certifications: a.certs,
        request_id: request_id(a.request_id),
    };
    let dc = ctx
        .create_with_retry("datacenter", || {
            let mut c = ctx.infra();
            let req = req.clone();
            async move { c.create_datacenter(req).await }
        })
        .await?;
    print_one(ctx.output, &dc, &Names::default())
}

async fn update(ctx: &Ctx, a: DatacenterUpdate) -> Result<()> {
    let touches_operator = a.operator_name.is_some()
        || a.operator_country.is_some()
        || a.parent_country.is_some()
        || a.largest_non_eu_holder_percent.is_some()
        || a.total_non_eu_percent.is_some();
    let set_certifications = !a.certs.is_empty() || a.clear_certs;
    if !touches_operator && !set_certifications && a.country.is_none() && a.status.is_none() {
        bail!(
            "nothing to update: give at least one of --country, --operator-*, --parent-country, \
             --*-percent, --cert, --clear-certs or --status"
        );
    }

    let mut reference = a.reference.clone();
    let mut expected_generation = a.expected_generation.unwrap_or(0);
    let mut operator = None;
    if touches_operator {
        // The contract replaces the operator as a whole, so the flags are merged into the
        // current one, and the update is tied to the generation read so a concurrent change
        // is refused rather than overwritten.
        let current = ctx
            .call(ctx.infra().get_datacenter(fresh_get(&a.reference, None)))
            .await?;
        reference = id_of(current.meta.as_ref());
        if expected_generation == 0 {
            expected_generation = current.meta.as_ref().map(|m| m.generation).unwrap_or(0);
        }
        let mut op = current.operator.unwrap_or_default();
        if let Some(v) = a.operator_name {
            op.name = v;
        }
        if let Some(v) = a.operator_country {
            op.country = v;
        }
        if let Some(v) = a.parent_country {
            op.parent_country = v;
        }
        if let Some(v) = a.largest_non_eu_holder_percent {
            op.largest_non_eu_holder_percent = v;
        }
        if let Some(v) = a.total_non_eu_percent {
            op.total_non_eu_percent = v;
        }
        operator = Some(op);
    }

    let req = UpdateDatacenterRequest {
        r#ref: rref(&reference, None),
        country: a.country,
        operator,
        set_certifications,
        certifications: a.certs,
        status: a
            .status
            .map(status)
            .unwrap_or(DatacenterStatus::Unspecified) as i32,
        expected_generation,
    };
    let dc = ctx.call(ctx.infra().update_datacenter(req)).await?;
    print_one(ctx.output, &dc, &Names::default())
}
