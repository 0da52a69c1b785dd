//! The hypervisor abstraction the agent drives: one blocking trait, implemented by the libvirt
//! driver (real KVM/QEMU guests) and by an in-memory fake for scale tests and benchmarks.
//!
//! Every method is idempotent: the reconciler calls them again after a crash or a retry, so
//! "create what already exists" and "delete what is already gone" succeed. Calls block; the
//! agent runs them on blocking threads, one actor per instance.

pub mod fake;
#[cfg(feature = "libvirt")]
pub mod libvirt;

use std::time::Duration;

/// A file the host fetches once (a path, `file://`, `http://` or `https://` URL) and verifies by
/// SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    pub source: String,
    pub sha256: String,
}

/// A bootable image: a root disk, optionally booted directly from a kernel and initrd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub id: String,
    /// `qcow2` or `raw`.
    pub format: String,
    pub disk: FileSource,
    pub kernel: Option<FileSource>,
    pub initrd: Option<FileSource>,
    pub cmdline: String,
}

/// Everything needed to define one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// The instance id; also the libvirt domain UUID.
    pub id: String,
    /// The instance name, used as the guest's hostname.
    pub name: String,
    pub project_id: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Size of the root disk overlay; never smaller than the image.
    pub disk_gib: u64,
    pub image: ImageSpec,
    pub user_data: String,
    pub ssh_keys: Vec<String>,
    /// The host the guest was placed on, tagged on it: a machine enrolled again under a new
    /// identity tells its previous guests from its own.
    pub host_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    Running,
    /// Defined but not running (shut off, or never started).
    Stopped,
    /// Paused, crashed, or anything the driver cannot map; carries no promise.
    Other,
}

/// One managed guest as the hypervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainStatus {
    pub id: String,
    pub state: PowerState,
    /// Ids of the volumes attached to it.
    pub volumes: Vec<String>,
    /// The host id the guest is tagged with (empty for guests defined before tagging).
    pub owner: String,
    /// Set aside by [`Hypervisor::quarantine`]: kept stopped, never started by the agent.
    pub quarantined: bool,
}

/// One managed volume as the hypervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeStatus {
    pub id: String,
    pub size_gib: u64,
    /// Set aside by [`Hypervisor::quarantine_volume`].
    pub quarantined: bool,
}

/// What the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inventory {
    pub vcpus: u64,
    pub memory_mib: u64,
    /// Capacity of the storage pool.
    pub disk_gib: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HvError {
    #[error("{0} not found")]
    NotFound(String),
    /// Both sums stay in the host's log; the message, which tenants see, names neither.
    #[error(
        "image {image}: checksum mismatch: the file does not have the SHA-256 the image declares"
    )]
    Checksum {
        image: String,
        expected: String,
        actual: String,
    },
    #[error("cannot fetch {location}: {reason}")]
    Fetch { location: String, reason: String },
    /// Worth retrying: the hypervisor is busy or unreachable.
    #[error("hypervisor unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

pub type HvResult<T> = Result<T, HvError>;

pub trait Hypervisor: Send + Sync + 'static {
    /// `libvirt` or `fake`, for logs and inventory.
    fn driver(&self) -> &'static str;
    fn inventory(&self) -> HvResult<Inventory>;
    /// Every guest this agent manages (others on the host are ignored).
    fn list(&self) -> HvResult<Vec<DomainStatus>>;
    fn status(&self, id: &str) -> HvResult<Option<DomainStatus>>;
    /// Fetches and verifies the image into the host's cache once; later calls are cheap.
    fn prepare_image(&self, image: &ImageSpec) -> HvResult<()>;
    /// Creates the disks and seed and defines the guest, without starting it. Defining a guest
    /// that exists already succeeds and changes nothing.
    fn define(&self, spec: &VmSpec) -> HvResult<()>;
    fn start(&self, id: &str) -> HvResult<()>;
    /// Asks the guest to shut down (ACPI) and returns at once.
    fn shutdown(&self, id: &str) -> HvResult<()>;
    /// Cuts the power.
    fn power_off(&self, id: &str) -> HvResult<()>;
    fn reboot(&self, id: &str) -> HvResult<()>;
    /// Powers off, undefines and removes every file created for the guest (not its volumes).
    fn delete(&self, id: &str) -> HvResult<()>;
    fn list_volumes(&self) -> HvResult<Vec<VolumeStatus>>;
    fn create_volume(&self, id: &str, size_gib: u64) -> HvResult<()>;
    /// Grows a volume; never shrinks it.
    fn extend_volume(&self, id: &str, size_gib: u64) -> HvResult<()>;
    fn delete_volume(&self, id: &str) -> HvResult<()>;
    /// Attaches to a running or stopped guest (live and persistent config).
    fn attach_volume(&self, vm: &str, volume: &str) -> HvResult<()>;
    fn detach_volume(&self, vm: &str, volume: &str) -> HvResult<()>;
    /// The last `max_bytes` of the guest's serial console log.
    fn console_log(&self, id: &str, max_bytes: usize) -> HvResult<Vec<u8>>;
    /// Sets a guest the control plane does not list aside instead of deleting it: tags it
    /// quarantined, then cuts its power. Its disks and definition stay.
    fn quarantine(&self, id: &str) -> HvResult<()>;
    /// Clears the quarantine tag of a guest the control plane lists again.
    fn release(&self, id: &str) -> HvResult<()>;
    /// Tags a volume the control plane does not list as quarantined; its data stays.
    fn quarantine_volume(&self, id: &str) -> HvResult<()>;
    fn release_volume(&self, id: &str) -> HvResult<()>;
}

/// How long a graceful stop may take before the power is cut.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
