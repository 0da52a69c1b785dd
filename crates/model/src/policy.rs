//! The sovereignty policy: which datacenters a project's data may live in, and how a request may
//! narrow (never widen) it.

use crate::jurisdiction::{country_in, is_eu};
use andromede_api::v1::{Datacenter, PlacementConstraints, SovereigntyPolicy};

/// SecNumCloud 3.2 §19.6 thresholds for non-EU ownership, in percent.
pub const MAX_SINGLE_NON_EU_PERCENT: f64 = 24.0;
pub const MAX_TOTAL_NON_EU_PERCENT: f64 = 39.0;

/// Why a datacenter is outside a policy. `Display` is one line a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("in {country}, allowed countries: {allowed}")]
    Country { country: String, allowed: String },
    #[error("in {country}, allowed jurisdictions: {allowed}")]
    Jurisdiction { country: String, allowed: String },
    #[error("missing certification {missing}")]
    Certification { missing: String },
    #[error("operator {operator} not immune from non-EU law: {why}")]
    OperatorImmunity { operator: String, why: String },
    /// Fail closed: a place that cannot be checked is not allowed.
    #[error("in unknown datacenter {id}")]
    UnknownDatacenter { id: String },
    #[error("location not declared: where it keeps data cannot be shown")]
    NotLocated,
}

impl Denial {
    /// Whether the denial is about an unknown place rather than a rule of the policy.
    pub fn is_unknown_place(&self) -> bool {
        matches!(self, Denial::UnknownDatacenter { .. } | Denial::NotLocated)
    }
}

/// The one sovereignty verdict on data kept in datacenter `dc_id`, which `dc` resolves (or not):
/// placement, its apply-time check, policy changes, the compliance recheck, the offenders list
/// and the report all ask this, so an unknown or undeclared location fails closed everywhere.
pub fn verdict(
    policy: &SovereigntyPolicy,
    dc_id: &str,
    dc: Option<&Datacenter>,
) -> Result<(), Denial> {
    match dc {
        Some(dc) => check(policy, dc),
        None if dc_id.is_empty() => Err(Denial::NotLocated),
        None => Err(Denial::UnknownDatacenter { id: dc_id.into() }),
    }
}

/// A short human rendering of a policy, used in errors ("allowed: FR; certifications: hds").
pub fn describe(policy: &SovereigntyPolicy) -> String {
    let mut parts = Vec::new();
    if !policy.allowed_countries.is_empty() {
        parts.push(format!("countries {}", policy.allowed_countries.join(",")));
    }
    if !policy.allowed_jurisdictions.is_empty() {
        parts.push(format!(
            "jurisdictions {}",
            policy.allowed_jurisdictions.join(",")
        ));
    }
    if !policy.required_certifications.is_empty() {
        parts.push(format!(
            "certifications {}",
            policy.required_certifications.join(",")
        ));
    }
    if policy.operator_immunity {
        parts.push("operator immunity".into());
    }
    if parts.is_empty() {
        "unrestricted".into()
    } else {
        parts.join("; ")
    }
}

/// Whether a country is inside the policy's allowed area (both lists must agree when both are set).
pub fn country_allowed(policy: &SovereigntyPolicy, country: &str) -> bool {
    country_denial(policy, country).is_none()
}

fn country_denial(policy: &SovereigntyPolicy, country: &str) -> Option<Denial> {
    if !policy.allowed_countries.is_empty()
        && !policy.allowed_countries.iter().any(|c| c == country)
    {
        return Some(Denial::Country {
            country: country.into(),
            allowed: policy.allowed_countries.join(","),
        });
    }
    if !policy.allowed_jurisdictions.is_empty()
        && !policy
            .allowed_jurisdictions
            .iter()
            .any(|j| country_in(country, j))
    {
        return Some(Denial::Jurisdiction {
            country: country.into(),
            allowed: policy.allowed_jurisdictions.join(","),
        });
    }
    None
}

/// Checks one datacenter against a policy; the first failing rule is returned.
pub fn check(policy: &SovereigntyPolicy, dc: &Datacenter) -> Result<(), Denial> {
    if let Some(d) = country_denial(policy, &dc.country) {
        return Err(d);
    }
    for cert in &policy.required_certifications {
        if !dc.certifications.iter().any(|c| c == cert) {
            return Err(Denial::Certification {
                missing: cert.clone(),
            });
        }
    }
    if policy.operator_immunity {
        let op = dc.operator.clone().unwrap_or_default();
        let deny = |why: String| Denial::OperatorImmunity {
            operator: if op.name.is_empty() {
                "(unnamed)".into()
            } else {
                op.name.clone()
            },
            why,
        };
        if !is_eu(&op.country) {
            return Err(deny(format!("seated in {}", show(&op.country))));
        }
        let parent = if op.parent_country.is_empty() {
            op.country.as_str()
        } else {
            op.parent_country.as_str()
        };
        if !is_eu(parent) {
            return Err(deny(format!("ultimate parent in {parent}")));
        }
        if !country_allowed(policy, &op.country) || !country_allowed(policy, parent) {
            return Err(deny("controlled from outside the allowed area".into()));
        }
        if op.largest_non_eu_holder_percent > MAX_SINGLE_NON_EU_PERCENT {
            return Err(deny(format!(
                "a non-EU holder owns {}% (max {MAX_SINGLE_NON_EU_PERCENT}%)",
                op.largest_non_eu_holder_percent
            )));
        }
        if op.total_non_eu_percent > MAX_TOTAL_NON_EU_PERCENT {
            return Err(deny(format!(
                "non-EU holders own {}% together (max {MAX_TOTAL_NON_EU_PERCENT}%)",
                op.total_non_eu_percent
            )));
        }
    }
    Ok(())
}

fn show(s: &str) -> &str {
    if s.is_empty() {
        "an unknown country"
    } else {
        s
    }
}

/// A request's constraints that would leave the policy, as the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value} is outside the project's sovereignty policy ({policy})")]
pub struct Widening {
    pub field: String,
    pub value: String,
    pub policy: String,
}

/// Refuses constraints that name a country or datacenter the policy excludes: a request may only
/// narrow the policy. `datacenters` resolves the constraint's datacenter ids.
pub fn check_narrowing<'a>(
    policy: &SovereigntyPolicy,
    constraints: &PlacementConstraints,
    datacenter: impl Fn(&str) -> Option<&'a Datacenter>,
) -> Result<(), Widening> {
    for (i, c) in constraints.countries.iter().enumerate() {
        if !country_allowed(policy, c) {
            return Err(Widening {
                field: format!("constraints.countries[{i}]"),
                value: c.clone(),
                policy: describe(policy),
            });
        }
    }
    for (i, id) in constraints.datacenter_ids.iter().enumerate() {
        let dc = datacenter(id);
        if let Err(d) = verdict(policy, id, dc) {
            return Err(Widening {
                field: format!("constraints.datacenter_ids[{i}]"),
                value: format!(
                    "{} ({d})",
                    dc.and_then(|d| d.meta.as_ref())
                        .map_or(id.as_str(), |m| &m.name)
                ),
                policy: describe(policy),
            });
        }
    }
    Ok(())
}

/// The first way `new` would allow something `old` does not, as the field and the reason;
/// `None` when `new` only narrows (or keeps) `old`. Empty lists of countries or jurisdictions
/// mean "anywhere", so emptying one widens it.
pub fn widens(old: &SovereigntyPolicy, new: &SovereigntyPolicy) -> Option<(String, String)> {
    let subset = |field: &str, o: &[String], n: &[String]| -> Option<(String, String)> {
        if o.is_empty() {
            return None;
        }
        if n.is_empty() {
            return Some((field.into(), "emptying it would allow anywhere".into()));
        }
        n.iter().find(|x| !o.contains(x)).map(|x| {
            (
                field.to_string(),
                format!("{x} is not in the current list ({})", o.join(", ")),
            )
        })
    };
    subset(
        "policy.allowed_countries",
        &old.allowed_countries,
        &new.allowed_countries,
    )
    .or_else(|| {
        subset(
            "policy.allowed_jurisdictions",
            &old.allowed_jurisdictions,
            &new.allowed_jurisdictions,
        )
    })
    .or_else(|| {
        old.required_certifications
            .iter()
            .find(|c| !new.required_certifications.contains(c))
            .map(|c| {
                (
                    "policy.required_certifications".to_string(),
                    format!("dropping {c} would widen it"),
                )
            })
    })
    .or_else(|| {
        (old.operator_immunity && !new.operator_immunity).then(|| {
            (
                "policy.operator_immunity".to_string(),
                "turning it off would widen it".to_string(),
            )
        })
    })
}

/// Whether a datacenter satisfies a request's own constraints (already known to be narrowing).
pub fn within_constraints(constraints: &PlacementConstraints, dc: &Datacenter) -> bool {
    let id = dc.meta.as_ref().map_or("", |m| m.id.as_str());
    (constraints.countries.is_empty() || constraints.countries.contains(&dc.country))
        && (constraints.datacenter_ids.is_empty()
            || constraints.datacenter_ids.iter().any(|d| d == id))
}

#[cfg(test)]
mod tests {

    #[test]
    fn narrowing_and_widening_policies() {
        let p = |c: &[&str], j: &[&str], cert: &[&str], imm: bool| SovereigntyPolicy {
            allowed_countries: c.iter().map(|s| s.to_string()).collect(),
            allowed_jurisdictions: j.iter().map(|s| s.to_string()).collect(),
            required_certifications: cert.iter().map(|s| s.to_string()).collect(),
            operator_immunity: imm,
        };
        let old = p(&["FR", "DE"], &[], &["secnumcloud"], false);
        assert_eq!(
            widens(&old, &p(&["FR"], &["EU"], &["secnumcloud", "hds"], true)),
            None
        );
        assert_eq!(widens(&old, &old), None);
        assert_eq!(
            widens(&old, &p(&["FR", "US"], &[], &["secnumcloud"], false)).map(|w| w.0),
            Some("policy.allowed_countries".into())
        );
        assert_eq!(
            widens(&old, &p(&[], &[], &["secnumcloud"], false)).map(|w| w.0),
            Some("policy.allowed_countries".into())
        );
        assert_eq!(
            widens(&old, &p(&["FR"], &[], &[], false)).map(|w| w.0),
            Some("policy.required_certifications".into())
        );
        let imm = p(&[], &["EU"], &[], true);
        assert_eq!(
            widens(&imm, &p(&[], &["EU"], &[], false)).map(|w| w.0),
            Some("policy.operator_immunity".into())
        );
    }
    use super::*;
    use andromede_api::v1::{Meta, Operator};

    fn dc(country: &str, op_country: &str, parent: &str, certs: &[&str]) -> Datacenter {
        Datacenter {
            meta: Some(Meta {
                id: format!("dc-{country}-{parent}"),
                name: format!("dc-{country}-{parent}"),
                ..Default::default()
            }),
            country: country.into(),
            jurisdictions: crate::jurisdiction::jurisdictions_of(country),
            operator: Some(Operator {
                name: format!("op-{op_country}"),
                country: op_country.into(),
                parent_country: parent.into(),
                ..Default::default()
            }),
            certifications: certs.iter().map(|c| c.to_string()).collect(),
            status: 1,
        }
    }

    fn pol(countries: &[&str], jur: &[&str], certs: &[&str], imm: bool) -> SovereigntyPolicy {
        SovereigntyPolicy {
            allowed_countries: countries.iter().map(|c| c.to_string()).collect(),
            allowed_jurisdictions: jur.iter().map(|c| c.to_string()).collect(),
            required_certifications: certs.iter().map(|c| c.to_string()).collect(),
            operator_immunity: imm,
        }
    }

    #[test]
    fn the_four_reference_datacenters() {
        let fr = dc("FR", "FR", "FR", &["secnumcloud"]);
        let de = dc("DE", "DE", "DE", &["c5"]);
        let fr_us = dc("FR", "FR", "US", &["secnumcloud"]);
        let no = dc("NO", "NO", "NO", &[]);
        let all = [&fr, &de, &fr_us, &no];
        let ok = |p: &SovereigntyPolicy| {
            all.iter()
                .map(|d| check(p, d).is_ok())
                .collect::<Vec<bool>>()
        };
        assert_eq!(
            ok(&pol(&["FR"], &[], &[], false)),
            [true, false, true, false]
        );
        assert_eq!(
            ok(&pol(&[], &["EU"], &[], false)),
            [true, true, true, false]
        );
        assert_eq!(
            ok(&pol(&[], &["EEA"], &[], false)),
            [true, true, true, true]
        );
        assert_eq!(
            ok(&pol(&[], &["EU"], &[], true)),
            [true, true, false, false]
        );
        assert_eq!(
            ok(&pol(&[], &[], &["secnumcloud"], false)),
            [true, false, true, false]
        );
        assert_eq!(
            ok(&pol(&["FR"], &[], &["secnumcloud"], true)),
            [true, false, false, false]
        );
    }

    #[test]
    fn ownership_thresholds() {
        let mut d = dc("FR", "FR", "FR", &[]);
        let p = pol(&[], &[], &[], true);
        if let Some(op) = d.operator.as_mut() {
            op.largest_non_eu_holder_percent = 24.0;
            op.total_non_eu_percent = 39.0;
        }
        assert!(check(&p, &d).is_ok());
        if let Some(op) = d.operator.as_mut() {
            op.largest_non_eu_holder_percent = 24.5;
        }
        assert!(matches!(
            check(&p, &d),
            Err(Denial::OperatorImmunity { .. })
        ));
    }

    #[test]
    fn constraints_only_narrow() {
        let p = pol(&[], &["EU"], &[], false);
        let fr = PlacementConstraints {
            countries: vec!["FR".into()],
            datacenter_ids: vec![],
        };
        assert!(check_narrowing(&p, &fr, |_| None).is_ok());
        let us = PlacementConstraints {
            countries: vec!["US".into()],
            datacenter_ids: vec![],
        };
        let err = check_narrowing(&p, &us, |_| None).unwrap_err();
        assert!(err.to_string().contains("jurisdictions EU"), "{err}");
        let no = dc("NO", "NO", "NO", &[]);
        let by_dc = PlacementConstraints {
            countries: vec![],
            datacenter_ids: vec!["x".into()],
        };
        assert!(check_narrowing(&p, &by_dc, |_| Some(&no)).is_err());
        // A datacenter that cannot be resolved is never inside the policy.
        assert!(check_narrowing(&p, &by_dc, |_| None).is_err());
    }

    #[test]
    fn unknown_places_fail_closed_even_under_an_open_policy() {
        let open = pol(&[], &[], &[], false);
        let fr = dc("FR", "FR", "FR", &[]);
        assert!(verdict(&open, "dc-FR-FR", Some(&fr)).is_ok());
        assert_eq!(
            verdict(&open, "gone", None),
            Err(Denial::UnknownDatacenter { id: "gone".into() })
        );
        assert_eq!(verdict(&open, "", None), Err(Denial::NotLocated));
        assert!(verdict(&open, "", None).is_err_and(|d| d.is_unknown_place()));
    }
}
