//! The runs service with live events (legacy, unversioned; docs/CONTRACT.md §5.2): create, read,
//! cancel and checkpoint runs, and their events over SSE. Deprecated: every answer carries
//! `Deprecation` and a `Link` to its v1 successor.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing;
use leasehold_proto::{ErrorEnvelope, NewRun, Run};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{RunPath, legacy_id};
use crate::error::{ApiError, ApiResult, run_not_found};
use crate::events::Listener;
use crate::http::AppState;
use crate::http::extract::{ApiJson, QueryParams, Tenant, tenant_header_given};
use crate::http::feed::{KEEP_ALIVE, resume_point, sse_stream};
use crate::http::runs;
use crate::store::AddRunEvent;
use crate::store::EventFilter;
use crate::validate;

/// The runs service's bounded routes. `POST /runs/{runId}` is the runbook's (merged in by path).
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/runs", routing::post(legacy_create))
        .route(
            "/runs/{runId}",
            routing::get(legacy_get).delete(legacy_cancel),
        )
        .route(
            "/runs/{runId}/checkpoints",
            routing::post(legacy_checkpoint),
        )
}

/// The runs service's event stream (SSE).
pub(super) fn streams() -> Router<AppState> {
    Router::new().route("/runs/{runId}/events", routing::get(legacy_events))
}

/// Adds `Deprecation` and a `Link` to the v1 successor.
fn deprecated(mut response: Response, successor: &str) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("deprecation"),
        HeaderValue::from_static("true"),
    );
    if let Ok(link) = HeaderValue::from_str(&format!("<{successor}>; rel=\"successor-version\"")) {
        headers.insert(axum::http::header::LINK, link);
    }
    response
}

/// A run in the legacy shape: the v1 run plus `runId`.
fn legacy_run(run: &Run) -> Value {
    let mut v = serde_json::to_value(run).unwrap_or(Value::Null);
    v["runId"] = json!(run.id);
    v
}

/// Legacy: create a run (`?mode=plan` validates and orders only; `redis`/`k8s` are recorded).
#[utoipa::path(post, path = "/runs", tag = "legacy", request_body = NewRun,
    params(("mode" = Option<String>, Query, description = "plan | redis | k8s")),
    responses((status = 201, description = "`{runId, …}`"), (status = 200, description = "mode=plan: the ordered plan"),
              (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn legacy_create(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    query: QueryParams,
    ApiJson(run): ApiJson<NewRun>,
) -> ApiResult<Response> {
    query.only(&["mode"])?;
    let mode = query.get("mode").map(str::to_owned);
    match mode.as_deref() {
        Some("plan") => {
            let (_, plan) = crate::planning::rows(run, tenant.0, None, state.clock.now())?;
            return Ok(deprecated(ApiJson(plan).into_response(), "/v1/runs/plan"));
        }
        None | Some("redis") | Some("k8s") => {}
        Some(other) => {
            return Err(ApiError::validation(
                "mode",
                format!("mode must be plan, redis or k8s, got {other:?}"),
            ));
        }
    }
    let (run, created) =
        runs::create(&state, &tenant, tenant_header_given(&headers), run, mode).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(deprecated(
        (status, ApiJson(legacy_run(&run))).into_response(),
        &format!("/v1/runs/{}", run.id),
    ))
}

/// Legacy: inspect a run.
#[utoipa::path(get, path = "/runs/{runId}", tag = "legacy", params(("runId" = Uuid, Path)),
    responses((status = 200, description = "the run with `runId`"), (status = 404, body = ErrorEnvelope)))]
pub(crate) async fn legacy_get(
    State(state): State<AppState>,
    tenant: Tenant,
    axum::extract::Path(RunPath { run_id }): axum::extract::Path<RunPath>,
) -> ApiResult<Response> {
    let id = legacy_id(&run_id)?;
    let run = state
        .store
        .get_run(&tenant.0, id)
        .await?
        .ok_or_else(|| run_not_found(id))?;
    Ok(deprecated(
        ApiJson(legacy_run(&run)).into_response(),
        &format!("/v1/runs/{id}"),
    ))
}

/// Legacy: cancel a run (idempotent).
#[utoipa::path(delete, path = "/runs/{runId}", tag = "legacy", params(("runId" = Uuid, Path)),
    responses((status = 200, description = "the run, cancelled"), (status = 404, body = ErrorEnvelope)))]
pub(crate) async fn legacy_cancel(
    State(state): State<AppState>,
    tenant: Tenant,
    axum::extract::Path(RunPath { run_id }): axum::extract::Path<RunPath>,
) -> ApiResult<Response> {
    let id = legacy_id(&run_id)?;
    let run = runs::cancel_run(&state, &tenant.0, id).await?;
    Ok(deprecated(
        ApiJson(legacy_run(&run)).into_response(),
        &format!("/v1/runs/{id}/cancel"),
    ))
}

/// Body of a legacy checkpoint.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct CheckpointInput {
    /// Checkpoint name.
    name: String,
    /// Any JSON.
    #[serde(default)]
    data: Value,
    /// The job it belongs to, if any.
    #[serde(default)]
    job_id: Option<Uuid>,
}

/// Legacy: record a checkpoint on a run (streamed as a `checkpoint` event).
#[utoipa::path(post, path = "/runs/{runId}/checkpoints", tag = "legacy", params(("runId" = Uuid, Path)),
    request_body = CheckpointInput,
    responses((status = 201, description = "the checkpoint event"), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn legacy_checkpoint(
    State(state): State<AppState>,
    tenant: Tenant,
    axum::extract::Path(RunPath { run_id }): axum::extract::Path<RunPath>,
    ApiJson(input): ApiJson<CheckpointInput>,
) -> ApiResult<Response> {
    let id = legacy_id(&run_id)?;
    validate::label("name", &input.name)?;
    validate::json_size("data", &input.data)?;
    let data = json!({"name": input.name, "data": input.data});
    let event = state
        .store
        .add_run_event(AddRunEvent {
            now: state.clock.now(),
            tenant: tenant.0,
            run_id: id,
            kind: "checkpoint".into(),
            job_id: input.job_id,
            data,
        })
        .await?
        .ok_or_else(|| run_not_found(id))?;
    let body = json!({"id": event.id, "runId": id, "name": input.name, "data": event.data["data"], "job_id": input.job_id, "at": event.at});
    Ok(deprecated(
        (StatusCode::CREATED, ApiJson(body)).into_response(),
        &format!("/v1/events?run_id={id}"),
    ))
}

/// Legacy: a run's live events as SSE — `hello` first, then `status` (run status changes) and
/// `checkpoint` events, each with its ledger id so `Last-Event-ID` resumes.
#[utoipa::path(get, path = "/runs/{runId}/events", tag = "legacy", params(("runId" = Uuid, Path)),
    responses((status = 200, content_type = "text/event-stream"), (status = 404, body = ErrorEnvelope)))]
pub(crate) async fn legacy_events(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    query: QueryParams,
    axum::extract::Path(RunPath { run_id }): axum::extract::Path<RunPath>,
) -> ApiResult<Response> {
    query.only(&["after", "api_key"])?;
    let id = legacy_id(&run_id)?;
    let run = state
        .store
        .get_run(&tenant.0, id)
        .await?
        .ok_or_else(|| run_not_found(id))?;
    let after = resume_point(&headers, &query)?;
    let filter = EventFilter {
        tenant: Some(tenant.0),
        run_id: Some(id),
        after,
        types: vec!["run_status".into(), "checkpoint".into()],
        ..Default::default()
    };
    let hello = SseEvent::default()
        .event("hello")
        .data(json!({"runId": id, "status": run.status, "resumeAfter": after}).to_string());
    let mut listener = Listener::new(state.store.clone(), state.events.clone(), filter);
    listener.open().await?;
    let stream = sse_stream(listener, state.shutdown.clone(), Some(hello), |e| {
        let (name, data) = if e.kind == "run_status" {
            (
                "status",
                json!({"runId": e.run_id, "status": e.data["status"], "at": e.at}),
            )
        } else {
            let name = e.data.get("name").cloned().unwrap_or(Value::Null);
            let data = e
                .data
                .get("data")
                .cloned()
                .unwrap_or_else(|| e.data.get("checkpoint").cloned().unwrap_or(Value::Null));
            (
                "checkpoint",
                json!({"runId": e.run_id, "jobId": e.job_id, "name": name, "data": data, "at": e.at}),
            )
        };
        Some(
            SseEvent::default()
                .id(e.id.to_string())
                .event(name)
                .data(data.to_string()),
        )
    });
    let response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    Ok(deprecated(response, &format!("/v1/events?run_id={id}")))
}
