//! CPU time and peak memory of processes, read from `/proc`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux unless told otherwise).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The fields of `/proc/<pid>/stat` after the command name: index 0 is field 3 (`state`).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &raw[raw.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse::<i64>().map(|v| v.max(0) as u64).unwrap_or(0))
            .collect(),
    )
}

/// CPU seconds a process used itself (utime + stime).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    Some((f.get(11)? + f.get(12)?) as f64 / clk_tck())
}

/// CPU seconds of a process's children that it has reaped (cutime + cstime).
pub fn reaped_children_cpu_secs(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    Some((f.get(13)? + f.get(14)?) as f64 / clk_tck())
}

fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid).and_then(|f| f.get(1).map(|p| *p as u32))
}

/// Peak resident set size in MiB (`VmHWM`).
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the peak RSS of `pid` to its current RSS (`echo 5 > /proc/<pid>/clear_refs`).
pub fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The PostgreSQL server: its postmaster, whose children are every backend and helper.
#[derive(Debug, Clone, Copy)]
pub struct PgServer {
    /// The postmaster's pid.
    pub postmaster: u32,
    /// Whether every process of the server is ours (a private cluster): then the CPU of
    /// backends that exited during a measurement is counted too (the postmaster's reaped
    /// children), else only live processes count.
    pub private: bool,
}

impl PgServer {
    /// The postmaster of the server that runs `backend_pid` (a connection of ours).
    pub fn from_backend(backend_pid: u32, private: bool) -> Option<Self> {
        let postmaster = parent_of(backend_pid)?;
        Some(Self {
            postmaster,
            private,
        })
    }

    /// CPU seconds used so far by the server's processes.
    pub fn cpu_secs(&self) -> f64 {
        let mut total = cpu_secs(self.postmaster).unwrap_or(0.0);
        if self.private {
            total += reaped_children_cpu_secs(self.postmaster).unwrap_or(0.0);
        }
        for pid in all_pids() {
            if parent_of(pid) == Some(self.postmaster) {
                total += cpu_secs(pid).unwrap_or(0.0);
            }
        }
        total
    }

    /// Largest peak RSS among the server's processes (shared buffers are counted in each).
    pub fn peak_rss_mib(&self) -> f64 {
        let mut peak = peak_rss_mib(self.postmaster).unwrap_or(0.0);
        for pid in all_pids() {
            if parent_of(pid) == Some(self.postmaster) {
                peak = peak.max(peak_rss_mib(pid).unwrap_or(0.0));
            }
        }
        peak
    }

    /// Resets the peak RSS of every server process.
    pub fn reset_peak_rss(&self) {
        reset_peak_rss(self.postmaster);
        for pid in all_pids() {
            if parent_of(pid) == Some(self.postmaster) {
                reset_peak_rss(pid);
            }
        }
    }
}

/// CPU seconds per process role, captured at one instant.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    /// CPU seconds so far, by role (`coordinator`, `database`, `workers`).
    pub by_role: BTreeMap<String, f64>,
}

impl CpuSnapshot {
    /// `self - earlier`, role by role.
    pub fn since(&self, earlier: &CpuSnapshot) -> BTreeMap<String, f64> {
        self.by_role
            .iter()
            .map(|(role, v)| {
                (
                    role.clone(),
                    (v - earlier.by_role.get(role).copied().unwrap_or(0.0)).max(0.0),
                )
            })
            .collect()
    }
}
