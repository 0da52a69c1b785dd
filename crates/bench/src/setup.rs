//! The cloud the creates run against: one FR datacenter, simulated hosts, a flavor, an image and
//! a project.

use crate::client::{retry, Conn};
use andromede_api::v1::{
    CreateDatacenterRequest, CreateFlavorRequest, CreateImageRequest, CreateProjectRequest,
    Operator, RegisterHostRequest, Resources, SovereigntyPolicy,
};
use futures::{StreamExt, TryStreamExt};
use std::time::{Duration, Instant};

pub const DATACENTER: &str = "bench-dc";
pub const FLAVOR: &str = "bench-tiny";
pub const IMAGE: &str = "bench-image";
pub const PROJECT: &str = "bench";

/// Host registrations in flight: enough to keep the leader's Raft pipeline busy without
/// turning setup into a benchmark of its own.
const REGISTER_CONCURRENCY: usize = 64;

/// Host shape: 64 vCPU, 256 GiB, 4 TiB with the default ratios (cpu 4.0), so each host fits
/// 256 of the 1-vCPU flavor and capacity never limits a run.
pub const HOST_VCPUS: u64 = 64;
pub const HOST_MEMORY_MIB: u64 = 256 * 1024;
pub const HOST_DISK_GIB: u64 = 4 * 1024;

/// Creates the bench's datacenter; idempotent (same request id), so the cluster can create it
/// before adding learners and the cloud setup again afterwards.
pub async fn create_datacenter(conn: &Conn) -> anyhow::Result<()> {
    retry("creating the datacenter", || {
        let mut c = conn.infra();
        async move {
            c.create_datacenter(CreateDatacenterRequest {
                name: DATACENTER.into(),
                country: "FR".into(),
                operator: Some(Operator {
                    name: "Bench Operator SAS".into(),
                    country: "FR".into(),
                    parent_country: "FR".into(),
                    ..Default::default()
                }),
                request_id: "bench-datacenter".into(),
                ..Default::default()
            })
            .await
        }
    })
    .await?;
    Ok(())
}

/// Builds the cloud through `conn` (the leader, so setup does not pay for forwarding), with
/// `hosts` simulated hosts (0 when agents bring their own). Returns how long registering took.
pub async fn build(conn: &Conn, hosts: u32) -> anyhow::Result<Duration> {
    create_datacenter(conn).await?;

    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut done = 0u32;
    let mut stream = futures::stream::iter(1..=hosts)
        .map(|i| register_host(conn, i))
        .buffer_unordered(REGISTER_CONCURRENCY);
    while stream.try_next().await?.is_some() {
        done += 1;
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            eprintln!("bench: registered {done}/{hosts} hosts");
        }
    }
    let register_time = started.elapsed();
    eprintln!(
        "bench: registered {hosts} hosts in {:.1}s",
        register_time.as_secs_f64()
    );

    retry("creating the flavor", || {
        let mut c = conn.infra();
        async move {
            c.create_flavor(CreateFlavorRequest {
                name: FLAVOR.into(),
                vcpus: 1,
                memory_mib: 512,
                disk_gib: 1,
                request_id: "bench-flavor".into(),
            })
            .await
        }
    })
    .await?;
    retry("creating the image", || {
        let mut c = conn.infra();
        async move {
            c.create_image(CreateImageRequest {
                name: IMAGE.into(),
                format: "qcow2".into(),
                source: "file:///var/lib/andromede/images/bench.qcow2".into(),
                checksum_sha256: "0".repeat(64),
                min_disk_gib: 1,
                request_id: "bench-image".into(),
                ..Default::default()
            })
            .await
        }
    })
    .await?;
    retry("creating the project", || {
        let mut c = conn.identity();
        async move {
            c.create_project(CreateProjectRequest {
                name: PROJECT.into(),
                description: "load benchmark".into(),
                policy: Some(SovereigntyPolicy {
                    allowed_countries: vec!["FR".into()],
                    ..Default::default()
                }),
                request_id: "bench-project".into(),
                ..Default::default()
            })
            .await
        }
    })
    .await?;
    Ok(register_time)
}

async fn register_host(conn: &Conn, i: u32) -> anyhow::Result<()> {
    retry(&format!("registering host {i}"), || {
        let mut c = conn.infra();
        async move {
            c.register_host(RegisterHostRequest {
                name: format!("bench-host-{i:05}"),
                datacenter: DATACENTER.into(),
                capacity: Some(Resources {
                    vcpus: HOST_VCPUS,
                    memory_mib: HOST_MEMORY_MIB,
                    disk_gib: HOST_DISK_GIB,
                }),
                ratios: None,
                simulated: true,
                request_id: format!("bench-host-{i}"),
            })
            .await
        }
    })
    .await?;
    Ok(())
}

/// A member token of the bench project: the creates then go through a tenant's authorization
/// and project scoping, as a real tenant's would.
pub async fn member_token(conn: &Conn) -> anyhow::Result<String> {
    let r = retry("creating the project's member token", || {
        let mut c = conn.identity();
        async move {
            c.create_token(andromede_api::v1::CreateTokenRequest {
                name: "bench-member".into(),
                project: PROJECT.into(),
                role: andromede_api::v1::Role::Member as i32,
                ttl_secs: 0,
                request_id: "bench-member-token".into(),
            })
            .await
        }
    })
    .await?;
    anyhow::ensure!(
        !r.secret.is_empty(),
        "the member token was made by an earlier attempt whose answer was lost; rerun"
    );
    Ok(r.secret)
}
