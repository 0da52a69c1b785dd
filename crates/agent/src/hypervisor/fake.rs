//! In-memory hypervisor with fault knobs, for scale tests and benchmarks: same trait and errors
//! as the libvirt driver, no processes, a few hundred bytes per guest.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;

/// Faults to inject, for testing how the agent and the control plane cope.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Every start fails.
    pub fail_start: bool,
    /// Every define and start blocks this long first (a stuck hypervisor call).
    pub hang: Option<Duration>,
    /// A started guest dies (shuts off) this long after it started.
    pub die_after: Option<Duration>,
}

struct Guest {
    spec: VmSpec,
    running_since: Option<Instant>,
    volumes: BTreeSet<String>,
    console: String,
    quarantined: bool,
}

#[derive(Default)]
struct Inner {
    guests: BTreeMap<String, Guest>,
    volumes: BTreeMap<String, u64>,
    quarantined_volumes: BTreeSet<String>,
    images: BTreeSet<String>,
}

pub struct FakeDriver {
    inventory: Inventory,
    faults: Faults,
    inner: Mutex<Inner>,
}

impl FakeDriver {
    pub fn new(inventory: Inventory, faults: Faults) -> Self {
        Self {
            inventory,
            faults,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hang(&self) {
        if let Some(d) = self.faults.hang {
            std::thread::sleep(d);
        }
    }

    fn state_of(&self, g: &Guest) -> PowerState {
        match (g.running_since, self.faults.die_after) {
            (Some(t), Some(d)) if t.elapsed() >= d => PowerState::Stopped,
            (Some(_), _) => PowerState::Running,
            (None, _) => PowerState::Stopped,
        }
    }

    fn status_of(&self, id: &str, g: &Guest) -> DomainStatus {
        DomainStatus {
            id: id.to_string(),
            state: self.state_of(g),
            volumes: g.volumes.iter().cloned().collect(),
            owner: g.spec.host_id.clone(),
            quarantined: g.quarantined,
        }
    }

    fn with_guest<R>(&self, id: &str, f: impl FnOnce(&mut Guest) -> R) -> HvResult<R> {
        let mut inner = self.lock();
        let g = inner
            .guests
            .get_mut(id)
            .ok_or_else(|| HvError::NotFound(format!("domain {id}")))?;
        Ok(f(g))
    }
}

impl Hypervisor for FakeDriver {
    fn driver(&self) -> &'static str {
        "fake"
    }

    fn inventory(&self) -> HvResult<Inventory> {
        Ok(self.inventory)
    }

    fn list(&self) -> HvResult<Vec<DomainStatus>> {
        let inner = self.lock();
        Ok(inner
            .guests
            .iter()
            .map(|(id, g)| self.status_of(id, g))
            .collect())
    }

    fn status(&self, id: &str) -> HvResult<Option<DomainStatus>> {
        let inner = self.lock();
        Ok(inner.guests.get(id).map(|g| self.status_of(id, g)))
    }

    fn prepare_image(&self, image: &ImageSpec) -> HvResult<()> {
        // The fake accepts any checksum except the one that spells out a mismatch, so tests can
        // exercise the refusal path.
        if image.disk.sha256.chars().all(|c| c == 'f') {
            return Err(HvError::Checksum {
                image: image.id.clone(),
                expected: image.disk.sha256.clone(),
                actual: "0".repeat(64),
            });
        }
        self.lock().images.insert(image.id.clone());
        Ok(())
    }

    fn define(&self, spec: &VmSpec) -> HvResult<()> {
        self.hang();
        let mut inner = self.lock();
        if !inner.images.contains(&spec.image.id) {
            return Err(HvError::Failed(format!(
                "image {} is not prepared on this host",
                spec.image.id
            )));
        }
        inner
            .guests
            .entry(spec.id.clone())
            .or_insert_with(|| Guest {
                spec: spec.clone(),
                running_since: None,
                volumes: BTreeSet::new(),
                console: String::new(),
                quarantined: false,
            });
        Ok(())
    }

    fn start(&self, id: &str) -> HvResult<()> {
        self.hang();
        if self.faults.fail_start {
            return Err(HvError::Failed(format!(
                "domain {id}: start failed (injected fault)"
            )));
        }
        let die_after = self.faults.die_after;
        self.with_guest(id, |g| {
            let dead =
                matches!((g.running_since, die_after), (Some(t), Some(d)) if t.elapsed() >= d);
            if g.running_since.is_none() || dead {
                g.running_since = Some(Instant::now());
                g.console.push_str(&format!(
                    "fake guest {} booted\nhostname: {}\nuser-data: {}\n",
                    g.spec.id, g.spec.name, g.spec.user_data
                ));
            }
        })
    }

    fn shutdown(&self, id: &str) -> HvResult<()> {
        self.power_off(id)
    }

    fn power_off(&self, id: &str) -> HvResult<()> {
        self.with_guest(id, |g| g.running_since = None)
    }

    fn reboot(&self, id: &str) -> HvResult<()> {
        self.with_guest(id, |g| {
            g.running_since = Some(Instant::now());
            g.console.push_str("fake guest rebooted\n");
        })
    }

    fn delete(&self, id: &str) -> HvResult<()> {
        self.lock().guests.remove(id);
        Ok(())
    }

    fn list_volumes(&self) -> HvResult<Vec<VolumeStatus>> {
        let inner = self.lock();
        Ok(inner
            .volumes
            .iter()
            .map(|(id, size)| VolumeStatus {
                id: id.clone(),
                size_gib: *size,
                quarantined: inner.quarantined_volumes.contains(id),
            })
            .collect())
    }

    fn create_volume(&self, id: &str, size_gib: u64) -> HvResult<()> {
        self.lock()
            .volumes
            .entry(id.to_string())
            .or_insert(size_gib);
        Ok(())
    }

    fn extend_volume(&self, id: &str, size_gib: u64) -> HvResult<()> {
        let mut inner = self.lock();
        let v = inner
            .volumes
            .get_mut(id)
            .ok_or_else(|| HvError::NotFound(format!("volume {id}")))?;
        *v = (*v).max(size_gib);
        Ok(())
    }

    fn delete_volume(&self, id: &str) -> HvResult<()> {
        let mut inner = self.lock();
        if inner.guests.values().any(|g| g.volumes.contains(id)) {
            return Err(HvError::Failed(format!("volume {id} is attached")));
        }
        inner.volumes.remove(id);
        inner.quarantined_volumes.remove(id);
        Ok(())
    }

    fn attach_volume(&self, vm: &str, volume: &str) -> HvResult<()> {
        let mut inner = self.lock();
        if !inner.volumes.contains_key(volume) {
            return Err(HvError::NotFound(format!("volume {volume}")));
        }
        let g = inner
            .guests
            .get_mut(vm)
            .ok_or_else(|| HvError::NotFound(format!("domain {vm}")))?;
        g.volumes.insert(volume.to_string());
        Ok(())
    }

    fn detach_volume(&self, vm: &str, volume: &str) -> HvResult<()> {
        self.with_guest(vm, |g| {
            g.volumes.remove(volume);
        })
        .or_else(|e| match e {
            HvError::NotFound(_) => Ok(()),
            e => Err(e),
        })
    }

    fn console_log(&self, id: &str, max_bytes: usize) -> HvResult<Vec<u8>> {
        self.with_guest(id, |g| {
            let b = g.console.as_bytes();
            b[b.len().saturating_sub(max_bytes)..].to_vec()
        })
    }

    fn quarantine(&self, id: &str) -> HvResult<()> {
        self.with_guest(id, |g| {
            g.quarantined = true;
            g.running_since = None;
        })
    }

    fn release(&self, id: &str) -> HvResult<()> {
        self.with_guest(id, |g| g.quarantined = false)
    }

    fn quarantine_volume(&self, id: &str) -> HvResult<()> {
        let mut inner = self.lock();
        if !inner.volumes.contains_key(id) {
            return Err(HvError::NotFound(format!("volume {id}")));
        }
        inner.quarantined_volumes.insert(id.to_string());
        Ok(())
    }

    fn release_volume(&self, id: &str) -> HvResult<()> {
        self.lock().quarantined_volumes.remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str) -> VmSpec {
        VmSpec {
            id: id.into(),
            name: "vm".into(),
            project_id: "p".into(),
            vcpus: 1,
            memory_mib: 128,
            disk_gib: 1,
            image: ImageSpec {
                id: "img".into(),
                format: "qcow2".into(),
                disk: FileSource {
                    source: "/x".into(),
                    sha256: "a".repeat(64),
                },
                kernel: None,
                initrd: None,
                cmdline: String::new(),
            },
            user_data: "hello".into(),
            ssh_keys: vec![],
            host_id: "h".into(),
        }
    }

    #[test]
    fn lifecycle_is_idempotent() {
        let d = FakeDriver::new(Inventory::default(), Faults::default());
        let s = spec("a");
        assert!(d.define(&s).is_err(), "an unprepared image is refused");
        d.prepare_image(&s.image).unwrap();
        d.define(&s).unwrap();
        d.define(&s).unwrap();
        assert_eq!(d.list().unwrap().len(), 1);
        d.start("a").unwrap();
        d.start("a").unwrap();
        assert_eq!(d.status("a").unwrap().unwrap().state, PowerState::Running);
        d.create_volume("v", 1).unwrap();
        d.attach_volume("a", "v").unwrap();
        assert!(d.delete_volume("v").is_err(), "attached volumes stay");
        d.detach_volume("a", "v").unwrap();
        d.delete_volume("v").unwrap();
        let log = String::from_utf8(d.console_log("a", 1000).unwrap()).unwrap();
        assert!(log.contains("user-data: hello"));
        d.delete("a").unwrap();
        d.delete("a").unwrap();
        assert!(d.status("a").unwrap().is_none());
    }

    #[test]
    fn faults() {
        let d = FakeDriver::new(
            Inventory::default(),
            Faults {
                fail_start: true,
                ..Default::default()
            },
        );
        let s = spec("a");
        d.prepare_image(&s.image).unwrap();
        d.define(&s).unwrap();
        assert!(matches!(d.start("a"), Err(HvError::Failed(_))));
        let mut bad = s.image.clone();
        bad.disk.sha256 = "f".repeat(64);
        assert!(matches!(
            d.prepare_image(&bad),
            Err(HvError::Checksum { .. })
        ));
    }
}
