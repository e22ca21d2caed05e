//! The worker protocol over HTTP: claim (with long-poll), heartbeat, complete, fail, release,
//! batch outcomes. What they mean is `crate::leasing`'s; these handlers decode and encode.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing;
use leasehold_proto::{
    ClaimRequest, ClaimResponse, CompleteRequest, EACH_JOBS_TENANT, ErrorCode, ErrorEnvelope,
    FailRequest, HeartbeatRequest, HeartbeatResponse, Job, OutcomeReport, OutcomesRequest,
    OutcomesResponse, ReleaseRequest,
};

use super::AppState;
use super::extract::{ApiJson, JobId, Tenant, tenant_header_given};
use crate::error::{ApiError, ApiResult};
use crate::leasing::outcomes::outcome_from_report;
use crate::leasing::{self, MAX_WAIT_MS, checks};
use crate::presence::Presence;
use crate::store::{Outcome, OutcomeKind, WorkerSeen};
use crate::validate;

/// The worker protocol over HTTP: claims, heartbeats and outcomes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/leases", routing::post(claim))
        .route("/v1/leases/heartbeat", routing::post(heartbeat))
        .route("/v1/leases/outcomes", routing::post(outcomes))
        .route("/v1/jobs/{id}/complete", routing::post(complete))
        .route("/v1/jobs/{id}/fail", routing::post(fail))
        .route("/v1/jobs/{id}/release", routing::post(release))
}

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
    let acts_for_all = tenant.acts_for_all();
    let named_tenant = req.tenant.is_some();
    let tenant = tenant.merge(req.tenant.as_deref(), tenant_header_given(&headers))?;
    let max_jobs = validate::range("max_jobs", req.max_jobs, 1, validate::MAX_BATCH as u32)?;
    let wait_ms = validate::range("wait_ms", req.wait_ms, 0, MAX_WAIT_MS)?;
    let params = leasing::claim_params(
        tenant,
        req.worker_id,
        req.worker_version,
        req.queues,
        max_jobs,
        req.lease_ttl_ms,
    )?;
    let params = leasing::pooled(
        params,
        req.tenants,
        req.tenant_weights,
        acts_for_all,
        named_tenant,
    )?;
    if state.presence.due(&params.tenant, &params.worker_id, false) {
        let seen = WorkerSeen {
            tenant: params.tenant.clone(),
            worker_id: params.worker_id.clone(),
            transport: Some("http"),
            queues: Some(params.queues.clone()),
            version: params.worker_version.clone(),
            heartbeat: false,
            closed: false,
        };
        Presence::write(&state.store, state.clock.now(), seen);
    }
    let granted = state
        .leasing()
        .claim_or_wait(&params, Duration::from_millis(wait_ms))
        .await?;
    Ok(ApiJson(ClaimResponse {
        throttled: granted.throttled(state.clock.now()),
        leases: granted.leases,
    }))
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
    validate::label("worker_id", &req.worker_id)?;
    let each = each_jobs_tenant(&tenant, req.tenant.as_deref())?;
    let acting = match each {
        true => tenant.0.clone(),
        false => tenant.merge(req.tenant.as_deref(), tenant_header_given(&headers))?,
    };
    if state.presence.due(&acting, &req.worker_id, true) {
        let seen = WorkerSeen {
            tenant: acting.clone(),
            worker_id: req.worker_id.clone(),
            transport: None,
            queues: None,
            version: None,
            heartbeat: true,
            closed: false,
        };
        Presence::write(&state.store, state.clock.now(), seen);
    }
    let leases = match each {
        true => state.leasing().heartbeat_each(&acting, &req.leases).await?,
        false => state.leasing().heartbeat(&acting, &req.leases).await?,
    };
    Ok(ApiJson(HeartbeatResponse { leases }))
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
    let results = match each_jobs_tenant(&tenant, req.tenant.as_deref())? {
        true => state.leasing().finish_each(&tenant.0, req.outcomes).await?,
        false => {
            let tenant = tenant.merge(req.tenant.as_deref(), tenant_header_given(&headers))?;
            state.leasing().finish_many(&tenant, req.outcomes).await?
        }
    };
    Ok(ApiJson(OutcomesResponse { results }))
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
    checks::artifacts_stored(
        &*state.store,
        &state.data_dir,
        &tenant.0,
        &report,
        state.clock.now(),
    )
    .await?;
    let outcome = outcome_from_report(report, state.clock.now())?;
    state
        .leasing()
        .finish_one(&tenant.0, outcome)
        .await
        .map(ApiJson)
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
    checks::default_retry_at(&*state.store, &tenant.0, &mut report, now, &mut None).await?;
    let outcome = outcome_from_report(report, now)?;
    state
        .leasing()
        .finish_one(&tenant.0, outcome)
        .await
        .map(ApiJson)
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
    state
        .leasing()
        .finish_one(&tenant.0, outcome)
        .await
        .map(ApiJson)
}

/// Whether a heartbeat or an outcome batch names the tenant `*` (a shared pool's worker: each
/// job's own tenant), which only a caller that acts for every tenant may.
pub(crate) fn each_jobs_tenant(tenant: &Tenant, named: Option<&str>) -> ApiResult<bool> {
    if named != Some(EACH_JOBS_TENANT) {
        return Ok(false);
    }
    if !tenant.acts_for_all() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "tenant `*` (each job's own) is for a pool shared by tenants, which only the coordinator's own key runs",
        )
        .with_details(serde_json::json!({"field": "tenant"})));
    }
    Ok(true)
}
