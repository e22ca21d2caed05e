//! `/v1/limits…`: the tenant's flow-control limits (`crate::flow`, docs/flow-control.md). Reading
//! them needs `jobs:read`; setting or removing one needs `orch:quota` with a `reason` and a
//! `ticket`, recorded in the audit trail.

use axum::Router;
use axum::extract::State;
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::get;
use leasehold_proto::{ErrorEnvelope, Limit, LimitBucket, LimitList, PutLimit};
use serde_json::json;

use super::AppState;
use super::extract::{ApiJson, QueryParams, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::flow::gate::Gate;
use crate::flow::keys::LimitKey;
use crate::flow::{Rule, checked_spec};
use crate::keys::Principal;
use crate::store::StoredLimit;

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/limits", get(list))
        .route("/v1/limits/{key}", get(show).put(put).delete(delete))
}

/// The `{key}` path segment: a limit's key (422 naming `key` when malformed).
#[derive(Debug, Clone)]
pub(crate) struct LimitKeyParam(String);

impl<S: Send + Sync> FromRequestParts<S> for LimitKeyParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid_request(format!("bad path: {e}")))?;
        LimitKey::parse(&raw)?;
        Ok(Self(raw))
    }
}

/// A stored limit with its buckets as they stand now: levels refilled to now (a rate bucket
/// never drawn from is full and not listed), leases held per concurrency bucket.
async fn with_buckets(
    state: &AppState,
    tenant: &str,
    limit: StoredLimit,
    leased: Option<&[Vec<String>]>,
) -> ApiResult<Limit> {
    let rule = Rule::new(&limit.key, &limit.spec)?;
    let rules = [rule];
    let mut gate = Gate::new(state.clock.now(), &rules);
    let mut buckets: std::collections::BTreeMap<String, LimitBucket> = Default::default();
    if rules[0].rate.is_some() {
        for (bucket, level) in state.store.limit_levels(tenant, &limit.key).await? {
            gate.load_level((limit.key.clone(), bucket.clone()), level);
            let tokens = gate.tokens(&rules[0], &bucket);
            buckets.insert(
                bucket.clone(),
                LimitBucket {
                    bucket,
                    tokens: Some((tokens * 1000.0).floor() / 1000.0),
                    leased: None,
                },
            );
        }
    }
    if rules[0].concurrency.is_some() {
        for keys in leased.unwrap_or_default() {
            for bucket in rules[0].matcher.buckets(keys) {
                let entry = buckets
                    .entry(bucket.to_owned())
                    .or_insert_with(|| LimitBucket {
                        bucket: bucket.to_owned(),
                        tokens: None,
                        leased: Some(0),
                    });
                *entry.leased.get_or_insert(0) += 1;
            }
        }
    }
    Ok(Limit {
        key: limit.key,
        rate: rules[0].rate,
        burst: rules[0].burst,
        concurrency: rules[0].concurrency,
        updated_at: limit.updated_at,
        buckets: buckets.into_values().collect(),
    })
}

/// The leased jobs' keys, read once for every concurrency limit shown.
async fn leased_if_needed(
    state: &AppState,
    tenant: &str,
    limits: &[StoredLimit],
) -> ApiResult<Option<Vec<Vec<String>>>> {
    if limits.iter().any(|l| l.spec.concurrency.is_some()) {
        Ok(Some(state.store.leased_keys(tenant).await?))
    } else {
        Ok(None)
    }
}

/// The tenant's limits and their buckets now.
#[utoipa::path(get, path = "/v1/limits", tag = "operators",
    responses((status = 200, body = LimitList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
) -> ApiResult<ApiJson<LimitList>> {
    let stored = state.store.limits(&tenant.0).await?;
    let leased = leased_if_needed(&state, &tenant.0, &stored).await?;
    let mut limits = Vec::with_capacity(stored.len());
    for limit in stored {
        limits.push(with_buckets(&state, &tenant.0, limit, leased.as_deref()).await?);
    }
    Ok(ApiJson(LimitList { limits }))
}

async fn find(state: &AppState, tenant: &str, key: &str) -> ApiResult<StoredLimit> {
    state
        .store
        .limits(tenant)
        .await?
        .into_iter()
        .find(|l| l.key == key)
        .ok_or_else(|| {
            ApiError::not_found(format!("there is no limit on {key:?}"))
                .with_details(json!({"key": key}))
        })
}

/// One limit and its buckets now.
#[utoipa::path(get, path = "/v1/limits/{key}", tag = "operators",
    params(("key" = String, Path, description = "`*`, `queue:<name>`, `kind:<kind>`, a job key such as `host:api.example.com`, or a prefix such as `host:*`")),
    responses((status = 200, body = Limit), (status = 404, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    tenant: Tenant,
    LimitKeyParam(key): LimitKeyParam,
) -> ApiResult<ApiJson<Limit>> {
    let limit = find(&state, &tenant.0, &key).await?;
    let leased = leased_if_needed(&state, &tenant.0, std::slice::from_ref(&limit)).await?;
    Ok(ApiJson(
        with_buckets(&state, &tenant.0, limit, leased.as_deref()).await?,
    ))
}

/// Sets the limit on `key` (replacing the one there was): from the next claim on, leases of
/// jobs carrying that key are granted within it.
#[utoipa::path(put, path = "/v1/limits/{key}", tag = "operators",
    params(("key" = String, Path, description = "`*`, `queue:<name>`, `kind:<kind>`, a job key such as `host:api.example.com`, or a prefix such as `host:*`")),
    request_body = PutLimit,
    responses((status = 200, body = Limit), (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn put(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    LimitKeyParam(key): LimitKeyParam,
    ApiJson(body): ApiJson<PutLimit>,
) -> ApiResult<ApiJson<Limit>> {
    let spec = checked_spec(&body.spec())?;
    let why = crate::audit::justification(body.reason, body.ticket)?;
    // Stored as given (`burst` filled in), so that the record says what applies.
    let now = state.clock.now();
    let stored = state.store.put_limit(now, &tenant.0, &key, &spec).await?;
    let target = json!({"key": key, "limit": spec});
    crate::audit::record(
        &*state.store,
        &tenant.0,
        &principal,
        "limits.set",
        target,
        Some(&why),
        now,
    )
    .await;
    let leased = leased_if_needed(&state, &tenant.0, std::slice::from_ref(&stored)).await?;
    Ok(ApiJson(
        with_buckets(&state, &tenant.0, stored, leased.as_deref()).await?,
    ))
}

/// Removes the limit on `key` and its buckets (`?reason=…&ticket=…`, both required).
#[utoipa::path(delete, path = "/v1/limits/{key}", tag = "operators",
    params(("key" = String, Path, description = "the limit's key"),
           ("reason" = String, Query, description = "why (recorded in the audit trail)"),
           ("ticket" = String, Query, description = "the change ticket")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    LimitKeyParam(key): LimitKeyParam,
    query: QueryParams,
) -> ApiResult<StatusCode> {
    query.only(&["reason", "ticket"])?;
    let why = crate::audit::justification(
        query.get("reason").map(str::to_owned),
        query.get("ticket").map(str::to_owned),
    )?;
    if !state.store.delete_limit(&tenant.0, &key).await? {
        return Err(ApiError::not_found(format!("there is no limit on {key:?}"))
            .with_details(json!({"key": key})));
    }
    crate::audit::record(
        &*state.store,
        &tenant.0,
        &principal,
        "limits.delete",
        json!({"key": key}),
        Some(&why),
        state.clock.now(),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
