//! The embedded default cloud: one datacenter with simulated hosts, flavors and an image.

use crate::node::{Node, Proposal};
use andromede_api::v1::*;
use andromede_store::Command;
use std::sync::Arc;
use std::time::Duration;

fn meta(id: &str, name: &str) -> Option<Meta> {
    Some(Meta {
        id: id.into(),
        name: name.into(),
        ..Default::default()
    })
}

/// Seeds an empty cloud once it has a leader; does nothing if a datacenter already exists.
pub async fn seed(node: Arc<Node>, hosts: u32) -> anyhow::Result<()> {
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
    cmds.push(Command::CreateImage(Image {
        meta: meta("image-tiny", "tiny"),
        format: "qcow2".into(),
        source: "file:///var/lib/andromede/images/tiny.qcow2".into(),
        checksum_sha256: "0".repeat(64),
        min_disk_gib: 1,
        ..Default::default()
    }));
    for c in cmds {
        node.submit(Proposal::Cmd(c))
            .await
            .map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
    }
    tracing::info!(hosts, "seeded the local datacenter");
    Ok(())
}
