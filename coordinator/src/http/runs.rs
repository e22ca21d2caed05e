//! `/v1/runs`: a DAG of jobs submitted together, validated (unknown, duplicate and cyclic keys
//! are named in a 422; `crate::planning`), inserted parents first, idempotent by `run_token`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use chrono::Utc;
use leasehold_proto::{ErrorEnvelope, NewRun, Run, RunList, RunPlan, RunStatus};
use uuid::Uuid;

use super::AppState;
use super::cursor;
use super::extract::{ApiJson, JobId, QueryParams, Tenant, tenant_header_given};
use super::jobs::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
use crate::error::{ApiError, ApiResult, run_not_found};
use crate::planning::rows;
use crate::store::{CancelRun, RunFilter};
use crate::validate;

/// `/v1/runs`: submit, plan, read, cancel.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/runs", routing::post(submit).get(list))
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

/// List the tenant's runs, newest first: each with its status and its jobs counted by state.
#[utoipa::path(get, path = "/v1/runs", tag = "runs",
    params(("status" = Option<String>, Query, description = "pending, running, succeeded, failed or cancelled"),
           ("name" = Option<String>, Query, description = "only runs of this name"),
           ("project" = Option<String>, Query, description = "only runs of this project"),
           ("correlation_id" = Option<String>, Query, description = "only runs with this correlation id"),
           ("since" = Option<String>, Query, description = "submitted at or after: an RFC 3339 time or a span back from now (`24h`)"),
           ("until" = Option<String>, Query, description = "submitted before: an RFC 3339 time or a span back from now"),
           ("limit" = Option<u32>, Query, description = "page size, 1 to 500 (default 50)"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, body = RunList), (status = 400, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    query: QueryParams,
) -> ApiResult<ApiJson<RunList>> {
    query.only(&[
        "status",
        "name",
        "project",
        "correlation_id",
        "since",
        "until",
        "limit",
        "cursor",
    ])?;
    let limit = query.parse::<u32>("limit")?.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("limit is 1 to {MAX_LIST_LIMIT}"),
        ));
    }
    let status = query
        .get("status")
        .map(|s| {
            RunStatus::parse(s).ok_or_else(|| {
                ApiError::validation(
                    "status",
                    "status must be one of pending, running, succeeded, failed, cancelled",
                )
            })
        })
        .transpose()?;
    let text = |field: &str| -> ApiResult<Option<String>> {
        query
            .get(field)
            .map(|v| validate::label(field, v).map(|()| v.to_owned()))
            .transpose()
    };
    let now = state.clock.now();
    let filter = RunFilter {
        tenant: tenant.0,
        status,
        name: text("name")?,
        project: text("project")?,
        correlation_id: text("correlation_id")?,
        since: query.time("since", now)?,
        until: query.time("until", now)?,
        before: query.get("cursor").map(cursor::decode).transpose()?,
        limit: limit + 1,
    };
    let mut runs = state.store.list_runs(&filter).await?;
    let next_cursor = if runs.len() > limit as usize {
        runs.truncate(limit as usize);
        runs.last().map(|r| cursor::encode(r.id))
    } else {
        None
    };
    Ok(ApiJson(RunList { runs, next_cursor }))
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
