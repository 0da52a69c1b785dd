//! The embedded default cloud: one datacenter, flavors, an image (the project's own test guest
//! when it has been built) and either a local agent or simulated hosts.

use crate::node::{Node, Proposal};
use andromede_api::v1::*;
use andromede_store::Command;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn meta(id: &str, name: &str) -> Option<Meta> {
    Some(Meta {
        id: id.into(),
        name: name.into(),
        ..Default::default()
    })
}

/// The test guest built by `scripts/build-guest-image.sh`: files and their SHA-256 sums.
struct Guest {
    disk: (String, String),
    kernel: (String, String),
    initrd: (String, String),
}

fn guest(dir: &Path) -> Option<Guest> {
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).ok()?;
    let sum = |name: &str| -> Option<(String, String)> {
        let line = sums.lines().find(|l| {
            l.split_whitespace()
                .nth(1)
                .map(|f| f.trim_start_matches('*'))
                == Some(name)
        })?;
        let hash = line.split_whitespace().next()?.to_string();
        let path = std::fs::canonicalize(dir.join(name)).ok()?;
        Some((path.display().to_string(), hash))
    };
    Some(Guest {
        disk: sum("root.qcow2")?,
        kernel: sum("vmlinuz")?,
        initrd: sum("initrd.img")?,
    })
}

/// Seeds an empty cloud once it has a leader; does nothing if a datacenter already exists.
pub async fn seed(node: Arc<Node>, hosts: u32, guest_dir: Option<PathBuf>) -> anyhow::Result<()> {
    for _ in 0..200 {
        if node.is_leader() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if node.read(|s| !s.datacenters.is_empty()) {
        return Ok(());
    }
    let mut cmds = vec![Command::CreateDatacenter(Datacenter {
        meta: meta("dc-local", "local"),
        country: "FR".into(),
        operator: Some(Operator {
            name: "Local Operator SAS".into(),
            country: "FR".into(),
            parent_country: "FR".into(),
            ..Default::default()
        }),
        certifications: vec!["secnumcloud".into()],
        status: DatacenterStatus::Active as i32,
        ..Default::default()
    })];
    // This server runs in the local datacenter: projects must allow it (it holds their metadata).
    cmds.push(Command::LocateReplica {
        node_id: node.id,
        datacenter_id: "dc-local".into(),
    });
    for i in 1..=hosts {
        cmds.push(Command::RegisterHost(Host {
            meta: meta(&format!("host-local-{i}"), &format!("sim-{i}")),
            datacenter_id: "dc-local".into(),
            state: HostState::Up as i32,
            capacity: Some(Resources {
                vcpus: 16,
                memory_mib: 65536,
                disk_gib: 1000,
            }),
            ratios: Some(andromede_model::capacity::DEFAULT_RATIOS),
            used: None,
            simulated: true,
            ..Default::default()
        }));
    }
    for (name, vcpus, mem, disk) in [
        ("tiny", 1, 256, 1),
        ("small", 1, 1024, 10),
        ("medium", 2, 4096, 20),
        ("large", 4, 8192, 40),
    ] {
        cmds.push(Command::CreateFlavor(Flavor {
            meta: meta(&format!("flavor-{name}"), name),
            vcpus,
            memory_mib: mem,
            disk_gib: disk,
        }));
    }
    let file = |(source, sum): (String, String)| ImageFile {
        source,
        checksum_sha256: sum,
    };
    let image = match guest_dir.as_deref().and_then(guest) {
        Some(g) => {
            tracing::info!(disk = %g.disk.0, "registering the test guest as image tiny");
            Image {
                meta: meta("image-tiny", "tiny"),
                format: "qcow2".into(),
                source: g.disk.0.clone(),
                checksum_sha256: g.disk.1.clone(),
                min_disk_gib: 1,
                kernel: Some(file(g.kernel)),
                initrd: Some(file(g.initrd)),
                cmdline: "console=ttyS0 rdinit=/init".into(),
            }
        }
        None => {
            tracing::info!("no test guest built (scripts/build-guest-image.sh): image tiny is a placeholder only the fake driver can run");
            Image {
                meta: meta("image-tiny", "tiny"),
                format: "qcow2".into(),
                source: "file:///var/lib/andromede/images/tiny.qcow2".into(),
                checksum_sha256: "0".repeat(64),
                min_disk_gib: 1,
                ..Default::default()
            }
        }
    };
    cmds.push(Command::CreateImage(image));
    for c in cmds {
        node.submit(Proposal::Cmd(c))
            .await
            .map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
    }
    tracing::info!(hosts, "seeded the local datacenter");
    Ok(())
}

/// Starts a local agent next to the dev server (enrolling it on first start) and keeps it
/// running until the server stops.
pub async fn local_agent(
    node: Arc<Node>,
    agent_bin: PathBuf,
    server: String,
    data_dir: PathBuf,
    driver: String,
    ca_cert: Option<PathBuf>,
) -> anyhow::Result<()> {
    // Paths reach libvirtd, whose working directory is not ours.
    anyhow::ensure!(
        data_dir.is_absolute(),
        "the local agent needs an absolute data directory, not {}",
        data_dir.display()
    );
    let state_dir = data_dir.join("agent");
    // One libvirt storage pool per dev cloud, so two data directories never share one.
    let pool = format!(
        "andromede-dev-{}",
        &crate::agents::session::sha256_hex(&data_dir.display().to_string())[..8]
    );
    let enrolled = state_dir.join("identity.json").exists();
    let mut cmd = tokio::process::Command::new(&agent_bin);
    if let Some(ca) = &ca_cert {
        cmd.arg("--ca-cert").arg(ca);
    }
    cmd.arg("--server")
        .arg(&server)
        .arg("--state-dir")
        .arg(&state_dir)
        .arg("--hostname")
        .arg("local-1")
        .arg("--driver")
        .arg(&driver)
        .arg("--libvirt-pool")
        .arg(&pool)
        .arg("--libvirt-pool-dir")
        .arg(data_dir.join("pool"))
        .arg("--libvirt-console-dir")
        .arg(data_dir.join("console"))
        .kill_on_drop(true);
    if !enrolled {
        for _ in 0..200 {
            if node.is_leader() && node.read(|s| s.datacenters.contains_key("dc-local")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (token, presented) =
            crate::agents::session::new_join_token("dc-local", 600, node.tls.as_ref());
        node.submit(Proposal::Cmd(Command::CreateJoinToken(token)))
            .await
            .map_err(|e| anyhow::anyhow!("creating the local agent's join token: {e}"))?;
        cmd.env("ANDROMEDE_JOIN_TOKEN", presented);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {}: {e}", agent_bin.display()))?;
    let status = child.wait().await?;
    anyhow::bail!("the local agent exited: {status}")
}
