//! Execution timeouts, decided once for both stores (docs/CONTRACT.md §2.3).
//!
//! A claim fixes the attempt's `deadline_at` (the job's own `timeout_ms`, else its queue's
//! `default_timeout_ms`, from the claim's `now`). Heartbeats never extend the lease past it, so
//! a lease still held at its deadline has `lease_expires_at = deadline_at`: that is how a claim
//! tells a *timed-out* lease (its worker kept it alive to the end) from a lease whose worker
//! vanished earlier (`lease_expires_at < deadline_at`, expired as before). The claim path ends
//! timed-out attempts before it takes any lease, as a failure of class `timeout`: back to
//! `queued` after the job's backoff while attempts remain, else `dead` (`cancelled` when a cancel
//! was requested), with the same event and run bookkeeping as a failure the worker reports.
//! What that failure writes is decided here; `sqlite/timeouts.rs` and `postgres/timeouts.rs`
//! hold the statements.

use chrono::{DateTime, Utc};
use leasehold_proto::retry::{RetryPolicy, SplitMix64};
use leasehold_proto::{Job, JobState};
use serde_json::{Value, json};
use uuid::Uuid;

/// The error class of an attempt that ran out of time.
pub(crate) const TIMEOUT_CLASS: &str = "timeout";

/// The SQL test (the same for both databases) of a leased row whose lease reached its
/// run-time deadline: heartbeats never extend a lease past it, so only such a lease has
/// `lease_expires_at = deadline_at`. With `lease_expires_at <= now`, the attempt timed out.
pub(crate) const TIMED_OUT: &str = "deadline_at IS NOT NULL AND lease_expires_at >= deadline_at";

/// Most timed-out attempts one claim ends; any beyond are left to the next claim (and are
/// never taken over as merely expired meanwhile).
pub(crate) const SWEEP_LIMIT: i64 = 1000;

/// A timeout in milliseconds as both databases store it (validated far below `i64::MAX`).
pub(crate) fn ms_int(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// How one timed-out attempt ends.
#[derive(Debug, Clone)]
pub(crate) struct TimedOut {
    /// The job.
    pub(crate) id: Uuid,
    /// The token of the attempt that timed out (the statement is fenced by it).
    pub(crate) token: i64,
    /// `queued` (another attempt after `run_at`), `dead` or `cancelled`.
    pub(crate) state: JobState,
    /// When the next attempt may start (the job's `run_at` unchanged unless `queued`).
    pub(crate) run_at: DateTime<Utc>,
    /// Set when the job ended.
    pub(crate) finished_at: Option<DateTime<Utc>>,
    /// The failure recorded as the job's `last_error`.
    pub(crate) error: Value,
}

/// Decides how `job`'s timed-out attempt (leased, read under lock) ends at `now`: like a
/// retryable failure of class `timeout` reported without `retry_at` — another attempt after the
/// job's backoff (its hint, else the default job policy, full jitter) while attempts remain,
/// else `dead`; `cancelled` when a cancel was requested, as for any failure.
pub(crate) fn decide(job: &Job, now: DateTime<Utc>, rng: &mut SplitMix64) -> TimedOut {
    let limit = match (job.deadline_at, job.started_at) {
        (Some(deadline), Some(started)) => format!(
            "its timeout of {} ms",
            (deadline - started).num_milliseconds()
        ),
        _ => "its timeout".to_owned(),
    };
    let deadline = job
        .deadline_at
        .map_or_else(String::new, |d| format!(" at {}", d.to_rfc3339()));
    let error = json!({
        "class": TIMEOUT_CLASS,
        "message": format!(
            "run time exceeded: attempt {} was still running when {limit} ran out{deadline}",
            job.attempt
        ),
        "retryable": true,
    });
    let (state, run_at) = if job.cancel_requested {
        (JobState::Cancelled, job.run_at)
    } else if job.attempt < job.max_attempts {
        let policy = match &job.backoff {
            Some(hint) => RetryPolicy::from_hint(hint, job.max_attempts),
            None => RetryPolicy::default(),
        };
        let attempt = u32::try_from(job.attempt).unwrap_or(1).max(1);
        let delay =
            chrono::Duration::from_std(policy.delay(attempt, rng)).unwrap_or(chrono::Duration::MAX);
        (
            JobState::Queued,
            now.checked_add_signed(delay).unwrap_or(now),
        )
    } else {
        (JobState::Dead, job.run_at)
    };
    TimedOut {
        id: job.id,
        token: job.fencing_token,
        state,
        run_at,
        finished_at: (state != JobState::Queued).then_some(now),
        error,
    }
}

/// The event recording `job` (as stored after its timed-out attempt ended) and its data: the
/// type a failure leading to that state writes (`retry_scheduled`, `dead`, `cancelled`), with
/// `reason: timeout` and the error.
pub(crate) fn event_of(job: &Job) -> (&'static str, Value) {
    let kind = match job.state {
        JobState::Queued => "retry_scheduled",
        JobState::Cancelled => "cancelled",
        _ => "dead",
    };
    let mut data = json!({
        "from": "leased", "to": job.state, "reason": TIMEOUT_CLASS,
        "fencing_token": job.fencing_token, "attempt": job.attempt,
        "error": job.last_error, "deadline_at": job.deadline_at,
    });
    if job.state == JobState::Queued {
        data["retry_at"] = json!(job.run_at);
    }
    (kind, data)
}

/// Whether `job` (read after an outcome under `token` was refused) had that attempt ended by
/// its timeout rather than by its worker: nothing the worker sent under that token was
/// recorded. The timeout writes the job at or after its deadline; the worker's outcome could
/// only be recorded before it.
pub(crate) fn ended_by_timeout(job: &Job, token: i64) -> bool {
    job.fencing_token == token
        && job.state != JobState::Leased
        && job.deadline_at.is_some_and(|d| job.updated_at >= d)
        && job
            .last_error
            .as_ref()
            .is_some_and(|e| e["class"] == TIMEOUT_CLASS)
}
