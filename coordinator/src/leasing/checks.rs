//! What the coordinator checks or fills in on a worker's outcome before it is recorded, on every
//! path (HTTP complete and fail, batch outcomes, WebSocket outcomes): the artifacts a completion
//! names must be stored, and a retryable failure without `retry_at` gets the job's backoff.

use std::path::Path;

use chrono::{DateTime, Utc};
use leasehold_proto::OutcomeReport;
use leasehold_proto::retry::{RetryPolicy, SplitMix64};

use crate::error::{ApiError, ApiResult};
use crate::store::Store;

/// Refuses (422, naming it) a completion whose artifact its tenant never uploaded (or that was
/// collected): the manifest would promise bytes nobody can download. Another tenant's upload
/// does not count, and the answer is the same as for bytes nobody stored.
pub(crate) async fn artifacts_stored(
    store: &dyn Store,
    data_dir: &Path,
    tenant: &str,
    report: &OutcomeReport,
    now: DateTime<Utc>,
) -> ApiResult<()> {
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
        let stored = store.owns_artifact(tenant, &artifact.digest).await?
            && crate::retention::blobs::claim(data_dir, &artifact.digest, now).await;
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
    store: &dyn Store,
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
    let Some(job) = store.get_job(tenant, report.job_id).await? else {
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

/// What a refused outcome (not leased under `token`) turns out to be, from the job as stored.
pub(crate) enum Refused {
    /// That same outcome was already recorded under that very token: a worker whose answer was
    /// lost (coordinator restarted, connection cut) retries. Answered as recorded instead of
    /// `lease_lost`, so the worker never reports an error for work that was kept.
    Recorded(Box<leasehold_proto::Job>),
    /// The lease is gone; `deadline` is set when that is because the attempt's run time ran
    /// out (its deadline has passed: the outcome came too late).
    Lost { deadline: Option<DateTime<Utc>> },
}

/// Reads the job after an outcome under `token` was refused (rare: only then). It was recorded
/// before when its token is still `token` (no newer lease) and its state is the one this
/// outcome leads to, unless lease expiry or the attempt's timeout ended it (not the worker's
/// outcome).
pub(crate) async fn after_refusal(
    store: &dyn Store,
    tenant: &str,
    id: uuid::Uuid,
    token: i64,
    sent: Sent,
    now: DateTime<Utc>,
) -> ApiResult<Refused> {
    use leasehold_proto::JobState;
    let Some(job) = store.get_job(tenant, id).await? else {
        return Ok(Refused::Lost { deadline: None });
    };
    if job.fencing_token != token {
        return Ok(Refused::Lost { deadline: None });
    }
    let expired = job
        .last_error
        .as_ref()
        .is_some_and(|e| e["class"] == "lease_expired");
    let timed_out = crate::store::ended_by_timeout(&job, token);
    let same = !timed_out
        && match sent {
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
    if same {
        return Ok(Refused::Recorded(Box::new(job)));
    }
    Ok(Refused::Lost {
        deadline: job.deadline_at.filter(|d| *d <= now),
    })
}
