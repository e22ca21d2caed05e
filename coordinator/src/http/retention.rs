//! `/v1/retention…`: the tenant's retention overrides, a sweep on demand; and
//! `/v1/ledger/segments`, the archived ledger segments.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use leasehold_proto::{
    EffectiveRetention, ErrorEnvelope, LedgerSegmentList, RetentionDefaults, RetentionPolicy,
    RetentionSettings, StoredRetentionPolicy, SweepReport,
};

use super::AppState;
use super::extract::{ApiJson, QueueName, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::keys::Principal;
use crate::retention::{Policies, Window};
use crate::store::{PolicyRow, StoreError};
use serde_json::json;

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/retention", get(settings))
        .route(
            "/v1/retention/tenant",
            put(put_tenant).delete(delete_tenant),
        )
        .route(
            "/v1/retention/queues/{name}",
            get(effective).put(put_queue).delete(delete_queue),
        )
        .route("/v1/retention/sweep", post(sweep_now))
        .route("/v1/ledger/segments", get(segments))
}

fn stored(row: PolicyRow) -> StoredRetentionPolicy {
    StoredRetentionPolicy {
        queue: (!row.queue.is_empty()).then_some(row.queue),
        succeeded: row.succeeded,
        failed: row.failed,
        updated_at: row.updated_at,
    }
}

/// Validates a body into the row to store (windows in their canonical spelling).
fn policy_row(
    state: &AppState,
    tenant: String,
    queue: String,
    body: RetentionPolicy,
) -> ApiResult<PolicyRow> {
    if body.succeeded.is_none() && body.failed.is_none() {
        return Err(ApiError::validation(
            "succeeded",
            "set `succeeded`, `failed` or both (a window such as 24h or 7d, or off)",
        ));
    }
    let window = |field: &str, raw: Option<String>| -> ApiResult<Option<String>> {
        raw.map(|raw| {
            raw.parse::<Window>()
                .map(|w| w.to_string())
                .map_err(|why| ApiError::validation(field, format!("{field}: {why}")))
        })
        .transpose()
    };
    Ok(PolicyRow {
        tenant,
        queue,
        succeeded: window("succeeded", body.succeeded)?,
        failed: window("failed", body.failed)?,
        updated_at: state.clock.now(),
    })
}

fn defaults(state: &AppState) -> RetentionDefaults {
    let c = &state.retention.config;
    RetentionDefaults {
        succeeded: c.succeeded.to_string(),
        failed: c.failed.to_string(),
        ledger: c.ledger.to_string(),
    }
}

/// The coordinator's retention defaults and the tenant's overrides.
#[utoipa::path(get, path = "/v1/retention", tag = "operators",
    responses((status = 200, body = RetentionSettings), (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn settings(
    State(state): State<AppState>,
    tenant: Tenant,
) -> ApiResult<ApiJson<RetentionSettings>> {
    let rows = state
        .store
        .retention()
        .retention_policies(Some(&tenant.0))
        .await?;
    let (tenant_rows, queue_rows): (Vec<_>, Vec<_>) =
        rows.into_iter().partition(|r| r.queue.is_empty());
    Ok(ApiJson(RetentionSettings {
        defaults: defaults(&state),
        tenant: tenant_rows.into_iter().next().map(stored),
        queues: queue_rows.into_iter().map(stored).collect(),
    }))
}

/// Sets the tenant-wide override: windows for its finished jobs in every queue without an
/// override of its own. A field left out keeps the coordinator's default.
#[utoipa::path(put, path = "/v1/retention/tenant", tag = "operators",
    request_body = RetentionPolicy,
    responses((status = 200, body = StoredRetentionPolicy), (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn put_tenant(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    ApiJson(body): ApiJson<RetentionPolicy>,
) -> ApiResult<ApiJson<StoredRetentionPolicy>> {
    let target = json!({"queue": null, "policy": body});
    let row = policy_row(&state, tenant.0.clone(), String::new(), body)?;
    let saved = stored(put_detached(&state, row).await?);
    audited(&state, &tenant.0, &principal, "retention.set", target).await;
    Ok(ApiJson(saved))
}

/// Removes the tenant-wide override (404 when there is none).
#[utoipa::path(delete, path = "/v1/retention/tenant", tag = "operators",
    responses((status = 204, description = "removed"), (status = 404, body = ErrorEnvelope)))]
pub(crate) async fn delete_tenant(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
) -> ApiResult<StatusCode> {
    let status = removed(
        delete_detached(&state, tenant.0.clone(), String::new()).await?,
        "this tenant has no retention override",
    )?;
    let target = json!({"queue": null});
    audited(&state, &tenant.0, &principal, "retention.delete", target).await;
    Ok(status)
}

/// The windows that apply to a queue's finished jobs, and where each comes from.
#[utoipa::path(get, path = "/v1/retention/queues/{name}", tag = "operators",
    params(("name" = String, Path)),
    responses((status = 200, body = EffectiveRetention), (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn effective(
    State(state): State<AppState>,
    tenant: Tenant,
    QueueName(queue): QueueName,
) -> ApiResult<ApiJson<EffectiveRetention>> {
    let rows = state
        .store
        .retention()
        .retention_policies(Some(&tenant.0))
        .await?;
    let c = &state.retention.config;
    let r = Policies::new(c.succeeded, c.failed, &rows).resolve(&tenant.0, &queue);
    Ok(ApiJson(EffectiveRetention {
        queue,
        succeeded: r.succeeded.0.to_string(),
        succeeded_from: r.succeeded.1.as_str().to_owned(),
        failed: r.failed.0.to_string(),
        failed_from: r.failed.1.as_str().to_owned(),
    }))
}

/// Sets a queue's override; it wins over the tenant's and the default, field by field.
#[utoipa::path(put, path = "/v1/retention/queues/{name}", tag = "operators",
    params(("name" = String, Path)), request_body = RetentionPolicy,
    responses((status = 200, body = StoredRetentionPolicy), (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn put_queue(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<RetentionPolicy>,
) -> ApiResult<ApiJson<StoredRetentionPolicy>> {
    let target = json!({"queue": queue, "policy": body});
    let row = policy_row(&state, tenant.0.clone(), queue, body)?;
    let saved = stored(put_detached(&state, row).await?);
    audited(&state, &tenant.0, &principal, "retention.set", target).await;
    Ok(ApiJson(saved))
}

/// Removes a queue's override (404 when there is none).
#[utoipa::path(delete, path = "/v1/retention/queues/{name}", tag = "operators",
    params(("name" = String, Path)),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn delete_queue(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    QueueName(queue): QueueName,
) -> ApiResult<StatusCode> {
    let target = json!({"queue": queue});
    let status = removed(
        delete_detached(&state, tenant.0.clone(), queue).await?,
        "this queue has no retention override",
    )?;
    audited(&state, &tenant.0, &principal, "retention.delete", target).await;
    Ok(status)
}

/// Refuses (403) a tenant's key on what every tenant shares: only the coordinator's own key
/// (or a keyless coordinator) may act on it.
fn operator_only(principal: &Principal, why: &str) -> ApiResult<()> {
    if principal.is_operator() {
        return Ok(());
    }
    Err(ApiError::new(
        leasehold_proto::ErrorCode::Forbidden,
        format!("{why}: only the coordinator's own key (ORCHESTRATOR_API_KEY) may do this"),
    ))
}

/// Records a retention change by `principal` in `tenant`'s audit trail.
async fn audited(
    state: &AppState,
    tenant: &str,
    principal: &Principal,
    action: &str,
    target: serde_json::Value,
) {
    let now = state.clock.now();
    crate::audit::record(&*state.store, tenant, principal, action, target, None, now).await;
}

/// Writes on their own task, as `crate::store::Detached` does for the `Store` calls: a client
/// hanging up never leaves a transaction open.
async fn put_detached(state: &AppState, row: PolicyRow) -> ApiResult<PolicyRow> {
    let store = state.store.clone();
    tokio::spawn(async move {
        store.retention().put_retention_policy(&row).await?;
        Ok::<_, StoreError>(row)
    })
    .await
    .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    .map_err(Into::into)
}

async fn delete_detached(state: &AppState, tenant: String, queue: String) -> ApiResult<bool> {
    let store = state.store.clone();
    tokio::spawn(async move {
        store
            .retention()
            .delete_retention_policy(&tenant, &queue)
            .await
    })
    .await
    .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    .map_err(Into::into)
}

fn removed(found: bool, missing: &str) -> ApiResult<StatusCode> {
    if found {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(missing))
    }
}

/// Runs a retention sweep now, for every tenant (as the schedule does), and answers what it
/// removed. `swept` is false when another replica was sweeping. The coordinator's own key
/// only: a tenant's key is refused (403).
#[utoipa::path(post, path = "/v1/retention/sweep", tag = "operators",
    responses((status = 200, body = SweepReport), (status = 403, description = "a tenant's key: only the coordinator's own key may sweep every tenant", body = ErrorEnvelope),
              (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn sweep_now(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
) -> ApiResult<ApiJson<SweepReport>> {
    operator_only(&principal, "a sweep covers every tenant")?;
    // On its own task: a client that hangs up does not stop a sweep half way.
    let sweeper = state.sweeper();
    let report = tokio::spawn(async move { crate::retention::sweep(&sweeper).await })
        .await
        .map_err(|e| StoreError::Internal(format!("sweep task failed: {e}")))??;
    audited(&state, &tenant.0, &principal, "retention.sweep", json!({})).await;
    Ok(ApiJson(report))
}

/// The archived ledger segments in chain order: the events each holds (ids), its digests and
/// its file in the archive directory. Verify the files with `leasehold ledger verify`. The
/// coordinator's own key only: the archive holds every tenant's events.
#[utoipa::path(get, path = "/v1/ledger/segments", tag = "events",
    responses((status = 200, body = LedgerSegmentList), (status = 403, description = "a tenant's key: the archive holds every tenant's events", body = ErrorEnvelope),
              (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn segments(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<ApiJson<LedgerSegmentList>> {
    operator_only(&principal, "the ledger archive holds every tenant's events")?;
    Ok(ApiJson(LedgerSegmentList {
        segments: state.store.retention().ledger_segments(false).await?,
    }))
}
