//! Ratios between rows of one run and issue 7's goals, stated as met or not.

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
