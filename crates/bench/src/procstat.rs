//! CPU time and memory of the server processes, read from /proc (Linux only).

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Kernel clock ticks per second, the unit of utime/stime in /proc/PID/stat.
pub fn clock_ticks() -> f64 {
    // `getconf` avoids a libc dependency for one sysconf call; 100 is the value on every
    // mainstream Linux build, so it is a safe fallback.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU ticks of the whole process (all threads), or None once it is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces, so fields are
    // counted from the last ')': the next one is field 3 (state), utime is 14 and stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Current and peak resident set size in KiB (VmRSS, VmHWM).
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Highest memory seen per process so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peak {
    pub rss_kib: u64,
}

/// Samples every process's memory periodically until dropped.
///
/// VmHWM is already the kernel's own peak, but it is read on every tick anyway: the last read
/// must happen while the process is alive, and a process that dies mid-run would otherwise
/// report nothing.
pub struct Sampler {
    peaks: Arc<Mutex<Vec<Peak>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(pids: Vec<Option<u32>>, every: Duration) -> Self {
        let peaks = Arc::new(Mutex::new(vec![Peak::default(); pids.len()]));
        let shared = peaks.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let readings: Vec<Option<(u64, u64)>> =
                    pids.iter().map(|p| p.and_then(rss_kib)).collect();
                if let Ok(mut peaks) = shared.lock() {
                    for (peak, r) in peaks.iter_mut().zip(readings) {
                        if let Some((rss, hwm)) = r {
                            peak.rss_kib = peak.rss_kib.max(rss).max(hwm);
                        }
                    }
                }
            }
        });
        Sampler { peaks, task }
    }

    /// Takes a last sample of each live process, then returns the peaks.
    pub fn finish(self, pids: &[Option<u32>]) -> Vec<Peak> {
        self.task.abort();
        let mut peaks = self.peaks.lock().map(|p| p.clone()).unwrap_or_default();
        for (peak, pid) in peaks.iter_mut().zip(pids) {
            if let Some((rss, hwm)) = pid.and_then(rss_kib) {
                peak.rss_kib = peak.rss_kib.max(rss).max(hwm);
            }
        }
        peaks
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_some());
        let (rss, hwm) = rss_kib(pid).unwrap();
        assert!(rss > 0 && hwm >= rss);
        assert!(clock_ticks() > 0.0);
    }
}
