//! `/v1/jobs`: enqueue, inspect, cancel, retry.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use leasehold_proto::{
    EnqueueBatchRequest, EnqueueBatchResponse, EnqueuedJob, ErrorCode, ErrorEnvelope, Job, JobList,
    JobState, NewJob,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::cursor;
use super::extract::{
    ApiJson, JobId, OptionalJson, QueryParams, Tenant, from_value, tenant_header_given,
};
use crate::error::{ApiError, ApiResult, job_not_found};
use crate::store::JobFilter;
use crate::store::{CancelJob, RetryJob};
use crate::validate;

/// `/v1/jobs`: enqueue, list, read, cancel, retry.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/jobs", routing::post(enqueue).get(list))
        .route("/v1/jobs/{id}", routing::get(get))
        .route("/v1/jobs/{id}/cancel", routing::post(cancel))
        .route("/v1/jobs/{id}/retry", routing::post(retry))
}

/// Largest page of `GET /v1/jobs`.
pub(crate) const MAX_LIST_LIMIT: u32 = 500;
/// Default page of `GET /v1/jobs`.
pub(crate) const DEFAULT_LIST_LIMIT: u32 = 50;

/// What `POST /v1/jobs` takes, as the document says it: one job or a batch.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)] // A schema only: the handler reads the body itself.
pub(crate) enum EnqueueRequest {
    /// One job.
    One(NewJob),
    /// `{"jobs": [...]}`.
    Batch(leasehold_proto::EnqueueBatchRequest),
}

/// What `POST /v1/jobs` answers: the job for one, the batch's report for a batch.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)] // A schema only: never built.
pub(crate) enum EnqueueAnswer {
    /// The job (created, or the one an idempotent replay names).
    One(Job),
    /// Each job of a batch, created or replayed.
    Batch(EnqueueBatchResponse),
}

/// Enqueue one job, or a batch as `{"jobs": [...]}` (stored whole or not at all).
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body(content = EnqueueRequest, description = "one job, or `{\"jobs\": [...]}`"),
    params(("Idempotency-Key" = Option<String>, Header, description = "idempotency key for a single job")),
    responses(
        (status = 201, description = "created: the job, or the batch's report when any job of it is new", body = EnqueueAnswer),
        (status = 200, description = "idempotent replay (header `Idempotent-Replayed: true`): the job; or a batch whose jobs all existed", body = EnqueueAnswer),
        (status = 400, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope),
        (status = 429, description = "nothing stored: over the rate limit (`rate_limited`), over the tenant's quota (`quota_exceeded`), or the coordinator is shedding load (`overloaded`); see `Retry-After`", body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn enqueue(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Response> {
    let now = state.clock.now();
    let header_key = match headers.get(leasehold_proto::IDEMPOTENCY_KEY_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::validation(
                        "Idempotency-Key",
                        "the Idempotency-Key header must be ASCII",
                    )
                })?
                .to_owned(),
        ),
    };
    let given = tenant_header_given(&headers);
    let batch = body.as_object().is_some_and(|o| o.contains_key("jobs"));
    if !body.is_object() {
        return Err(ApiError::validation(
            "body",
            "the body must be a JSON object",
        ));
    }
    let rows = if batch {
        if header_key.is_some() {
            return Err(ApiError::validation(
                "Idempotency-Key",
                "a batch takes an idempotency_key per job, not the Idempotency-Key header",
            ));
        }
        let req: EnqueueBatchRequest = from_value(body)?;
        if req.jobs.is_empty() || req.jobs.len() > validate::MAX_BATCH {
            return Err(ApiError::validation("jobs", "a batch holds 1 to 1000 jobs"));
        }
        req.jobs
            .into_iter()
            .enumerate()
            .map(|(i, job)| {
                let t = tenant.merge(job.tenant.as_deref(), given)?;
                validate::new_job(job, &t, None, now)
                    .map_err(|e| e.prefix_field(&format!("jobs[{i}]")))
            })
            .collect::<ApiResult<Vec<_>>>()?
    } else {
        let job: NewJob = from_value(body)?;
        let t = tenant.merge(job.tenant.as_deref(), given)?;
        vec![validate::new_job(job, &t, header_key, now)?]
    };
    // Shed before the store is asked anything (an approximate, coordinator-wide mark).
    state.backpressure.admit(&*state.store).await?;
    let enqueued = state.leasing().enqueue(now, rows).await.map_err(|err| {
        match err.details.get("position").and_then(Value::as_u64) {
            // Name the batch's job whose key conflicts.
            Some(i) if batch && err.code == ErrorCode::IdempotencyConflict => {
                err.prefix_field(&format!("jobs[{i}]"))
            }
            _ => crate::admission::counted(err),
        }
    })?;
    let created = enqueued.iter().filter(|e| !e.replayed).count();
    metrics::counter!(crate::metrics::JOBS_ENQUEUED).increment(created as u64);
    if batch {
        let status = if created > 0 {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let jobs = enqueued
            .into_iter()
            .map(|e| EnqueuedJob {
                job: e.job,
                replayed: e.replayed,
            })
            .collect();
        return Ok((status, ApiJson(EnqueueBatchResponse { jobs })).into_response());
    }
    let Some(one) = enqueued.into_iter().next() else {
        return Err(ApiError::new(
            ErrorCode::Internal,
            "enqueue returned nothing",
        ));
    };
    if one.replayed {
        let mut response = (StatusCode::OK, ApiJson(one.job)).into_response();
        response.headers_mut().insert(
            leasehold_proto::IDEMPOTENT_REPLAYED_HEADER,
            HeaderValue::from_static("true"),
        );
        return Ok(response);
    }
    let location = HeaderValue::from_str(&format!("/v1/jobs/{}", one.job.id))
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        ApiJson(one.job),
    )
        .into_response())
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "job id")),
    responses((status = 200, body = Job), (status = 400, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    JobId(id): JobId,
) -> ApiResult<ApiJson<Job>> {
    state
        .store
        .get_job(&tenant.0, id)
        .await?
        .map(ApiJson)
        .ok_or_else(|| job_not_found(id))
}

/// The tenant's jobs, newest first, filtered by queue, state, kind, run, correlation id and
/// enqueue time; cursor pages.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    params(("queue" = Option<String>, Query), ("state" = Option<JobState>, Query),
           ("kind" = Option<String>, Query),
           ("run_id" = Option<uuid::Uuid>, Query, description = "only the jobs of this run"),
           ("correlation_id" = Option<String>, Query, description = "only jobs with this correlation id"),
           ("since" = Option<String>, Query, description = "enqueued at or after: an RFC 3339 time or a span back from now (`15m`, `24h`, `7d`)"),
           ("until" = Option<String>, Query, description = "enqueued before: an RFC 3339 time or a span back from now"),
           ("limit" = Option<u32>, Query, description = "1..=500, default 50"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, body = JobList), (status = 400, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    query: QueryParams,
) -> ApiResult<ApiJson<JobList>> {
    query.only(&[
        "queue",
        "state",
        "kind",
        "run_id",
        "correlation_id",
        "since",
        "until",
        "limit",
        "cursor",
    ])?;
    let limit = query.parse::<u32>("limit")?.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 {
        return Err(ApiError::validation("limit", "limit must be at least 1"));
    }
    let state_filter = query
        .get("state")
        .map(|s| {
            JobState::parse(s).ok_or_else(|| {
                ApiError::validation(
                    "state",
                    "state must be one of blocked, queued, leased, succeeded, dead, cancelled",
                )
            })
        })
        .transpose()?;
    let correlation_id = query.get("correlation_id");
    validate::job_filter(query.get("queue"), query.get("kind"), correlation_id)?;
    let now = state.clock.now();
    let filter = JobFilter {
        tenant: tenant.0,
        queue: query.get("queue").map(str::to_owned),
        state: state_filter,
        kind: query.get("kind").map(str::to_owned),
        run_id: query.parse::<uuid::Uuid>("run_id")?,
        correlation_id: correlation_id.map(str::to_owned),
        since: query.time("since", now)?,
        until: query.time("until", now)?,
        before: query.get("cursor").map(cursor::decode).transpose()?,
        limit: limit.min(MAX_LIST_LIMIT) + 1,
    };
    let mut jobs = state.store.list_jobs(&filter).await?;
    let page = limit.min(MAX_LIST_LIMIT) as usize;
    let next_cursor = if jobs.len() > page {
        jobs.truncate(page);
        jobs.last().map(|j| cursor::encode(j.id))
    } else {
        None
    };
    Ok(ApiJson(JobList { jobs, next_cursor }))
}

/// Optional body of a cancel.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelRequest {
    /// Why; recorded on the job and its event.
    #[serde(default)]
    reason: Option<String>,
}

/// Cancel a job: queued or blocked ones at once, leased ones on their next heartbeat.
/// Cancelling a cancelled job is not an error.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = uuid::Uuid, Path)), request_body(content = Option<CancelRequest>),
    responses((status = 200, body = Job), (status = 404, body = ErrorEnvelope),
              (status = 409, description = "already succeeded or dead", body = ErrorEnvelope)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    tenant: Tenant,
    JobId(id): JobId,
    OptionalJson(body): OptionalJson<CancelRequest>,
) -> ApiResult<ApiJson<Job>> {
    let reason = body
        .reason
        .unwrap_or_else(|| "cancelled by request".to_owned());
    validate::label("reason", &reason)?;
    let transition = state
        .store
        .cancel_job(CancelJob {
            now: state.clock.now(),
            tenant: tenant.0,
            id,
            reason: reason.to_owned(),
        })
        .await?
        .ok_or_else(|| job_not_found(id))?;
    if matches!(transition.job.state, JobState::Succeeded | JobState::Dead) {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "job {id} already ended {}; nothing to cancel",
                transition.job.state
            ),
        )
        .with_details(json!({"job_id": id, "state": transition.job.state})));
    }
    Ok(ApiJson(transition.job))
}

/// Send a dead (or cancelled) job back to `queued` with a fresh attempt budget; a job of a run
/// whose parents have not all succeeded goes back to `blocked`, and its descendants cancelled
/// `upstream_failed` are blocked again (docs/ARCHITECTURE.md, "Replay and dependency order").
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorEnvelope),
              (status = 409, description = "not dead or cancelled", body = ErrorEnvelope)))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    tenant: Tenant,
    JobId(id): JobId,
) -> ApiResult<ApiJson<Job>> {
    let transition = state
        .store
        .retry_job(RetryJob {
            now: state.clock.now(),
            tenant: tenant.0,
            id,
        })
        .await?
        .ok_or_else(|| job_not_found(id))?;
    if !transition.changed {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "job {id} is {}; only dead or cancelled jobs can be retried",
                transition.job.state
            ),
        )
        .with_details(json!({"job_id": id, "state": transition.job.state})));
    }
    state.ready.notify();
    Ok(ApiJson(transition.job))
}
