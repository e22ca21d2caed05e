//! Recording what workers report: one outcome (HTTP complete, fail, release) or a batch (HTTP
//! batch, WebSocket), each checked first ([`super::checks`]) and answered the same way on every
//! path, including an outcome retried after it was recorded.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leasehold_proto::{
    ErrorCode, FailureInfo, Job, JobState, OutcomeReport, OutcomeResult, OutcomeStatus,
};
use serde_json::json;
use uuid::Uuid;

use super::Leasing;
use super::checks::{self, Refused};
use crate::error::{ApiError, ApiResult, job_not_found};
use crate::store::{Finished, Outcome, OutcomeKind};
use crate::validate;

/// Checks a reported outcome and turns it into a store outcome.
pub(crate) fn outcome_from_report(report: OutcomeReport, now: DateTime<Utc>) -> ApiResult<Outcome> {
    let kind = match report.outcome {
        leasehold_proto::OutcomeKind::Complete {
            result,
            artifacts,
            manifest_digest,
        } => {
            validate::json_size("result", &result)?;
            let artifacts = validate::artifacts(artifacts)?;
            if let Some(claimed) = manifest_digest {
                let actual = validate::jcs_digest(&json!(artifacts));
                if claimed != actual {
                    return Err(ApiError::validation(
                        "manifest_digest",
                        format!("manifest_digest {claimed} does not match the manifest ({actual})"),
                    ));
                }
            }
            OutcomeKind::Complete { result, artifacts }
        }
        leasehold_proto::OutcomeKind::Fail { error, retry_at } => {
            check_failure(&error)?;
            OutcomeKind::Fail {
                error,
                retry_at: retry_at.unwrap_or(now),
            }
        }
        leasehold_proto::OutcomeKind::Release => OutcomeKind::Release { undelivered: false },
    };
    Ok(Outcome {
        job_id: report.job_id,
        fencing_token: report.fencing_token,
        kind,
    })
}

fn check_failure(error: &FailureInfo) -> ApiResult<()> {
    validate::label("error.class", &error.class)?;
    if error.message.len() > 64 * 1024 {
        return Err(ApiError::validation(
            "error.message",
            "error.message is over 64 KiB",
        ));
    }
    Ok(())
}

/// Counts a recorded outcome that left the job in `state` (and, for a failure, a scheduled
/// retry); true when the job is queued again, so that waiting claimers must be woken.
fn count_outcome(state: JobState, failed: bool) -> bool {
    metrics::counter!(crate::metrics::OUTCOMES, "state" => state.as_str()).increment(1);
    let requeued = state == JobState::Queued;
    if requeued && failed {
        metrics::counter!(crate::metrics::STEP_RETRIES).increment(1);
    }
    requeued
}

/// The refusal of an outcome whose lease is gone: 409 `lease_lost`, saying so when the attempt's
/// run time ran out (`deadline`) rather than its token going stale.
pub(crate) fn lease_lost(
    id: Uuid,
    token: i64,
    current: JobState,
    deadline: Option<chrono::DateTime<chrono::Utc>>,
) -> ApiError {
    let mut details = json!({"job_id": id, "fencing_token": token, "state": current});
    let message = match deadline {
        Some(at) => {
            details["reason"] = json!("timeout");
            details["deadline_at"] = json!(at);
            format!(
                "job {id}: the run time of the attempt under fencing token {token} was exceeded \
                 (its deadline was {}); nothing was changed",
                at.to_rfc3339()
            )
        }
        None => {
            format!("job {id} is not leased under fencing token {token}; nothing was changed")
        }
    };
    ApiError::new(ErrorCode::LeaseLost, message).with_details(details)
}

/// The class of a reported failure (`None` for other outcomes), for breakers and adaptive
/// rates.
fn failure_class(outcome: &Outcome) -> Option<String> {
    match &outcome.kind {
        OutcomeKind::Fail { error, .. } => Some(error.class.clone()),
        _ => None,
    }
}

/// Outcomes about to be recorded, as [`Leasing::settle`] answers and counts them.
pub(super) struct Asked {
    /// Each outcome's job, token and kind, in order.
    sent: Vec<(Uuid, i64, checks::Sent)>,
    /// Each outcome's failure class, when the tenant's limits are fed (else empty).
    classes: Vec<Option<String>>,
}

impl Leasing {
    /// Records many outcomes in one transaction (HTTP batch or WebSocket); a bad outcome rejects
    /// the whole batch before anything is written.
    pub(crate) async fn finish_many(
        &self,
        tenant: &str,
        reports: Vec<OutcomeReport>,
    ) -> ApiResult<Vec<OutcomeResult>> {
        let now = self.clock.now();
        let tenants = vec![tenant.to_owned(); reports.len()];
        let outcomes = self.prepare(now, &tenants, reports).await?;
        self.record(now, tenant, outcomes).await
    }

    /// Records the outcomes of a worker pool shared by several tenants (`*`): each for its
    /// job's own tenant, in one transaction per tenant; a bad outcome rejects the whole batch
    /// before anything is written. An outcome of a job that does not exist is answered
    /// `not_found`, as for `caller`'s own.
    pub(crate) async fn finish_each(
        &self,
        caller: &str,
        reports: Vec<OutcomeReport>,
    ) -> ApiResult<Vec<OutcomeResult>> {
        let now = self.clock.now();
        let ids: Vec<Uuid> = reports.iter().map(|r| r.job_id).collect();
        let tenants = self.tenants_of(caller, &ids, "outcomes").await?;
        let outcomes = self.prepare(now, &tenants, reports).await?;
        let mut groups: BTreeMap<&str, (Vec<usize>, Vec<Outcome>)> = BTreeMap::new();
        for (i, (outcome, tenant)) in outcomes.into_iter().zip(&tenants).enumerate() {
            let group = groups.entry(tenant).or_default();
            group.0.push(i);
            group.1.push(outcome);
        }
        let mut results: Vec<Option<OutcomeResult>> = vec![None; ids.len()];
        for (tenant, (at, outcomes)) in groups {
            let recorded = self.record(now, tenant, outcomes).await?;
            for (i, result) in at.into_iter().zip(recorded) {
                results[i] = Some(result);
            }
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// The tenant of each of `ids` (`caller`'s for one that does not exist), for a shared
    /// pool's heartbeats and outcomes.
    pub(crate) async fn tenants_of(
        &self,
        caller: &str,
        ids: &[Uuid],
        field: &str,
    ) -> ApiResult<Vec<String>> {
        if ids.len() > validate::MAX_BATCH {
            return Err(ApiError::validation(field, "at most 1000 per call"));
        }
        let found = self.store.job_tenants(ids).await?;
        Ok(ids
            .iter()
            .map(|id| found.get(id).cloned().unwrap_or_else(|| caller.to_owned()))
            .collect())
    }

    /// Checks outcomes (the `i`th acts for `tenants[i]`) and fills in what the store needs.
    pub(super) async fn prepare(
        &self,
        now: DateTime<Utc>,
        tenants: &[String],
        mut reports: Vec<OutcomeReport>,
    ) -> ApiResult<Vec<Outcome>> {
        if reports.len() > validate::MAX_BATCH {
            return Err(ApiError::validation(
                "outcomes",
                "at most 1000 outcomes per call",
            ));
        }
        let mut rng = None;
        for (i, (report, tenant)) in reports.iter_mut().zip(tenants).enumerate() {
            let at = |e: ApiError| e.prefix_field(&format!("outcomes[{i}]"));
            checks::artifacts_stored(&*self.store, &self.data_dir, tenant, report, now)
                .await
                .map_err(at)?;
            checks::default_retry_at(&*self.store, tenant, report, now, &mut rng).await?;
        }
        reports
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                outcome_from_report(r, now).map_err(|e| e.prefix_field(&format!("outcomes[{i}]")))
            })
            .collect()
    }

    /// Records checked outcomes of one tenant in one transaction, then wakes claimers and feeds
    /// the tenant's limits.
    pub(super) async fn record(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
    ) -> ApiResult<Vec<OutcomeResult>> {
        if outcomes.is_empty() {
            return Ok(vec![]);
        }
        let asked = self.asked(tenant, &outcomes).await;
        let finished = self.store.finish_states(now, tenant, outcomes).await?;
        self.settle(now, tenant, asked, finished).await
    }

    /// What [`Leasing::settle`] needs to know of outcomes about to be recorded.
    pub(super) async fn asked(&self, tenant: &str, outcomes: &[Outcome]) -> Asked {
        let sent = outcomes
            .iter()
            .map(|o| (o.job_id, o.fencing_token, checks::Sent::of(&o.kind)))
            .collect();
        let classes = if self.outcomes_feed_limits(tenant).await {
            outcomes.iter().map(failure_class).collect()
        } else {
            Vec::new()
        };
        Asked { sent, classes }
    }

    /// After the store recorded outcomes of one tenant (`finished`, in the order `asked`):
    /// the answers, and what follows the commit — wake-ups, slots freed, limits fed.
    pub(super) async fn settle(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        asked: Asked,
        finished: Vec<Finished<JobState>>,
    ) -> ApiResult<Vec<OutcomeResult>> {
        let Asked {
            sent: asked,
            classes,
        } = asked;
        // What breakers and adaptive rates count: completions and failures recorded now.
        let fed: Vec<(Uuid, Option<String>)> = asked
            .iter()
            .zip(&finished)
            .zip(classes)
            .filter_map(|(((job_id, _, sent), f), class)| match (f, sent) {
                (Finished::Ok(_), checks::Sent::Complete) => Some((*job_id, None)),
                (Finished::Ok(_), checks::Sent::Fail) => Some((*job_id, class)),
                _ => None,
            })
            .collect();
        // A refused outcome may be the retry of one recorded already (rare: read only then).
        let mut recorded_before = vec![None; asked.len()];
        for (i, ((job_id, token, sent), f)) in asked.iter().zip(&finished).enumerate() {
            if let Finished::LeaseLost(_) = f
                && let Refused::Recorded(job) =
                    checks::after_refusal(&*self.store, tenant, *job_id, *token, *sent, now).await?
            {
                recorded_before[i] = Some(job.state);
            }
        }
        let mut requeued = false;
        let mut ended = false;
        let results = asked
            .into_iter()
            .map(|(job_id, _, sent)| (job_id, sent == checks::Sent::Fail))
            .zip(finished)
            .zip(recorded_before)
            .map(|(((job_id, failed), f), before)| match f {
                Finished::LeaseLost(_) if let Some(job_state) = before => OutcomeResult {
                    job_id,
                    status: OutcomeStatus::Ok,
                    state: Some(job_state),
                },
                Finished::Ok(job_state) => {
                    ended = true;
                    requeued |= count_outcome(job_state, failed);
                    OutcomeResult {
                        job_id,
                        status: OutcomeStatus::Ok,
                        state: Some(job_state),
                    }
                }
                Finished::LeaseLost(current) => OutcomeResult {
                    job_id,
                    status: OutcomeStatus::LeaseLost,
                    state: Some(current),
                },
                Finished::NotFound => OutcomeResult {
                    job_id,
                    status: OutcomeStatus::NotFound,
                    state: None,
                },
            })
            .collect();
        self.after_outcomes(tenant, requeued);
        if ended {
            self.slots_freed(tenant).await;
        }
        self.feed_limits(tenant, fed).await;
        Ok(results)
    }

    /// Records one outcome: the job as it now is, or the refusal (`lease_lost`, `not_found`).
    pub(crate) async fn finish_one(&self, tenant: &str, outcome: Outcome) -> ApiResult<Job> {
        let (id, token) = (outcome.job_id, outcome.fencing_token);
        let failed = matches!(outcome.kind, OutcomeKind::Fail { .. });
        let sent = checks::Sent::of(&outcome.kind);
        let class = failure_class(&outcome);
        let now = self.clock.now();
        let result = match &self.groups {
            Some(groups) => Some(groups.finish(now, tenant, outcome).await?),
            None => self
                .store
                .finish(now, tenant, vec![outcome])
                .await?
                .into_iter()
                .next(),
        };
        match result {
            Some(Finished::Ok(job)) => {
                self.after_outcomes(tenant, count_outcome(job.state, failed));
                self.slots_freed(tenant).await;
                let fed = match sent {
                    checks::Sent::Complete => Some((id, None)),
                    checks::Sent::Fail => Some((id, class)),
                    checks::Sent::Release => None,
                };
                if let Some(fed) = fed
                    && self.outcomes_feed_limits(tenant).await
                {
                    self.feed_limits(tenant, vec![fed]).await;
                }
                Ok(*job)
            }
            Some(Finished::LeaseLost(current)) => {
                match checks::after_refusal(&*self.store, tenant, id, token, sent, now).await? {
                    Refused::Recorded(job) => Ok(*job),
                    Refused::Lost { deadline } => Err(lease_lost(id, token, current, deadline)),
                }
            }
            Some(Finished::NotFound) | None => Err(job_not_found(id)),
        }
    }
}
