//! `/v1/quota`: the caller's tenant's quota (`max_queued`, `max_leased`) and its usage; setting
//! and removing it need the `orch:quota` scope, a reason and a ticket, and are audited
//! (`quotas.set`, `quotas.delete`). What a quota does is `crate::store::QuotaRecords`'.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use leasehold_proto::{ErrorEnvelope, MAX_QUOTA_LIMIT, QuotaRequest, QuotaStatus, StoredQuota};
use serde_json::{Value, json};

use super::AppState;
use super::extract::{ApiJson, QueryParams, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::keys::Principal;
use crate::store::Quota;

/// The routes of this module.
pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/quota", get(show).put(set).delete(remove))
}

fn stored(quota: &Quota) -> StoredQuota {
    StoredQuota {
        max_queued: quota.max_queued,
        max_leased: quota.max_leased,
        updated_at: quota.updated_at,
    }
}

/// The limits as the audit record names them (`null` for none).
fn limits(quota: Option<&Quota>) -> Value {
    quota.map_or(
        Value::Null,
        |q| json!({"max_queued": q.max_queued, "max_leased": q.max_leased}),
    )
}

/// A limit within bounds (422 naming it otherwise).
fn limit(field: &str, value: Option<u64>) -> ApiResult<Option<u64>> {
    match value {
        Some(n) if n > MAX_QUOTA_LIMIT => Err(ApiError::validation(
            field,
            format!("{field} is 0 to {MAX_QUOTA_LIMIT}, or null for no limit"),
        )),
        _ => Ok(value),
    }
}

/// The tenant's quota (`null` when it has none: no limit) and its live jobs now. `max_queued`
/// counts `queued + blocked`, `max_leased` counts `leased`.
#[utoipa::path(get, path = "/v1/quota", tag = "operators",
    responses((status = 200, body = QuotaStatus), (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    tenant: Tenant,
) -> ApiResult<ApiJson<QuotaStatus>> {
    let quota = state.store.quota(&tenant.0).await?;
    let usage = state.store.quota_usage(&tenant.0).await?;
    Ok(ApiJson(QuotaStatus {
        tenant: tenant.0,
        quota: quota.as_ref().map(stored),
        usage,
    }))
}

/// Sets the tenant's quota, replacing it whole: a limit left out or `null` is no limit, and at
/// least one is set. Applies to the next enqueue (`max_queued`) and the next claim
/// (`max_leased`); jobs stored already stay. Needs `reason` and `ticket`, recorded with who
/// asked and the previous limits in a `quotas.set` audit event.
#[utoipa::path(put, path = "/v1/quota", tag = "operators", request_body = QuotaRequest,
    responses((status = 200, body = StoredQuota),
              (status = 422, description = "a missing reason or ticket, no limit set, or a limit out of bounds", body = ErrorEnvelope)))]
pub(crate) async fn set(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    ApiJson(body): ApiJson<QuotaRequest>,
) -> ApiResult<ApiJson<StoredQuota>> {
    let why = crate::audit::justification(body.reason, body.ticket)?;
    let max_queued = limit("max_queued", body.max_queued)?;
    let max_leased = limit("max_leased", body.max_leased)?;
    if max_queued.is_none() && max_leased.is_none() {
        return Err(ApiError::validation(
            "max_queued",
            "set max_queued, max_leased or both (DELETE /v1/quota removes the quota)",
        ));
    }
    let now = state.clock.now();
    let quota = Quota {
        tenant: tenant.0.clone(),
        max_queued,
        max_leased,
        updated_at: now,
    };
    let previous = state.store.set_quota(&quota).await?;
    state.catalog.forget(&quota.tenant);
    // Claimers parked behind the old limits ask again under the new ones.
    state.ready.notify();
    let mut target = limits(Some(&quota));
    target["previous"] = limits(previous.as_ref());
    crate::audit::record(
        &*state.store,
        &tenant.0,
        &principal,
        "quotas.set",
        target,
        Some(&why),
        now,
    )
    .await;
    Ok(ApiJson(stored(&quota)))
}

/// Removes the tenant's quota: no limit from the next enqueue and claim on (404 when it has
/// none). `reason` and `ticket` are query parameters (a `DELETE` carries no body), recorded
/// with the removed limits in a `quotas.delete` audit event.
#[utoipa::path(delete, path = "/v1/quota", tag = "operators",
    params(("reason" = String, Query, description = "why (up to 1000 characters; recorded)"),
           ("ticket" = String, Query, description = "the change ticket (up to 200 characters; recorded)")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorEnvelope),
              (status = 422, description = "a missing reason or ticket", body = ErrorEnvelope)))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    query: QueryParams,
) -> ApiResult<StatusCode> {
    query.only(&["reason", "ticket"])?;
    let why = crate::audit::justification(
        query.get("reason").map(str::to_owned),
        query.get("ticket").map(str::to_owned),
    )?;
    let removed = state
        .store
        .delete_quota(&tenant.0)
        .await?
        .ok_or_else(|| ApiError::not_found("this tenant has no quota"))?;
    state.catalog.forget(&tenant.0);
    // Claimers parked behind the old limits ask again under the new ones.
    state.ready.notify();
    let target = json!({"removed": limits(Some(&removed))});
    let now = state.clock.now();
    crate::audit::record(
        &*state.store,
        &tenant.0,
        &principal,
        "quotas.delete",
        target,
        Some(&why),
        now,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
