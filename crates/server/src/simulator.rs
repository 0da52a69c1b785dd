//! Drives instances and volumes on simulated hosts (no agent) to their intended state, so the
//! control plane can be exercised end to end without hypervisors. Runs on the leader only.

use crate::node::{Node, Proposal};
use andromede_api::v1::{InstanceState as IS, VolumeState as VS};
use andromede_store::Command;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

const BATCH: usize = 2000;

pub async fn run(node: Arc<Node>) {
    let mut rx = node.shared.events.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut full_scan = true;
    let mut pending: BTreeSet<(bool, String)> = BTreeSet::new();
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(e) if e.kind == "instance" => { pending.insert((true, e.id)); }
                Ok(e) if e.kind == "volume" => { pending.insert((false, e.id)); }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => full_scan = true,
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                if !node.is_leader() {
                    full_scan = true;
                    pending.clear();
                    continue;
                }
                let (inst, vols) = node.read(|s| {
                    let sim = |h: &str| s.hosts.get(h).is_some_and(|h| h.simulated);
                    let mut inst = Vec::new();
                    let mut vols = Vec::new();
                    let ids: Box<dyn Iterator<Item = (bool, &String)>> = if full_scan {
                        Box::new(s.instances.keys().map(|k| (true, k)).chain(s.volumes.keys().map(|k| (false, k))))
                    } else {
                        Box::new(pending.iter().map(|(i, k)| (*i, k)))
                    };
                    for (is_inst, id) in ids {
                        if is_inst {
                            let Some(i) = s.instances.get(id) else { continue };
                            if !sim(&i.host_id) { continue }
                            let next = match IS::try_from(i.state) {
                                Ok(IS::Scheduled | IS::Creating | IS::Starting | IS::Rebooting) => IS::Running,
                                Ok(IS::Stopping) => IS::Stopped,
                                Ok(IS::Deleting) => IS::Deleted,
                                _ => continue,
                            };
                            inst.push((id.clone(), next, String::new()));
                        } else {
                            let Some(v) = s.volumes.get(id) else { continue };
                            if !sim(&v.host_id) { continue }
                            let next = match VS::try_from(v.state) {
                                Ok(VS::Creating | VS::Detaching) => VS::Available,
                                Ok(VS::Attaching) => VS::InUse,
                                Ok(VS::Deleting) => VS::Deleted,
                                _ => continue,
                            };
                            vols.push((id.clone(), next, String::new()));
                        }
                    }
                    (inst, vols)
                });
                full_scan = false;
                pending.clear();
                for chunk in inst.chunks(BATCH) {
                    let c = Command::ObserveInstances(chunk.to_vec());
                    if node.submit_local(Proposal::Cmd(c)).await.is_err() {
                        full_scan = true;
                    }
                }
                for chunk in vols.chunks(BATCH) {
                    let c = Command::ObserveVolumes(chunk.to_vec());
                    if node.submit_local(Proposal::Cmd(c)).await.is_err() {
                        full_scan = true;
                    }
                }
            }
        }
    }
}
