//! Prometheus metrics through the `metrics` facade. The exporter is installed once per process
//! (tests build many routers) and rendered by our own `/metrics` route; its HTTP listener and
//! default TLS features stay off (one TLS provider: docs/DEPENDENCIES.md).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::StateCount;

/// Request latency histogram.
pub const HTTP_DURATION: &str = "leasehold_http_request_duration_seconds";
/// Requests by route and status.
pub const HTTP_REQUESTS: &str = "leasehold_http_requests_total";
/// Jobs by tenant, queue and state (refreshed on each scrape).
pub const JOBS: &str = "leasehold_jobs";
/// Claim calls by result (`leased`, `empty`).
pub const CLAIMS: &str = "leasehold_claims_total";
/// Leases granted.
pub const LEASES_GRANTED: &str = "leasehold_leases_granted_total";
/// Expired leases taken over by a claim.
pub const LEASE_EXPIRIES: &str = "leasehold_lease_expiries_total";
/// Attempts ended by a claim because their run-time deadline passed (class `timeout`).
pub const TIMEOUTS: &str = "leasehold_timeouts_total";
/// Jobs enqueued (new, not replayed).
pub const JOBS_ENQUEUED: &str = "leasehold_jobs_enqueued_total";
/// Runs by status (`created`, then the terminal status each reaches).
pub const RUNS_TOTAL: &str = "orchestrator_runs_total";
/// Queued jobs per queue (refreshed on each scrape).
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
    for state in leasehold_proto::JobState::ALL {
        metrics::counter!(OUTCOMES, "state" => state.as_str()).absolute(0);
    }
    for result in ["ok", "skipped", "error"] {
        metrics::counter!(RETENTION_SWEEPS, "result" => result).absolute(0);
    }
    metrics::gauge!(RETENTION_LAST_SWEEP).set(0.0);
    metrics::gauge!(WORKER_SESSIONS).set(0.0);
}

/// Sets the job gauges from fresh counts; every state of a known queue is written so that a
/// drained state drops to zero instead of keeping its last value.
pub fn record_state_counts(counts: &[StateCount]) {
    let mut queued = std::collections::BTreeMap::<String, i64>::new();
    for c in counts {
        let entry = queued.entry(c.queue.clone()).or_default();
        if c.state == leasehold_proto::JobState::Queued {
            *entry += c.count;
        }
    }
    for (queue, n) in queued {
        metrics::gauge!(QUEUE_DEPTH, "queue" => queue).set(n as f64);
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in counts {
        seen.insert((c.tenant.clone(), c.queue.clone()));
    }
    for (tenant, queue) in &seen {
        for state in leasehold_proto::JobState::ALL {
            let n = counts
                .iter()
                .find(|c| &c.tenant == tenant && &c.queue == queue && c.state == state)
                .map_or(0, |c| c.count);
            metrics::gauge!(JOBS, "tenant" => tenant.clone(), "queue" => queue.clone(), "state" => state.as_str())
                .set(n as f64);
        }
    }
}
