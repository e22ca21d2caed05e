//! Brackets a workload: CPU per process role, peak RSS, PostgreSQL write transactions and wall
//! time between [`Probe::begin`] and [`Probe::end`].

use std::collections::BTreeMap;
use std::time::Instant;

use crate::pg::Pg;
use crate::report::Measurement;
use leasehold_bench::procstat::{self, CpuSnapshot};

/// Which processes play which role.
#[derive(Debug, Clone, Default)]
pub(crate) struct Probe {
    pub(crate) coordinator: Option<u32>,
    pub(crate) pg: Option<Pg>,
    /// Worker processes besides the harness itself (SDK child processes).
    pub(crate) worker_pids: Vec<u32>,
    /// Count the harness process as a worker (it produces and, for in-process drivers, works).
    pub(crate) harness_is_worker: bool,
    /// Count the harness's reaped children as workers (peers run as child processes).
    pub(crate) reaped_children_are_workers: bool,
}

/// The state at [`Probe::begin`].
#[derive(Debug)]
pub(crate) struct Mark {
    cpu: CpuSnapshot,
    xid: Option<i64>,
    at: Instant,
}

impl Probe {
    fn snapshot(&self) -> CpuSnapshot {
        let mut s = CpuSnapshot::default();
        if let Some(pid) = self.coordinator {
            s.by_role
                .insert("coordinator".into(), procstat::cpu_secs(pid).unwrap_or(0.0));
        }
        if let Some(server) = self.pg.as_ref().and_then(|p| p.server) {
            s.by_role.insert("database".into(), server.cpu_secs());
        }
        let me = std::process::id();
        let mut workers = 0.0;
        if self.harness_is_worker {
            workers += procstat::cpu_secs(me).unwrap_or(0.0);
        }
        if self.reaped_children_are_workers {
            workers += procstat::reaped_children_cpu_secs(me).unwrap_or(0.0);
        }
        for pid in &self.worker_pids {
            workers += procstat::cpu_secs(*pid).unwrap_or(0.0);
        }
        if self.harness_is_worker
            || self.reaped_children_are_workers
            || !self.worker_pids.is_empty()
        {
            s.by_role.insert("workers".into(), workers);
        }
        s
    }

    pub(crate) async fn begin(&self) -> Mark {
        if let Some(pid) = self.coordinator {
            procstat::reset_peak_rss(pid);
        }
        if let Some(server) = self.pg.as_ref().and_then(|p| p.server) {
            server.reset_peak_rss();
        }
        if self.harness_is_worker {
            procstat::reset_peak_rss(std::process::id());
        }
        let xid = match &self.pg {
            Some(pg) => pg.next_xid().await.ok(),
            None => None,
        };
        Mark {
            cpu: self.snapshot(),
            xid,
            at: Instant::now(),
        }
    }

    /// Counts the CPU that [`Probe::worker_pids`] used so far as spent before `mark`: for
    /// worker processes started after [`Probe::begin`], whose start-up is not measured.
    pub(crate) fn exclude_worker_startup(&self, mark: &mut Mark) {
        let used: f64 = self
            .worker_pids
            .iter()
            .map(|pid| procstat::cpu_secs(*pid).unwrap_or(0.0))
            .sum();
        *mark.cpu.by_role.entry("workers".into()).or_insert(0.0) += used;
    }

    /// Ends the measurement of `jobs` jobs; `secs` overrides the wall time when the workload
    /// timed itself.
    pub(crate) async fn end(&self, mark: Mark, jobs: u64, secs: Option<f64>) -> Measurement {
        let wall = mark.at.elapsed().as_secs_f64();
        let cpu = self.snapshot().since(&mark.cpu);
        let xid = match &self.pg {
            Some(pg) => pg.next_xid().await.ok(),
            None => None,
        };
        let mut rss = BTreeMap::new();
        if let Some(pid) = self.coordinator
            && let Some(v) = procstat::peak_rss_mib(pid)
        {
            rss.insert("coordinator".into(), v);
        }
        if let Some(server) = self.pg.as_ref().and_then(|p| p.server) {
            rss.insert("database".into(), server.peak_rss_mib());
        }
        if self.harness_is_worker
            && let Some(v) = procstat::peak_rss_mib(std::process::id())
        {
            rss.insert("workers".into(), v);
        }
        // Worker processes: their peak over their whole life (start-up included), summed.
        if !self.worker_pids.is_empty() {
            let sum: f64 = self
                .worker_pids
                .iter()
                .filter_map(|pid| procstat::peak_rss_mib(*pid))
                .sum();
            *rss.entry("workers".into()).or_insert(0.0) += sum;
        }
        let per_1k = |v: f64| {
            if jobs == 0 {
                0.0
            } else {
                v * 1000.0 / jobs as f64
            }
        };
        let secs = secs.unwrap_or(wall);
        Measurement {
            jobs,
            secs,
            jobs_per_s: (secs > 0.0).then(|| jobs as f64 / secs),
            latency_ms: None,
            cpu_s_per_1k: cpu.into_iter().map(|(k, v)| (k, per_1k(v))).collect(),
            peak_rss_mib: rss,
            // The second reading itself is not a transaction (xmax of a snapshot takes no xid).
            commits_per_job: match (mark.xid, xid) {
                (Some(a), Some(b)) if jobs > 0 => Some((b - a) as f64 / jobs as f64),
                _ => None,
            },
            extra: BTreeMap::new(),
        }
    }
}
