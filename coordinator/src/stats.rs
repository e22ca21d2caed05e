//! Job statistics: the ledger rolled up per minute into counts per tenant and queue (leases,
//! successes, failed attempts, deaths, cancellations, pickup latencies) and failures per class,
//! so that the console's chart, `GET /v1/stats`, `GET /v1/failures` and `GET /v1/slo` read a
//! few rows instead of the events. `crate::store::stats` holds the tables and the step.
//!
//! Who rolls up: every coordinator, every few seconds, and each read first (so an answer
//! includes what was settled when it was asked). A range of events is counted once however
//! many coordinators try (the cursor's compare-and-set). The counts live for [`KEEP`]; the
//! failures of the ranges this coordinator rolled up feed `leasehold_job_failures_total`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use leasehold_proto::{PICKUP_BOUNDS_MS, QueueSlo, SloMeasure, SloObjective, SloReport};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::error::{ApiError, ApiResult};
use crate::store::{FailureRow, StatsRow, Store, StoreResult};

/// How long the per-minute counts are kept.
pub const KEEP: chrono::Duration = chrono::Duration::days(8);
/// Events rolled up per step.
const STEP: i64 = 20_000;
/// Steps per background round at most (a backlog is worked off over several rounds).
const STEPS_PER_ROUND: usize = 10;
/// How often the background roll-up runs.
const EVERY: Duration = Duration::from_secs(5);
/// How often old counts are swept.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Distinct `(queue, class)` label pairs of the failure metric; the rest count as `other`.
const MAX_FAILURE_SERIES: usize = 200;
/// The name of the tenant-wide objective.
pub const ANY_QUEUE: &str = "*";

/// Rolls up what is settled now (one bounded step): called before each read.
pub async fn catch_up(store: &dyn Store) -> StoreResult<()> {
    let rolled = store.roll_up_stats(STEP).await?;
    count_failures(&rolled.failures);
    Ok(())
}

/// Starts the background roll-up and sweep; it ends at shutdown.
pub fn spawn(store: Arc<dyn Store>, clock: Arc<dyn Clock>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            for _ in 0..STEPS_PER_ROUND {
                match store.roll_up_stats(STEP).await {
                    Ok(rolled) => {
                        count_failures(&rolled.failures);
                        if rolled.events < STEP as u64 {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "job statistics: roll-up failed; retried");
                        break;
                    }
                }
            }
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(std::time::Instant::now());
                if let Err(e) = store.prune_stats(clock.now() - KEEP).await {
                    tracing::debug!(error = %e, "job statistics: sweep failed; retried");
                }
            }
        }
    });
}

/// Adds rolled-up failures to `leasehold_job_failures_total{queue, class}`.
fn count_failures(failures: &[FailureRow]) {
    static SEEN: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);
    if failures.is_empty() {
        return;
    }
    let Ok(mut seen) = SEEN.lock() else {
        return;
    };
    let seen = seen.get_or_insert_with(HashSet::new);
    for f in failures {
        let key = (f.queue.clone(), f.class.clone());
        let class = if seen.contains(&key) || seen.len() < MAX_FAILURE_SERIES {
            seen.insert(key);
            f.class.clone()
        } else {
            "other".to_owned()
        };
        metrics::counter!(crate::metrics::JOB_FAILURES, "queue" => f.queue.clone(), "class" => class)
            .increment(f.count);
    }
}

/// Checks an objective: ratios from 0.5 to 0.99999, a pickup bound the counts keep.
pub fn check_objective(o: &SloObjective) -> ApiResult<()> {
    for (field, ratio) in [
        ("success_ratio", o.success_ratio),
        ("pickup_ratio", o.pickup_ratio),
    ] {
        if !(0.5..=0.99999).contains(&ratio) {
            return Err(ApiError::validation(
                field,
                format!("{field} is a share from 0.5 to 0.99999 (e.g. 0.99), not {ratio}"),
            ));
        }
    }
    if !PICKUP_BOUNDS_MS.contains(&o.pickup_ms) {
        let bounds: Vec<String> = PICKUP_BOUNDS_MS.iter().map(u64::to_string).collect();
        return Err(ApiError::validation(
            "pickup_ms",
            format!(
                "pickup_ms is one of {} (the latencies counted apart), not {}",
                bounds.join(", "),
                o.pickup_ms
            ),
        ));
    }
    Ok(())
}

/// How each queue fares against its objectives over `rows` (the window's counts): a queue's
/// own objective, else the tenant's (`*`), else the defaults. Queues with counts in the window
/// or an objective of their own are listed, by name, and `asked` (a queue, or `*` for the
/// tenant's default) even when idle.
pub fn slo_report(
    rows: &[StatsRow],
    objectives: &[(String, SloObjective)],
    window: chrono::Duration,
    asked: Option<&str>,
) -> SloReport {
    #[derive(Default)]
    struct Sums {
        succeeded: u64,
        dead: u64,
        leased: u64,
        pickup_le: [u64; PICKUP_BOUNDS_MS.len()],
    }
    let own: HashMap<&str, &SloObjective> =
        objectives.iter().map(|(q, o)| (q.as_str(), o)).collect();
    let tenant_wide = own.get(ANY_QUEUE).copied();
    let mut sums: BTreeMap<&str, Sums> = BTreeMap::new();
    for (queue, _) in objectives.iter().filter(|(q, _)| q != ANY_QUEUE) {
        sums.entry(queue.as_str()).or_default();
    }
    if let Some(queue) = asked {
        sums.entry(queue).or_default();
    }
    for row in rows {
        let s = sums.entry(row.point.queue.as_str()).or_default();
        s.succeeded += row.point.succeeded;
        s.dead += row.point.dead;
        s.leased += row.point.leased;
        for (sum, n) in s.pickup_le.iter_mut().zip(row.pickup_le) {
            *sum += n;
        }
    }
    let queues = sums
        .into_iter()
        .map(|(queue, s)| {
            let set = own.get(queue).copied().or(tenant_wide);
            let objective = set.copied().unwrap_or_default();
            let within = PICKUP_BOUNDS_MS
                .iter()
                .position(|b| *b == objective.pickup_ms)
                .map_or(0, |i| s.pickup_le[i]);
            QueueSlo {
                queue: queue.to_owned(),
                objective,
                configured: set.is_some(),
                success: measure(s.succeeded, s.succeeded + s.dead, objective.success_ratio),
                pickup: measure(within, s.leased, objective.pickup_ratio),
            }
        })
        .collect();
    SloReport {
        window_secs: u64::try_from(window.num_seconds()).unwrap_or(0),
        queues,
    }
}

/// `good` of `total` against an objective `target`.
fn measure(good: u64, total: u64, target: f64) -> SloMeasure {
    if total == 0 {
        return SloMeasure::default();
    }
    let ratio = good as f64 / total as f64;
    SloMeasure {
        good,
        total,
        ratio: Some(ratio),
        burn_rate: Some((1.0 - ratio) / (1.0 - target)),
    }
}

/// The first minute of a range starting at `since`.
pub fn minute_of(since: DateTime<Utc>) -> DateTime<Utc> {
    let secs = since.timestamp().div_euclid(60) * 60;
    DateTime::from_timestamp(secs, 0).unwrap_or(since)
}

#[cfg(test)]
mod tests {
    use leasehold_proto::StatsPoint;

    use super::*;

    fn row(queue: &str, succeeded: u64, dead: u64, leased: u64, fast: u64) -> StatsRow {
        let mut pickup_le = [leased; PICKUP_BOUNDS_MS.len()];
        // `fast` leases within 1000 ms (and every bound above it), none within less.
        for (i, b) in PICKUP_BOUNDS_MS.iter().enumerate() {
            pickup_le[i] = if *b < 1000 {
                0
            } else if *b == 1000 {
                fast
            } else {
                leased
            };
        }
        StatsRow {
            tenant: "t".into(),
            point: StatsPoint {
                queue: queue.into(),
                succeeded,
                dead,
                leased,
                ..Default::default()
            },
            pickup_le,
        }
    }

    #[test]
    fn burn_rates_compare_misses_with_the_budget() {
        let rows = [row("mail", 90, 5, 100, 95), row("mail", 8, 0, 10, 10)];
        let report = slo_report(&rows, &[], chrono::Duration::hours(1), None);
        let mail = &report.queues[0];
        assert!(!mail.configured);
        // 98 of 103 succeeded against 0.99: (5/103) / 0.01 ≈ 4.85.
        assert_eq!((mail.success.good, mail.success.total), (98, 103));
        let burn = mail.success.burn_rate.expect("a burn rate");
        assert!((burn - (5.0 / 103.0) / 0.01).abs() < 1e-9, "{burn}");
        // 105 of 110 leases within 1000 ms against 0.99.
        assert_eq!((mail.pickup.good, mail.pickup.total), (105, 110));
        assert_eq!(report.window_secs, 3600);
    }

    #[test]
    fn a_queues_own_objective_beats_the_tenants_and_idle_queues_with_one_are_listed() {
        let strict = SloObjective {
            success_ratio: 0.999,
            pickup_ms: 100,
            pickup_ratio: 0.9,
        };
        let loose = SloObjective {
            success_ratio: 0.9,
            ..Default::default()
        };
        let objectives = vec![("*".to_owned(), loose), ("idle".to_owned(), strict)];
        let report = slo_report(
            &[row("mail", 1, 1, 2, 2)],
            &objectives,
            chrono::Duration::hours(1),
            None,
        );
        let names: Vec<&str> = report.queues.iter().map(|q| q.queue.as_str()).collect();
        assert_eq!(names, ["idle", "mail"]);
        assert_eq!(report.queues[0].objective, strict);
        assert_eq!(report.queues[0].success, SloMeasure::default());
        assert_eq!(report.queues[1].objective, loose);
        assert!(report.queues[1].configured);
        // Half succeeded against 0.9: burn 5.
        assert!((report.queues[1].success.burn_rate.expect("a burn rate") - 5.0).abs() < 1e-9);
    }

    #[test]
    fn objectives_are_checked() {
        let good = SloObjective::default();
        assert!(check_objective(&good).is_ok());
        for (bad, field) in [
            (
                SloObjective {
                    success_ratio: 1.0,
                    ..good
                },
                "success_ratio",
            ),
            (
                SloObjective {
                    pickup_ratio: 0.1,
                    ..good
                },
                "pickup_ratio",
            ),
            (
                SloObjective {
                    pickup_ms: 999,
                    ..good
                },
                "pickup_ms",
            ),
            (
                SloObjective {
                    success_ratio: f64::NAN,
                    ..good
                },
                "success_ratio",
            ),
        ] {
            let err = check_objective(&bad).expect_err("refused");
            assert_eq!(err.details["field"], field);
        }
    }
}
