//! Memory and CPU of the processes under test, from /proc.

use super::*;

/// Peak RSS (KiB) and CPU seconds of a process, from /proc.
pub fn proc_stats(pid: u32) -> Result<(u64, f64)> {
    let hwm = status_kib(pid, "VmHWM").ok_or_else(|| anyhow::anyhow!("no /proc/{pid}/status"))?;
    Ok((hwm, cpu_seconds(&format!("/proc/{pid}/stat"))))
}

/// A `kB` field of `/proc/<pid>/status`; `None` once the process is gone.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU seconds from a `/proc/<pid>/stat` file (0 if it is gone).
pub fn cpu_seconds(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used so far by the processes of the control plane, OpenBao, the controller
/// (`pid`) and this benchmark: where the 2 cores go during the initial sync.
pub fn cpu_by_process(pid: u32) -> Vec<(&'static str, f64)> {
    let by_comm = |comm: &str| -> f64 {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .chars()
                    .all(|c| c.is_ascii_digit())
            })
            .filter(|e| {
                std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == comm)
            })
            .map(|e| cpu_seconds(&e.path().join("stat").to_string_lossy()))
            .sum()
    };
    vec![
        ("controller", cpu_seconds(&format!("/proc/{pid}/stat"))),
        ("kube-apiserver", by_comm("kube-apiserver")),
        ("etcd", by_comm("etcd")),
        ("OpenBao", by_comm("bao")),
        ("benchmark client", cpu_seconds("/proc/self/stat")),
    ]
}

/// Highest VmRSS (KiB) seen in each phase of the run, sampled every 200 ms: where the peak
/// comes from (the initial burst or the steady state).
#[derive(Clone)]
pub struct RssPhases {
    pub phase: Arc<AtomicUsize>,
    pub max_kib: Arc<[AtomicU64; 3]>,
    /// Every sample, (seconds since `start`, MiB): the run's RSS plot.
    pub samples: Arc<std::sync::Mutex<Vec<(f64, f64)>>>,
    pub start: Instant,
}

impl RssPhases {
    pub const INITIAL: usize = 0;
    pub const STEADY: usize = 1;
    pub const CHANGES: usize = 2;

    pub fn start(pid: u32) -> Self {
        let me = RssPhases {
            phase: Default::default(),
            max_kib: Default::default(),
            samples: Default::default(),
            start: Instant::now(),
        };
        let s = me.clone();
        tokio::spawn(async move {
            while let Some(rss) = status_kib(pid, "VmRSS") {
                s.max_kib[s.phase.load(Ordering::Relaxed)].fetch_max(rss, Ordering::Relaxed);
                if let Ok(mut v) = s.samples.lock() {
                    v.push((s.start.elapsed().as_secs_f64(), rss as f64 / 1024.0));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        me
    }

    /// Seconds since sampling started.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn enter(&self, phase: usize) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    pub fn mib(&self, phase: usize) -> f64 {
        self.max_kib[phase].load(Ordering::Relaxed) as f64 / 1024.0
    }
}
