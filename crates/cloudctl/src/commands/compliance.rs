//! `cloudctl compliance report`: where a project's resources and metadata are, judged against
//! its policy today; exits non-zero on any violation so scripts and audits can rely on it.

use andromede_api::v1::ComplianceReportRequest;
use anyhow::{bail, Result};

use crate::cli::ComplianceCmd;
use crate::client::Ctx;
use crate::output::{details_table, list_table, print_value, to_named_value, Kind};
use crate::views::dash;

pub async fn run(ctx: &Ctx, cmd: ComplianceCmd) -> Result<()> {
    match cmd {
        ComplianceCmd::Report { project } => {
            let report = ctx
                .call(
                    ctx.identity()
                        .get_compliance_report(ComplianceReportRequest {
                            // Empty: the token's own project (a cloud token must name one).
                            project: project.unwrap_or_default(),
                            read: ctx.read(),
                        }),
                )
                .await?;
            let value = to_named_value(&report, Kind::Plain)?;
            print_value(ctx.output, &value, || {
                let summary = details_table(&[
                    (
                        "project",
                        format!("{} ({})", report.project_name, report.project_id),
                    ),
                    ("policy", report.policy.clone()),
                    (
                        "verdict",
                        if report.compliant {
                            "COMPLIANT".to_owned()
                        } else {
                            "NOT COMPLIANT".to_owned()
                        },
                    ),
                    ("log index", report.applied_index.to_string()),
                ]);
                let rows: Vec<Vec<String>> = report
                    .rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.kind.clone(),
                            r.name.clone(),
                            dash(&r.datacenter_name),
                            dash(&r.country),
                            dash(&r.operator),
                            if r.compliant {
                                "ok".to_owned()
                            } else {
                                format!("VIOLATION: {}", r.reason)
                            },
                        ]
                    })
                    .collect();
                let table = list_table(
                    &[
                        "KIND",
                        "NAME",
                        "DATACENTER",
                        "COUNTRY",
                        "OPERATOR",
                        "VERDICT",
                    ],
                    &rows,
                );
                format!("{summary}\n\n{table}")
            })?;
            if !report.compliant {
                let bad = report.rows.iter().filter(|r| !r.compliant).count();
                bail!(
                    "project {} is NOT COMPLIANT: {bad} of {} entries violate its policy ({})",
                    report.project_name,
                    report.rows.len(),
                    report.policy
                );
            }
            Ok(())
        }
    }
}
