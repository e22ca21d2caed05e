//! Results: one [`Row`] per (system, store/settings, driver, workload, variant), each with one
//! [`Measurement`] per run; rendered as JSON and as a Markdown table with medians and min–max.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Percentiles {
    pub(crate) n: usize,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Percentiles {
    /// From samples in nanoseconds (sorted here).
    pub(crate) fn from_ns(mut ns: Vec<u64>) -> Option<Self> {
        if ns.is_empty() {
            return None;
        }
        ns.sort_unstable();
        let at = |p: f64| {
            let idx = ((ns.len() as f64 - 1.0) * p).round() as usize;
            ns[idx.min(ns.len() - 1)] as f64 / 1e6
        };
        Some(Self {
            n: ns.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

/// What one run of one row measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Measurement {
    /// Jobs (or rows, or requests) the figure is about.
    pub(crate) jobs: u64,
    /// Wall-clock seconds measured.
    pub(crate) secs: f64,
    /// Throughput (jobs/s, rows/s or requests/s).
    pub(crate) jobs_per_s: Option<f64>,
    /// Latency percentiles.
    pub(crate) latency_ms: Option<Percentiles>,
    /// CPU seconds per 1000 jobs, by process role (coordinator, database, workers).
    pub(crate) cpu_s_per_1k: BTreeMap<String, f64>,
    /// Peak RSS in MiB by process role, over the measurement.
    pub(crate) peak_rss_mib: BTreeMap<String, f64>,
    /// Write transactions per job (PostgreSQL xid delta; cluster-wide).
    pub(crate) commits_per_job: Option<f64>,
    /// Anything else worth keeping (efficiency, enqueue rate, errors…).
    pub(crate) extra: BTreeMap<String, f64>,
}

impl Measurement {
    /// CPU microseconds per job, all processes together.
    pub(crate) fn cpu_us_per_job(&self) -> Option<f64> {
        if self.cpu_s_per_1k.is_empty() {
            return None;
        }
        Some(self.cpu_s_per_1k.values().sum::<f64>() * 1000.0)
    }
}

/// One line of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Row {
    /// Unique key, stable across runs.
    pub(crate) key: String,
    /// `leasehold`, `ceiling`, `river`, `pgqueuer`.
    pub(crate) system: String,
    /// Store and durability, e.g. `PostgreSQL sc=on`, `SQLite NORMAL`.
    pub(crate) store: String,
    /// Who drives it: `raw-http`, `raw-sql`, `river bench`, `pgqueuer API`…
    pub(crate) driver: String,
    /// W1…W5.
    pub(crate) workload: String,
    /// e.g. `100k jobs, 4×100`, `10 slots`, `100 jobs/s`.
    pub(crate) variant: String,
    /// Every setting that matters for the figure.
    pub(crate) settings: BTreeMap<String, String>,
    /// `ok`, `not installed`, `failed: …`.
    pub(crate) status: String,
    /// One measurement per run.
    pub(crate) runs: Vec<Measurement>,
}

/// Median, min and max of some values.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    pub(crate) fn of(mut v: Vec<f64>) -> Option<Self> {
        v.retain(|x| x.is_finite());
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

impl Row {
    pub(crate) fn spread(&self, f: impl Fn(&Measurement) -> Option<f64>) -> Option<Spread> {
        Spread::of(self.runs.iter().filter_map(f).collect())
    }

    pub(crate) fn rate(&self) -> Option<Spread> {
        self.spread(|m| m.jobs_per_s)
    }
}

/// Facts about the machine and the database, printed above the table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub(crate) facts: BTreeMap<String, String>,
}

/// A goal of issue 7 and whether this run met it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Goal {
    pub(crate) goal: String,
    pub(crate) measured: String,
    pub(crate) met: Option<bool>,
}

/// Everything one invocation produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) mode: String,
    pub(crate) runs: usize,
    pub(crate) started_at: String,
    pub(crate) machine: Machine,
    pub(crate) rows: Vec<Row>,
    pub(crate) ratios: BTreeMap<String, f64>,
    pub(crate) goals: Vec<Goal>,
    pub(crate) notes: Vec<String>,
}

fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn fmt_spread(s: Option<Spread>, runs: usize) -> String {
    match s {
        None => "–".into(),
        Some(s) if runs > 1 => format!(
            "{} [{}–{}]",
            fmt_num(s.median),
            fmt_num(s.min),
            fmt_num(s.max)
        ),
        Some(s) => fmt_num(s.median),
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), fmt_num)
}

impl Report {
    /// A report of `runs` run(s) in `mode` with nothing in it yet (for tests of what is derived
    /// from rows).
    #[cfg(test)]
    pub(crate) fn empty(mode: &str, runs: usize) -> Self {
        Self {
            mode: mode.into(),
            runs,
            started_at: String::new(),
            machine: Machine::default(),
            rows: Vec::new(),
            ratios: BTreeMap::new(),
            goals: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## Leasehold benchmark — `{}` mode, {} run(s), {}\n",
            self.mode, self.runs, self.started_at
        );
        let _ = writeln!(out, "| machine | |\n| --- | --- |");
        for (k, v) in &self.machine.facts {
            let _ = writeln!(out, "| {k} | {} |", v.replace('|', "/"));
        }
        let _ = writeln!(
            out,
            "\nFigures are medians over the runs, with [min–max] when there is more than one run. \
             CPU is seconds per 1000 jobs for each process role (coord = coordinator, db = every \
             PostgreSQL process of the cluster, wrk = the process(es) that produce and work the jobs; \
             for SQLite the database lives inside the coordinator). Commits/job = PostgreSQL write \
             transactions (xid delta) per job.\n"
        );
        let _ = writeln!(
            out,
            "| workload | system | store | driver | variant | rate /s | p50 ms | p90 ms | p99 ms | max ms | CPU s/1k coord · db · wrk | µs CPU/job | peak RSS MiB coord · wrk | commits/job | notes |"
        );
        let _ = writeln!(
            out,
            "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | --- |"
        );
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by(|a, b| a.workload.cmp(&b.workload));
        for r in rows {
            if r.status != "ok" {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | | | | | | | | | |",
                    r.workload, r.system, r.store, r.driver, r.variant, r.status
                );
                continue;
            }
            let n = r.runs.len();
            let lat = |f: fn(&Percentiles) -> f64| {
                fmt_opt(r.spread(|m| m.latency_ms.as_ref().map(f)).map(|s| s.median))
            };
            let cpu = |role: &str| {
                fmt_opt(
                    r.spread(|m| m.cpu_s_per_1k.get(role).copied())
                        .map(|s| s.median),
                )
            };
            let rss = |role: &str| {
                fmt_opt(
                    r.spread(|m| m.peak_rss_mib.get(role).copied())
                        .map(|s| s.max),
                )
            };
            let mut notes = Vec::new();
            for key in [
                "claim_p50_ms_at_1k",
                "claim_p50_ms_at_big",
                "claim_p50_ratio",
                "fill_rows_per_s",
                "efficiency",
                "ideal_per_s",
                "slots_busy",
                "body_ms",
                "enqueue_rows_per_s",
                "window_min",
                "window_max",
                "errors",
            ] {
                if let Some(s) = r.spread(|m| m.extra.get(key).copied()) {
                    notes.push(format!("{key} {}", fmt_num(s.median)));
                }
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} · {} · {} | {} | {} · {} | {} | {} |",
                r.workload,
                r.system,
                r.store,
                r.driver,
                r.variant,
                fmt_spread(r.rate(), n),
                lat(|p| p.p50),
                lat(|p| p.p90),
                lat(|p| p.p99),
                lat(|p| p.max),
                cpu("coordinator"),
                cpu("database"),
                cpu("workers"),
                fmt_opt(r.spread(Measurement::cpu_us_per_job).map(|s| s.median)),
                rss("coordinator"),
                rss("workers"),
                fmt_opt(r.spread(|m| m.commits_per_job).map(|s| s.median)),
                notes.join(", ")
            );
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(
                out,
                "\n### Ratios (medians, same run)\n\n| ratio | value |\n| --- | ---: |"
            );
            for (k, v) in &self.ratios {
                let _ = writeln!(out, "| {k} | {v:.2} |");
            }
        }
        if !self.goals.is_empty() {
            let _ = writeln!(
                out,
                "\n### Goals of issue 7\n\n| goal | measured | met |\n| --- | --- | --- |"
            );
            for g in &self.goals {
                let met = match g.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "not measured",
                };
                let _ = writeln!(out, "| {} | {} | {met} |", g.goal, g.measured);
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\n### Settings and notes\n");
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        let _ = writeln!(out, "\n### Row settings\n");
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.rows {
            let line = format!(
                "{} / {} / {}: {}",
                r.system,
                r.store,
                r.driver,
                r.settings
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if seen.insert(line.clone()) {
                let _ = writeln!(out, "- {line}");
            }
        }
        out
    }
}
