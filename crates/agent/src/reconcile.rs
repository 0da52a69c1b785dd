//! Converges the host to the desired state the control plane pushes: one actor per instance and
//! one per volume, each running its hypervisor calls on a blocking thread, so one stuck guest
//! never holds up the others. Every pass is idempotent: after a crash the same pass finishes or
//! undoes what was interrupted.

use crate::hypervisor::{FileSource, HvError, Hypervisor, ImageSpec, PowerState, VmSpec};
use andromede_api::v1::{
    DesiredState, HostOrphans, Image, Instance, InstanceReport, InstanceState as IS, Orphan,
    PowerIntent, Volume, VolumeReport, VolumeState as VS,
};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// What an actor tells the control plane it observed.
#[derive(Debug, Clone)]
pub enum Report {
    Instance(InstanceReport),
    Volume(VolumeReport),
    /// Everything quarantined on the host now.
    Orphans(HostOrphans),
}

/// Tuning of the convergence loops.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How long a graceful (ACPI) stop may take before the power is cut.
    pub stop_timeout: Duration,
    /// How often a converged actor checks its guest again (guests can stop on their own).
    pub resync: Duration,
    /// How soon an actor waiting on something (a guest to attach to) tries again.
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            stop_timeout: crate::hypervisor::DEFAULT_STOP_TIMEOUT,
            resync: Duration::from_secs(10),
            retry: Duration::from_secs(1),
        }
    }
}

type Slot<T> = watch::Sender<Option<T>>;

pub struct Reconciler {
    hv: Arc<dyn Hypervisor>,
    reports: mpsc::UnboundedSender<Report>,
    timing: Timing,
    images: Mutex<HashMap<String, Image>>,
    /// One lock per image so concurrent creates fetch it once; holds a refusal that must not be
    /// retried (a checksum mismatch).
    image_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<HvError>>>>>,
    prepared: Mutex<BTreeSet<String>>,
    instances: Mutex<HashMap<String, Slot<Instance>>>,
    volumes: Mutex<HashMap<String, Slot<Volume>>>,
    /// The last report sent per resource, so an unchanged observation is repeated once a minute
    /// at most (instead of on every pass) while the control plane has not taken it in yet.
    reported: Mutex<HashMap<String, Reported>>,
    /// The instance and volume ids the control plane lists for this host: the last full state
    /// and the changes since. `None` until a first full state arrived (nothing is judged before).
    listed: Mutex<Option<(BTreeSet<String>, BTreeSet<String>)>>,
    /// This host's id, to tell guests of another enrollment of the machine from its own.
    host_id: Mutex<String>,
    /// The file where an operator confirms the deletion of orphans (one id per line).
    confirmations: Mutex<Option<PathBuf>>,
    /// The orphan list last sent; `None` makes the next scan send it again.
    orphans_sent: Mutex<Option<HostOrphans>>,
    scanning: AtomicBool,
}

/// The last report about one resource: (its generation then, the state reported) and when.
type Reported = ((u64, i32), Instant);

/// How soon an identical report is sent again.
const REPORT_REPEAT: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hands `desired` to the resource's running actor; when there is none, makes its slot and
/// returns the receiver a new actor must be started with.
fn deliver<T>(
    slots: &Mutex<HashMap<String, Slot<T>>>,
    id: String,
    desired: Option<T>,
) -> Option<(String, watch::Receiver<Option<T>>)> {
    let mut m = lock(slots);
    if let Some(tx) = m.get(&id).filter(|tx| !tx.is_closed()) {
        tx.send_replace(desired);
        return None;
    }
    let (tx, rx) = watch::channel(desired);
    m.insert(id.clone(), tx);
    Some((id, rx))
}

/// Drops an actor's slot once the actor has ended (its receiver is gone), unless a newer actor
/// took the id meanwhile.
fn forget<T>(slots: &Mutex<HashMap<String, Slot<T>>>, id: &str) {
    let mut m = lock(slots);
    if m.get(id).is_some_and(|tx| tx.is_closed()) {
        m.remove(id);
    }
}

fn state(i: &Instance) -> IS {
    IS::try_from(i.state).unwrap_or(IS::Error)
}

fn vstate(v: &Volume) -> VS {
    VS::try_from(v.state).unwrap_or(VS::Error)
}

fn id_of(i: &Instance) -> String {
    i.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default()
}

fn vid_of(v: &Volume) -> String {
    v.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default()
}

/// The driver's view of an image record.
pub fn image_spec(img: &Image) -> ImageSpec {
    let file = |f: &andromede_api::v1::ImageFile| FileSource {
        source: f.source.clone(),
        sha256: f.checksum_sha256.clone(),
    };
    ImageSpec {
        id: img.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default(),
        format: img.format.clone(),
        disk: FileSource {
            source: img.source.clone(),
            sha256: img.checksum_sha256.clone(),
        },
        kernel: img.kernel.as_ref().map(file),
        initrd: img.initrd.as_ref().map(file),
        cmdline: img.cmdline.clone(),
    }
}

/// The driver's view of an instance record.
pub fn vm_spec(i: &Instance, img: &Image) -> VmSpec {
    let r = i.resources.unwrap_or_default();
    let m = i.meta.clone().unwrap_or_default();
    VmSpec {
        id: m.id,
        name: m.name,
        project_id: m.project_id,
        vcpus: u32::try_from(r.vcpus).unwrap_or(u32::MAX),
        memory_mib: r.memory_mib,
        disk_gib: r.disk_gib.max(img.min_disk_gib),
        image: image_spec(img),
        user_data: i.user_data.clone(),
        ssh_keys: i.ssh_keys.clone(),
        host_id: i.host_id.clone(),
    }
}

/// The ids an operator confirmed for deletion in `path` (one per line, `#` comments).
pub fn read_confirmations(path: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Adds `id` to the confirmations in `path`; the running agent deletes that orphan on its next
/// scan (and drops the line).
pub fn confirm_deletion(path: &std::path::Path, id: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{id}")
}

fn orphan(kind: &str, id: &str, reason: &str, owner: &str) -> Orphan {
    Orphan {
        kind: kind.into(),
        id: id.into(),
        reason: reason.into(),
        owner_host_id: owner.into(),
    }
}

/// Why a pass stopped short.
enum Stop {
    /// Try again soon without telling anyone (hypervisor busy, guest not defined yet).
    Retry(String),
    /// Report the resource in error with this reason.
    Fail(String),
}

impl From<HvError> for Stop {
    fn from(e: HvError) -> Self {
        match e {
            HvError::Unavailable(m) => Stop::Retry(m),
            e => Stop::Fail(e.to_string()),
        }
    }
}

impl Reconciler {
    pub fn new(
        hv: Arc<dyn Hypervisor>,
        timing: Timing,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Report>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let r = Arc::new(Self {
            hv,
            reports: tx,
            timing,
            images: Mutex::new(HashMap::new()),
            image_locks: Mutex::new(HashMap::new()),
            prepared: Mutex::new(BTreeSet::new()),
            instances: Mutex::new(HashMap::new()),
            volumes: Mutex::new(HashMap::new()),
            reported: Mutex::new(HashMap::new()),
            listed: Mutex::new(None),
            host_id: Mutex::new(String::new()),
            confirmations: Mutex::new(None),
            orphans_sent: Mutex::new(None),
            scanning: AtomicBool::new(false),
        });
        (r, rx)
    }

    /// This host's id, as enrolled.
    pub fn set_host_id(&self, id: &str) {
        *lock(&self.host_id) = id.to_string();
    }

    /// Where an operator confirms orphan deletions (see [`confirm_deletion`]).
    pub fn set_confirmations(&self, path: PathBuf) {
        *lock(&self.confirmations) = Some(path);
    }

    pub fn hypervisor(&self) -> Arc<dyn Hypervisor> {
        self.hv.clone()
    }

    /// Runs a blocking hypervisor call off the async reactor.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Hypervisor) -> Result<R, HvError> + Send + 'static,
    ) -> Result<R, HvError> {
        let hv = self.hv.clone();
        tokio::task::spawn_blocking(move || f(hv.as_ref()))
            .await
            .map_err(|e| HvError::Failed(format!("hypervisor call panicked: {e}")))?
    }

    /// A hypervisor call about one resource, off the async reactor.
    async fn call_id<R: Send + 'static>(
        &self,
        id: &str,
        f: impl FnOnce(&dyn Hypervisor, &str) -> Result<R, HvError> + Send + 'static,
    ) -> Result<R, HvError> {
        let id = id.to_string();
        self.call(move |hv| f(hv, &id)).await
    }

    /// Takes in what the control plane wants of this host.
    pub async fn apply(self: &Arc<Self>, d: DesiredState) {
        {
            let mut imgs = lock(&self.images);
            for img in &d.images {
                let id = img.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default();
                imgs.insert(id, img.clone());
            }
        }
        {
            let mut listed = lock(&self.listed);
            let (li, lv) = listed.get_or_insert_with(Default::default);
            if d.full {
                li.clear();
                lv.clear();
            }
            li.extend(d.instances.iter().map(id_of));
            lv.extend(d.volumes.iter().map(vid_of));
            for id in &d.removed_instances {
                li.remove(id);
            }
            for id in &d.removed_volumes {
                lv.remove(id);
            }
        }
        if d.full {
            self.set_aside_unlisted(&d);
        }
        for i in d.instances {
            let id = id_of(&i);
            self.push_instance(id, Some(i));
        }
        for v in d.volumes {
            let id = vid_of(&v);
            self.push_volume(id, Some(v));
        }
        for id in d.removed_instances {
            self.push_instance(id, None);
        }
        for id in d.removed_volumes {
            self.push_volume(id, None);
        }
        if d.full {
            self.scan_orphans().await;
            if !self.scanning.swap(true, Ordering::SeqCst) {
                tokio::spawn(Self::scan_loop(Arc::downgrade(self), self.timing.resync));
            }
        }
    }

    /// Actors of resources a full state no longer lists stop without deleting anything: what
    /// they managed is quarantined by the next scan instead.
    fn set_aside_unlisted(&self, d: &DesiredState) {
        let want_i: BTreeSet<String> = d.instances.iter().map(id_of).collect();
        let want_v: BTreeSet<String> = d.volumes.iter().map(vid_of).collect();
        // Dropping an actor's sender ends it at its next wait; a pending delete (an explicit
        // removal) is let finish.
        lock(&self.instances).retain(|id, tx| want_i.contains(id) || tx.borrow().is_none());
        lock(&self.volumes).retain(|id, tx| want_v.contains(id) || tx.borrow().is_none());
    }

    async fn scan_loop(me: Weak<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let Some(me) = me.upgrade() else { return };
            me.scan_orphans().await;
        }
    }

    /// Finds what is on the host and not listed by the control plane, and sets it aside: never
    /// deleted here unless that id is removed explicitly or an operator confirmed it. Guests
    /// tagged with another host's id are listed and left alone. Reports the list when it changed.
    pub async fn scan_orphans(self: &Arc<Self>) {
        let Some((want_i, want_v)) = lock(&self.listed).clone() else {
            return;
        };
        let (doms, vols) = match self.call(|hv| Ok((hv.list()?, hv.list_volumes()?))).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list guests and volumes for orphans");
                return;
            }
        };
        let me = lock(&self.host_id).clone();
        let confirm_path = lock(&self.confirmations).clone();
        let mut confirmed = confirm_path
            .as_deref()
            .map(read_confirmations)
            .unwrap_or_default();
        let mut items = Vec::new();
        for d in doms {
            if want_i.contains(&d.id) {
                if d.quarantined {
                    tracing::info!(instance = %d.id, "listed again: quarantine lifted");
                    let _ = self.call_id(&d.id, |hv, id| hv.release(id)).await;
                }
                continue;
            }
            // An actor still holds it: a change that just arrived, or a delete in flight.
            if lock(&self.instances).contains_key(&d.id) {
                continue;
            }
            if !d.owner.is_empty() && !me.is_empty() && d.owner != me {
                items.push(orphan(
                    "instance",
                    &d.id,
                    &format!("tagged with host {}, not this one: left as it is", d.owner),
                    &d.owner,
                ));
                continue;
            }
            if confirmed.remove(&d.id) {
                tracing::warn!(instance = %d.id, "deleting an orphan guest, as an operator confirmed");
                self.push_instance(d.id, None);
                continue;
            }
            if !d.quarantined || d.state == PowerState::Running {
                tracing::warn!(instance = %d.id, "a guest the control plane does not list: stopped and quarantined, not deleted");
                if let Err(e) = self.call_id(&d.id, |hv, id| hv.quarantine(id)).await {
                    tracing::warn!(instance = %d.id, error = %e, "cannot quarantine guest");
                }
            }
            items.push(orphan(
                "instance",
                &d.id,
                "not in this host's desired state: stopped and quarantined",
                "",
            ));
        }
        for v in vols {
            if want_v.contains(&v.id) {
                if v.quarantined {
                    let _ = self.call_id(&v.id, |hv, id| hv.release_volume(id)).await;
                }
                continue;
            }
            if lock(&self.volumes).contains_key(&v.id) {
                continue;
            }
            if confirmed.remove(&v.id) {
                tracing::warn!(volume = %v.id, "deleting an orphan volume, as an operator confirmed");
                self.push_volume(v.id, None);
                continue;
            }
            if !v.quarantined {
                tracing::warn!(volume = %v.id, "a volume the control plane does not list: quarantined, not deleted");
                if let Err(e) = self.call_id(&v.id, |hv, id| hv.quarantine_volume(id)).await {
                    tracing::warn!(volume = %v.id, error = %e, "cannot quarantine volume");
                }
            }
            items.push(orphan(
                "volume",
                &v.id,
                "not in this host's desired state: quarantined",
                "",
            ));
        }
        if let Some(path) = confirm_path.filter(|p| p.exists()) {
            // A confirmation is for an orphan seen now; anything else is dropped, never kept
            // for a later one.
            for id in &confirmed {
                tracing::warn!(id = %id, "deletion confirmed for something that is not an orphan here: ignored");
            }
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot clear confirmations");
            }
        }
        let now = HostOrphans { items };
        let mut sent = lock(&self.orphans_sent);
        if sent.as_ref() != Some(&now) {
            *sent = Some(now.clone());
            let _ = self.reports.send(Report::Orphans(now));
        }
    }

    fn push_instance(self: &Arc<Self>, id: String, desired: Option<Instance>) {
        if let Some((id, rx)) = deliver(&self.instances, id, desired) {
            tokio::spawn(self.clone().instance_actor(id, rx));
        }
    }

    fn push_volume(self: &Arc<Self>, id: String, desired: Option<Volume>) {
        if let Some((id, rx)) = deliver(&self.volumes, id, desired) {
            tokio::spawn(self.clone().volume_actor(id, rx));
        }
    }

    /// Forgets what was reported: after a (re)connect everything is said again at once.
    pub fn resend_all(&self) {
        lock(&self.reported).clear();
        *lock(&self.orphans_sent) = None;
    }

    /// Whether a report is due: `what` is (the resource's generation, the observed state), so
    /// an observation answering any newer change (a second reboot, say) is always sent.
    fn due(&self, key: String, what: (u64, i32)) -> bool {
        let mut m = lock(&self.reported);
        match m.get(&key) {
            Some((w, at)) if *w == what && at.elapsed() < REPORT_REPEAT => false,
            _ => {
                m.insert(key, (what, Instant::now()));
                true
            }
        }
    }

    fn report_instance(&self, id: &str, inst: &Instance, observed: IS, reason: String) {
        let generation = inst.meta.as_ref().map_or(0, |m| m.generation);
        if state(inst) != observed && self.due(format!("i/{id}"), (generation, observed as i32)) {
            let _ = self.reports.send(Report::Instance(InstanceReport {
                id: id.to_string(),
                state: observed as i32,
                reason,
            }));
        }
    }

    fn report_volume(&self, id: &str, v: &Volume, observed: VS, reason: String) {
        let generation = v.meta.as_ref().map_or(0, |m| m.generation);
        if vstate(v) != observed && self.due(format!("v/{id}"), (generation, observed as i32)) {
            let _ = self.reports.send(Report::Volume(VolumeReport {
                id: id.to_string(),
                state: observed as i32,
                reason,
            }));
        }
    }

    async fn instance_actor(
        self: Arc<Self>,
        id: String,
        mut rx: watch::Receiver<Option<Instance>>,
    ) {
        tracing::info!(instance = %id, "instance received");
        let mut rebooted: Option<u64> = None;
        let dispatched = Instant::now();
        let mut announced_running = false;
        loop {
            let desired = rx.borrow_and_update().clone();
            let wait = match desired {
                None => match self.call_id(&id, |hv, id| hv.delete(id)).await {
                    Ok(()) => {
                        drop(rx);
                        forget(&self.instances, &id);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(instance = %id, error = %e, "cannot remove guest");
                        self.timing.retry
                    }
                },
                Some(inst) => match self.converge_instance(&id, &inst, &mut rebooted).await {
                    Ok(observed) => {
                        let reason = if observed == IS::Running && !announced_running {
                            announced_running = true;
                            let ms = dispatched.elapsed().as_millis();
                            tracing::info!(instance = %id, hypervisor_ms = %ms, "guest running");
                            format!("host: running {ms} ms after the agent received it")
                        } else {
                            String::new()
                        };
                        self.report_instance(&id, &inst, observed, reason);
                        self.timing.resync
                    }
                    Err(Stop::Retry(why)) => {
                        tracing::debug!(instance = %id, %why, "will retry");
                        self.timing.retry
                    }
                    Err(Stop::Fail(why)) => {
                        tracing::warn!(instance = %id, %why, "instance failed");
                        self.report_instance(&id, &inst, IS::Error, why);
                        self.timing.resync
                    }
                },
            };
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Makes sure the image is fetched and verified here, once.
    async fn ensure_image(&self, img: &Image) -> Result<(), Stop> {
        let spec = image_spec(img);
        if lock(&self.prepared).contains(&spec.id) {
            return Ok(());
        }
        let l = lock(&self.image_locks)
            .entry(spec.id.clone())
            .or_default()
            .clone();
        let mut refused = l.lock().await;
        if let Some(e) = refused.as_ref() {
            return Err(Stop::Fail(e.to_string()));
        }
        if lock(&self.prepared).contains(&spec.id) {
            return Ok(());
        }
        let id = spec.id.clone();
        match self.call(move |hv| hv.prepare_image(&spec)).await {
            Ok(()) => {
                lock(&self.prepared).insert(id);
                Ok(())
            }
            Err(e @ HvError::Checksum { .. }) => {
                *refused = Some(e.clone());
                Err(Stop::Fail(e.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One pass over an instance; returns what it now observes.
    async fn converge_instance(
        &self,
        id: &str,
        inst: &Instance,
        rebooted: &mut Option<u64>,
    ) -> Result<IS, Stop> {
        let cur = state(inst);
        if matches!(cur, IS::Deleting | IS::Deleted) {
            self.call_id(id, |hv, id| hv.delete(id)).await?;
            return Ok(IS::Deleted);
        }
        if cur == IS::Pending {
            return Ok(cur);
        }
        let img = lock(&self.images)
            .get(&inst.image_id)
            .cloned()
            .ok_or_else(|| {
                Stop::Fail(format!("image {} is unknown to this host", inst.image_id))
            })?;
        self.ensure_image(&img).await?;
        let spec = vm_spec(inst, &img);
        self.call(move |hv| hv.define(&spec)).await?;
        let power = self
            .call_id(id, |hv, id| hv.status(id))
            .await?
            .map_or(PowerState::Stopped, |s| s.state);
        let running = power == PowerState::Running;
        let want_stopped =
            inst.intent == PowerIntent::Stopped as i32 || matches!(cur, IS::Stopping | IS::Stopped);
        if want_stopped {
            if running {
                self.stop(id).await?;
            }
            return Ok(IS::Stopped);
        }
        match cur {
            // Believed running but found off: the guest shut itself down; say so, don't restart.
            IS::Running => Ok(if running || power == PowerState::Other {
                IS::Running
            } else {
                IS::Stopped
            }),
            IS::Rebooting => {
                if *rebooted != Some(inst.reboot_serial) {
                    if running {
                        self.call_id(id, |hv, id| hv.reboot(id)).await?;
                    } else {
                        self.call_id(id, |hv, id| hv.start(id)).await?;
                    }
                    *rebooted = Some(inst.reboot_serial);
                }
                Ok(IS::Running)
            }
            _ => {
                if !running {
                    self.call_id(id, |hv, id| hv.start(id)).await?;
                }
                *rebooted = Some(inst.reboot_serial);
                Ok(IS::Running)
            }
        }
    }

    /// Graceful stop, then power off once the timeout passes.
    async fn stop(&self, id: &str) -> Result<(), Stop> {
        self.call_id(id, |hv, id| hv.shutdown(id)).await?;
        let deadline = Instant::now() + self.timing.stop_timeout;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let s = self.call_id(id, |hv, id| hv.status(id)).await?;
            if s.is_none_or(|s| s.state != PowerState::Running) {
                return Ok(());
            }
        }
        tracing::info!(instance = %id, "graceful stop timed out; cutting the power");
        self.call_id(id, |hv, id| hv.power_off(id)).await?;
        Ok(())
    }

    async fn volume_actor(self: Arc<Self>, id: String, mut rx: watch::Receiver<Option<Volume>>) {
        loop {
            let desired = rx.borrow_and_update().clone();
            let wait = match desired {
                None => match self.call_id(&id, |hv, id| hv.delete_volume(id)).await {
                    Ok(()) => {
                        drop(rx);
                        forget(&self.volumes, &id);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(volume = %id, error = %e, "cannot remove volume");
                        self.timing.retry
                    }
                },
                Some(v) => {
                    let cur = vstate(&v);
                    match self.converge_volume(&id, &v).await {
                        Ok(observed) => {
                            self.report_volume(&id, &v, observed, String::new());
                            self.timing.resync
                        }
                        Err(Stop::Retry(why)) => {
                            tracing::debug!(volume = %id, %why, "will retry");
                            self.timing.retry
                        }
                        Err(Stop::Fail(why)) => {
                            tracing::warn!(volume = %id, %why, "volume operation failed");
                            // A failed attach or detach returns to where it came from; an attached
                            // volume stays IN_USE (ERROR would free it for a second guest).
                            let back = match cur {
                                VS::Attaching => VS::Available,
                                VS::Detaching | VS::InUse => VS::InUse,
                                _ => VS::Error,
                            };
                            self.report_volume(&id, &v, back, why);
                            self.timing.resync
                        }
                    }
                }
            };
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn converge_volume(&self, id: &str, v: &Volume) -> Result<VS, Stop> {
        let cur = vstate(v);
        if matches!(cur, VS::Deleting | VS::Deleted) {
            self.call_id(id, |hv, id| hv.delete_volume(id)).await?;
            return Ok(VS::Deleted);
        }
        let size = v.size_gib;
        let have = self
            .call_id(id, move |hv, id| {
                hv.create_volume(id, size)?;
                hv.list_volumes()
            })
            .await?
            .into_iter()
            .find(|x| x.id == id)
            .map_or(0, |x| x.size_gib);
        if have < size {
            self.call_id(id, move |hv, id| hv.extend_volume(id, size))
                .await?;
        }
        let vm = v.attached_to.clone();
        match cur {
            VS::Attaching | VS::InUse => {
                let attached = self.call_id(&vm, |hv, vm| hv.status(vm)).await?;
                match attached {
                    None => return Err(Stop::Retry(format!("guest {vm} is not defined here yet"))),
                    Some(s) if s.volumes.iter().any(|x| x == id) => {}
                    Some(_) => {
                        self.call_id(id, move |hv, id| hv.attach_volume(&vm, id))
                            .await?
                    }
                }
                Ok(VS::InUse)
            }
            VS::Detaching => {
                // A guest that does not exist here has nothing attached.
                if self.call_id(&vm, |hv, vm| hv.status(vm)).await?.is_some() {
                    self.call_id(id, move |hv, id| hv.detach_volume(&vm, id))
                        .await?;
                }
                Ok(VS::Available)
            }
            _ => Ok(VS::Available),
        }
    }
}
