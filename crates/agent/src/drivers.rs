//! Building the hypervisor driver from command-line settings.

use crate::hypervisor::Hypervisor;
use std::sync::Arc;

/// Settings of the libvirt driver.
#[derive(Debug, Clone, clap::Args)]
pub struct LibvirtArgs {
    /// libvirt connection URI.
    #[arg(long, default_value = "qemu:///system")]
    pub libvirt_uri: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("this agent was built without the libvirt driver (cargo feature `libvirt`)")]
    NotBuilt,
    #[error("{0}")]
    Hypervisor(#[from] crate::hypervisor::HvError),
}

#[cfg(not(feature = "libvirt"))]
pub fn libvirt(_a: &LibvirtArgs) -> Result<Arc<dyn Hypervisor>, DriverError> {
    Err(DriverError::NotBuilt)
}
