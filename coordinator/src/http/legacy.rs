//! The surfaces operators already use (docs/CONTRACT.md §5), served on the v1 machinery:
//! the scheduler's run records, the legacy runs service (deprecated, with `Link`s to v1), and
//! the runbook's start / cancel / stream / health endpoints.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use leasehold_proto::{ErrorEnvelope, NewRun, Run, SchedulerRun, SchedulerRunInput};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::extract::{ApiJson, QueryParams, Tenant, from_value, tenant_header_given};
use super::feed::{KEEP_ALIVE, resume_point, sse_stream};
use super::runs::{self, run_not_found};
use crate::error::{ApiError, ApiResult};
use crate::events::{Delivery, Listener};
use crate::store::EventFilter;
use crate::validate;

// ---- scheduler run records -------------------------------------------------------------

/// Record one scheduler cycle.
#[utoipa::path(post, path = "/orchestrator/runs", tag = "operators", request_body = SchedulerRunInput,
    responses((status = 201, body = SchedulerRun), (status = 422, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn record_scheduler_run(
    State(state): State<AppState>,
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
        .record_scheduler_run(state.clock.now(), &input)
        .await?;
    Ok((StatusCode::CREATED, ApiJson(stored)).into_response())
}

/// Recent scheduler cycles, newest first (`limit` default 20, capped at 100).
#[utoipa::path(get, path = "/orchestrator/runs", tag = "operators",
    params(("limit" = Option<u32>, Query, description = "default 20, capped at 100")),
    responses((status = 200, body = Vec<SchedulerRun>), (status = 422, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn list_scheduler_runs(
    State(state): State<AppState>,
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
            .list_scheduler_runs(limit.min(100) as u32)
            .await?,
    ))
}

// ---- legacy runs service ---------------------------------------------------------------

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

/// Parses a legacy run id (404 for anything that is not one of ours).
fn legacy_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(format!("run {raw:?} does not exist")))
}

#[derive(Debug, Deserialize)]
pub(crate) struct RunPath {
    #[serde(rename = "runId")]
    run_id: String,
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
            let (_, plan) = runs::rows(run, tenant.0, None, state.clock.now())?;
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
        .add_run_event(
            state.clock.now(),
            &tenant.0,
            id,
            "checkpoint",
            input.job_id,
            data,
        )
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

// ---- runbook surface --------------------------------------------------------------------

/// Runbook: start a run (same body and answer as `POST /v1/runs`). The runbook's idempotency
/// token may be spelt `runToken` ("Idempotency via runToken; reruns should reuse the same
/// token"): a rerun with the same token returns the first run (200).
#[utoipa::path(post, path = "/api/v1/orchestrator/runs", tag = "operators", request_body = NewRun,
    responses((status = 201, body = Run), (status = 200, description = "same runToken / run_token: the first run", body = Run),
              (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn runbook_start(
    state: State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    ApiJson(mut body): ApiJson<Value>,
) -> ApiResult<Response> {
    if let Some(fields) = body.as_object_mut()
        && let Some(token) = fields.remove("runToken")
    {
        if fields.contains_key("run_token") {
            return Err(ApiError::validation(
                "runToken",
                "give the run token once: runToken or run_token, not both",
            ));
        }
        fields.insert("run_token".to_owned(), token);
    }
    let run: NewRun = from_value(body)?;
    runs::submit(state, tenant, headers, ApiJson(run)).await
}

/// Runbook: `POST /runs/{runId}:cancel` — best-effort, idempotent.
#[utoipa::path(post, path = "/runs/{runId}:cancel", tag = "operators", params(("runId" = Uuid, Path)),
    responses((status = 200, body = Run), (status = 404, body = ErrorEnvelope)))]
pub(crate) async fn runbook_action(
    State(state): State<AppState>,
    tenant: Tenant,
    axum::extract::Path(RunPath { run_id }): axum::extract::Path<RunPath>,
) -> ApiResult<ApiJson<Run>> {
    let Some(raw) = run_id.strip_suffix(":cancel") else {
        return Err(ApiError::not_found(
            "no such route: use POST /runs/{runId}:cancel",
        ));
    };
    let id = legacy_id(raw)?;
    runs::cancel_run(&state, &tenant.0, id).await.map(ApiJson)
}

/// Runbook: WebSocket of every run's status changes (`{"type":"run_status", runId, status, at}`).
#[utoipa::path(get, path = "/runs/stream", tag = "operators",
    responses((status = 101, description = "WebSocket; one JSON text frame per run status change")))]
pub(crate) async fn runs_stream(
    State(state): State<AppState>,
    tenant: Tenant,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    // Fixed before the upgrade answer: every change after the client sees 101 is streamed.
    let after = state.store.last_event_id().await?;
    Ok(ws.on_upgrade(move |socket| stream_runs(state, tenant.0, after, socket)))
}

async fn stream_runs(state: AppState, tenant: String, after: i64, socket: WebSocket) {
    let (mut sink, mut incoming) = socket.split();
    let filter = EventFilter {
        tenant: Some(tenant),
        after,
        types: vec!["run_created".into(), "run_status".into()],
        ..Default::default()
    };
    let mut listener = Listener::new(state.store.clone(), state.events.clone(), filter);
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            next = listener.next() => {
                let frame = match next {
                    Ok(Delivery::Event(e)) => {
                        let status = if e.kind == "run_created" { json!("pending") } else { e.data["status"].clone() };
                        json!({"type": "run_status", "runId": e.run_id, "status": status, "at": e.at, "eventId": e.id})
                    }
                    Ok(Delivery::Resync { last_id }) => json!({"type": "resync", "last_event_id": last_id}),
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        continue;
                    }
                };
                if sink.send(Message::Text(frame.to_string().into())).await.is_err() {
                    return;
                }
            }
            msg = incoming.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
            _ = shutdown.changed() => {
                let _ = sink.close().await;
                return;
            }
        }
    }
}

/// Runbook health: liveness, readiness (database) and queue depth per queue. 503 when not ready.
#[utoipa::path(get, path = "/admin/health", tag = "operators",
    responses((status = 200, description = "`{live, ready, database, queues}`"), (status = 503, description = "not ready")))]
pub(crate) async fn admin_health(State(state): State<AppState>, tenant: Tenant) -> Response {
    let ready = state.store.ping().await.is_ok();
    let queues = if ready {
        state.store.queues(&tenant.0).await.ok()
    } else {
        None
    };
    let body = json!({
        "status": if ready { "ok" } else { "degraded" },
        "live": true,
        "ready": ready,
        "database": state.store.backend().as_str(),
        "queues": queues.unwrap_or_default(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (status, ApiJson(body)).into_response();
    if !ready {
        // Keep this body: it is the health report, not an error envelope.
        response.extensions_mut().insert(super::KeepBody);
    }
    response
}
