//! The README's run command as written: `andromede-server dev` with its default flags, started
//! from the repository root (so its data directory is the relative `andromede-data`), must give
//! a local host on the libvirt driver whose instances are real libvirt domains.
//!
//! It needs what `scripts/dev.sh` sets up (libvirtd running, the test guest in target/guest)
//! and the default port 7400 free; anything missing fails the test, loudly. It refuses to run
//! over an existing `andromede-data` (someone's dev cloud), and removes everything it made.

#![allow(clippy::unwrap_used)]

use andromede_tests::agent::{cloudctl_as, virsh};
use andromede_tests::{bin, repo_root};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ENDPOINT: &str = "https://127.0.0.1:7400";
const T: Duration = Duration::from_secs(180);

/// cloudctl over TLS with what the dev cloud printed: its CA and its first cloud-admin token.
fn cli(args: &[&str]) -> (bool, String, String) {
    let data = repo_root().join("andromede-data");
    let token = std::fs::read_to_string(data.join("bootstrap-admin-token")).unwrap_or_default();
    let ca = data.join("tls/ca.pem");
    let mut all = vec!["--ca-cert", ca.to_str().unwrap()];
    all.extend_from_slice(args);
    cloudctl_as(ENDPOINT, token.trim(), &all)
}

/// Names of the libvirt storage pools whose directory lies under `dir`.
fn pools_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    virsh(&["pool-list", "--all", "--name"])
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .filter(|n| {
            let xml = virsh(&["pool-dumpxml", n]);
            xml.contains(&format!("<path>{dir}"))
        })
        .map(String::from)
        .collect()
}

/// The dev server, and everything it leaves behind: its domains, its pool and its data.
struct DevCloud {
    child: Option<Child>,
    data: PathBuf,
    log: PathBuf,
}

impl DevCloud {
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM: the server stops its local agent on the way out.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for DevCloud {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- andromede-server dev output ---\n{}\n--- end ---",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        // Every domain whose disks live in this data directory is this test's.
        let data = self.data.to_string_lossy().into_owned();
        for name in virsh(&["list", "--all", "--name"]).lines().map(str::trim) {
            if name.starts_with("andromede-") && virsh(&["dumpxml", name]).contains(&data) {
                let _ = Command::new("virsh")
                    .args(["-c", "qemu:///system", "destroy", name])
                    .output();
                let _ = Command::new("virsh")
                    .args(["-c", "qemu:///system", "undefine", name])
                    .output();
            }
        }
        for pool in pools_under(&self.data) {
            let _ = Command::new("virsh")
                .args(["-c", "qemu:///system", "pool-destroy", &pool])
                .output();
            let _ = Command::new("virsh")
                .args(["-c", "qemu:///system", "pool-undefine", &pool])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[test]
fn readme_run_command_gives_real_libvirt_guests() {
    let root = repo_root();
    let data = root.join("andromede-data");
    assert!(
        !data.exists(),
        "{} exists (a dev cloud's data): stop that dev cloud and remove it to run this test",
        data.display()
    );
    assert!(
        Path::new("/run/libvirt/libvirt-sock").exists(),
        "libvirtd is not running: run scripts/setup-libvirt.sh (scripts/dev.sh does)"
    );
    assert!(
        root.join("target/guest/SHA256SUMS").exists(),
        "the test guest is not built: run scripts/build-guest-image.sh target/guest"
    );
    // The README's endpoint is fixed: a busy port is a failure, never a skip.
    drop(
        std::net::TcpListener::bind("127.0.0.1:7400").unwrap_or_else(|e| {
            panic!("port 7400 (the dev cloud's default) is busy: {e}; stop whatever listens there")
        }),
    );
    let server = bin("andromede-server");
    assert!(
        bin("andromede-agent").exists(),
        "the dev cloud needs andromede-agent next to andromede-server"
    );

    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("dev.log");
    let out = std::fs::File::create(&log).unwrap();
    // As the README runs it: from the repository root, default flags.
    let child = Command::new(server)
        .arg("dev")
        .current_dir(&root)
        .env_remove("ANDROMEDE_TOKEN")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut dev = DevCloud {
        child: Some(child),
        data: data.clone(),
        log: log.clone(),
    };

    // The local host enrolls on the libvirt driver and shows it in `host list`.
    let deadline = Instant::now() + T;
    let hosts = loop {
        let (ok, out, err) = cli(&["host", "list"]);
        if ok
            && out
                .lines()
                .any(|l| l.contains("local-1") && l.contains("UP"))
        {
            break out;
        }
        if let Some(c) = dev.child.as_mut() {
            if let Some(status) = c.try_wait().unwrap() {
                panic!("andromede-server dev exited ({status}) before its host came up");
            }
        }
        assert!(
            Instant::now() < deadline,
            "local-1 never came up: {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let line = hosts.lines().find(|l| l.contains("local-1")).unwrap();
    assert!(line.contains("libvirt"), "host list: {hosts}");

    // The README tour's first instance.
    let (ok, _, err) = cli(&[
        "project",
        "create",
        "ministry",
        "--allow-jurisdiction",
        "EU",
        "--operator-immunity",
        "--quota-instances",
        "10",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&[
        "instance",
        "create",
        "web-1",
        "-p",
        "ministry",
        "--flavor",
        "small",
        "--image",
        "tiny",
        "--user-data",
        "hello",
        "--country",
        "FR",
        "--wait",
        "--timeout",
        "180",
    ]);
    assert!(ok, "instance create: {err}");
    let (ok, out, err) = cli(&["-o", "json", "instance", "get", "web-1", "-p", "ministry"]);
    assert!(ok, "{err}");
    let inst: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = inst["meta"]["id"].as_str().unwrap().to_string();

    // A real domain, running, with its disks under the (absolute) data directory.
    let dom = format!("andromede-{id}");
    let state = virsh(&["domstate", &dom]);
    assert_eq!(state.trim(), "running", "{dom}: {state}");
    let xml = virsh(&["dumpxml", &dom]);
    assert!(
        xml.contains(&format!("{}/pool/", data.display())),
        "disks not under {}: {xml}",
        data.display()
    );
    let pools = pools_under(&data);
    assert_eq!(pools.len(), 1, "{pools:?}");

    // Clean up through the product first, then the guard removes whatever is left.
    let (ok, _, err) = cli(&["instance", "delete", "web-1", "-p", "ministry", "--wait"]);
    assert!(ok, "instance delete: {err}");
    let (exists, _) = {
        let o = Command::new("virsh")
            .args(["-c", "qemu:///system", "dominfo", &dom])
            .output()
            .unwrap();
        (o.status.success(), ())
    };
    assert!(!exists, "{dom} still defined after the delete");
    dev.stop();
}
