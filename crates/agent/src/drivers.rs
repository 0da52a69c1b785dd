//! Building the hypervisor driver from command-line settings.

use crate::hypervisor::Hypervisor;
use std::path::PathBuf;
use std::sync::Arc;

/// Settings of the libvirt driver.
#[derive(Debug, Clone, clap::Args)]
pub struct LibvirtArgs {
    /// libvirt connection URI.
    #[arg(long, default_value = "qemu:///system")]
    pub libvirt_uri: String,
    /// Directory storage pool holding cached images, root disks, seeds and volumes.
    #[arg(long, default_value = "andromede")]
    pub libvirt_pool: String,
    /// The pool's directory (created and defined in libvirt if the pool does not exist).
    #[arg(long, default_value = "/var/lib/andromede/pool")]
    pub libvirt_pool_dir: PathBuf,
    /// Where guests' serial console logs are written.
    #[arg(long, default_value = "/var/lib/andromede/console")]
    pub libvirt_console_dir: PathBuf,
    /// libvirt network for guest NICs (the datacenter's network), or `user` for user-mode
    /// networking.
    #[arg(long, default_value = "default")]
    pub libvirt_network: String,
    /// Acceleration: kvm, tcg, or auto (KVM only when /dev/kvm exists and the CPU has VMX/SVM).
    #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    pub accel: String,
    /// The qemu-img binary (overlays and volumes).
    #[arg(long, default_value = "qemu-img")]
    pub qemu_img: PathBuf,
    /// PEM file of CA certificates trusted for https:// image sources, on top of the system's.
    #[arg(long, value_name = "PEM")]
    pub image_ca_file: Option<PathBuf>,
    /// Largest image file a host downloads, in GiB.
    #[arg(long, default_value_t = 64)]
    pub image_max_gib: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("this agent was built without the libvirt driver (cargo feature `libvirt`)")]
    NotBuilt,
    #[error("{0}")]
    Hypervisor(#[from] crate::hypervisor::HvError),
    #[error("--accel: {0}")]
    Accel(String),
}

#[cfg(not(feature = "libvirt"))]
pub fn libvirt(_a: &LibvirtArgs) -> Result<Arc<dyn Hypervisor>, DriverError> {
    Err(DriverError::NotBuilt)
}

#[cfg(feature = "libvirt")]
pub fn libvirt(a: &LibvirtArgs) -> Result<Arc<dyn Hypervisor>, DriverError> {
    use crate::hypervisor::libvirt::{Accel, LibvirtConfig, LibvirtDriver};
    let accel: Accel = a
        .accel
        .parse()
        .map_err(|e| DriverError::Accel(format!("{e}")))?;
    let cfg = LibvirtConfig {
        uri: a.libvirt_uri.clone(),
        pool_name: a.libvirt_pool.clone(),
        pool_dir: a.libvirt_pool_dir.clone(),
        console_dir: a.libvirt_console_dir.clone(),
        network: a.libvirt_network.clone(),
        accel,
        qemu_img: a.qemu_img.clone(),
        fetch: crate::hypervisor::libvirt::fetch::FetchConfig {
            ca_file: a.image_ca_file.clone(),
            max_bytes: a.image_max_gib.saturating_mul(1 << 30),
            ..Default::default()
        },
    };
    Ok(Arc::new(LibvirtDriver::connect(cfg)?))
}
