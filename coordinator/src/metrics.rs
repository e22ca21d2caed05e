//! Prometheus metrics through the `metrics` facade. The exporter is installed once per process
//! (tests build many routers) and rendered by our own `/metrics` route; its HTTP listener and
//! default TLS features stay off (one TLS provider: docs/DEPENDENCIES.md).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use chrono::{DateTime, Utc};
use leasehold_proto::JobState;

use crate::store::{StateCount, Store};

/// Request latency histogram.
pub const HTTP_DURATION: &str = "leasehold_http_request_duration_seconds";
/// Requests by route and status.
pub const HTTP_REQUESTS: &str = "leasehold_http_requests_total";
/// Live jobs by queue and state (and tenant when configured), rendered by [`JobGauges`].
pub const JOBS: &str = "leasehold_jobs";
/// Claim calls by result (`leased`, `empty`).
pub const CLAIMS: &str = "leasehold_claims_total";
/// Leases granted.
pub const LEASES_GRANTED: &str = "leasehold_leases_granted_total";
/// Claims in which a limit held a ready job back, by limit key (`crate::flow`).
pub const LIMIT_HOLDS: &str = "leasehold_limit_holds_total";
/// Circuit breakers that opened or closed, by limit key and new state (`crate::flow::breaker`).
pub const BREAKER_CHANGES: &str = "leasehold_breaker_changes_total";
/// Throttles reported by workers (failures of class `throttled`) that lowered an adaptive
/// rate, by limit key (`crate::flow::adaptive`).
pub const LIMIT_THROTTLES: &str = "leasehold_limit_throttles_total";
/// Buckets of a limit whose circuit breaker is open or half-open, per limit key (and tenant
/// when configured), rendered by [`JobGauges`] from the store (so every replica agrees).
pub const BREAKERS_OPEN: &str = "leasehold_breakers_open";
/// The effective rate of an adaptive limit on one key (not a prefix) after its last throttle.
pub const LIMIT_EFFECTIVE_RATE: &str = "leasehold_limit_effective_rate";
/// Expired leases taken over by a claim.
pub const LEASE_EXPIRIES: &str = "leasehold_lease_expiries_total";
/// Attempts ended by a claim because their run-time deadline passed (class `timeout`).
pub const TIMEOUTS: &str = "leasehold_timeouts_total";
/// Failed attempts by `queue` and `class` (`error.class`; `lease_expired`; `timeout`), as
/// rolled up from the ledger by this coordinator (`crate::stats`): summed over replicas, each
/// failure counts once. At most 200 pairs; the rest under `class="other"`.
pub const JOB_FAILURES: &str = "leasehold_job_failures_total";
/// Jobs enqueued (new, not replayed).
pub const JOBS_ENQUEUED: &str = "leasehold_jobs_enqueued_total";
/// Enqueue requests (one job, a batch or a run) refused with nothing stored, by `reason`:
/// `quota` (the tenant's `max_queued`), `overloaded` (`--max-queued-jobs`).
pub const ENQUEUES_REFUSED: &str = "leasehold_enqueues_refused_total";
/// Runs by status (`created`, then the terminal status each reaches).
pub const RUNS_TOTAL: &str = "orchestrator_runs_total";
/// Queued jobs per queue, rendered by [`JobGauges`].
pub const QUEUE_DEPTH: &str = "orchestrator_queue_depth";
/// Failures that were scheduled for another attempt.
pub const STEP_RETRIES: &str = "orchestrator_step_retries_total";
/// Time from submission to the end of a run.
pub const RUN_DURATION: &str = "orchestrator_run_duration_seconds";
/// Open worker WebSocket sessions.
pub const WORKER_SESSIONS: &str = "leasehold_worker_sessions";
/// Jobs leased in their enqueue's transaction to a claimer parked in a long poll
/// (`crate::handoff`); each is also counted in `leasehold_leases_granted_total`.
pub const HANDOFFS: &str = "leasehold_handoffs_total";
/// Claimers parked in a long poll or a worker session with credit (refreshed on each scrape).
pub const PARKED_CLAIMERS: &str = "leasehold_parked_claimers";
/// Outcomes recorded, by resulting state.
pub const OUTCOMES: &str = "leasehold_outcomes_total";

/// Retention sweeps by result (`ok`, `skipped`: another replica held the lock, `error`).
pub const RETENTION_SWEEPS: &str = "leasehold_retention_sweeps_total";
/// When the last sweep finished (Unix seconds, from the coordinator's clock).
pub const RETENTION_LAST_SWEEP: &str = "leasehold_retention_last_sweep_timestamp_seconds";
/// Finished jobs removed by retention (those of removed runs included).
pub const RETENTION_JOBS_REMOVED: &str = "leasehold_retention_jobs_removed_total";
/// Finished runs removed by retention.
pub const RETENTION_RUNS_REMOVED: &str = "leasehold_retention_runs_removed_total";
/// Artifact blobs deleted because no remaining job names them.
pub const ARTIFACTS_COLLECTED: &str = "leasehold_artifacts_collected_total";
/// Ledger events archived to segments, then deleted.
pub const LEDGER_EVENTS_ARCHIVED: &str = "leasehold_ledger_events_archived_total";
/// Ledger segments written.
pub const LEDGER_SEGMENTS_WRITTEN: &str = "leasehold_ledger_segments_written_total";

/// Explicit latency buckets: long-polls reach 60 s, fast paths sit well under a millisecond.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Run durations: seconds to a day.
const RUN_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];

/// Records a run reaching a terminal status (called once, by the replica that ended it).
pub fn run_ended(status: &str, seconds: f64) {
    metrics::counter!(RUNS_TOTAL, "status" => status.to_owned()).increment(1);
    metrics::histogram!(RUN_DURATION, "status" => status.to_owned()).record(seconds);
}

/// The process-wide exporter handle.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(RUN_DURATION.to_owned()), RUN_BUCKETS)
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => {
                register_at_zero();
                handle
            }
            // Another recorder is installed (only in odd embeddings): render an empty registry.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// Statuses a run ends in (`orchestrator_runs_total` also counts `created`).
const RUN_END_STATUSES: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// Writes every counter (and the run-duration histogram) whose label values are known in
/// advance at zero, so that `/metrics` shows them before their first event: an alert such as
/// `increase(orchestrator_step_retries_total[5m]) > 10` then sees 0 on a healthy coordinator
/// instead of "no data". Series labelled by queue or tenant appear with their first job.
fn register_at_zero() {
    for name in [
        LEASES_GRANTED,
        LEASE_EXPIRIES,
        TIMEOUTS,
        JOBS_ENQUEUED,
        STEP_RETRIES,
        HANDOFFS,
        RETENTION_JOBS_REMOVED,
        RETENTION_RUNS_REMOVED,
        ARTIFACTS_COLLECTED,
        LEDGER_EVENTS_ARCHIVED,
        LEDGER_SEGMENTS_WRITTEN,
    ] {
        metrics::counter!(name).absolute(0);
    }
    metrics::counter!(RUNS_TOTAL, "status" => "created").absolute(0);
    for status in RUN_END_STATUSES {
        metrics::counter!(RUNS_TOTAL, "status" => status).absolute(0);
        // Registering the histogram makes its `_count`/`_sum` render, at zero.
        drop(metrics::histogram!(RUN_DURATION, "status" => status));
    }
    for result in ["leased", "empty"] {
        metrics::counter!(CLAIMS, "result" => result).absolute(0);
    }
    for reason in crate::admission::Refusal::ALL {
        metrics::counter!(ENQUEUES_REFUSED, "reason" => reason.as_str()).absolute(0);
    }
    for state in leasehold_proto::JobState::ALL {
        metrics::counter!(OUTCOMES, "state" => state.as_str()).absolute(0);
    }
    for result in ["ok", "skipped", "error"] {
        metrics::counter!(RETENTION_SWEEPS, "result" => result).absolute(0);
    }
    metrics::gauge!(RETENTION_LAST_SWEEP).set(0.0);
    metrics::gauge!(WORKER_SESSIONS).set(0.0);
}

/// How long `/metrics` keeps showing a queue at zero after its last live job: then its series
/// are forgotten, so a coordinator that saw many short-lived queues does not render them all
/// forever.
pub const FORGET_QUEUE_AFTER: chrono::Duration = chrono::Duration::minutes(15);

/// The job gauges (`leasehold_jobs`, `orchestrator_queue_depth`), rendered by `/metrics` itself
/// from a count of the live states rather than kept in the exporter's registry: a series of a
/// queue that is gone disappears, tenant names are a label only when configured, and scrapes
/// that arrive together share one count.
pub struct JobGauges {
    tenant_label: bool,
    counted: tokio::sync::Mutex<Counted>,
}

#[derive(Default)]
struct Counted {
    /// When the last count started (monotonic), and what it found.
    at: Option<std::time::Instant>,
    counts: Vec<StateCount>,
    /// Limits with a breaker: (tenant, key, buckets open or half-open).
    breakers: Vec<(String, String, i64)>,
    /// Every (tenant, queue) recently seen with live jobs, and when last seen.
    seen: std::collections::BTreeMap<(String, String), DateTime<Utc>>,
}

impl std::fmt::Debug for JobGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobGauges")
            .field("tenant_label", &self.tenant_label)
            .finish_non_exhaustive()
    }
}

impl JobGauges {
    /// Gauges labelled by tenant too when `tenant_label` (`--metrics-tenant-label`).
    pub fn new(tenant_label: bool) -> Self {
        Self {
            tenant_label,
            counted: tokio::sync::Mutex::new(Counted::default()),
        }
    }

    /// The gauges' exposition text: counted now, or by a count that started after this scrape
    /// asked (one count serves every scrape waiting for it). A failed count keeps the last one.
    pub async fn render(&self, store: &dyn Store, now: DateTime<Utc>) -> String {
        let asked = std::time::Instant::now();
        let mut counted = self.counted.lock().await;
        if counted.at.is_none_or(|at| at < asked) {
            let started = std::time::Instant::now();
            match store.live_state_counts().await {
                Ok(counts) => {
                    counted.at = Some(started);
                    counted.counts = counts;
                }
                Err(err) => tracing::warn!(%err, "job counts unavailable for /metrics"),
            }
            match store.breaker_counts().await {
                Ok(breakers) => counted.breakers = breakers,
                Err(err) => tracing::warn!(%err, "breaker states unavailable for /metrics"),
            }
            let Counted { counts, seen, .. } = &mut *counted;
            for c in counts.iter() {
                seen.insert((c.tenant.clone(), c.queue.clone()), now);
            }
            seen.retain(|_, last| now - *last <= FORGET_QUEUE_AFTER);
        }
        let mut text = exposition(&counted.counts, counted.seen.keys(), self.tenant_label);
        text.push_str(&breaker_exposition(&counted.breakers, self.tenant_label));
        text
    }
}

/// Renders `leasehold_breakers_open`: per limit key (summed over tenants unless `tenant_label`),
/// 0 for a limit whose breakers are all closed.
fn breaker_exposition(breakers: &[(String, String, i64)], tenant_label: bool) -> String {
    use std::fmt::Write;
    let mut open = std::collections::BTreeMap::<(String, String), i64>::new();
    for (tenant, key, n) in breakers {
        let tenant = if tenant_label {
            tenant.clone()
        } else {
            String::new()
        };
        *open.entry((tenant, key.clone())).or_insert(0) += n;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP {BREAKERS_OPEN} Buckets of a limit whose circuit breaker is open or half-open."
    );
    let _ = writeln!(out, "# TYPE {BREAKERS_OPEN} gauge");
    for ((tenant, key), n) in &open {
        let tenant = if tenant_label {
            format!("tenant=\"{}\",", label(tenant))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{BREAKERS_OPEN}{{{tenant}limit=\"{}\"}} {n}",
            label(key)
        );
    }
    out
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the gauges: every live state of every recently seen queue (zero included, so a
/// drained queue reads 0 rather than vanishing at once), summed over tenants unless
/// `tenant_label`.
fn exposition<'a>(
    counts: &[StateCount],
    seen: impl Iterator<Item = &'a (String, String)>,
    tenant_label: bool,
) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    const LIVE: [JobState; 3] = [JobState::Blocked, JobState::Queued, JobState::Leased];
    // (tenant or "", queue) -> state -> count
    let mut jobs = BTreeMap::<(String, String), BTreeMap<&'static str, i64>>::new();
    let mut depth = BTreeMap::<String, i64>::new();
    let key = |tenant: &str, queue: &str| {
        let tenant = if tenant_label { tenant } else { "" };
        (tenant.to_owned(), queue.to_owned())
    };
    for (tenant, queue) in seen {
        let states = jobs.entry(key(tenant, queue)).or_default();
        for state in LIVE {
            states.entry(state.as_str()).or_insert(0);
        }
        depth.entry(queue.clone()).or_insert(0);
    }
    for c in counts {
        *jobs
            .entry(key(&c.tenant, &c.queue))
            .or_default()
            .entry(c.state.as_str())
            .or_insert(0) += c.count;
        if c.state == JobState::Queued {
            *depth.entry(c.queue.clone()).or_insert(0) += c.count;
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP {JOBS} Jobs blocked, queued and leased, per queue{}.",
        if tenant_label { " and tenant" } else { "" }
    );
    let _ = writeln!(out, "# TYPE {JOBS} gauge");
    for ((tenant, queue), states) in &jobs {
        for (state, n) in states {
            let tenant = if tenant_label {
                format!("tenant=\"{}\",", label(tenant))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{JOBS}{{{tenant}queue=\"{}\",state=\"{state}\"}} {n}",
                label(queue)
            );
        }
    }
    let _ = writeln!(out, "# HELP {QUEUE_DEPTH} Queued jobs per queue.");
    let _ = writeln!(out, "# TYPE {QUEUE_DEPTH} gauge");
    for (queue, n) in &depth {
        let _ = writeln!(out, "{QUEUE_DEPTH}{{queue=\"{}\"}} {n}", label(queue));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn count(tenant: &str, queue: &str, state: JobState, count: i64) -> StateCount {
        StateCount {
            tenant: tenant.into(),
            queue: queue.into(),
            state,
            count,
        }
    }

    #[test]
    fn tenants_are_summed_unless_their_label_is_asked_for() {
        let counts = [
            count("alpha", "q", JobState::Queued, 2),
            count("beta", "q", JobState::Queued, 3),
            count("beta", "q", JobState::Leased, 1),
        ];
        let seen = [
            ("alpha".to_owned(), "q".to_owned()),
            ("beta".into(), "q".into()),
        ];
        let plain = exposition(&counts, seen.iter(), false);
        assert!(
            plain.contains("leasehold_jobs{queue=\"q\",state=\"queued\"} 5\n"),
            "{plain}"
        );
        assert!(
            plain.contains("leasehold_jobs{queue=\"q\",state=\"blocked\"} 0\n"),
            "{plain}"
        );
        assert!(
            plain.contains("orchestrator_queue_depth{queue=\"q\"} 5\n"),
            "{plain}"
        );
        assert!(
            !plain.contains("alpha") && !plain.contains("beta"),
            "{plain}"
        );
        let labelled = exposition(&counts, seen.iter(), true);
        assert!(
            labelled.contains("leasehold_jobs{tenant=\"beta\",queue=\"q\",state=\"leased\"} 1\n"),
            "{labelled}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
