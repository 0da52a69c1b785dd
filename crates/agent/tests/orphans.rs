//! A full desired state never deletes what the agent does not recognise: unlisted guests and
//! volumes are quarantined (stopped, tagged, reported), guests tagged with another host id are
//! left alone, and deletion happens only on an explicit removal of that id or an operator's
//! confirmation.
#![allow(clippy::unwrap_used)]

use andromede_agent::hypervisor::fake::{FakeDriver, Faults};
use andromede_agent::hypervisor::{
    FileSource, Hypervisor, ImageSpec, Inventory, PowerState, VmSpec,
};
use andromede_agent::reconcile::{confirm_deletion, Reconciler, Report, Timing};
use andromede_api::v1::{
    DesiredState, HostOrphans, Image, Instance, InstanceState, Meta, Resources, Volume, VolumeState,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

fn image() -> ImageSpec {
    ImageSpec {
        id: "img".into(),
        format: "qcow2".into(),
        disk: FileSource {
            source: "/x".into(),
            sha256: "a".repeat(64),
        },
        kernel: None,
        initrd: None,
        cmdline: String::new(),
    }
}

fn spec(id: &str, host: &str) -> VmSpec {
    VmSpec {
        id: id.into(),
        name: id.into(),
        project_id: "p".into(),
        vcpus: 1,
        memory_mib: 128,
        disk_gib: 1,
        image: image(),
        user_data: String::new(),
        ssh_keys: vec![],
        host_id: host.into(),
    }
}

fn meta(id: &str) -> Option<Meta> {
    Some(Meta {
        id: id.into(),
        name: id.into(),
        ..Default::default()
    })
}

fn listed_instance(id: &str) -> Instance {
    Instance {
        meta: meta(id),
        state: InstanceState::Running as i32,
        image_id: "img".into(),
        host_id: "h1".into(),
        resources: Some(Resources {
            vcpus: 1,
            memory_mib: 128,
            disk_gib: 1,
        }),
        ..Default::default()
    }
}

fn listed_image() -> Image {
    Image {
        meta: meta("img"),
        format: "qcow2".into(),
        source: "/x".into(),
        checksum_sha256: "a".repeat(64),
        ..Default::default()
    }
}

/// The next orphan report, skipping other reports.
async fn next_orphans(rx: &mut UnboundedReceiver<Report>) -> HostOrphans {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(Report::Orphans(o))) => return o,
            Ok(Some(_)) => {}
            other => panic!("no orphan report: {other:?}"),
        }
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(o: &HostOrphans) -> Vec<(String, String)> {
    let mut v: Vec<_> = o
        .items
        .iter()
        .map(|x| (x.kind.clone(), x.id.clone()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_guests_and_volumes_are_quarantined_not_deleted() {
    let fake = Arc::new(FakeDriver::new(Inventory::default(), Faults::default()));
    fake.prepare_image(&image()).unwrap();
    for (id, host) in [("keep", "h1"), ("stray", "h1"), ("old-host", "h0")] {
        fake.define(&spec(id, host)).unwrap();
        fake.start(id).unwrap();
    }
    fake.create_volume("v-keep", 1).unwrap();
    fake.create_volume("v-stray", 1).unwrap();
    let hv: Arc<dyn Hypervisor> = fake.clone();
    let dir = tempfile::tempdir().unwrap();
    let confirmations = dir.path().join("confirmed");
    let (rec, mut rx) = Reconciler::new(
        hv.clone(),
        Timing {
            stop_timeout: Duration::from_secs(1),
            resync: Duration::from_millis(100),
            retry: Duration::from_millis(50),
        },
    );
    rec.set_host_id("h1");
    rec.set_confirmations(confirmations.clone());

    // A full state that lists only `keep` and `v-keep` (an old backup of the control plane,
    // say): nothing else is deleted.
    rec.apply(DesiredState {
        full: true,
        instances: vec![listed_instance("keep")],
        volumes: vec![Volume {
            meta: meta("v-keep"),
            state: VolumeState::Available as i32,
            size_gib: 1,
            host_id: "h1".into(),
            ..Default::default()
        }],
        images: vec![listed_image()],
        ..Default::default()
    })
    .await;
    let o = next_orphans(&mut rx).await;
    assert_eq!(
        ids(&o),
        vec![
            ("instance".to_string(), "old-host".to_string()),
            ("instance".to_string(), "stray".to_string()),
            ("volume".to_string(), "v-stray".to_string()),
        ],
        "{o:?}"
    );
    let foreign = o.items.iter().find(|x| x.id == "old-host").unwrap();
    assert_eq!(foreign.owner_host_id, "h0");
    let stray = hv
        .status("stray")
        .unwrap()
        .expect("the stray guest is kept");
    assert_eq!(stray.state, PowerState::Stopped);
    assert!(stray.quarantined);
    let old = hv.status("old-host").unwrap().unwrap();
    assert_eq!(
        old.state,
        PowerState::Running,
        "another host's guest is untouched"
    );
    assert!(!old.quarantined);
    assert!(hv
        .list_volumes()
        .unwrap()
        .iter()
        .any(|v| v.id == "v-stray" && v.quarantined));
    assert_eq!(
        hv.status("keep").unwrap().unwrap().state,
        PowerState::Running
    );

    // Rescans leave quarantined guests stopped and report nothing new.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        hv.status("stray").unwrap().unwrap().state,
        PowerState::Stopped
    );

    // An explicit removal of that id deletes it.
    rec.apply(DesiredState {
        removed_instances: vec!["stray".into()],
        ..Default::default()
    })
    .await;
    until("the removed orphan to be deleted", || {
        hv.status("stray").unwrap().is_none()
    })
    .await;

    // An operator's confirmation deletes a quarantined volume, and only that.
    confirm_deletion(&confirmations, "v-stray").unwrap();
    until("the confirmed orphan volume to be deleted", || {
        !hv.list_volumes().unwrap().iter().any(|v| v.id == "v-stray")
    })
    .await;
    assert!(!confirmations.exists(), "confirmations are consumed");
    let o = next_orphans(&mut rx).await;
    let o = if ids(&o).len() > 1 {
        next_orphans(&mut rx).await
    } else {
        o
    };
    assert_eq!(
        ids(&o),
        vec![("instance".to_string(), "old-host".to_string())]
    );

    // A confirmation never deletes what the control plane lists.
    confirm_deletion(&confirmations, "keep").unwrap();
    until("the confirmation to be dropped", || !confirmations.exists()).await;
    assert_eq!(
        hv.status("keep").unwrap().unwrap().state,
        PowerState::Running
    );
    assert!(hv.list_volumes().unwrap().iter().any(|v| v.id == "v-keep"));
}
