//! The runbook surface (docs/CONTRACT.md §5.3): start a run (`runToken` accepted), cancel it
//! (`POST /runs/{runId}:cancel`), stream every run's status changes, and health.

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing;
use futures_util::{SinkExt, StreamExt};
use leasehold_proto::{ErrorEnvelope, NewRun, Run};
use serde_json::{Value, json};

use super::{RunPath, legacy_id};
use crate::error::{ApiError, ApiResult};
use crate::events::{Delivery, Listener};
use crate::http::AppState;
use crate::http::extract::{ApiJson, Tenant, from_value};
use crate::http::runs;
use crate::store::EventFilter;

/// The runbook's bounded routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orchestrator/runs", routing::post(runbook_start))
        .route("/runs/{runId}", routing::post(runbook_action))
        .route("/admin/health", routing::get(admin_health))
        .route(
            "/api/v1/orchestrator/admin/health",
            routing::get(admin_health),
        )
}

/// The runbook's run-status stream (WebSocket).
pub(super) fn streams() -> Router<AppState> {
    Router::new().route("/runs/stream", routing::get(runs_stream))
}

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
    // A ping keeps a quiet stream inside the connection idle timeout (crate::connections), as
    // worker sessions do.
    let mut ping = tokio::time::interval(std::time::Duration::from_secs(15));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
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
        response.extensions_mut().insert(crate::http::KeepBody);
    }
    response
}
