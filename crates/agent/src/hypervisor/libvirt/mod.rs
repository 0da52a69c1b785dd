//! The libvirt driver: real QEMU guests (KVM or TCG) through the `virt` crate, with disks,
//! seeds and cached images as files in one directory storage pool.

pub mod fetch;
pub mod seed;
pub mod xml;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::error::{Error as VirtError, ErrorNumber};
use virt::storage_pool::StoragePool;
use virt::sys;

use self::xml::{DomainFiles, NetworkMode};
use super::{
    DomainStatus, HvError, HvResult, Hypervisor, ImageSpec, Inventory, PowerState, VmSpec,
    VolumeStatus,
};

const GIB: u64 = 1024 * 1024 * 1024;

/// Which accelerator guests run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
    /// KVM only if `/dev/kvm` exists and the CPU advertises vmx or svm: some hosts expose a
    /// `/dev/kvm` (and libvirt reports kvm) on which guests cannot actually run.
    Auto,
}

impl std::str::FromStr for Accel {
    type Err = HvError;
    fn from_str(s: &str) -> HvResult<Self> {
        match s {
            "kvm" => Ok(Self::Kvm),
            "tcg" | "qemu" => Ok(Self::Tcg),
            "auto" => Ok(Self::Auto),
            other => Err(HvError::Failed(format!(
                "unknown acceleration {other:?} (kvm, tcg or auto)"
            ))),
        }
    }
}

/// The libvirt domain type for an acceleration setting, given what the host shows.
pub fn domain_type(accel: Accel, dev_kvm_exists: bool, cpuinfo: &str) -> &'static str {
    match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "qemu",
        Accel::Auto => {
            let hw = cpuinfo
                .lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
            if dev_kvm_exists && hw {
                "kvm"
            } else {
                "qemu"
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct LibvirtConfig {
    pub uri: String,
    pub pool_name: String,
    pub pool_dir: PathBuf,
    pub console_dir: PathBuf,
    /// A libvirt network name, or `user` for a user-mode NIC.
    pub network: String,
    pub accel: Accel,
    /// The `qemu-img` binary used for overlays and volumes.
    pub qemu_img: PathBuf,
    /// How images are downloaded.
    pub fetch: fetch::FetchConfig,
}

impl Default for LibvirtConfig {
    fn default() -> Self {
        Self {
            uri: "qemu:///system".into(),
            pool_name: "andromede".into(),
            pool_dir: "/var/lib/andromede/pool".into(),
            console_dir: "/var/lib/andromede/console".into(),
            network: "default".into(),
            accel: Accel::Auto,
            qemu_img: "qemu-img".into(),
            fetch: fetch::FetchConfig::default(),
        }
    }
}

/// The `<target><path>` of a storage pool's XML description.
fn target_path(xml: &str) -> Option<String> {
    let target = &xml[xml.find("<target>")?..];
    let start = target.find("<path>")? + "<path>".len();
    let end = target[start..].find("</path>")? + start;
    Some(target[start..end].trim().to_string())
}

fn virt_err(context: &str, e: VirtError) -> HvError {
    let code = e.code();
    let msg = format!("{context}: {}", e.message());
    if code.is_known_and(|c| matches!(c, ErrorNumber::NoDomain | ErrorNumber::NoStorageVolume)) {
        HvError::NotFound(msg)
    } else if code.is_known_and(|c| {
        matches!(
            c,
            ErrorNumber::NoConnect
                | ErrorNumber::SystemError
                | ErrorNumber::Rpc
                | ErrorNumber::OperationTimeout
                | ErrorNumber::AgentUnresponsive
        )
    }) {
        HvError::Unavailable(msg)
    } else {
        HvError::Failed(msg)
    }
}

fn is_code(e: &VirtError, code: ErrorNumber) -> bool {
    e.code().is_known_and(|c| c == code)
}

fn io_err(context: impl std::fmt::Display, e: std::io::Error) -> HvError {
    HvError::Failed(format!("{context}: {e}"))
}

/// Creates `dir` if needed and returns its canonical (absolute, symlink-free) path.
pub fn absolute_dir(dir: &Path) -> HvResult<PathBuf> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir.display(), e))?;
    fs::canonicalize(dir).map_err(|e| io_err(dir.display(), e))
}

/// Whether a pool directory holds nothing. A relative path is resolved the way libvirtd
/// resolves it (against `/`); a missing directory is empty.
fn dir_is_empty(path: &str) -> bool {
    let p = Path::new("/").join(path);
    match fs::read_dir(&p) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Ids become file and domain names: keep them to a safe alphabet.
fn check_id(kind: &str, id: &str) -> HvResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(HvError::Failed(format!("invalid {kind} id {id:?}")))
    }
}

pub struct LibvirtDriver {
    cfg: LibvirtConfig,
    virt_type: &'static str,
    /// libvirt connections are thread-safe and the remote driver multiplexes concurrent calls,
    /// so one shared connection does not serialise domains; the lock only guards reconnecting.
    conn: RwLock<Arc<Connect>>,
    /// Serialises define/attach/detach/delete per guest (target choice must not race); calls
    /// for different guests never wait on each other.
    vm_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl LibvirtDriver {
    pub fn connect(mut cfg: LibvirtConfig) -> HvResult<Self> {
        // libvirtd resolves paths against its own working directory (`/`), not ours: every
        // path it is handed must be absolute.
        cfg.pool_dir = absolute_dir(&cfg.pool_dir)?;
        cfg.console_dir = absolute_dir(&cfg.console_dir)?;
        // libvirt's default callback prints every error, expected ones (no such domain)
        // included, to stderr.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(&cfg.uri))
            .map_err(|e| virt_err(&format!("connect to {}", cfg.uri), e))?;
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let virt_type = domain_type(cfg.accel, Path::new("/dev/kvm").exists(), &cpuinfo);
        let driver = Self {
            cfg,
            virt_type,
            conn: RwLock::new(Arc::new(conn)),
            vm_locks: Mutex::new(HashMap::new()),
        };
        driver.ensure_pool()?;
        driver.sweep_leftovers();
        Ok(driver)
    }

    /// Removes what a crash left half-written in the pool (downloads and disks are built under
    /// temporary names and renamed when complete). Runs before any operation starts.
    fn sweep_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.cfg.pool_dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with(".image-")
                || name.starts_with("inst-")
                || name.starts_with("vol-");
            if ours && (name.ends_with(".part") || name.ends_with(".tmp")) {
                match fs::remove_file(e.path()) {
                    Ok(()) => {
                        tracing::info!(file = %name, "removed a leftover of an interrupted operation")
                    }
                    Err(err) => {
                        tracing::warn!(file = %name, error = %err, "cannot remove a leftover")
                    }
                }
            }
        }
    }

    /// `kvm` or `qemu`: the domain type new guests get.
    pub fn virt_type(&self) -> &'static str {
        self.virt_type
    }

    pub fn config(&self) -> &LibvirtConfig {
        &self.cfg
    }

    fn conn(&self) -> HvResult<Arc<Connect>> {
        let current = self
            .conn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if current.is_alive().unwrap_or(false) {
            return Ok(current);
        }
        let mut slot = self.conn.write().unwrap_or_else(PoisonError::into_inner);
        if !Arc::ptr_eq(&slot, &current) && slot.is_alive().unwrap_or(false) {
            return Ok(slot.clone());
        }
        let fresh = Connect::open(Some(&self.cfg.uri))
            .map_err(|e| virt_err(&format!("reconnect to {}", self.cfg.uri), e))?;
        *slot = Arc::new(fresh);
        Ok(slot.clone())
    }

    fn vm_lock(&self, id: &str) -> Arc<Mutex<()>> {
        self.vm_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    fn ensure_pool(&self) -> HvResult<StoragePool> {
        let conn = self.conn()?;
        let pool = match conn.lookup_storage_pool_by_name(&self.cfg.pool_name) {
            Ok(pool) => {
                // Files are read and written under pool_dir directly, so an existing pool of the
                // same name elsewhere would split them between two places.
                let desc = pool
                    .xml_desc(0)
                    .map_err(|e| virt_err("storage pool description", e))?;
                match target_path(&desc) {
                    Some(at) if Path::new(&at) != self.cfg.pool_dir => {
                        self.redefine_pool(&conn, pool, &desc, &at)?
                    }
                    _ => pool,
                }
            }
            Err(e) if is_code(&e, ErrorNumber::NoStoragePool) => {
                fs::create_dir_all(&self.cfg.pool_dir)
                    .map_err(|e| io_err(self.cfg.pool_dir.display(), e))?;
                let xml = xml::dir_pool_xml(&self.cfg.pool_name, &self.cfg.pool_dir);
                conn.define_storage_pool_xml(&xml, 0)
                    .map_err(|e| virt_err("define storage pool", e))?
            }
            Err(e) => return Err(virt_err("look up storage pool", e)),
        };
        if !pool
            .is_active()
            .map_err(|e| virt_err("storage pool state", e))?
        {
            fs::create_dir_all(&self.cfg.pool_dir)
                .map_err(|e| io_err(self.cfg.pool_dir.display(), e))?;
            pool.create(sys::VIR_STORAGE_POOL_CREATE_NORMAL)
                .map_err(|e| virt_err("start storage pool", e))?;
        }
        if !pool.autostart().unwrap_or(false) {
            pool.set_autostart(true)
                .map_err(|e| virt_err("autostart storage pool", e))?;
        }
        Ok(pool)
    }

    /// A pool of our name defined at another path: redefined at `pool_dir` when it is a
    /// directory pool holding nothing (a relative path, say, that libvirtd could never open),
    /// refused otherwise with the commands that fix it.
    fn redefine_pool(
        &self,
        conn: &Connect,
        pool: StoragePool,
        desc: &str,
        at: &str,
    ) -> HvResult<StoragePool> {
        let name = &self.cfg.pool_name;
        let active = pool.is_active().unwrap_or(false);
        let no_volumes = !active || pool.num_of_volumes().is_ok_and(|n| n == 0);
        let is_dir = desc.contains("type='dir'") || desc.contains("type=\"dir\"");
        if !(is_dir && no_volumes && dir_is_empty(at)) {
            return Err(HvError::Failed(format!(
                "storage pool {name} already exists at {at}, not {want}, and is not empty: \
                 keep it with --libvirt-pool-dir {at}, choose another --libvirt-pool, or move its \
                 files to {want} and run `virsh -c {uri} pool-destroy {name}; virsh -c {uri} \
                 pool-undefine {name}`",
                want = self.cfg.pool_dir.display(),
                uri = self.cfg.uri,
            )));
        }
        tracing::warn!(pool = %name, from = %at, to = %self.cfg.pool_dir.display(), "redefining an empty storage pool at the configured directory");
        if active {
            pool.destroy()
                .map_err(|e| virt_err("stop the misplaced storage pool", e))?;
        }
        pool.undefine()
            .map_err(|e| virt_err("undefine the misplaced storage pool", e))?;
        let xml = xml::dir_pool_xml(name, &self.cfg.pool_dir);
        conn.define_storage_pool_xml(&xml, 0)
            .map_err(|e| virt_err("define storage pool", e))
    }

    /// Lets libvirt notice files the driver created or removed behind its back.
    fn refresh_pool(&self) {
        if let Ok(conn) = self.conn() {
            if let Ok(pool) = conn.lookup_storage_pool_by_name(&self.cfg.pool_name) {
                let _ = pool.refresh(0);
            }
        }
    }

    fn lookup(&self, id: &str) -> HvResult<Option<Domain>> {
        check_id("instance", id)?;
        let conn = self.conn()?;
        match conn.lookup_domain_by_name(&xml::domain_name(id)) {
            Ok(d) => Ok(Some(d)),
            Err(e) if is_code(&e, ErrorNumber::NoDomain) => Ok(None),
            Err(e) => Err(virt_err("look up domain", e)),
        }
    }

    fn require(&self, id: &str) -> HvResult<Domain> {
        self.lookup(id)?
            .ok_or_else(|| HvError::NotFound(format!("instance {id}")))
    }

    // File layout: everything a guest owns starts with `inst-<id>`, every volume is
    // `vol-<id>.qcow2`, every cached image file `image-<id>.<part>`.
    fn root_path(&self, id: &str) -> PathBuf {
        self.cfg.pool_dir.join(format!("inst-{id}-root.qcow2"))
    }
    fn seed_path(&self, id: &str) -> PathBuf {
        self.cfg.pool_dir.join(format!("inst-{id}-seed.img"))
    }
    fn console_path(&self, id: &str) -> PathBuf {
        self.cfg.console_dir.join(format!("inst-{id}.log"))
    }
    fn volume_path(&self, id: &str) -> PathBuf {
        self.cfg.pool_dir.join(format!("vol-{id}.qcow2"))
    }
    fn image_path(&self, image_id: &str, part: &str) -> PathBuf {
        self.cfg.pool_dir.join(format!("image-{image_id}.{part}"))
    }

    fn qemu_img(&self, args: &[&str]) -> HvResult<String> {
        let out = Command::new(&self.cfg.qemu_img)
            .args(args)
            .output()
            .map_err(|e| io_err(format!("run {}", self.cfg.qemu_img.display()), e))?;
        if !out.status.success() {
            return Err(HvError::Failed(format!(
                "qemu-img {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Virtual size in bytes; `-U` because the image may be open in a running guest.
    fn virtual_size(&self, path: &Path) -> HvResult<u64> {
        let path_s = path.to_string_lossy();
        let out = self.qemu_img(&["info", "-U", "--output=json", &path_s])?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| HvError::Failed(format!("qemu-img info {path_s}: {e}")))?;
        v.get("virtual-size")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| HvError::Failed(format!("qemu-img info {path_s}: no virtual-size")))
    }

    /// Refuses a disk image that would make QEMU open any file but itself: a backing file or an
    /// external data file in a crafted qcow2 could hand a guest a host file or another tenant's
    /// volume. The image is read as its declared format, never probed.
    fn inspect_image(&self, image_id: &str, format: &str, path: &Path) -> HvResult<()> {
        let path_s = path.to_string_lossy();
        let refuse = |why: &str| HvError::Failed(format!("image {image_id}: refused: {why}"));
        let out = self
            .qemu_img(&[
                "info",
                "--backing-chain",
                "--output=json",
                "-f",
                format,
                &path_s,
            ])
            .map_err(|e| {
                tracing::warn!(image = %image_id, error = %e, "qemu-img info failed");
                refuse(&format!("not a valid {format} image"))
            })?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .map_err(|_| refuse("qemu-img info gave no readable answer"))?;
        let layers = v.as_array().cloned().unwrap_or_else(|| vec![v]);
        if layers.len() != 1 {
            return Err(refuse("it has a backing file"));
        }
        let info = &layers[0];
        if info.get("backing-filename").is_some() || info.get("full-backing-filename").is_some() {
            return Err(refuse("it has a backing file"));
        }
        let data = info.pointer("/format-specific/data");
        if data.and_then(|d| d.get("data-file")).is_some() {
            return Err(refuse("it has an external data file"));
        }
        Ok(())
    }

    /// Fetches one image file unless the cached copy was verified against the same checksum;
    /// a disk (`format` given) is inspected before it is accepted.
    fn cache_file(
        &self,
        image_id: &str,
        part: &str,
        src: &super::FileSource,
        format: Option<&str>,
    ) -> HvResult<PathBuf> {
        let dest = self.image_path(image_id, part);
        let stamp = self.image_path(image_id, &format!("{part}.sha256"));
        let expected = src.sha256.trim().to_ascii_lowercase();
        if dest.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == expected) {
            return Ok(dest);
        }
        let tmp = self.cfg.pool_dir.join(format!(
            ".image-{image_id}.{part}.{}.part",
            uuid::Uuid::new_v4().simple()
        ));
        let actual = fetch::fetch_to(&self.cfg.fetch, &src.source, &tmp)?;
        if actual != expected {
            let _ = fs::remove_file(&tmp);
            tracing::warn!(image = %image_id, part, %expected, %actual, "image checksum mismatch");
            return Err(HvError::Checksum {
                image: image_id.to_string(),
                expected,
                actual,
            });
        }
        if let Some(format) = format {
            if let Err(e) = self.inspect_image(image_id, format, &tmp) {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        }
        fs::rename(&tmp, &dest).map_err(|e| io_err(dest.display(), e))?;
        // The stamp is written last: a crash before it only costs a second download.
        fs::write(&stamp, format!("{expected}\n")).map_err(|e| io_err(stamp.display(), e))?;
        Ok(dest)
    }

    /// Domains' XML: the live definition when running, else the persistent one.
    fn domain_volumes(&self, dom: &Domain) -> HvResult<Vec<String>> {
        let desc = dom.xml_desc(0).map_err(|e| virt_err("domain XML", e))?;
        Ok(self.volumes_in(&desc))
    }

    fn volumes_in(&self, domain_xml: &str) -> Vec<String> {
        let prefix = self.cfg.pool_dir.join("vol-");
        let prefix = prefix.to_string_lossy();
        xml::disks(domain_xml)
            .into_iter()
            .filter_map(|d| d.source)
            .filter_map(|s| {
                s.strip_prefix(prefix.as_ref())
                    .and_then(|rest| rest.strip_suffix(".qcow2"))
                    .map(str::to_string)
            })
            .collect()
    }

    fn status_of(&self, id: String, dom: &Domain) -> HvResult<DomainStatus> {
        let (state, _) = dom.state().map_err(|e| virt_err("domain state", e))?;
        let state = match state.unwrap_or(DomainState::NoState) {
            DomainState::Running | DomainState::Blocked => PowerState::Running,
            DomainState::Shutoff => PowerState::Stopped,
            _ => PowerState::Other,
        };
        // The tags live in the persistent definition.
        let config = dom
            .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
            .map_err(|e| virt_err("domain XML", e))?;
        Ok(DomainStatus {
            id,
            state,
            volumes: self.domain_volumes(dom)?,
            owner: xml::owner_host(&config),
            quarantined: xml::is_quarantined(&config),
        })
    }

    fn quarantine_mark(&self, id: &str) -> PathBuf {
        self.cfg.pool_dir.join(format!("vol-{id}.quarantined"))
    }

    /// The guest (if running) that has `volume` attached, by its id.
    fn attached_to(&self, volume: &str) -> HvResult<Option<(String, Domain)>> {
        let conn = self.conn()?;
        for dom in conn
            .list_all_domains(0)
            .map_err(|e| virt_err("list domains", e))?
        {
            let name = dom.name().map_err(|e| virt_err("domain name", e))?;
            let Some(id) = name.strip_prefix(xml::NAME_PREFIX) else {
                continue;
            };
            let mut found = self.domain_volumes(&dom)?.iter().any(|v| v == volume);
            if !found {
                let inactive = dom
                    .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
                    .map_err(|e| virt_err("domain XML", e))?;
                found = self.volumes_in(&inactive).iter().any(|v| v == volume);
            }
            if found {
                return Ok(Some((id.to_string(), dom)));
            }
        }
        Ok(None)
    }

    fn remove_if_exists(path: &Path) -> HvResult<()> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(path.display(), e)),
        }
    }
}

impl Hypervisor for LibvirtDriver {
    fn driver(&self) -> &'static str {
        "libvirt"
    }

    fn inventory(&self) -> HvResult<Inventory> {
        let conn = self.conn()?;
        let node = conn.node_info().map_err(|e| virt_err("node info", e))?;
        let pool = self.ensure_pool()?;
        let info = pool.info().map_err(|e| virt_err("storage pool info", e))?;
        Ok(Inventory {
            vcpus: u64::from(node.cpus),
            memory_mib: node.memory / 1024,
            disk_gib: info.capacity / GIB,
        })
    }

    fn list(&self) -> HvResult<Vec<DomainStatus>> {
        let conn = self.conn()?;
        let mut out = Vec::new();
        for dom in conn
            .list_all_domains(0)
            .map_err(|e| virt_err("list domains", e))?
        {
            let name = match dom.name() {
                Ok(n) => n,
                // Undefined between listing and asking: not ours to report.
                Err(_) => continue,
            };
            if let Some(id) = name.strip_prefix(xml::NAME_PREFIX) {
                match self.status_of(id.to_string(), &dom) {
                    Ok(s) => out.push(s),
                    Err(HvError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn status(&self, id: &str) -> HvResult<Option<DomainStatus>> {
        match self.lookup(id)? {
            Some(dom) => self.status_of(id.to_string(), &dom).map(Some),
            None => Ok(None),
        }
    }

    fn prepare_image(&self, image: &ImageSpec) -> HvResult<()> {
        check_id("image", &image.id)?;
        if !matches!(image.format.as_str(), "qcow2" | "raw") {
            return Err(HvError::Failed(format!(
                "image {}: unsupported format {:?}",
                image.id, image.format
            )));
        }
        self.cache_file(&image.id, "disk", &image.disk, Some(&image.format))?;
        if let Some(k) = &image.kernel {
            self.cache_file(&image.id, "kernel", k, None)?;
        }
        if let Some(i) = &image.initrd {
            self.cache_file(&image.id, "initrd", i, None)?;
        }
        self.refresh_pool();
        Ok(())
    }

    fn define(&self, spec: &VmSpec) -> HvResult<()> {
        check_id("instance", &spec.id)?;
        let lock = self.vm_lock(&spec.id);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if self.lookup(&spec.id)?.is_some() {
            return Ok(());
        }
        self.prepare_image(&spec.image)?;
        let base = self.image_path(&spec.image.id, "disk");

        let root = self.root_path(&spec.id);
        if !root.exists() {
            let size = self
                .virtual_size(&base)?
                .max(spec.disk_gib.saturating_mul(GIB));
            // Built under a temporary name so a crash never leaves a half-made overlay that
            // a retry would take for finished.
            let tmp = self
                .cfg
                .pool_dir
                .join(format!("inst-{}-root.qcow2.tmp", spec.id));
            Self::remove_if_exists(&tmp)?;
            self.qemu_img(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                &spec.image.format,
                "-b",
                &base.to_string_lossy(),
                &tmp.to_string_lossy(),
                &size.to_string(),
            ])?;
            fs::rename(&tmp, &root).map_err(|e| io_err(root.display(), e))?;
        }

        // The seed is rewritten on every define: it is cheap and must match this spec.
        let seed_path = self.seed_path(&spec.id);
        let tmp = self
            .cfg
            .pool_dir
            .join(format!("inst-{}-seed.img.tmp", spec.id));
        seed::write_seed(&tmp, spec).map_err(|e| io_err(tmp.display(), e))?;
        fs::rename(&tmp, &seed_path).map_err(|e| io_err(seed_path.display(), e))?;

        let has_kernel = spec.image.kernel.is_some();
        let files = DomainFiles {
            root,
            seed: seed_path,
            console: self.console_path(&spec.id),
            kernel: has_kernel.then(|| self.image_path(&spec.image.id, "kernel")),
            initrd: (has_kernel && spec.image.initrd.is_some())
                .then(|| self.image_path(&spec.image.id, "initrd")),
        };
        let net = if self.cfg.network == "user" {
            NetworkMode::User
        } else {
            NetworkMode::Network(self.cfg.network.clone())
        };
        let desc = xml::domain_xml(spec, self.virt_type, &files, &net);
        let conn = self.conn()?;
        conn.define_domain_xml(&desc)
            .map_err(|e| virt_err("define domain", e))?;
        self.refresh_pool();
        Ok(())
    }

    fn start(&self, id: &str) -> HvResult<()> {
        let dom = self.require(id)?;
        if dom.is_active().map_err(|e| virt_err("domain state", e))? {
            return Ok(());
        }
        match dom.create() {
            Ok(()) => Ok(()),
            Err(e)
                if is_code(&e, ErrorNumber::OperationInvalid)
                    && dom.is_active().unwrap_or(false) =>
            {
                Ok(())
            }
            Err(e) => Err(virt_err("start domain", e)),
        }
    }

    fn shutdown(&self, id: &str) -> HvResult<()> {
        let dom = self.require(id)?;
        if !dom.is_active().map_err(|e| virt_err("domain state", e))? {
            return Ok(());
        }
        match dom.shutdown_flags(sys::VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) {
            Ok(()) => Ok(()),
            Err(e) if is_code(&e, ErrorNumber::OperationInvalid) => Ok(()),
            Err(e) => Err(virt_err("shut down domain", e)),
        }
    }

    fn power_off(&self, id: &str) -> HvResult<()> {
        let dom = self.require(id)?;
        if !dom.is_active().map_err(|e| virt_err("domain state", e))? {
            return Ok(());
        }
        match dom.destroy() {
            Ok(()) => Ok(()),
            Err(e) if is_code(&e, ErrorNumber::OperationInvalid) => Ok(()),
            Err(e) => Err(virt_err("power off domain", e)),
        }
    }

    fn reboot(&self, id: &str) -> HvResult<()> {
        let dom = self.require(id)?;
        if !dom.is_active().map_err(|e| virt_err("domain state", e))? {
            // Rebooting a stopped guest leaves it running, like the reboot would have.
            return self.start(id);
        }
        dom.reboot(sys::VIR_DOMAIN_REBOOT_ACPI_POWER_BTN)
            .map_err(|e| virt_err("reboot domain", e))
    }

    fn delete(&self, id: &str) -> HvResult<()> {
        check_id("instance", id)?;
        let lock = self.vm_lock(id);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(dom) = self.lookup(id)? {
            if dom.is_active().unwrap_or(false) {
                if let Err(e) = dom.destroy() {
                    if !is_code(&e, ErrorNumber::OperationInvalid) {
                        return Err(virt_err("power off domain", e));
                    }
                }
            }
            if let Err(e) = dom.undefine() {
                if !is_code(&e, ErrorNumber::NoDomain) {
                    return Err(virt_err("undefine domain", e));
                }
            }
        }
        let prefix = format!("inst-{id}-");
        let entries =
            fs::read_dir(&self.cfg.pool_dir).map_err(|e| io_err(self.cfg.pool_dir.display(), e))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                Self::remove_if_exists(&entry.path())?;
            }
        }
        Self::remove_if_exists(&self.console_path(id))?;
        self.refresh_pool();
        self.vm_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        Ok(())
    }

    fn list_volumes(&self) -> HvResult<Vec<VolumeStatus>> {
        let entries =
            fs::read_dir(&self.cfg.pool_dir).map_err(|e| io_err(self.cfg.pool_dir.display(), e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_prefix("vol-")
                .and_then(|r| r.strip_suffix(".qcow2"))
            else {
                continue;
            };
            let size = self.virtual_size(&entry.path())?;
            out.push(VolumeStatus {
                id: id.to_string(),
                size_gib: size.div_ceil(GIB),
                quarantined: self.quarantine_mark(id).exists(),
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn create_volume(&self, id: &str, size_gib: u64) -> HvResult<()> {
        check_id("volume", id)?;
        let path = self.volume_path(id);
        if path.exists() {
            return Ok(());
        }
        let tmp = self.cfg.pool_dir.join(format!("vol-{id}.qcow2.tmp"));
        Self::remove_if_exists(&tmp)?;
        self.qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            &tmp.to_string_lossy(),
            &size_gib.saturating_mul(GIB).to_string(),
        ])?;
        fs::rename(&tmp, &path).map_err(|e| io_err(path.display(), e))?;
        self.refresh_pool();
        Ok(())
    }

    fn extend_volume(&self, id: &str, size_gib: u64) -> HvResult<()> {
        check_id("volume", id)?;
        let path = self.volume_path(id);
        if !path.exists() {
            return Err(HvError::NotFound(format!("volume {id}")));
        }
        let want = size_gib.saturating_mul(GIB);
        if want <= self.virtual_size(&path)? {
            return Ok(());
        }
        // A running guest holds the image open: grow it through QEMU so the guest sees it.
        if let Some((_, dom)) = self.attached_to(id)? {
            if dom.is_active().unwrap_or(false) {
                let live = dom.xml_desc(0).map_err(|e| virt_err("domain XML", e))?;
                let path_s = path.to_string_lossy();
                if let Some(target) = xml::disks(&live)
                    .into_iter()
                    .find(|d| d.source.as_deref() == Some(path_s.as_ref()))
                    .and_then(|d| d.target)
                {
                    return dom
                        .block_resize(&target, want, sys::VIR_DOMAIN_BLOCK_RESIZE_BYTES)
                        .map_err(|e| virt_err("resize attached volume", e));
                }
            }
        }
        self.qemu_img(&["resize", "-q", &path.to_string_lossy(), &want.to_string()])?;
        self.refresh_pool();
        Ok(())
    }

    fn delete_volume(&self, id: &str) -> HvResult<()> {
        check_id("volume", id)?;
        let path = self.volume_path(id);
        if !path.exists() {
            return Ok(());
        }
        if let Some((vm, _)) = self.attached_to(id)? {
            return Err(HvError::Failed(format!(
                "volume {id} is attached to instance {vm}"
            )));
        }
        Self::remove_if_exists(&path)?;
        Self::remove_if_exists(&self.quarantine_mark(id))?;
        self.refresh_pool();
        Ok(())
    }

    fn attach_volume(&self, vm: &str, volume: &str) -> HvResult<()> {
        check_id("volume", volume)?;
        let lock = self.vm_lock(vm);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let dom = self.require(vm)?;
        let path = self.volume_path(volume);
        if !path.exists() {
            return Err(HvError::NotFound(format!("volume {volume}")));
        }
        let path_s = path.to_string_lossy().into_owned();
        let active = dom.is_active().map_err(|e| virt_err("domain state", e))?;
        let config = xml::disks(
            &dom.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
                .map_err(|e| virt_err("domain XML", e))?,
        );
        let live = if active {
            xml::disks(&dom.xml_desc(0).map_err(|e| virt_err("domain XML", e))?)
        } else {
            Vec::new()
        };
        let find = |disks: &[xml::DiskEntry]| {
            disks
                .iter()
                .find(|d| d.source.as_deref() == Some(path_s.as_str()))
                .map(|d| d.target.clone())
        };
        let in_config = find(&config);
        let in_live = find(&live);
        let mut flags = 0;
        if in_config.is_none() {
            flags |= sys::VIR_DOMAIN_AFFECT_CONFIG;
        }
        if active && in_live.is_none() {
            flags |= sys::VIR_DOMAIN_AFFECT_LIVE;
        }
        if flags == 0 {
            return Ok(());
        }
        // Keep the name the disk already has on one side, else take one free on both.
        let target = match in_config.or(in_live).flatten() {
            Some(t) => t,
            None => {
                let used: Vec<String> = config
                    .iter()
                    .chain(live.iter())
                    .filter_map(|d| d.target.clone())
                    .collect();
                xml::free_target(&used)
                    .ok_or_else(|| HvError::Failed(format!("instance {vm}: no free disk name")))?
            }
        };
        dom.attach_device_flags(&xml::volume_disk_xml(&path, &target), flags)
            .map_err(|e| virt_err("attach volume", e))
    }

    fn detach_volume(&self, vm: &str, volume: &str) -> HvResult<()> {
        check_id("volume", volume)?;
        let lock = self.vm_lock(vm);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let dom = self.require(vm)?;
        let path = self.volume_path(volume);
        let path_s = path.to_string_lossy().into_owned();
        let active = dom.is_active().map_err(|e| virt_err("domain state", e))?;
        let config = xml::disks(
            &dom.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
                .map_err(|e| virt_err("domain XML", e))?,
        );
        let live = if active {
            xml::disks(&dom.xml_desc(0).map_err(|e| virt_err("domain XML", e))?)
        } else {
            Vec::new()
        };
        for (disks, flag) in [
            (config, sys::VIR_DOMAIN_AFFECT_CONFIG),
            (live, sys::VIR_DOMAIN_AFFECT_LIVE),
        ] {
            let Some(entry) = disks
                .iter()
                .find(|d| d.source.as_deref() == Some(path_s.as_str()))
            else {
                continue;
            };
            let target = entry.target.clone().unwrap_or_default();
            match dom.detach_device_flags(&xml::volume_disk_xml(&path, &target), flag) {
                Ok(()) => {}
                // A live unplug the guest has not finished yet: asked already, so done here.
                Err(e) if e.message().contains("already in the process of unplug") => {}
                Err(e) => return Err(virt_err("detach volume", e)),
            }
        }
        Ok(())
    }

    fn quarantine(&self, id: &str) -> HvResult<()> {
        let lock = self.vm_lock(id);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let dom = self.require(id)?;
        // Tagged first, so a crash between the two steps still leaves it marked.
        dom.set_metadata(
            sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
            Some("<quarantined reason='not in the desired state of this host'/>"),
            Some("andromede-quarantine"),
            Some(xml::QUARANTINE_NS),
            sys::VIR_DOMAIN_AFFECT_CONFIG,
        )
        .map_err(|e| virt_err("tag domain quarantined", e))?;
        let _ = dom.set_autostart(false);
        if dom.is_active().unwrap_or(false) {
            match dom.destroy() {
                Ok(()) => {}
                Err(e) if is_code(&e, ErrorNumber::OperationInvalid) => {}
                Err(e) => return Err(virt_err("power off quarantined domain", e)),
            }
        }
        Ok(())
    }

    fn release(&self, id: &str) -> HvResult<()> {
        let lock = self.vm_lock(id);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let dom = self.require(id)?;
        dom.set_metadata(
            sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
            None,
            None,
            Some(xml::QUARANTINE_NS),
            sys::VIR_DOMAIN_AFFECT_CONFIG,
        )
        .map_err(|e| virt_err("clear the quarantine tag", e))
    }

    fn quarantine_volume(&self, id: &str) -> HvResult<()> {
        check_id("volume", id)?;
        if !self.volume_path(id).exists() {
            return Err(HvError::NotFound(format!("volume {id}")));
        }
        let mark = self.quarantine_mark(id);
        fs::write(&mark, "not in the desired state of this host\n")
            .map_err(|e| io_err(mark.display(), e))
    }

    fn release_volume(&self, id: &str) -> HvResult<()> {
        check_id("volume", id)?;
        Self::remove_if_exists(&self.quarantine_mark(id))
    }

    fn console_log(&self, id: &str, max_bytes: usize) -> HvResult<Vec<u8>> {
        check_id("instance", id)?;
        let path = self.console_path(id);
        let mut file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return if self.lookup(id)?.is_some() {
                    Ok(Vec::new())
                } else {
                    Err(HvError::NotFound(format!("instance {id}")))
                };
            }
            Err(e) => return Err(io_err(path.display(), e)),
        };
        let len = file
            .metadata()
            .map_err(|e| io_err(path.display(), e))?
            .len();
        let start = len.saturating_sub(max_bytes as u64);
        file.seek(SeekFrom::Start(start))
            .map_err(|e| io_err(path.display(), e))?;
        let mut out = Vec::with_capacity((len - start) as usize);
        file.take(max_bytes as u64)
            .read_to_end(&mut out)
            .map_err(|e| io_err(path.display(), e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTEL: &str = "processor\t: 0\nflags\t\t: fpu vme vmx sse2\n";

    #[test]
    fn pool_target_path() {
        let xml = "<pool type='dir'><name>p</name><source/><target>\n  <path>/srv/pool</path>\n  <permissions/></target></pool>";
        assert_eq!(target_path(xml).as_deref(), Some("/srv/pool"));
        assert_eq!(target_path("<pool/>"), None);
    }
    const NONE: &str = "processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor\n";

    #[test]
    fn auto_takes_kvm_only_with_device_and_cpu_support() {
        assert_eq!(domain_type(Accel::Auto, true, INTEL), "kvm");
        assert_eq!(domain_type(Accel::Auto, true, NONE), "qemu");
        assert_eq!(domain_type(Accel::Auto, false, INTEL), "qemu");
        assert_eq!(domain_type(Accel::Auto, true, "flags : svm\n"), "kvm");
        assert_eq!(domain_type(Accel::Kvm, false, NONE), "kvm");
        assert_eq!(domain_type(Accel::Tcg, true, INTEL), "qemu");
    }

    #[test]
    fn accel_parses() {
        assert_eq!("auto".parse::<Accel>().unwrap(), Accel::Auto);
        assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
        assert!("fast".parse::<Accel>().is_err());
    }

    #[test]
    fn ids_are_checked_before_becoming_paths() {
        assert!(check_id("x", "6f1c1a5e-3b1e-4c55-9a0e-0d3c2b1a0f11").is_ok());
        assert!(check_id("x", "../etc").is_err());
        assert!(check_id("x", "a/b").is_err());
        assert!(check_id("x", "").is_err());
    }
}
