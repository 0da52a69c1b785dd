#![cfg(feature = "libvirt")]
//! The libvirt driver against the host's running libvirtd and the project's test guest
//! (scripts/setup-libvirt.sh, scripts/build-guest-image.sh): boots a real guest and walks it
//! through volumes, stop/start, reboot and delete.
// Helpers outside #[test] functions unwrap too: a failure here is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use andromede_agent::hypervisor::libvirt::{LibvirtConfig, LibvirtDriver};
use andromede_agent::hypervisor::{FileSource, HvError, Hypervisor, ImageSpec, PowerState, VmSpec};

const MARKER: &str = "ANDROMEDE-GUEST-UP";

fn guest_dir() -> PathBuf {
    match std::env::var_os("ANDROMEDE_GUEST_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/guest"),
    }
}

/// `name -> sha256` from the image build's SHA256SUMS.
fn sums(dir: &Path) -> std::collections::HashMap<String, String> {
    let path = dir.join("SHA256SUMS");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "test guest missing: cannot read {} ({e}); run scripts/build-guest-image.sh",
            path.display()
        )
    });
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((
                parts.nth(1)?.to_string(),
                l.split_whitespace().next()?.to_string(),
            ))
        })
        .collect()
}

fn source(dir: &Path, sums: &std::collections::HashMap<String, String>, name: &str) -> FileSource {
    let path = dir.join(name);
    assert!(
        path.exists(),
        "test guest missing: {} not found; run scripts/build-guest-image.sh",
        path.display()
    );
    FileSource {
        source: format!("file://{}", path.display()),
        sha256: sums
            .get(name)
            .unwrap_or_else(|| panic!("{name} not listed in SHA256SUMS"))
            .clone(),
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn console(hv: &LibvirtDriver, id: &str) -> String {
    String::from_utf8_lossy(&hv.console_log(id, 1 << 20).unwrap()).into_owned()
}

fn virsh(args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh")
        .arg("-c")
        .arg("qemu:///system")
        .args(args)
        .output()
        .expect("virsh runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Removes what a failed run left behind, so reruns start clean.
struct Cleanup<'a> {
    hv: &'a LibvirtDriver,
    vm: String,
    volume: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.hv.console_log(&self.vm, 4096).unwrap_or_default();
            eprintln!(
                "--- guest console tail ---\n{}\n--- end ---",
                String::from_utf8_lossy(&log)
            );
        }
        let _ = self.hv.delete(&self.vm);
        let _ = self.hv.delete_volume(&self.volume);
    }
}

#[test]
fn libvirt_driver_runs_a_real_guest() {
    let dir = guest_dir();
    let sums = sums(&dir);
    let image = ImageSpec {
        id: "andromede-test-guest".into(),
        format: "qcow2".into(),
        disk: source(&dir, &sums, "root.qcow2"),
        kernel: Some(source(&dir, &sums, "vmlinuz")),
        initrd: Some(source(&dir, &sums, "initrd.img")),
        cmdline: "console=ttyS0 rdinit=/init".into(),
    };

    assert!(
        Path::new("/run/libvirt/libvirt-sock").exists(),
        "libvirtd is not running (no /run/libvirt/libvirt-sock); run scripts/setup-libvirt.sh"
    );
    let cfg = LibvirtConfig::default();
    let hv = LibvirtDriver::connect(cfg.clone()).unwrap_or_else(|e| {
        panic!(
            "cannot use libvirt at {}: {e}; run scripts/setup-libvirt.sh",
            cfg.uri
        )
    });
    println!("domain type: {}", hv.virt_type());

    let inv = hv.inventory().unwrap();
    assert!(
        inv.vcpus >= 1 && inv.memory_mib > 0 && inv.disk_gib > 0,
        "{inv:?}"
    );

    // A wrong checksum is refused and nothing lands in the cache under the image's name.
    let bad_id = format!("bad-{}", uuid::Uuid::new_v4().simple());
    let mut bad = image.clone();
    bad.id = bad_id.clone();
    bad.disk.sha256 = "0".repeat(64);
    match hv.prepare_image(&bad) {
        Err(HvError::Checksum {
            expected, actual, ..
        }) => {
            assert_eq!(expected, "0".repeat(64));
            assert_eq!(actual, image.disk.sha256);
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    let leftovers: Vec<_> = std::fs::read_dir(&cfg.pool_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(&bad_id))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    hv.prepare_image(&image).unwrap();
    let again = Instant::now();
    hv.prepare_image(&image).unwrap();
    assert!(
        again.elapsed() < Duration::from_secs(1),
        "second prepare_image is not cheap"
    );

    let id = uuid::Uuid::new_v4().to_string();
    let vol = format!("t{}", uuid::Uuid::new_v4().simple());
    let _cleanup = Cleanup {
        hv: &hv,
        vm: id.clone(),
        volume: vol.clone(),
    };
    let name = format!("guest-{}", &id[..8]);
    let user_data = format!("hello from andromede {id}\nsecond line");
    let spec = VmSpec {
        id: id.clone(),
        name: name.clone(),
        project_id: "proj-test".into(),
        vcpus: 2,
        memory_mib: 256,
        disk_gib: 1,
        image: image.clone(),
        user_data: user_data.clone(),
        ssh_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest test@andromede".into()],
        host_id: "host-test".into(),
    };

    let t0 = Instant::now();
    hv.define(&spec).unwrap();
    hv.define(&spec).unwrap();
    assert_eq!(hv.status(&id).unwrap().unwrap().state, PowerState::Stopped);
    hv.start(&id).unwrap();
    hv.start(&id).unwrap();
    assert!(hv.list().unwrap().iter().any(|d| d.id == id));

    let boot = wait_for(
        "the guest's marker, hostname and user-data",
        Duration::from_secs(120),
        || {
            let log = console(&hv, &id);
            (log.contains(MARKER)
                && log.contains(&format!("hostname: {name}"))
                && log.contains("user-data-end"))
            .then_some(log)
        },
    );
    println!("define -> marker: {:?}", t0.elapsed());
    for line in user_data.lines() {
        assert!(
            boot.contains(&format!("user-data: {line}")),
            "user-data line {line:?} missing from console:\n{boot}"
        );
    }
    let initial_disks = wait_for("the disk list", Duration::from_secs(30), || {
        console(&hv, &id)
            .lines()
            .find(|l| l.starts_with("disks: "))
            .map(|l| l.trim_end().to_string())
    });
    assert_eq!(initial_disks, "disks: vda vdb");

    let (ok, info) = virsh(&["dominfo", &format!("andromede-{id}")]);
    assert!(ok, "virsh dominfo failed");
    assert!(
        info.lines()
            .any(|l| l.starts_with("CPU(s):") && l.trim_end().ends_with(" 2")),
        "{info}"
    );
    assert!(info.contains(&format!("{} KiB", 256 * 1024)), "{info}");

    // A volume, hot-plugged: the guest sees one more disk.
    hv.create_volume(&vol, 1).unwrap();
    hv.create_volume(&vol, 1).unwrap();
    let v = hv.list_volumes().unwrap();
    assert!(v.iter().any(|s| s.id == vol && s.size_gib == 1), "{v:?}");
    hv.attach_volume(&id, &vol).unwrap();
    hv.attach_volume(&id, &vol).unwrap();
    assert_eq!(hv.status(&id).unwrap().unwrap().volumes, vec![vol.clone()]);
    wait_for(
        "the hot-plugged disk in the guest",
        Duration::from_secs(60),
        || {
            console(&hv, &id)
                .contains("disks: vda vdb vdc")
                .then_some(())
        },
    );
    hv.extend_volume(&vol, 2).unwrap();
    let v = hv.list_volumes().unwrap();
    assert!(v.iter().any(|s| s.id == vol && s.size_gib == 2), "{v:?}");

    hv.detach_volume(&id, &vol).unwrap();
    wait_for(
        "the volume to leave the guest",
        Duration::from_secs(60),
        || {
            hv.detach_volume(&id, &vol).unwrap();
            hv.status(&id)
                .unwrap()
                .unwrap()
                .volumes
                .is_empty()
                .then_some(())
        },
    );
    wait_for(
        "the guest to report the disk gone",
        Duration::from_secs(60),
        || {
            let log = console(&hv, &id);
            let last = log.lines().rfind(|l| l.starts_with("disks: "));
            (last.map(str::trim_end) == Some("disks: vda vdb")).then_some(())
        },
    );
    let (_, persistent) = virsh(&["dumpxml", "--inactive", &format!("andromede-{id}")]);
    assert!(!persistent.contains(&format!("vol-{vol}")), "{persistent}");

    // Graceful stop through the ACPI power button, then start again.
    let t = Instant::now();
    hv.shutdown(&id).unwrap();
    wait_for("the guest to power off", Duration::from_secs(60), || {
        (hv.status(&id).unwrap().unwrap().state == PowerState::Stopped).then_some(())
    });
    println!("graceful shutdown took {:?}", t.elapsed());
    assert!(console(&hv, &id).contains("ANDROMEDE-GUEST-POWEROFF"));
    hv.shutdown(&id).unwrap();
    hv.start(&id).unwrap();
    wait_for("the second boot", Duration::from_secs(120), || {
        (console(&hv, &id).matches(MARKER).count() >= 2).then_some(())
    });

    let t = Instant::now();
    hv.reboot(&id).unwrap();
    wait_for("the boot after reboot", Duration::from_secs(120), || {
        (console(&hv, &id).matches(MARKER).count() >= 3).then_some(())
    });
    println!("reboot -> marker: {:?}", t.elapsed());
    assert_eq!(hv.status(&id).unwrap().unwrap().state, PowerState::Running);

    hv.power_off(&id).unwrap();
    hv.power_off(&id).unwrap();
    assert_eq!(hv.status(&id).unwrap().unwrap().state, PowerState::Stopped);

    hv.delete(&id).unwrap();
    hv.delete(&id).unwrap();
    assert!(hv.status(&id).unwrap().is_none());
    let (exists, _) = virsh(&["dominfo", &format!("andromede-{id}")]);
    assert!(!exists, "domain andromede-{id} still defined");
    for d in [&cfg.pool_dir, &cfg.console_dir] {
        let left: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("inst-{id}")))
            .collect();
        assert!(left.is_empty(), "left in {}: {left:?}", d.display());
    }

    hv.delete_volume(&vol).unwrap();
    hv.delete_volume(&vol).unwrap();
    assert!(!cfg.pool_dir.join(format!("vol-{vol}.qcow2")).exists());
    assert!(!hv.list_volumes().unwrap().iter().any(|s| s.id == vol));
}

fn pool_path(name: &str) -> String {
    let (_, xml) = virsh(&["pool-dumpxml", name]);
    xml.split("<path>")
        .nth(1)
        .and_then(|r| r.split("</path>").next())
        .unwrap_or_default()
        .to_string()
}

fn drop_pool(name: &str) {
    let _ = virsh(&["pool-destroy", name]);
    let _ = virsh(&["pool-undefine", name]);
}

/// A driver on its own pool under `dir`.
fn driver_in(dir: &Path, pool: &str) -> LibvirtDriver {
    LibvirtDriver::connect(LibvirtConfig {
        pool_name: pool.into(),
        pool_dir: dir.join("pool"),
        console_dir: dir.join("console"),
        ..LibvirtConfig::default()
    })
    .unwrap()
}

#[test]
fn pool_paths_are_absolute_and_misplaced_pools_fixed_or_refused() {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let name = format!("andromede-test-rel-{tag}");
    // What an older agent left: the pool defined at a relative path libvirtd cannot open.
    let rel = format!("andromede-rel-{tag}/pool");
    let (ok, _) = virsh(&["pool-define-as", &name, "dir", "--target", &rel]);
    assert!(ok, "pool-define-as");
    // Relative to the working directory, as `andromede-data` is for the dev cloud.
    let dir = tempfile::tempdir_in(".").unwrap();
    let cwd_rel = PathBuf::from(dir.path().file_name().unwrap());
    assert!(cwd_rel.is_relative());
    let r = LibvirtDriver::connect(LibvirtConfig {
        pool_name: name.clone(),
        pool_dir: cwd_rel.join("pool"),
        console_dir: cwd_rel.join("console"),
        ..LibvirtConfig::default()
    });
    let at = pool_path(&name);
    drop_pool(&name);
    let hv = r.unwrap();
    let want = dir.path().canonicalize().unwrap().join("pool");
    assert_eq!(hv.config().pool_dir, want);
    assert_eq!(
        Path::new(&at),
        want,
        "the empty pool is redefined where asked"
    );
    assert!(hv.config().console_dir.is_absolute());

    // A pool elsewhere that holds files is never moved: refused with the fix.
    let name2 = format!("andromede-test-busy-{tag}");
    let busy = tempfile::tempdir().unwrap();
    std::fs::write(busy.path().join("vol-x.qcow2"), b"data").unwrap();
    let (ok, _) = virsh(&[
        "pool-define-as",
        &name2,
        "dir",
        "--target",
        &busy.path().display().to_string(),
    ]);
    assert!(ok, "pool-define-as");
    let other = tempfile::tempdir().unwrap();
    let r = LibvirtDriver::connect(LibvirtConfig {
        pool_name: name2.clone(),
        pool_dir: other.path().join("pool"),
        console_dir: other.path().join("console"),
        ..LibvirtConfig::default()
    });
    let at2 = pool_path(&name2);
    drop_pool(&name2);
    let e = r
        .err()
        .expect("a non-empty pool elsewhere is refused")
        .to_string();
    assert!(e.contains(&format!("pool-undefine {name2}")), "{e}");
    assert_eq!(Path::new(&at2), busy.path(), "the busy pool is left alone");
    assert!(busy.path().join("vol-x.qcow2").exists());
}

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn images_with_backing_or_data_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pool = format!(
        "andromede-test-img-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let hv = driver_in(dir.path(), &pool);
    let base = dir.path().join("host-secret.raw");
    std::fs::write(&base, vec![7u8; 65536]).unwrap();
    let overlay = dir.path().join("overlay.qcow2");
    let b = base.display().to_string();
    let o = overlay.display().to_string();
    qemu_img(&["create", "-q", "-f", "qcow2", "-F", "raw", "-b", &b, &o]);
    let external = dir.path().join("external.qcow2");
    let data = dir.path().join("external.data");
    let x = external.display().to_string();
    let d = format!("data_file={}", data.display());
    qemu_img(&["create", "-q", "-f", "qcow2", "-o", &d, &x, "1M"]);
    let plain = dir.path().join("plain.qcow2");
    let p = plain.display().to_string();
    qemu_img(&["create", "-q", "-f", "qcow2", &p, "1M"]);

    let spec = |id: &str, path: &Path| ImageSpec {
        id: id.into(),
        format: "qcow2".into(),
        disk: FileSource {
            source: path.display().to_string(),
            sha256: sha256_of(path),
        },
        kernel: None,
        initrd: None,
        cmdline: String::new(),
    };
    let r1 = hv.prepare_image(&spec("backed", &overlay));
    let r2 = hv.prepare_image(&spec("external", &external));
    let r3 = hv.prepare_image(&spec("plain", &plain));
    drop_pool(&pool);
    let e = r1.unwrap_err().to_string();
    assert!(e.contains("backing file"), "{e}");
    let e = r2.unwrap_err().to_string();
    assert!(e.contains("external data file"), "{e}");
    r3.unwrap();
    let cached: Vec<String> = std::fs::read_dir(dir.path().join("pool"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !cached
            .iter()
            .any(|n| n.contains("backed") || n.contains("external")),
        "{cached:?}"
    );
}
