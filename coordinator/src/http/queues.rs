//! `/v1/queues`: depth per state, pause and resume, settings.

use axum::Router;
use axum::extract::State;
use axum::routing;
use leasehold_proto::{ErrorEnvelope, QueueInfo, QueueList, QueueSettings};

use super::AppState;
use super::extract::{ApiJson, QueueName, Tenant};
use crate::error::ApiResult;
use crate::keys::Principal;
use crate::store::{PauseQueue, SetQueueSettings};
use crate::validate;

/// `/v1/queues`: list, pause, resume, settings.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/queues", routing::get(list))
        .route("/v1/queues/{name}/pause", routing::post(pause))
        .route("/v1/queues/{name}/resume", routing::post(resume))
        .route("/v1/queues/{name}/settings", routing::put(settings))
}

/// Every queue of the tenant with its depth per state.
#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    responses((status = 200, body = QueueList), (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
) -> ApiResult<ApiJson<QueueList>> {
    Ok(ApiJson(QueueList {
        queues: state.store.queues(&tenant.0).await?,
    }))
}

/// Stop granting leases from a queue (leases already held run on).
#[utoipa::path(post, path = "/v1/queues/{name}/pause", tag = "queues",
    params(("name" = String, Path)),
    responses((status = 200, body = QueueInfo), (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    QueueName(name): QueueName,
) -> ApiResult<ApiJson<QueueInfo>> {
    let now = state.clock.now();
    let info = state
        .store
        .set_queue_paused(PauseQueue {
            now,
            tenant: tenant.0.clone(),
            queue: name.clone(),
            paused: true,
        })
        .await?;
    let target = serde_json::json!({"queue": name});
    crate::audit::record(
        &*state.store,
        &tenant.0,
        &principal,
        "queues.pause",
        target,
        None,
        now,
    )
    .await;
    Ok(ApiJson(info))
}

/// Grant leases from a queue again.
#[utoipa::path(post, path = "/v1/queues/{name}/resume", tag = "queues",
    params(("name" = String, Path)),
    responses((status = 200, body = QueueInfo), (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    QueueName(name): QueueName,
) -> ApiResult<ApiJson<QueueInfo>> {
    let now = state.clock.now();
    let info = state
        .store
        .set_queue_paused(PauseQueue {
            now,
            tenant: tenant.0.clone(),
            queue: name.clone(),
            paused: false,
        })
        .await?;
    let target = serde_json::json!({"queue": name});
    crate::audit::record(
        &*state.store,
        &tenant.0,
        &principal,
        "queues.resume",
        target,
        None,
        now,
    )
    .await;
    state.ready.notify();
    Ok(ApiJson(info))
}

/// Replace a queue's settings: `default_timeout_ms`, the longest run of one attempt for its
/// jobs that set no `timeout_ms` of their own, applied from the next claim on (`null` or absent:
/// none).
#[utoipa::path(put, path = "/v1/queues/{name}/settings", tag = "queues",
    params(("name" = String, Path)), request_body = QueueSettings,
    responses((status = 200, body = QueueInfo), (status = 422, body = ErrorEnvelope),
              (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn settings(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    QueueName(name): QueueName,
    ApiJson(settings): ApiJson<QueueSettings>,
) -> ApiResult<ApiJson<QueueInfo>> {
    if let Some(ms) = settings.default_timeout_ms {
        validate::timeout("default_timeout_ms", ms)?;
    }
    let now = state.clock.now();
    let target = serde_json::json!({"queue": name, "settings": settings});
    let info = state
        .store
        .set_queue_settings(SetQueueSettings {
            now,
            tenant: tenant.0.clone(),
            queue: name,
            settings,
        })
        .await?;
    crate::audit::record(
        &*state.store,
        &tenant.0,
        &principal,
        "queues.settings",
        target,
        None,
        now,
    )
    .await;
    Ok(ApiJson(info))
}
