//! End to end on real libvirt and QEMU: a server over TLS (its default), an agent on the
//! libvirt driver enrolled with a pinned join token and streaming over mutual TLS, and the
//! project's own test guest, managed by the tenant with a member token of its project. Needs `scripts/setup-libvirt.sh` (libvirtd running),
//! `scripts/build-guest-image.sh` (the guest) and the agent built with `--features libvirt`;
//! `scripts/test-all.sh` does all three. Missing pieces fail the test, loudly.

#![allow(clippy::unwrap_used)]

use andromede_api::v1::*;
use andromede_tests::agent::{cloudctl_with, files_with, instance_state, r, virsh, Agent};
use andromede_tests::{policy, Clients, Server};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(180);

fn guest_dir() -> PathBuf {
    std::env::var("ANDROMEDE_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guest"))
}

/// (path, sha256) of one file of the built guest.
fn guest_file(name: &str) -> ImageFile {
    let dir = guest_dir();
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap_or_else(|e| {
        panic!(
            "the test guest is not built in {} ({e}): run scripts/build-guest-image.sh",
            dir.display()
        )
    });
    let sum = sums
        .lines()
        .find(|l| {
            l.split_whitespace()
                .nth(1)
                .map(|f| f.trim_start_matches('*'))
                == Some(name)
        })
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{name} missing from SHA256SUMS"))
        .to_string();
    ImageFile {
        source: dir.join(name).canonicalize().unwrap().display().to_string(),
        checksum_sha256: sum,
    }
}

async fn console(c: &mut Clients, id: &str) -> String {
    let log = c
        .compute
        .get_console_log(GetConsoleLogRequest {
            r#ref: r(id),
            max_bytes: 1 << 20,
        })
        .await
        .unwrap()
        .into_inner();
    String::from_utf8_lossy(&log.data).into_owned()
}

/// The block devices the guest last printed, from its `disks:` lines.
fn last_disks(log: &str) -> Vec<String> {
    log.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("disks:"))
        .map(|d| d.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

async fn wait_console(c: &mut Clients, id: &str, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + T;
    loop {
        let log = console(c, id).await;
        if f(&log) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "console of {id} never showed {what}; it reads:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn domains() -> Vec<String> {
    virsh(&["list", "--all", "--name"])
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| l.starts_with("andromede-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_guests_through_libvirt() {
    assert!(
        Path::new("/run/libvirt/libvirt-sock").exists(),
        "libvirtd is not running: run scripts/setup-libvirt.sh (scripts/test-all.sh does)"
    );
    let root = tempfile::tempdir().unwrap();
    let pool_dir = root.path().join("pool");
    let console_dir = root.path().join("console");
    let pool_name = format!(
        "andromede-test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut s = Server::new(1, root.path(), &["--host-ttl-secs", "5"]);
    s.tls = true;
    s.start(true);
    let mut c = s.clients().await;
    c.wait_leader().await;
    c.datacenter("paris", "FR", "FR", "FR", &[]).await;
    c.datacenter("frankfurt", "DE", "DE", "DE", &[]).await;
    c.project("ministry", policy(&["FR"], &[], &[], false), None)
        .await;
    // The tenant acts with a member token of its project, never the operator's.
    let member = c.member_token("ministry", "ministry-ops").await;
    let mut tc = Clients::with_token(s.channel().await, &member);
    let ca = s.ca_file();
    let admin =
        |args: &[&str]| cloudctl_with(&s.endpoint(), andromede_tests::TOKEN, Some(&ca), args);
    let cloudctl =
        |_ep: &str, args: &[&str]| cloudctl_with(&s.endpoint(), &member, Some(&ca), args);
    c.infra
        .create_flavor(CreateFlavorRequest {
            name: "g2".into(),
            vcpus: 2,
            memory_mib: 384,
            disk_gib: 1,
            request_id: String::new(),
        })
        .await
        .unwrap();
    let disk = guest_file("root.qcow2");
    c.infra
        .create_image(CreateImageRequest {
            name: "guest".into(),
            format: "qcow2".into(),
            source: disk.source.clone(),
            checksum_sha256: disk.checksum_sha256.clone(),
            kernel: Some(guest_file("vmlinuz")),
            initrd: Some(guest_file("initrd.img")),
            cmdline: "console=ttyS0 rdinit=/init".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Enrollment with a token made by cloudctl.
    let ep = s.endpoint();
    let (ok, out, err) = admin(&[
        "-o",
        "json",
        "host",
        "join-token",
        "create",
        "--datacenter",
        "paris",
    ]);
    assert!(ok, "{err}");
    let token = serde_json::from_str::<serde_json::Value>(&out).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let args = [
        "--driver",
        "libvirt",
        "--hostname",
        "kvm-1",
        "--heartbeat-secs",
        "1",
        "--resync-secs",
        "2",
        "--stop-timeout-secs",
        "20",
        "--libvirt-pool",
        &pool_name,
        "--libvirt-pool-dir",
        pool_dir.to_str().unwrap(),
        "--libvirt-console-dir",
        console_dir.to_str().unwrap(),
    ];
    let mut agent = Agent::new(&root.path().join("agent"), &[s.addr()], &args);
    agent.start(Some(&token), &[]);
    let host = andromede_tests::agent::eventually("host kvm-1 enrolled", T, || {
        let mut c = c.clone();
        async move {
            c.host_named("kvm-1")
                .await
                .ok_or_else(|| "absent".to_string())
        }
    })
    .await;
    let host_id = host.meta.as_ref().unwrap().id.clone();
    assert_eq!(host.driver, "libvirt", "{}", agent.log());
    assert!(host.capacity.unwrap().vcpus >= 1);

    // A placement outside the policy is refused before any host is touched.
    let before = domains();
    let (ok, _, err) = cloudctl(
        &ep,
        &[
            "instance",
            "create",
            "abroad",
            "-p",
            "ministry",
            "--flavor",
            "g2",
            "--image",
            "guest",
            "--country",
            "DE",
        ],
    );
    assert!(!ok && err.contains("policy"), "{err}");
    assert_eq!(domains(), before);

    // cloudctl create --user-data --wait → RUNNING, with the user-data in the console.
    let created = Instant::now();
    let (ok, out, err) = cloudctl(
        &ep,
        &[
            "-o",
            "json",
            "instance",
            "create",
            "vm-1",
            "-p",
            "ministry",
            "--flavor",
            "g2",
            "--image",
            "guest",
            "--user-data",
            "sovereign-hello-42",
            "--wait",
            "--timeout",
            "240",
        ],
    );
    assert!(ok, "create failed: {err}\nagent log:\n{}", agent.log());
    let total = created.elapsed();
    let inst: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = inst["meta"]["id"].as_str().unwrap().to_string();
    let running = tc.get_instance(&id).await.unwrap();
    assert_eq!(instance_state(&running), InstanceState::Running);
    let hv_ms: u64 = running
        .state_reason
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or(0);
    println!(
        "TIMING create→RUNNING {} ms: host (image, disks, define, start) {hv_ms} ms, control plane and polling {} ms",
        total.as_millis(),
        total.as_millis().saturating_sub(u128::from(hv_ms))
    );
    // The guest prints its disks after the user-data: wait for that line too.
    let log = wait_console(&mut tc, &id, "the guest marker, user-data and disks", |l| {
        l.contains("ANDROMEDE-GUEST-UP")
            && l.contains("sovereign-hello-42")
            && !last_disks(l).is_empty()
    })
    .await;
    assert!(log.contains("vm-1"), "hostname missing from:\n{log}");
    let (ok, out, _) = cloudctl(&ep, &["instance", "console-log", "vm-1", "-p", "ministry"]);
    assert!(ok && out.contains("ANDROMEDE-GUEST-UP"), "{out}");
    let dom = format!("andromede-{id}");
    let info = virsh(&["dominfo", &dom]);
    assert!(
        info.lines()
            .any(|l| l.starts_with("CPU(s):") && l.trim_end().ends_with(" 2")),
        "{info}"
    );
    assert!(info.contains(&format!("{} KiB", 384 * 1024)), "{info}");
    let disks_before = last_disks(&log);
    assert!(!disks_before.is_empty(), "no disks line in:\n{log}");

    // A 1 GiB volume: attach (the guest sees one more disk), detach (it goes away).
    let (ok, _, err) = cloudctl(
        &ep,
        &[
            "volume",
            "create",
            "data-1",
            "-p",
            "ministry",
            "--size-gib",
            "1",
            "--near-instance",
            "vm-1",
            "--wait",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = cloudctl(
        &ep,
        &[
            "volume",
            "attach",
            "data-1",
            "-p",
            "ministry",
            "--instance",
            "vm-1",
            "--wait",
        ],
    );
    assert!(ok, "{err}\n{}", agent.log());
    let n = disks_before.len();
    wait_console(&mut tc, &id, "one more disk", |l| {
        last_disks(l).len() == n + 1
    })
    .await;
    let (ok, _, err) = cloudctl(
        &ep,
        &["volume", "detach", "data-1", "-p", "ministry", "--wait"],
    );
    assert!(ok, "{err}");
    wait_console(&mut tc, &id, "the disk gone again", |l| {
        last_disks(l).len() == n
    })
    .await;

    // Stop (graceful), start, reboot.
    for (verb, want) in [
        ("stop", "STOPPED"),
        ("start", "RUNNING"),
        ("reboot", "RUNNING"),
    ] {
        let (ok, out, err) = cloudctl(
            &ep,
            &[
                "-o",
                "json",
                "instance",
                verb,
                "vm-1",
                "-p",
                "ministry",
                "--wait",
                "--timeout",
                "240",
            ],
        );
        assert!(ok, "{verb}: {err}\n{}", agent.log());
        assert!(out.contains(want), "{verb}: {out}");
    }
    let state = virsh(&["domstate", &dom]);
    assert!(state.contains("running"), "{state}");

    // The agent killed in the middle of a create, restarted: one domain, converged.
    let (ok, out, err) = cloudctl(
        &ep,
        &[
            "-o", "json", "instance", "create", "vm-2", "-p", "ministry", "--flavor", "g2",
            "--image", "guest",
        ],
    );
    assert!(ok, "{err}");
    let id2 = serde_json::from_str::<serde_json::Value>(&out).unwrap()["meta"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Kill it the moment its domain exists: disks and definition done, start in flight.
    let dom2 = format!("andromede-{id2}");
    let deadline = Instant::now() + T;
    while !domains().contains(&dom2) {
        assert!(Instant::now() < deadline, "domain {dom2} never defined");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    agent.kill9();
    let at_kill = instance_state(&tc.get_instance(&id2).await.unwrap());
    println!("agent killed with {dom2} defined and the instance {at_kill:?}");
    agent.start(None, &[]);
    tc.wait_instance(&id2, InstanceState::Running, T).await;
    assert_eq!(domains().iter().filter(|d| **d == dom2).count(), 1);

    // The agent stopped: host down after the TTL, instances HOST_LOST; back: RUNNING, no twin.
    agent.kill9();
    c.wait_host(&host_id, HostState::Down, T).await;
    tc.wait_instance(&id, InstanceState::HostLost, T).await;
    tc.wait_instance(&id2, InstanceState::HostLost, T).await;
    agent.start(None, &[]);
    c.wait_host(&host_id, HostState::Up, T).await;
    tc.wait_instance(&id, InstanceState::Running, T).await;
    tc.wait_instance(&id2, InstanceState::Running, T).await;
    let mut ours: Vec<String> = domains()
        .into_iter()
        .filter(|d| *d == dom || *d == dom2)
        .collect();
    ours.sort();
    let mut want = vec![dom.clone(), dom2.clone()];
    want.sort();
    assert_eq!(ours, want);
    assert_eq!(tc.instances("ministry", false).await.len(), 2);

    // Delete everything: no domain, no file left behind.
    let vol = c
        .volumes
        .get_volume(GetRequest {
            r#ref: Some(ResourceRef {
                id_or_name: "data-1".into(),
                project: "ministry".into(),
            }),
            read: None,
        })
        .await
        .unwrap()
        .into_inner();
    let vid = vol.meta.as_ref().unwrap().id.clone();
    for name in ["vm-1", "vm-2"] {
        let (ok, _, err) = cloudctl(
            &ep,
            &[
                "instance",
                "delete",
                name,
                "-p",
                "ministry",
                "--wait",
                "--timeout",
                "240",
            ],
        );
        assert!(ok, "{err}");
    }
    let (ok, _, err) = cloudctl(
        &ep,
        &["volume", "delete", "data-1", "-p", "ministry", "--wait"],
    );
    assert!(ok, "{err}");
    let left = domains();
    assert!(!left.contains(&dom) && !left.contains(&dom2), "{left:?}");
    for needle in [&id, &id2, &vid] {
        assert!(
            files_with(&pool_dir, needle).is_empty(),
            "{:?}",
            files_with(&pool_dir, needle)
        );
        assert!(
            files_with(&console_dir, needle).is_empty(),
            "{:?}",
            files_with(&console_dir, needle)
        );
    }
    // The tenant's token secret and its user-data reach no file of the server's data directory
    // (log included: the token is hashed, the user-data sealed) and no agent log.
    for needle in [member.as_str(), "sovereign-hello-42"] {
        let hits = andromede_tests::files_containing(&s.dir, needle.as_bytes());
        assert!(hits.is_empty(), "{needle:?} found in {hits:?}");
        assert!(!agent.log().contains(needle), "{needle:?} in the agent log");
    }
    agent.kill9();
    // Leave libvirt as we found it: the test's own storage pool goes too.
    let _ = std::process::Command::new("virsh")
        .args(["-c", "qemu:///system", "pool-destroy", &pool_name])
        .output();
    let _ = std::process::Command::new("virsh")
        .args(["-c", "qemu:///system", "pool-undefine", &pool_name])
        .output();
}
