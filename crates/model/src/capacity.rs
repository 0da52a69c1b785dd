//! Host capacity under allocation ratios.

use andromede_api::v1::{AllocationRatios, Host, Resources};

pub const DEFAULT_RATIOS: AllocationRatios = AllocationRatios {
    cpu: 4.0,
    memory: 1.0,
    disk: 1.0,
};

/// What a host may hand out: physical capacity times its allocation ratios.
pub fn effective(host: &Host) -> Resources {
    let cap = host.capacity.unwrap_or_default();
    let r = host.ratios.unwrap_or(DEFAULT_RATIOS);
    Resources {
        vcpus: scale(cap.vcpus, r.cpu),
        memory_mib: scale(cap.memory_mib, r.memory),
        disk_gib: scale(cap.disk_gib, r.disk),
    }
}

fn scale(v: u64, ratio: f64) -> u64 {
    // Ratios are validated finite and positive; floor keeps us on the safe side.
    (v as f64 * ratio).floor() as u64
}

/// Free resources after `used` and `reserved` are taken from the effective capacity.
pub fn free(host: &Host, reserved: &Resources) -> Resources {
    let eff = effective(host);
    let used = host.used.unwrap_or_default();
    Resources {
        vcpus: eff.vcpus.saturating_sub(used.vcpus + reserved.vcpus),
        memory_mib: eff
            .memory_mib
            .saturating_sub(used.memory_mib + reserved.memory_mib),
        disk_gib: eff
            .disk_gib
            .saturating_sub(used.disk_gib + reserved.disk_gib),
    }
}

/// The first dimension in which `want` does not fit into `free`, named for explanations.
pub fn shortfall(free: &Resources, want: &Resources) -> Option<&'static str> {
    if want.vcpus > free.vcpus {
        Some("vcpus")
    } else if want.memory_mib > free.memory_mib {
        Some("memory")
    } else if want.disk_gib > free.disk_gib {
        Some("disk")
    } else {
        None
    }
}

pub fn add(a: &Resources, b: &Resources) -> Resources {
    Resources {
        vcpus: a.vcpus + b.vcpus,
        memory_mib: a.memory_mib + b.memory_mib,
        disk_gib: a.disk_gib + b.disk_gib,
    }
}

pub fn sub(a: &Resources, b: &Resources) -> Resources {
    Resources {
        vcpus: a.vcpus.saturating_sub(b.vcpus),
        memory_mib: a.memory_mib.saturating_sub(b.memory_mib),
        disk_gib: a.disk_gib.saturating_sub(b.disk_gib),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_scale_capacity() {
        let h = Host {
            capacity: Some(Resources {
                vcpus: 8,
                memory_mib: 1000,
                disk_gib: 100,
            }),
            ratios: Some(AllocationRatios {
                cpu: 2.0,
                memory: 1.5,
                disk: 1.0,
            }),
            used: Some(Resources {
                vcpus: 4,
                memory_mib: 500,
                disk_gib: 10,
            }),
            ..Default::default()
        };
        let f = free(&h, &Resources::default());
        assert_eq!(f.vcpus, 12);
        assert_eq!(f.memory_mib, 1000);
        assert_eq!(f.disk_gib, 90);
        let want = Resources {
            vcpus: 13,
            memory_mib: 1,
            disk_gib: 1,
        };
        assert_eq!(shortfall(&f, &want), Some("vcpus"));
    }
}
