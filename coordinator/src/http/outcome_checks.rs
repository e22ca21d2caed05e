//! What the coordinator checks or fills in on a worker's outcome before it is recorded, on every
//! path (HTTP complete and fail, batch outcomes, WebSocket outcomes): the artifacts a completion
//! names must be stored, and a retryable failure without `retry_at` gets the job's backoff.

use chrono::{DateTime, Utc};
use leasehold_proto::OutcomeReport;
use leasehold_proto::retry::{RetryPolicy, SplitMix64};

use super::AppState;
use crate::error::{ApiError, ApiResult};

/// Refuses (422, naming it) a completion whose artifact was never uploaded (or was collected):
/// the manifest would promise bytes nobody can download.
pub(crate) async fn artifacts_stored(state: &AppState, report: &OutcomeReport) -> ApiResult<()> {
    let leasehold_proto::OutcomeKind::Complete { artifacts, .. } = &report.outcome else {
        return Ok(());
    };
    for (i, artifact) in artifacts.iter().enumerate() {
        // A malformed digest is refused by name later, with the other artifact checks.
        if !crate::validate::is_digest(&artifact.digest) {
            continue;
        }
        // Claimed, not just seen: a retention sweep then keeps it until this outcome is
        // recorded (crate::retention::blobs).
        let stored =
            crate::retention::blobs::claim(&state.data_dir, &artifact.digest, state.clock.now())
                .await;
        if !stored {
            return Err(ApiError::validation(
                &format!("artifacts[{i}].digest"),
                format!(
                    "artifact {:?} names {}, which is not stored: upload it first (PUT /v1/artifacts/{})",
                    artifact.name, artifact.digest, artifact.digest
                ),
            ));
        }
    }
    Ok(())
}

/// Gives a retryable failure reported without `retry_at` (a plain HTTP worker; the SDKs always
/// send one) the delay the SDK would have chosen: the job's own backoff hint, else the default
/// job policy, with full jitter (`leasehold_proto::retry`). Retried at once, a failing job would
/// spend its attempts in a tight loop.
pub(crate) async fn default_retry_at(
    state: &AppState,
    tenant: &str,
    report: &mut OutcomeReport,
    now: DateTime<Utc>,
    rng: &mut Option<SplitMix64>,
) -> ApiResult<()> {
    let leasehold_proto::OutcomeKind::Fail { error, retry_at } = &mut report.outcome else {
        return Ok(());
    };
    if retry_at.is_some() || !error.retryable {
        return Ok(());
    }
    // Unknown job: the outcome is answered `not_found` when it is recorded.
    let Some(job) = state.store.get_job(tenant, report.job_id).await? else {
        return Ok(());
    };
    let policy = match &job.backoff {
        Some(hint) => RetryPolicy::from_hint(hint, job.max_attempts),
        None => RetryPolicy::default(),
    };
    let attempt = u32::try_from(job.attempt).unwrap_or(1).max(1);
    let delay = policy.delay(attempt, rng.get_or_insert_with(SplitMix64::from_entropy));
    let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    *retry_at = Some(now.checked_add_signed(delay).unwrap_or(now));
    Ok(())
}

/// Which of the three outcomes a worker sent, for [`recorded_before`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    Complete,
    Fail,
    Release,
}

impl Sent {
    pub(crate) fn of(kind: &crate::store::OutcomeKind) -> Self {
        match kind {
            crate::store::OutcomeKind::Complete { .. } => Self::Complete,
            crate::store::OutcomeKind::Fail { .. } => Self::Fail,
            crate::store::OutcomeKind::Release { .. } => Self::Release,
        }
    }
}

/// For an outcome refused as not leased under `token`: the job, when that same outcome was
/// already recorded under that very token — a worker whose answer was lost (coordinator
/// restarted, connection cut) and that retries. Such a retry is answered as recorded instead of
/// `lease_lost`, so the worker never reports an error for work that was kept. Decided from the
/// job as stored: its token is still `token` (no newer lease) and its state is the one this
/// outcome leads to; a job that lease expiry ended is not the worker's failure.
pub(crate) async fn recorded_before(
    state: &AppState,
    tenant: &str,
    id: uuid::Uuid,
    token: i64,
    sent: Sent,
) -> ApiResult<Option<leasehold_proto::Job>> {
    use leasehold_proto::JobState;
    let Some(job) = state.store.get_job(tenant, id).await? else {
        return Ok(None);
    };
    if job.fencing_token != token {
        return Ok(None);
    }
    let expired = job
        .last_error
        .as_ref()
        .is_some_and(|e| e["class"] == "lease_expired");
    let same = match sent {
        Sent::Complete => job.state == JobState::Succeeded,
        Sent::Fail => {
            !expired
                && matches!(
                    job.state,
                    JobState::Queued | JobState::Dead | JobState::Cancelled
                )
        }
        Sent::Release => job.state == JobState::Queued,
    };
    Ok(same.then_some(job))
}
