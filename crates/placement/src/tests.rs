//! Scheduler tests over an in-memory snapshot.

use super::*;
use andromede_api::v1::{Meta, Operator};
use proptest::prelude::{any, prop_assert, proptest};

#[derive(Default)]
struct Snap {
    hosts: Vec<Host>,
    dcs: HashMap<String, Datacenter>,
}

impl Snapshot for Snap {
    fn hosts(&self) -> Box<dyn Iterator<Item = &Host> + '_> {
        Box::new(self.hosts.iter())
    }
    fn datacenter(&self, id: &str) -> Option<&Datacenter> {
        self.dcs.get(id)
    }
    fn reserved(&self, _: &str) -> Resources {
        Resources::default()
    }
}

fn meta(id: &str) -> Option<Meta> {
    Some(Meta {
        id: id.into(),
        name: id.into(),
        ..Default::default()
    })
}

impl Snap {
    fn dc(&mut self, id: &str, country: &str, parent: &str) {
        self.dcs.insert(
            id.into(),
            Datacenter {
                meta: meta(id),
                country: country.into(),
                jurisdictions: andromede_model::jurisdiction::jurisdictions_of(country),
                operator: Some(Operator {
                    name: "op".into(),
                    country: country.into(),
                    parent_country: parent.into(),
                    ..Default::default()
                }),
                certifications: vec![],
                status: DatacenterStatus::Active as i32,
            },
        );
    }
    fn host(&mut self, id: &str, dc: &str, vcpus: u64, state: HostState) {
        self.hosts.push(Host {
            meta: meta(id),
            datacenter_id: dc.into(),
            state: state as i32,
            capacity: Some(Resources {
                vcpus,
                memory_mib: vcpus * 1024,
                disk_gib: 100,
            }),
            ratios: Some(andromede_api::v1::AllocationRatios {
                cpu: 1.0,
                memory: 1.0,
                disk: 1.0,
            }),
            used: Some(Resources::default()),
            simulated: true,
            ..Default::default()
        });
    }
}

fn small() -> Resources {
    Resources {
        vcpus: 1,
        memory_mib: 1024,
        disk_gib: 1,
    }
}

fn req<'a>(p: &'a SovereigntyPolicy, c: &'a PlacementConstraints) -> Request<'a> {
    Request {
        policy: p,
        constraints: c,
        resources: small(),
        group: None,
        pin_host: None,
        strategy: Strategy::Spread,
    }
}

#[test]
fn refused_placement_explains_per_filter() {
    let mut s = Snap::default();
    s.dc("de", "DE", "DE");
    s.dc("fr", "FR", "FR");
    for i in 0..8 {
        s.host(&format!("de-{i}"), "de", 4, HostState::Up);
    }
    for i in 0..3 {
        s.host(&format!("fr-{i}"), "fr", 0, HostState::Up);
    }
    s.host("fr-drain", "fr", 4, HostState::Draining);
    let p = SovereigntyPolicy {
        allowed_countries: vec!["FR".into()],
        ..Default::default()
    };
    let c = PlacementConstraints::default();
    let e = place(&s, &req(&p, &c));
    assert!(e.chosen.is_none());
    assert_eq!(e.hosts_considered, 12);
    let text = e.summary();
    assert!(
        text.contains("8 excluded by project policy (8 in DE, allowed countries: FR)"),
        "{text}"
    );
    assert!(
        text.contains("3 excluded by capacity (3 lack free vcpus)"),
        "{text}"
    );
    assert!(
        text.contains("1 excluded by host state (1 draining)"),
        "{text}"
    );
}

#[test]
fn constraints_narrow_and_spread_prefers_free_hosts() {
    let mut s = Snap::default();
    s.dc("fr", "FR", "FR");
    s.dc("de", "DE", "DE");
    s.host("fr-small", "fr", 2, HostState::Up);
    s.host("fr-big", "fr", 16, HostState::Up);
    s.host("de-big", "de", 64, HostState::Up);
    let p = SovereigntyPolicy {
        allowed_jurisdictions: vec!["EU".into()],
        ..Default::default()
    };
    let c = PlacementConstraints {
        countries: vec!["FR".into()],
        datacenter_ids: vec![],
    };
    let e = place(&s, &req(&p, &c));
    assert_eq!(e.chosen.map(|c| c.host_id).as_deref(), Some("fr-big"));
    let mut r = req(&p, &c);
    r.strategy = Strategy::Pack;
    assert_eq!(
        place(&s, &r).chosen.map(|c| c.host_id).as_deref(),
        Some("fr-small")
    );
}

#[test]
fn hard_anti_affinity_and_affinity() {
    let mut s = Snap::default();
    s.dc("fr", "FR", "FR");
    s.host("a", "fr", 8, HostState::Up);
    s.host("b", "fr", 8, HostState::Up);
    let p = SovereigntyPolicy::default();
    let c = PlacementConstraints::default();
    let mut r = req(&p, &c);
    r.group = Some(GroupRule {
        policy: GroupPolicy::AntiAffinity,
        hard: true,
        member_hosts: vec!["a".into(), "b".into()],
    });
    let e = place(&s, &r);
    assert!(e.chosen.is_none());
    assert!(e.summary().contains("2 excluded by server group"));
    r.group = Some(GroupRule {
        policy: GroupPolicy::Affinity,
        hard: true,
        member_hosts: vec!["b".into()],
    });
    assert_eq!(
        place(&s, &r).chosen.map(|c| c.host_id).as_deref(),
        Some("b")
    );
}

proptest! {
    /// Placing until nothing fits never overbooks a host and never leaves the policy.
    #[test]
    fn never_overbooks_nor_leaves_policy(
        sizes in proptest::collection::vec(0u64..16, 1..12),
        fr_only in any::<bool>(),
    ) {
        let mut s = Snap::default();
        s.dc("fr", "FR", "FR");
        s.dc("de", "DE", "DE");
        for (i, v) in sizes.iter().enumerate() {
            s.host(&format!("h{i}"), if i % 2 == 0 { "fr" } else { "de" }, *v, HostState::Up);
        }
        let p = SovereigntyPolicy {
            allowed_countries: if fr_only { vec!["FR".into()] } else { vec![] },
            ..Default::default()
        };
        let c = PlacementConstraints::default();
        let r = req(&p, &c);
        let total: u64 = sizes.iter().sum();
        for _ in 0..=total {
            let e = place(&s, &r);
            let Some(choice) = e.chosen else { break };
            let h = s.hosts.iter_mut().find(|h| h.meta.as_ref().map(|m| m.id.as_str()) == Some(choice.host_id.as_str())).unwrap();
            prop_assert!(!fr_only || h.datacenter_id == "fr");
            let used = h.used.unwrap_or_default();
            h.used = Some(andromede_model::capacity::add(&used, &small()));
        }
        for h in &s.hosts {
            let used = h.used.unwrap_or_default();
            prop_assert!(used.vcpus <= h.capacity.unwrap_or_default().vcpus);
        }
    }
}

#[test]
fn sampled_placement_stops_early_but_explains_failures_in_full() {
    let mut s = Snap::default();
    s.dc("fr", "FR", "FR");
    s.dc("de", "DE", "DE");
    for i in 0..20 {
        s.host(&format!("fr-{i:02}"), "fr", 4, HostState::Up);
    }
    let p = SovereigntyPolicy::default();
    let c = PlacementConstraints::default();
    let sample = Some(Sample {
        start: "",
        candidates: 3,
    });
    let e = place_sampled(&s, &req(&p, &c), sample);
    assert!(e.chosen.is_some());
    assert_eq!(e.candidates, 3);
    assert_eq!(e.hosts_considered, 3);
    // Nothing fits: every host is looked at, so the refusal explains all of them.
    let de_only = PlacementConstraints {
        countries: vec!["DE".into()],
        ..Default::default()
    };
    let e = place_sampled(&s, &req(&p, &de_only), sample);
    assert!(e.chosen.is_none());
    assert_eq!(e.hosts_considered, 20);
}

#[test]
fn verify_refuses_a_datacenter_that_left_active_since_the_plan() {
    let mut s = Snap::default();
    s.dc("fr", "FR", "FR");
    s.host("h", "fr", 4, HostState::Up);
    let p = SovereigntyPolicy::default();
    let c = PlacementConstraints::default();
    let host = s.hosts[0].clone();
    assert_eq!(verify(&s, &req(&p, &c), &host), Ok(()));
    for status in [DatacenterStatus::Maintenance, DatacenterStatus::Retired] {
        if let Some(dc) = s.dcs.get_mut("fr") {
            dc.status = status as i32;
        }
        let why = verify(&s, &req(&p, &c), &host).unwrap_err();
        assert!(why.contains("datacenter status"), "{why}");
        assert!(place(&s, &req(&p, &c)).chosen.is_none());
    }
}

#[test]
fn an_unknown_datacenter_fails_closed_in_place_and_verify() {
    let mut s = Snap::default();
    s.host("h", "gone", 4, HostState::Up);
    let open = SovereigntyPolicy::default();
    let c = PlacementConstraints::default();
    let e = place(&s, &req(&open, &c));
    assert!(e.chosen.is_none());
    assert!(
        e.summary().contains("1 in unknown datacenter gone"),
        "{}",
        e.summary()
    );
    let host = s.hosts[0].clone();
    let why = verify(&s, &req(&open, &c), &host).unwrap_err();
    assert!(why.contains("unknown datacenter gone"), "{why}");
}
