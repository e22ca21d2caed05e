//! The worker protocol over HTTP: claim (with long-poll), heartbeat, complete, fail, release.

use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use leasehold_proto::{
    ClaimRequest, ClaimResponse, CompleteRequest, ErrorCode, ErrorEnvelope, FailRequest,
    FailureInfo, HeartbeatItem, HeartbeatRequest, HeartbeatResponse, HeartbeatResult, Job,
    JobState, Lease, OutcomeReport, OutcomeResult, OutcomeStatus, OutcomesRequest,
    OutcomesResponse, ReleaseRequest,
};
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use super::AppState;
use super::extract::{ApiJson, JobId, Tenant, tenant_header_given};
use super::jobs::job_not_found;
use super::outcome_checks::{self, Refused};
use crate::error::{ApiError, ApiResult};
use crate::store::{ClaimParams, Claimed, Finished, Outcome, OutcomeKind};
use crate::validate;

/// Longest long-poll.
pub(crate) const MAX_WAIT_MS: u64 = 60_000;

/// Claim up to `max_jobs` leases, waiting up to `wait_ms` for work to become ready.
#[utoipa::path(post, path = "/v1/leases", tag = "leases", request_body = ClaimRequest,
    responses((status = 200, body = ClaimResponse), (status = 400, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn claim(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> ApiResult<ApiJson<ClaimResponse>> {
    let tenant = tenant.merge(req.tenant.as_deref(), tenant_header_given(&headers))?;
    let max_jobs = validate::range("max_jobs", req.max_jobs, 1, validate::MAX_BATCH as u32)?;
    let wait_ms = validate::range("wait_ms", req.wait_ms, 0, MAX_WAIT_MS)?;
    let params = claim_params(
        tenant,
        req.worker_id,
        req.worker_version,
        req.queues,
        max_jobs,
        req.lease_ttl_ms,
    )?;
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let mut shutdown = state.shutdown.clone();
    loop {
        // Subscribe before querying: a wake-up between the query and the wait is kept.
        let mut wake = state.ready.subscribe();
        let Claimed {
            leases,
            expired,
            timed_out,
        } = state.store.claim(state.clock.now(), &params).await?;
        metrics::counter!(crate::metrics::LEASE_EXPIRIES).increment(expired);
        metrics::counter!(crate::metrics::TIMEOUTS).increment(timed_out);
        let now = Instant::now();
        if !leases.is_empty() || now >= deadline || *shutdown.borrow() {
            let result = if leases.is_empty() { "empty" } else { "leased" };
            metrics::counter!(crate::metrics::CLAIMS, "result" => result).increment(1);
            metrics::counter!(crate::metrics::LEASES_GRANTED).increment(leases.len() as u64);
            return Ok(ApiJson(ClaimResponse { leases }));
        }
        // Sleep until something is due (a future run_at or a lease deadline), a wake-up, the
        // long-poll deadline or shutdown, whichever is first.
        let mut until = deadline;
        if let Some(at) = state
            .store
            .next_ready_at(&params.tenant, &params.queues)
            .await?
        {
            let in_ms = (at - state.clock.now()).num_milliseconds().max(0) as u64;
            until = until.min(now + Duration::from_millis(in_ms + 1));
        }
        // Parked, an enqueue may lease its job to this claimer in its own transaction and
        // answer here directly (crate::handoff); any other wake-up means query again.
        let mut parking = state.handoffs.park(&params);
        let mut handed = None;
        tokio::select! {
            lease = parking.recv() => handed = lease,
            _ = wake.changed() => {}
            _ = tokio::time::sleep_until(until) => {}
            _ = shutdown.changed() => {}
        }
        // A lease handed off while another wake-up won the race is answered, not released.
        if let Some(lease) = handed.or_else(|| parking.try_recv()) {
            return Ok(handed_off(lease));
        }
    }
}

/// The long poll's answer for a lease an enqueue handed off.
fn handed_off(lease: Lease) -> ApiJson<ClaimResponse> {
    metrics::counter!(crate::metrics::CLAIMS, "result" => "leased").increment(1);
    metrics::counter!(crate::metrics::LEASES_GRANTED).increment(1);
    ApiJson(ClaimResponse {
        leases: vec![lease],
    })
}

/// Gives back leases that were granted but never reached their worker (its socket or long
/// poll went away first), so their jobs run again now instead of after the lease expires.
pub(crate) async fn release_undelivered(state: &AppState, tenant: &str, held: Vec<(Uuid, i64)>) {
    let outcomes = held
        .into_iter()
        .map(|(job_id, fencing_token)| Outcome {
            job_id,
            fencing_token,
            kind: OutcomeKind::Release { undelivered: true },
        })
        .collect();
    if let Err(err) = state
        .store
        .finish_states(state.clock.now(), tenant, outcomes)
        .await
    {
        tracing::warn!(%err, "could not release undelivered leases; they will expire");
    }
    state.ready.notify();
}

/// Validates what a worker asks for (HTTP claim or WebSocket hello) into claim parameters.
pub(crate) fn claim_params(
    tenant: String,
    worker_id: String,
    worker_version: Option<String>,
    mut queues: Vec<String>,
    max_jobs: u32,
    lease_ttl_ms: u64,
) -> ApiResult<ClaimParams> {
    validate::label("worker_id", &worker_id)?;
    validate::opt_label("worker_version", &worker_version)?;
    if queues.is_empty() || queues.len() > 100 {
        return Err(ApiError::validation("queues", "name 1 to 100 queues"));
    }
    for q in &queues {
        validate::name("queues", q)?;
    }
    let lease_ttl_ms = validate::range("lease_ttl_ms", lease_ttl_ms, 1000, 86_400_000)?;
    queues.sort();
    queues.dedup();
    Ok(ClaimParams {
        tenant,
        worker_id,
        worker_version,
        queues,
        max_jobs,
        lease_ttl_ms,
    })
}

/// Heartbeats for many leases (HTTP or WebSocket): validated, then extended in one call.
pub(crate) async fn heartbeat_many(
    state: &AppState,
    tenant: &str,
    leases: &[HeartbeatItem],
) -> ApiResult<Vec<HeartbeatResult>> {
    if leases.len() > validate::MAX_BATCH {
        return Err(ApiError::validation(
            "leases",
            "at most 1000 leases per heartbeat",
        ));
    }
    for item in leases {
        if let Some(p) = &item.progress {
            validate::json_size("progress", p)?;
        }
        if let Some(c) = &item.checkpoint {
            validate::json_size("checkpoint", c)?;
        }
    }
    if leases.is_empty() {
        return Ok(vec![]);
    }
    Ok(state
        .store
        .heartbeat(state.clock.now(), tenant, leases)
        .await?)
}

/// Extend every lease of a worker at once.
#[utoipa::path(post, path = "/v1/leases/heartbeat", tag = "leases", request_body = HeartbeatRequest,
    responses((status = 200, body = HeartbeatResponse), (status = 422, body = ErrorEnvelope),
              (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> ApiResult<ApiJson<HeartbeatResponse>> {
    let tenant = tenant.merge(req.tenant.as_deref(), tenant_header_given(&headers))?;
    validate::label("worker_id", &req.worker_id)?;
    if req.leases.len() > validate::MAX_BATCH {
        return Err(ApiError::validation(
            "leases",
            "at most 1000 leases per heartbeat",
        ));
    }
    for item in &req.leases {
        if let Some(p) = &item.progress {
            validate::json_size("progress", p)?;
        }
        if let Some(c) = &item.checkpoint {
            validate::json_size("checkpoint", c)?;
        }
    }
    if req.leases.is_empty() {
        return Ok(ApiJson(HeartbeatResponse { leases: vec![] }));
    }
    let leases = state
        .store
        .heartbeat(state.clock.now(), &tenant, &req.leases)
        .await?;
    Ok(ApiJson(HeartbeatResponse { leases }))
}

/// Checks a reported outcome and turns it into a store outcome.
pub(crate) fn outcome_from_report(
    report: OutcomeReport,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<Outcome> {
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

/// Records many outcomes in one transaction (HTTP batch or WebSocket); a bad outcome rejects
/// the whole batch before anything is written.
pub(crate) async fn finish_many(
    state: &AppState,
    tenant: &str,
    reports: Vec<OutcomeReport>,
) -> ApiResult<Vec<OutcomeResult>> {
    if reports.len() > validate::MAX_BATCH {
        return Err(ApiError::validation(
            "outcomes",
            "at most 1000 outcomes per call",
        ));
    }
    let now = state.clock.now();
    let mut reports = reports;
    let mut rng = None;
    for (i, report) in reports.iter_mut().enumerate() {
        let at = |e: ApiError| e.prefix_field(&format!("outcomes[{i}]"));
        outcome_checks::artifacts_stored(state, report)
            .await
            .map_err(at)?;
        outcome_checks::default_retry_at(state, tenant, report, now, &mut rng).await?;
    }
    let outcomes = reports
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            outcome_from_report(r, now).map_err(|e| e.prefix_field(&format!("outcomes[{i}]")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    if outcomes.is_empty() {
        return Ok(vec![]);
    }
    let asked: Vec<_> = outcomes
        .iter()
        .map(|o| (o.job_id, o.fencing_token, outcome_checks::Sent::of(&o.kind)))
        .collect();
    let finished = state.store.finish_states(now, tenant, outcomes).await?;
    // A refused outcome may be the retry of one recorded already (rare: read only then).
    let mut recorded_before = vec![None; asked.len()];
    for (i, ((job_id, token, sent), f)) in asked.iter().zip(&finished).enumerate() {
        if let Finished::LeaseLost(_) = f
            && let Refused::Recorded(job) =
                outcome_checks::after_refusal(state, tenant, *job_id, *token, *sent, now).await?
        {
            recorded_before[i] = Some(job.state);
        }
    }
    let mut requeued = false;
    let results = asked
        .into_iter()
        .map(|(job_id, _, sent)| (job_id, sent == outcome_checks::Sent::Fail))
        .zip(finished)
        .zip(recorded_before)
        .map(|(((job_id, failed), f), before)| match f {
            Finished::LeaseLost(_) if let Some(job_state) = before => OutcomeResult {
                job_id,
                status: OutcomeStatus::Ok,
                state: Some(job_state),
            },
            Finished::Ok(job_state) => {
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
    if requeued {
        state.ready.notify();
    }
    Ok(results)
}

/// Record many outcomes at once (the SDK flushes completions in groups).
#[utoipa::path(post, path = "/v1/leases/outcomes", tag = "leases", request_body = OutcomesRequest,
    responses((status = 200, body = OutcomesResponse), (status = 422, body = ErrorEnvelope),
              (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn outcomes(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    ApiJson(req): ApiJson<OutcomesRequest>,
) -> ApiResult<ApiJson<OutcomesResponse>> {
    let tenant = tenant.merge(req.tenant.as_deref(), tenant_header_given(&headers))?;
    let results = finish_many(&state, &tenant, req.outcomes).await?;
    Ok(ApiJson(OutcomesResponse { results }))
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

/// Records one outcome and maps the fenced answer to HTTP.
async fn finish_one(state: &AppState, tenant: &str, outcome: Outcome) -> ApiResult<ApiJson<Job>> {
    let (id, token) = (outcome.job_id, outcome.fencing_token);
    let failed = matches!(outcome.kind, OutcomeKind::Fail { .. });
    let sent = outcome_checks::Sent::of(&outcome.kind);
    let now = state.clock.now();
    let result = state
        .store
        .finish(now, tenant, vec![outcome])
        .await?
        .into_iter()
        .next();
    match result {
        Some(Finished::Ok(job)) => {
            if count_outcome(job.state, failed) {
                state.ready.notify();
            }
            Ok(ApiJson(*job))
        }
        Some(Finished::LeaseLost(current)) => {
            match outcome_checks::after_refusal(state, tenant, id, token, sent, now).await? {
                Refused::Recorded(job) => Ok(ApiJson(*job)),
                Refused::Lost { deadline } => Err(lease_lost(id, token, current, deadline)),
            }
        }
        Some(Finished::NotFound) | None => Err(job_not_found(id)),
    }
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

/// Record success.
#[utoipa::path(post, path = "/v1/jobs/{id}/complete", tag = "leases",
    params(("id" = uuid::Uuid, Path)), request_body = CompleteRequest,
    responses((status = 200, body = Job), (status = 404, body = ErrorEnvelope),
              (status = 409, description = "lease_lost: stale token, nothing changed", body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn complete(
    State(state): State<AppState>,
    tenant: Tenant,
    JobId(id): JobId,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> ApiResult<ApiJson<Job>> {
    let report = OutcomeReport {
        job_id: id,
        fencing_token: req.fencing_token,
        outcome: leasehold_proto::OutcomeKind::Complete {
            result: req.result,
            artifacts: req.artifacts,
            manifest_digest: None,
        },
    };
    outcome_checks::artifacts_stored(&state, &report).await?;
    let outcome = outcome_from_report(report, state.clock.now())?;
    finish_one(&state, &tenant.0, outcome).await
}

/// Record a failure; retryable failures with attempts left go back to `queued` at `retry_at`.
#[utoipa::path(post, path = "/v1/jobs/{id}/fail", tag = "leases",
    params(("id" = uuid::Uuid, Path)), request_body = FailRequest,
    responses((status = 200, body = Job), (status = 404, body = ErrorEnvelope),
              (status = 409, description = "lease_lost", body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn fail(
    State(state): State<AppState>,
    tenant: Tenant,
    JobId(id): JobId,
    ApiJson(req): ApiJson<FailRequest>,
) -> ApiResult<ApiJson<Job>> {
    let mut report = OutcomeReport {
        job_id: id,
        fencing_token: req.fencing_token,
        outcome: leasehold_proto::OutcomeKind::Fail {
            error: req.error,
            retry_at: req.retry_at,
        },
    };
    let now = state.clock.now();
    outcome_checks::default_retry_at(&state, &tenant.0, &mut report, now, &mut None).await?;
    let outcome = outcome_from_report(report, now)?;
    finish_one(&state, &tenant.0, outcome).await
}

/// Give a lease back unrun (graceful drain): no attempt is spent.
#[utoipa::path(post, path = "/v1/jobs/{id}/release", tag = "leases",
    params(("id" = uuid::Uuid, Path)), request_body = ReleaseRequest,
    responses((status = 200, body = Job), (status = 404, body = ErrorEnvelope),
              (status = 409, description = "lease_lost", body = ErrorEnvelope)))]
pub(crate) async fn release(
    State(state): State<AppState>,
    tenant: Tenant,
    JobId(id): JobId,
    ApiJson(req): ApiJson<ReleaseRequest>,
) -> ApiResult<ApiJson<Job>> {
    let outcome = Outcome {
        job_id: id,
        fencing_token: req.fencing_token,
        kind: OutcomeKind::Release { undelivered: false },
    };
    finish_one(&state, &tenant.0, outcome).await
}
