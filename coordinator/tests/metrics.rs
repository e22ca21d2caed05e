//! `/metrics` before anything happened: the runbook's counters exist at zero, so an alert on
//! them sees 0 on a healthy coordinator, not "no data". Its own test binary, because the
//! Prometheus recorder is process-wide and other suites would have moved the counters.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "integration/common/mod.rs"]
mod common;

use common::api::Api;

#[tokio::test]
async fn runbook_metrics_exist_at_zero_before_their_first_event() {
    let (store, _guard) = common::sqlite_store().await;
    let api = Api::new(store);
    let r = api.raw("GET", "/metrics", vec![], &[]).await;
    assert!(r.status.is_success());
    let text = r.body.as_str().unwrap().to_owned();
    for series in [
        "orchestrator_step_retries_total 0",
        "orchestrator_runs_total{status=\"created\"} 0",
        "orchestrator_runs_total{status=\"succeeded\"} 0",
        "orchestrator_runs_total{status=\"failed\"} 0",
        "orchestrator_runs_total{status=\"cancelled\"} 0",
        "orchestrator_run_duration_seconds_count{status=\"succeeded\"} 0",
        "leasehold_leases_granted_total 0",
        "leasehold_lease_expiries_total 0",
        "leasehold_jobs_enqueued_total 0",
        "leasehold_handoffs_total 0",
        "leasehold_claims_total{result=\"empty\"} 0",
        "leasehold_outcomes_total{state=\"dead\"} 0",
        "leasehold_worker_sessions 0",
        "leasehold_retention_sweeps_total{result=\"ok\"} 0",
        "leasehold_retention_sweeps_total{result=\"skipped\"} 0",
        "leasehold_retention_sweeps_total{result=\"error\"} 0",
        "leasehold_retention_last_sweep_timestamp_seconds 0",
        "leasehold_retention_jobs_removed_total 0",
        "leasehold_retention_runs_removed_total 0",
        "leasehold_artifacts_collected_total 0",
        "leasehold_ledger_events_archived_total 0",
        "leasehold_ledger_segments_written_total 0",
        "leasehold_enqueues_refused_total{reason=\"quota\"} 0",
        "leasehold_enqueues_refused_total{reason=\"overloaded\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == series),
            "missing `{series}` in:\n{text}"
        );
    }

    // They then move as usual.
    api.enqueue("q").await;
    let r = api.raw("GET", "/metrics", vec![], &[]).await;
    let text = r.body.as_str().unwrap().to_owned();
    assert!(
        text.lines().any(|l| l == "leasehold_jobs_enqueued_total 1"),
        "{text}"
    );
}
