//! The performance issue's goals against the peers, from the rows of one run: W5 single-job
//! enqueues at 16 clients (5× the figures before group commit, ahead of River and pgqueuer),
//! W3 efficiency through the Rust SDK (≥ 0.9, ahead of River) and the W1 burn-down
//! (≥ 1.25× River and pgqueuer's best, ≥ 70% of the ceiling), with their ratios.

use crate::report::{Goal, Report, Row};
use crate::rows::{Rows, store_pg, store_sqlite};

/// W5 at 16 clients before group commit (`bench/run --quick` at d5fa8e7, release build).
const W5_BEFORE: [(&str, f64); 2] = [("SQLite NORMAL", 1338.0), ("PostgreSQL sc=on", 2037.0)];

/// The first measured row of `workload` by `system` on `store` whose driver is `driver` (`""`:
/// any) and whose variant ends with `suffix` (the slots, clients or tuning it names last).
fn find<'a>(
    rows: &'a Rows,
    workload: &str,
    system: &str,
    store: &str,
    driver: &str,
    suffix: &str,
) -> Option<&'a Row> {
    rows.find_variant(workload, system, store, driver, |v| v.ends_with(suffix))
}

fn rate(row: Option<&Row>) -> Option<f64> {
    row.and_then(Row::rate).map(|s| s.median)
}

fn efficiency(row: Option<&Row>) -> Option<f64> {
    row.and_then(|r| r.spread(|m| m.extra.get("efficiency").copied()))
        .map(|s| s.median)
}

fn show(v: Option<f64>, unit: &str) -> String {
    v.map_or("not measured".into(), |v| format!("{v:.2}{unit}"))
}

/// Adds the ratios and goals of the performance issue to `report`.
pub(crate) fn peer_goals(rows: &Rows, report: &mut Report) {
    let pg = store_pg("on");
    let mut ratio = |name: String, a: Option<f64>, b: Option<f64>| {
        let r = a.zip(b).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b);
        if let Some(r) = r {
            report.ratios.insert(name, r);
        }
        r
    };

    // W5: single-job enqueues at 16 clients.
    let single = |store: &str, system: &str, driver: &str| {
        // Only the single-job variants name their clients.
        rate(find(rows, "W5", system, store, driver, "16 client(s)"))
    };
    let mut parts = Vec::new();
    let mut met = Some(true);
    for (store, before) in W5_BEFORE {
        let store = if store.starts_with("SQLite") {
            store_sqlite("normal")
        } else {
            pg.clone()
        };
        let lh = single(&store, "leasehold", "raw-http");
        let sdk = single(&store, "leasehold", "rust-sdk");
        let gain = lh.map(|v| v / before);
        parts.push(format!(
            "{store}: {} jobs/s raw HTTP ({} the {before} before), {} jobs/s Rust SDK",
            lh.map_or("not measured".into(), |v| format!("{v:.0}")),
            show(gain, "×"),
            sdk.map_or("not measured".into(), |v| format!("{v:.0}"))
        ));
        met = met.zip(gain).map(|(m, g)| m && g >= 5.0);
    }
    for peer in ["river", "pgqueuer"] {
        let lh = single(&pg, "leasehold", "raw-http");
        let r = ratio(
            format!("W5 16 clients {pg}: leasehold / {peer}"),
            lh,
            single(&pg, peer, ""),
        );
        parts.push(format!("{pg}: {} {peer}", show(r, "×")));
        met = met.zip(r).map(|(m, r)| m && r > 1.0);
    }
    report.goals.push(Goal {
        goal: "W5 single-job enqueues at 16 clients ≥ 5× before group commit on both stores, \
               ahead of River and pgqueuer"
            .into(),
        measured: parts.join("; "),
        met,
    });

    // W3: efficiency through the Rust SDK.
    let mut parts = Vec::new();
    let mut met = Some(true);
    for store in [store_sqlite("normal"), pg.clone()] {
        for slots in ["10 slots", "100 slots"] {
            let e = efficiency(find(rows, "W3", "leasehold", &store, "rust-sdk", slots));
            parts.push(format!("{store} {slots}: {}", show(e, "")));
            met = met.zip(e).map(|(m, e)| m && e >= 0.9);
        }
    }
    for slots in ["10 slots", "100 slots"] {
        let sdk = efficiency(find(rows, "W3", "leasehold", &pg, "rust-sdk", slots));
        let river = [", defaults", ", fetch 2 ms"]
            .iter()
            .filter_map(|t| efficiency(find(rows, "W3", "river", &pg, "", &format!("{slots}{t}"))))
            .fold(None, |best: Option<f64>, e| {
                Some(best.map_or(e, |b| b.max(e)))
            });
        let r = ratio(
            format!("W3 {slots} efficiency {pg}: rust-sdk / River's best"),
            sdk,
            river,
        );
        parts.push(format!("{slots}: {} River's best", show(r, "×")));
        met = met.zip(r).map(|(m, r)| m && r > 1.0);
    }
    report.goals.push(Goal {
        goal: "W3 efficiency ≥ 0.9 at 10 and 100 slots through the Rust SDK on both stores, \
               ahead of River"
            .into(),
        measured: parts.join("; "),
        met,
    });

    // W1: the burn-down against the peers and the ceiling.
    let r = &report.ratios;
    let get = |k: &str| r.get(&format!("W1 {pg}: leasehold / {k}")).copied();
    let (river, pgq, ceiling) = (get("River"), get("pgqueuer best"), get("ceiling"));
    report.goals.push(Goal {
        goal: "W1 PostgreSQL sc=on ≥ 1.25× River and pgqueuer's best, ≥ 70% of the ceiling".into(),
        measured: format!(
            "{} River, {} pgqueuer's best, {} of the ceiling",
            show(river, "×"),
            show(pgq, "×"),
            ceiling.map_or("not measured".into(), |c| format!("{:.0}%", c * 100.0))
        ),
        met: match (river, pgq, ceiling) {
            (Some(a), Some(b), Some(c)) => Some(a >= 1.25 && b >= 1.25 && c >= 0.7),
            _ => None,
        },
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::Measurement;

    fn w3(system: &str, store: &str, driver: &str, variant: &str, efficiency: f64) -> Row {
        let mut m = Measurement::default();
        m.extra.insert("efficiency".into(), efficiency);
        Row {
            key: format!("W3|{system}|{store}|{driver}|{variant}"),
            system: system.into(),
            store: store.into(),
            driver: driver.into(),
            workload: "W3".into(),
            variant: variant.into(),
            settings: BTreeMap::new(),
            status: "ok".into(),
            runs: vec![m],
        }
    }

    #[test]
    fn the_w3_goal_reads_each_slot_count_from_its_own_rows() {
        let (pg, lite) = (store_pg("on"), store_sqlite("normal"));
        let mut rows = Vec::new();
        for store in [&lite, &pg] {
            // The raw-HTTP rows come first and must not be taken for the SDK's.
            rows.push(w3(
                "leasehold",
                store,
                "raw-http",
                "1000 jobs × 10 ms, 10 slots",
                0.5,
            ));
            rows.push(w3(
                "leasehold",
                store,
                "rust-sdk",
                "1000 jobs × 10 ms, 10 slots",
                0.95,
            ));
            rows.push(w3(
                "leasehold",
                store,
                "rust-sdk",
                "10000 jobs × 10 ms, 100 slots",
                0.91,
            ));
        }
        for (variant, e) in [
            ("1000 jobs × 10 ms, 10 slots, defaults", 0.6),
            ("1000 jobs × 10 ms, 10 slots, fetch 2 ms", 0.7),
            ("10000 jobs × 10 ms, 100 slots, defaults", 0.3),
            ("10000 jobs × 10 ms, 100 slots, fetch 2 ms", 0.5),
        ] {
            rows.push(w3("river", &pg, "river API", variant, e));
        }
        let mut report = Report::empty("quick", 1);
        peer_goals(&Rows { rows }, &mut report);
        let goal = report
            .goals
            .iter()
            .find(|g| g.goal.starts_with("W3"))
            .expect("the W3 goal");
        assert_eq!(goal.met, Some(true), "{}", goal.measured);
        assert!(
            goal.measured.contains(&format!("{pg} 100 slots: 0.91")),
            "{}",
            goal.measured
        );
        let ratio = |slots: &str| {
            report.ratios[&format!("W3 {slots} efficiency {pg}: rust-sdk / River's best")]
        };
        assert!((ratio("10 slots") - 0.95 / 0.7).abs() < 1e-9);
        assert!((ratio("100 slots") - 0.91 / 0.5).abs() < 1e-9);
    }
}
