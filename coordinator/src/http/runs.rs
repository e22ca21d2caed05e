//! `/v1/runs`: a DAG of jobs submitted together, validated (unknown, duplicate and cyclic keys
//! are named in a 422; `crate::planning`), inserted parents first, idempotent by `run_token`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use chrono::Utc;
use leasehold_proto::{ErrorEnvelope, NewRun, Run, RunPlan};
use uuid::Uuid;

use super::AppState;
use super::extract::{ApiJson, JobId, Tenant, tenant_header_given};
use crate::error::{ApiResult, run_not_found};
use crate::planning::rows;
use crate::store::CancelRun;

/// `/v1/runs`: submit, plan, read, cancel.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/runs", routing::post(submit))
        .route("/v1/runs/plan", routing::post(plan_only))
        .route("/v1/runs/{id}", routing::get(get))
        .route("/v1/runs/{id}/cancel", routing::post(cancel))
}

/// Creates a run (shared by `/v1/runs`, the runbook's start and the legacy `POST /runs`).
pub(crate) async fn create(
    state: &AppState,
    tenant: &Tenant,
    header_given: bool,
    run: NewRun,
    mode: Option<String>,
) -> ApiResult<(Run, bool)> {
    let tenant = tenant.merge(run.tenant.as_deref(), header_given)?;
    let now = state.clock.now();
    let (rows, _) = rows(run, tenant, mode, now)?;
    // Shed before the store is asked anything (an approximate, coordinator-wide mark).
    state.backpressure.admit(&*state.store).await?;
    let (run, created) = state
        .store
        .create_run(now, rows)
        .await
        .map_err(|e| crate::admission::counted(e.into()))?;
    if created {
        metrics::counter!(crate::metrics::RUNS_TOTAL, "status" => "created").increment(1);
        state.ready.notify();
    }
    Ok((run, created))
}

/// Submit a run.
#[utoipa::path(post, path = "/v1/runs", tag = "runs", request_body = NewRun,
    responses((status = 201, body = Run), (status = 200, description = "same run_token: the first run", body = Run),
              (status = 422, description = "cycles, unknown or duplicate keys are named", body = ErrorEnvelope),
              (status = 429, description = "nothing stored: over the rate limit (`rate_limited`), the run's jobs over the tenant's quota (`quota_exceeded`), or the coordinator is shedding load (`overloaded`); see `Retry-After`", body = ErrorEnvelope)))]
pub(crate) async fn submit(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    ApiJson(run): ApiJson<NewRun>,
) -> ApiResult<Response> {
    let (run, created) = create(&state, &tenant, tenant_header_given(&headers), run, None).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = HeaderValue::from_str(&format!("/v1/runs/{}", run.id)).ok();
    let mut response = (status, ApiJson(run)).into_response();
    if let Some(l) = location {
        response.headers_mut().insert(header::LOCATION, l);
    }
    Ok(response)
}

/// Validate a run and show its order; nothing is created.
#[utoipa::path(post, path = "/v1/runs/plan", tag = "runs", request_body = NewRun,
    responses((status = 200, body = RunPlan), (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn plan_only(ApiJson(run): ApiJson<NewRun>) -> ApiResult<ApiJson<RunPlan>> {
    let (_, planned) = rows(
        run,
        leasehold_proto::DEFAULT_TENANT.to_owned(),
        None,
        Utc::now(),
    )?;
    Ok(ApiJson(planned))
}

/// One run with its jobs, status and timings.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", params(("id" = Uuid, Path)),
    responses((status = 200, body = Run), (status = 404, body = ErrorEnvelope)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    JobId(id): JobId,
) -> ApiResult<ApiJson<Run>> {
    state
        .store
        .get_run(&tenant.0, id)
        .await?
        .map(ApiJson)
        .ok_or_else(|| run_not_found(id))
}

/// Cancel a run: its waiting jobs end cancelled, running ones are asked to stop. Idempotent.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs", params(("id" = Uuid, Path)),
    responses((status = 200, body = Run), (status = 404, body = ErrorEnvelope)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    tenant: Tenant,
    JobId(id): JobId,
) -> ApiResult<ApiJson<Run>> {
    cancel_run(&state, &tenant.0, id).await.map(ApiJson)
}

pub(crate) async fn cancel_run(state: &AppState, tenant: &str, id: Uuid) -> ApiResult<Run> {
    state
        .store
        .cancel_run(CancelRun {
            now: state.clock.now(),
            tenant: tenant.to_owned(),
            id,
        })
        .await?
        .ok_or_else(|| run_not_found(id))
}
