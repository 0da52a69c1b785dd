//! Project quotas: what a new resource would add to usage, checked against the limits.

use andromede_api::v1::{Quota, Usage};

/// The first limit a delta would exceed, as a sentence naming the quota.
pub fn check(quota: Option<&Quota>, usage: &Usage, delta: &Usage) -> Result<(), String> {
    let Some(q) = quota else { return Ok(()) };
    let checks = [
        ("instances", q.instances, usage.instances, delta.instances),
        ("vcpus", q.vcpus, usage.vcpus, delta.vcpus),
        (
            "memory_mib",
            q.memory_mib,
            usage.memory_mib,
            delta.memory_mib,
        ),
        ("volumes", q.volumes, usage.volumes, delta.volumes),
        (
            "volume_gib",
            q.volume_gib,
            usage.volume_gib,
            delta.volume_gib,
        ),
    ];
    for (name, limit, used, add) in checks {
        if let Some(limit) = limit {
            if add > 0 && used + add > limit {
                return Err(format!(
                    "quota {name} exceeded: {used} used + {add} requested > limit {limit}"
                ));
            }
        }
    }
    Ok(())
}

pub fn add(a: &Usage, b: &Usage) -> Usage {
    Usage {
        instances: a.instances + b.instances,
        vcpus: a.vcpus + b.vcpus,
        memory_mib: a.memory_mib + b.memory_mib,
        volumes: a.volumes + b.volumes,
        volume_gib: a.volume_gib + b.volume_gib,
    }
}

pub fn sub(a: &Usage, b: &Usage) -> Usage {
    Usage {
        instances: a.instances.saturating_sub(b.instances),
        vcpus: a.vcpus.saturating_sub(b.vcpus),
        memory_mib: a.memory_mib.saturating_sub(b.memory_mib),
        volumes: a.volumes.saturating_sub(b.volumes),
        volume_gib: a.volume_gib.saturating_sub(b.volume_gib),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_inclusive_and_absent_is_unlimited() {
        let q = Quota {
            instances: Some(2),
            ..Default::default()
        };
        let one = Usage {
            instances: 1,
            vcpus: 100,
            ..Default::default()
        };
        let used = Usage {
            instances: 1,
            ..Default::default()
        };
        assert!(check(Some(&q), &used, &one).is_ok());
        let used2 = add(&used, &one);
        let err = check(Some(&q), &used2, &one).unwrap_err();
        assert!(err.contains("instances"));
        assert!(check(None, &used2, &one).is_ok());
    }
}
