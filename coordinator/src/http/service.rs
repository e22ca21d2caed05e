//! Service basics: liveness, readiness, metrics (the OpenAPI document is served by
//! `openapi.rs`).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use serde_json::{Value, json};

use super::AppState;
use super::extract::ApiJson;
use crate::error::ApiResult;

/// Health, readiness and metrics.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/health", routing::get(health))
        .route("/ready", routing::get(ready))
        .route("/metrics", routing::get(metrics))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "alive")))]
pub(crate) async fn health() -> ApiJson<Value> {
    ApiJson(json!({"status": "ok"}))
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/ready", tag = "service",
    responses((status = 200, description = "ready"), (status = 503, body = leasehold_proto::ErrorEnvelope)))]
pub(crate) async fn ready(State(state): State<AppState>) -> ApiResult<ApiJson<Value>> {
    state.store.ping().await?;
    Ok(ApiJson(
        json!({"status": "ready", "database": state.store.backend().as_str()}),
    ))
}

/// Prometheus text exposition. Job gauges are refreshed from the database on each scrape; if
/// the database is down the other series are still served.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    metrics::gauge!(crate::metrics::PARKED_CLAIMERS).set(state.handoffs.parked() as f64);
    let mut body = crate::metrics::handle().render();
    body.push_str(
        &state
            .job_gauges
            .render(&*state.store, state.clock.now())
            .await,
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
        .into_response()
}
