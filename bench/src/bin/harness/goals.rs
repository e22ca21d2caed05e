//! Ratios between rows of one run and issue 7's goals, stated as met or not.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::report::{self, Goal, Report, Row};
use crate::rows::{Rows, store_pg, store_sqlite};
use crate::sdk_driver;

fn median_rate(row: Option<&Row>) -> Option<f64> {
    row.and_then(Row::rate).map(|s| s.median)
}

/// Adds the ratios between rows of this report and issue 7's goals to `report`.
pub(crate) fn ratios_and_goals(rows: &Rows, report: &mut Report) {
    let w1 = |system: &str, store: &str, prefix: &str| {
        median_rate(rows.find("W1", system, store, prefix))
    };
    let mut ratio = |name: String, a: Option<f64>, b: Option<f64>| {
        if let (Some(a), Some(b)) = (a, b)
            && b > 0.0
        {
            report.ratios.insert(name, a / b);
        }
    };
    for sc in ["on", "off"] {
        let store = store_pg(sc);
        let lh = w1("leasehold", &store, "");
        ratio(
            format!("W1 {store}: leasehold / ceiling"),
            lh,
            w1("ceiling", &store, ""),
        );
        ratio(
            format!("W1 {store}: leasehold / River"),
            lh,
            w1("river", &store, ""),
        );
        let pgq = |label: &str| {
            rows.rows
                .iter()
                .find(|r| {
                    r.workload == "W1"
                        && r.system == "pgqueuer"
                        && r.store == store
                        && r.variant.contains(label)
                        && !r.runs.is_empty()
                })
                .and_then(Row::rate)
                .map(|s| s.median)
        };
        ratio(
            format!("W1 {store}: leasehold / pgqueuer best"),
            lh,
            pgq("best"),
        );
        ratio(
            format!("W1 {store}: leasehold / pgqueuer defaults"),
            lh,
            pgq("defaults"),
        );
    }
    for store in [store_sqlite("normal"), store_pg("on")] {
        let sdk = |d: &str| median_rate(rows.find_driver("W1", "leasehold", &store, d, ""));
        let rust = sdk("rust-sdk");
        for d in ["python-sdk", "go-sdk"] {
            ratio(format!("W1 {store}: {d} / rust-sdk"), sdk(d), rust);
        }
        ratio(
            format!("W1 {store}: rust-sdk / raw-http"),
            rust,
            sdk("raw-http"),
        );
    }
    for sync in ["normal", "full"] {
        let store = store_sqlite(sync);
        ratio(
            format!("W1 {store}: leasehold / ceiling"),
            w1("leasehold", &store, ""),
            w1("ceiling", &store, ""),
        );
    }
    let w4_p = |system: &str, store: &str, f: fn(&report::Percentiles) -> f64| {
        rows.find("W4", system, store, "100 jobs/s")
            .and_then(|r| r.spread(|m| m.latency_ms.as_ref().map(f)))
            .map(|s| s.median)
    };
    ratio(
        "W4 100/s p50: pgqueuer / leasehold (PostgreSQL sc=on)".into(),
        w4_p("pgqueuer", &store_pg("on"), |p| p.p50),
        w4_p("leasehold", &store_pg("on"), |p| p.p50),
    );
    ratio(
        "W4 100/s p99: pgqueuer / leasehold (PostgreSQL sc=on)".into(),
        w4_p("pgqueuer", &store_pg("on"), |p| p.p99),
        w4_p("leasehold", &store_pg("on"), |p| p.p99),
    );

    let pg_on = store_pg("on");
    let lh_pg = w1("leasehold", &pg_on, "");
    let goal = |goal: &str, measured: Option<String>, met: Option<bool>| Goal {
        goal: goal.into(),
        measured: measured.unwrap_or_else(|| "not measured in this run".into()),
        met,
    };
    let r = &report.ratios;
    let get = |k: String| r.get(&k).copied();
    let mut goals = vec![
        goal(
            "W1 PostgreSQL sc=on ≥ 30k jobs/s",
            lh_pg.map(|v| format!("{v:.0} jobs/s ({:.2}× the goal)", v / 30_000.0)),
            lh_pg.map(|v| v >= 30_000.0),
        ),
        {
            let v = get(format!("W1 {pg_on}: leasehold / River"));
            goal(
                "W1 PostgreSQL sc=on ≥ 1.5× River",
                v.map(|v| format!("{v:.2}×")),
                v.map(|v| v >= 1.5),
            )
        },
        {
            let v = get(format!("W1 {pg_on}: leasehold / pgqueuer best"));
            goal(
                "W1 PostgreSQL sc=on ≥ 1.5× pgqueuer's best configuration",
                v.map(|v| format!("{v:.2}×")),
                v.map(|v| v >= 1.5),
            )
        },
        {
            let v = get(format!("W1 {pg_on}: leasehold / ceiling"));
            goal(
                "W1 PostgreSQL sc=on ≥ 70% of the ceiling (same batch)",
                v.map(|v| format!("{:.0}%", v * 100.0)),
                v.map(|v| v >= 0.7),
            )
        },
        {
            let v = w1("leasehold", &store_sqlite("normal"), "");
            goal(
                "W1 SQLite NORMAL ≥ 60k jobs/s",
                v.map(|v| format!("{v:.0} jobs/s ({:.2}× the goal)", v / 60_000.0)),
                v.map(|v| v >= 60_000.0),
            )
        },
        {
            let p50 = w4_p("leasehold", &pg_on, |p| p.p50);
            let p99 = w4_p("leasehold", &pg_on, |p| p.p99);
            goal(
                "W4 at 100 jobs/s (PostgreSQL sc=on): p50 ≤ 1 ms, p99 ≤ 3 ms",
                p50.zip(p99)
                    .map(|(a, b)| format!("p50 {a:.2} ms, p99 {b:.2} ms")),
                p50.zip(p99).map(|(a, b)| a <= 1.0 && b <= 3.0),
            )
        },
        {
            let p50 = w4_p("leasehold", &store_sqlite("normal"), |p| p.p50);
            let p99 = w4_p("leasehold", &store_sqlite("normal"), |p| p.p99);
            goal(
                "W4 at 100 jobs/s (SQLite NORMAL): p50 ≤ 1 ms, p99 ≤ 3 ms",
                p50.zip(p99)
                    .map(|(a, b)| format!("p50 {a:.2} ms, p99 {b:.2} ms")),
                p50.zip(p99).map(|(a, b)| a <= 1.0 && b <= 3.0),
            )
        },
        sdk_driver::sdk_goal(r),
        {
            // All processes means the database's too: a run that could not read the
            // server's CPU has not measured this goal.
            let v = rows
                .find("W1", "leasehold", &pg_on, "")
                .and_then(|r| {
                    r.spread(|m| {
                        m.cpu_s_per_1k
                            .contains_key("database")
                            .then(|| m.cpu_us_per_job())
                            .flatten()
                    })
                })
                .map(|s| s.median);
            goal(
                "≤ 100 µs CPU per job across all processes (W1, PostgreSQL sc=on)",
                v.map(|v| format!("{v:.0} µs/job")),
                v.map(|v| v <= 100.0),
            )
        },
        {
            let row = rows
                .rows
                .iter()
                .find(|r| r.workload == "W6" && r.store == pg_on && !r.runs.is_empty());
            let big = row.map(|r| r.variant.clone()).unwrap_or_default();
            let ratio = row
                .and_then(|r| r.spread(|m| m.extra.get("claim_p50_ratio").copied()))
                .map(|s| s.median);
            let rss = row
                .and_then(|r| r.spread(|m| m.peak_rss_mib.get("coordinator").copied()))
                .map(|s| s.max);
            let full = big.contains("1000000");
            goal(
                "coordinator RSS ≤ 64 MiB with 1M queued; claim latency at 1M ≤ 1.5× at 1k (PostgreSQL sc=on)",
                ratio.zip(rss).map(|(r, m)| {
                    format!(
                        "{big}: claim p50 ratio {r:.2}×, coordinator peak RSS {m:.0} MiB{}",
                        if full {
                            ""
                        } else {
                            " (not at 1M: full mode only)"
                        }
                    )
                }),
                ratio
                    .zip(rss)
                    .filter(|_| full)
                    .map(|(r, m)| r <= 1.5 && m <= 64.0),
            )
        },
    ];
    report.goals.append(&mut goals);
}

/// The committed W1 leasehold/ceiling ratios a smoke run must not fall far below
/// (`bench/baseline.json`; bench/README.md, "The ratio guard").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Baseline {
    pub(crate) about: String,
    /// The mode the ratios were measured in; a run in another mode is not checked.
    pub(crate) mode: String,
    /// W1's jobs per burn-down when measured; a run with another count is not checked.
    pub(crate) w1_jobs: u64,
    /// How, when and on what it was measured.
    pub(crate) measured: BTreeMap<String, String>,
    /// The floor is `ratio × floor_factor`.
    pub(crate) floor_factor: f64,
    pub(crate) stores: BTreeMap<String, StoreBaseline>,
}

/// One store's baseline: the median of the measured ratios, and each of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoreBaseline {
    pub(crate) ratio: f64,
    pub(crate) runs: Vec<f64>,
}

/// The stores the guard covers: the goals' stores.
pub(crate) fn guarded_stores() -> [String; 2] {
    [store_sqlite("normal"), store_pg("on")]
}

fn w1_row<'a>(report: &'a Report, system: &str, store: &str) -> Option<&'a Row> {
    report.rows.iter().find(|r| {
        r.workload == "W1"
            && r.system == system
            && r.store == store
            && (system != "leasehold" || r.driver == "raw-http")
            && r.status == "ok"
            && !r.runs.is_empty()
    })
}

/// The guard's figure for one run: the median raw-HTTP W1 rate over the ceiling's median.
/// One value per run of the report (each run measures each row `w1_repeats` times, in order).
pub(crate) fn w1_ratios_per_run(report: &Report, store: &str) -> Vec<f64> {
    let (Some(lh), Some(ceil)) = (
        w1_row(report, "leasehold", store),
        w1_row(report, "ceiling", store),
    ) else {
        return Vec::new();
    };
    let runs = report.runs.max(1);
    let per = |r: &Row| -> Vec<Option<f64>> {
        let k = (r.runs.len() / runs).max(1);
        r.runs
            .chunks(k)
            .map(|c| report::Spread::of(c.iter().filter_map(|m| m.jobs_per_s).collect()))
            .map(|s| s.map(|s| s.median))
            .collect()
    };
    per(lh)
        .into_iter()
        .zip(per(ceil))
        .filter_map(|(a, b)| Some(a? / b?).filter(|x| x.is_finite()))
        .collect()
}

/// Checks `report` against `baseline`: one line per guarded store, and whether every measured
/// ratio is at or above its floor.
pub(crate) fn check_baseline(report: &Report, baseline: &Baseline) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    if report.mode != baseline.mode {
        lines.push(format!(
            "W1 leasehold/ceiling: the baseline is for {} mode, this run is {}: not checked",
            baseline.mode, report.mode
        ));
        return (lines, true);
    }
    let mut ok = true;
    for (store, b) in &baseline.stores {
        let floor = b.ratio * baseline.floor_factor;
        let head = format!("W1 leasehold/ceiling {store}");
        let jobs = w1_row(report, "leasehold", store).map(|r| r.variant.clone());
        let prefix = format!("{} jobs", baseline.w1_jobs);
        let ratio = report
            .ratios
            .get(&format!("W1 {store}: leasehold / ceiling"))
            .copied();
        match (jobs, ratio) {
            (Some(v), _) if !v.starts_with(&prefix) => lines.push(format!(
                "{head}: W1 ran {v}, the baseline {prefix}: not checked"
            )),
            (Some(_), Some(r)) => {
                let met = r >= floor;
                ok &= met;
                lines.push(format!(
                    "{head}: {r:.3} (baseline {:.3}, floor {floor:.3}): {}",
                    b.ratio,
                    if met {
                        "ok"
                    } else {
                        "BELOW THE FLOOR (a regression of the coordinator's W1 path?)"
                    }
                ));
            }
            _ => lines.push(format!("{head}: not measured in this run, not checked")),
        }
    }
    (lines, ok)
}

/// A new baseline from results files (`harness baseline`): per store, the median of every run's
/// ratio.
pub(crate) fn make_baseline(
    reports: &[Report],
    floor_factor: f64,
    measured: BTreeMap<String, String>,
) -> anyhow::Result<Baseline> {
    let first = reports.first().context("no results given")?;
    let w1_jobs = w1_row(first, "leasehold", &store_pg("on"))
        .or_else(|| w1_row(first, "leasehold", &store_sqlite("normal")))
        .and_then(|r| r.variant.split(' ').next()?.parse().ok())
        .context("no raw-HTTP W1 row in the first results file")?;
    let mut stores = BTreeMap::new();
    for store in guarded_stores() {
        let runs: Vec<f64> = reports
            .iter()
            .flat_map(|r| w1_ratios_per_run(r, &store))
            .collect();
        if let Some(s) = report::Spread::of(runs.clone()) {
            stores.insert(
                store,
                StoreBaseline {
                    ratio: s.median,
                    runs,
                },
            );
        }
    }
    anyhow::ensure!(!stores.is_empty(), "no W1 leasehold and ceiling rows");
    Ok(Baseline {
        about: "W1 leasehold (raw-HTTP) / ceiling ratio of `bench/run --smoke` as scripts/test \
                runs it (debug coordinator); the harness fails a smoke run whose ratio is below \
                ratio × floor_factor. See bench/README.md, \"The ratio guard\"."
            .into(),
        mode: first.mode.clone(),
        w1_jobs,
        measured,
        floor_factor,
        stores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Measurement;

    fn row(system: &str, driver: &str, rates: &[f64]) -> Row {
        Row {
            key: format!("W1|{system}|{driver}"),
            system: system.into(),
            store: store_pg("on"),
            driver: driver.into(),
            workload: "W1".into(),
            variant: "5000 jobs, 4×100".into(),
            settings: BTreeMap::new(),
            status: "ok".into(),
            runs: rates
                .iter()
                .map(|r| Measurement {
                    jobs_per_s: Some(*r),
                    ..Measurement::default()
                })
                .collect(),
        }
    }

    fn report(lh: &[f64], ceil: &[f64], runs: usize) -> Report {
        let rows = Rows {
            rows: vec![
                row("leasehold", "raw-http", lh),
                row("ceiling", "raw-sql", ceil),
            ],
        };
        let mut r = Report::empty("smoke", runs);
        ratios_and_goals(&rows, &mut r);
        r.rows = rows.rows;
        r
    }

    fn baseline(ratio: f64) -> Baseline {
        let mut stores = BTreeMap::new();
        stores.insert(
            store_pg("on"),
            StoreBaseline {
                ratio,
                runs: vec![ratio],
            },
        );
        Baseline {
            about: String::new(),
            mode: "smoke".into(),
            w1_jobs: 5000,
            measured: BTreeMap::new(),
            floor_factor: 0.5,
            stores,
        }
    }

    #[test]
    fn passes_at_the_baseline_and_fails_below_the_floor() {
        // Medians of three: 8000 / 20000 = 0.4.
        let r = report(&[7000.0, 8000.0, 9000.0], &[20000.0, 1.0, 30000.0], 1);
        let (lines, ok) = check_baseline(&r, &baseline(0.45));
        assert!(ok, "{lines:?}");
        assert_eq!(
            lines,
            ["W1 leasehold/ceiling PostgreSQL sc=on: 0.400 (baseline 0.450, floor 0.225): ok"]
        );
        let (lines, ok) = check_baseline(&r, &baseline(0.9));
        assert!(!ok);
        assert!(lines[0].contains("0.400 (baseline 0.900, floor 0.450): BELOW THE FLOOR"));
    }

    #[test]
    fn another_mode_or_size_or_a_missing_row_is_not_checked() {
        let mut r = report(&[100.0], &[1000.0], 1);
        r.mode = "quick".into();
        assert!(check_baseline(&r, &baseline(0.9)).0[0].contains("not checked"));
        r.mode = "smoke".into();
        r.rows[0].variant = "400 jobs, 4×100".into();
        let (lines, ok) = check_baseline(&r, &baseline(0.9));
        assert!(ok && lines[0].contains("W1 ran 400 jobs"), "{lines:?}");
        r.rows.clear();
        r.ratios.clear();
        let (lines, ok) = check_baseline(&r, &baseline(0.9));
        assert!(ok && lines[0].ends_with("not measured in this run, not checked"));
    }

    #[test]
    fn per_run_ratios_take_each_runs_repeats() {
        // Two runs of three repeats each.
        let r = report(
            &[1.0, 2.0, 3.0, 10.0, 20.0, 30.0],
            &[10.0, 10.0, 10.0, 40.0, 40.0, 40.0],
            2,
        );
        assert_eq!(w1_ratios_per_run(&r, &store_pg("on")), [0.2, 0.5]);
        let b = make_baseline(&[r], 0.5, BTreeMap::new()).expect("test setup");
        assert_eq!(b.w1_jobs, 5000);
        assert_eq!(b.stores[&store_pg("on")].ratio, 0.35);
    }
}
