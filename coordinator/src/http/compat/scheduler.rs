//! The scheduler's run records: one record per scheduler cycle, posted and listed
//! (docs/CONTRACT.md §5.1). Its store methods are `record_scheduler_run` /
//! `list_scheduler_runs` (`store/{sqlite,postgres}/scheduler.rs`).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing;
use leasehold_proto::{ErrorEnvelope, SchedulerRun, SchedulerRunInput};

use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::extract::{ApiJson, QueryParams, Tenant};
use crate::validate;

/// `POST` and `GET /orchestrator/runs`.
pub(super) fn router() -> Router<AppState> {
    Router::new().route(
        "/orchestrator/runs",
        routing::post(record_scheduler_run).get(list_scheduler_runs),
    )
}

/// Record one scheduler cycle (of the caller's tenant).
#[utoipa::path(post, path = "/orchestrator/runs", tag = "operators", request_body = SchedulerRunInput,
    responses((status = 201, body = SchedulerRun), (status = 422, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn record_scheduler_run(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiJson(input): ApiJson<SchedulerRunInput>,
) -> ApiResult<Response> {
    if input.status.trim().is_empty() {
        return Err(ApiError::validation("status", "status must not be empty"));
    }
    validate::label("status", &input.status)?;
    for (field, v) in [
        ("tables_assessed", input.tables_assessed),
        ("tables_skipped", input.tables_skipped),
        ("tables_healthy", input.tables_healthy),
        ("jobs_submitted", input.jobs_submitted),
        ("jobs_completed", input.jobs_completed),
        ("jobs_failed", input.jobs_failed),
    ] {
        validate::range(field, v, 0, i64::from(i32::MAX))?;
    }
    if input.completed_at < input.started_at {
        return Err(ApiError::validation(
            "completed_at",
            "completed_at is before started_at",
        ));
    }
    if input.error.as_ref().is_some_and(|e| e.len() > 64 * 1024) {
        return Err(ApiError::validation("error", "error is over 64 KiB"));
    }
    let stored = state
        .store
        .record_scheduler_run(state.clock.now(), &tenant.0, &input)
        .await?;
    Ok((StatusCode::CREATED, ApiJson(stored)).into_response())
}

/// The caller's tenant's recent scheduler cycles, newest first (`limit` default 20, capped at 100).
#[utoipa::path(get, path = "/orchestrator/runs", tag = "operators",
    params(("limit" = Option<u32>, Query, description = "default 20, capped at 100")),
    responses((status = 200, body = Vec<SchedulerRun>), (status = 422, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn list_scheduler_runs(
    State(state): State<AppState>,
    tenant: Tenant,
    query: QueryParams,
) -> ApiResult<ApiJson<Vec<SchedulerRun>>> {
    query.only(&["limit"])?;
    let limit = query.parse::<i64>("limit")?.unwrap_or(20);
    if limit < 1 {
        return Err(ApiError::validation("limit", "limit must be at least 1"));
    }
    Ok(ApiJson(
        state
            .store
            .list_scheduler_runs(&tenant.0, limit.min(100) as u32)
            .await?,
    ))
}
