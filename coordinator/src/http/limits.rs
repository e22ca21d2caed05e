//! `/v1/limits…`: the tenant's flow-control limits (`crate::flow`, docs/flow-control.md). Reading
//! them needs `jobs:read`; setting or removing one needs `orch:quota` with a `reason` and a
//! `ticket`, recorded in the audit trail.

use axum::Router;
use axum::extract::State;
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::get;
use leasehold_proto::{
    BreakerState, ErrorCode, ErrorEnvelope, IncidentList, Limit, LimitBucket, LimitList, PutLimit,
};
use serde_json::json;

use super::AppState;
use super::audit::event_page;
use super::extract::{ApiJson, QueryParams, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::flow::gate::Gate;
use crate::flow::keys::LimitKey;
use crate::flow::{MAX_LIMITS_PER_TENANT, Rule, checked_spec};
use crate::keys::Principal;
use crate::store::StoredLimit;

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/limits", get(list))
        .route("/v1/incidents", get(incidents))
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
    if rules[0].rate.is_some() || rules[0].breaker.is_some() {
        let now = state.clock.now();
        for (bucket, level) in state.store.limit_levels(tenant, &limit.key).await? {
            gate.load_level((limit.key.clone(), bucket.clone()), level);
            let tokens = rules[0]
                .rate
                .map(|_| (gate.tokens(&rules[0], &bucket) * 1000.0).floor() / 1000.0);
            let effective_rate = rules[0].rate.filter(|_| rules[0].adaptive).map(|rate| {
                (rate * crate::flow::adaptive::factor(&level, now) * 1000.0).round() / 1000.0
            });
            let breaker = rules[0].breaker.as_ref().map(|_| BreakerState {
                state: crate::flow::breaker::phase(&rules[0], &level, now).to_owned(),
                failures: level.failures,
                opened_at: level.opened_at,
            });
            buckets.insert(
                bucket.clone(),
                LimitBucket {
                    bucket,
                    tokens,
                    leased: None,
                    effective_rate,
                    breaker,
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
                        effective_rate: None,
                        breaker: None,
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
        breaker: rules[0].breaker.clone(),
        blackouts: limit.spec.blackouts.clone(),
        adaptive: rules[0].adaptive,
        blackout_until: crate::flow::blackout::on_until(&rules[0].blackouts, state.clock.now()),
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
    responses((status = 200, body = Limit), (status = 409, description = "the tenant has the most limits allowed (100)", body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn put(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    LimitKeyParam(key): LimitKeyParam,
    ApiJson(body): ApiJson<PutLimit>,
) -> ApiResult<ApiJson<Limit>> {
    let spec = checked_spec(&body.spec())?;
    let why = crate::audit::justification(body.reason, body.ticket)?;
    let defined = state.store.limits(&tenant.0).await?;
    if defined.len() >= MAX_LIMITS_PER_TENANT && !defined.iter().any(|l| l.key == key) {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "the tenant has {} limits, the most allowed; change or delete one of them instead",
                defined.len()
            ),
        )
        .with_details(json!({"field": "key", "max": MAX_LIMITS_PER_TENANT})));
    }
    // Stored as given (`burst` filled in), so that the record says what applies.
    let now = state.clock.now();
    let stored = state.store.put_limit(now, &tenant.0, &key, &spec).await?;
    state.catalog.forget(&tenant.0);
    // Claimers parked behind the old limits ask again under the new ones.
    state.ready.notify();
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
    let removed = state.store.delete_limit(&tenant.0, &key).await?;
    state.catalog.forget(&tenant.0);
    // Claimers parked behind the old limits ask again under the new ones.
    state.ready.notify();
    if !removed {
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

/// The tenant's circuit breaker incidents, oldest first: each opening and closing (`breaker`
/// events: `data` has `limit`, `bucket`, `state`, `failures` and the `job_id` whose outcome did
/// it). Paged like `GET /v1/audit`.
#[utoipa::path(get, path = "/v1/incidents", tag = "operators",
    params(("after" = Option<i64>, Query), ("limit" = Option<u32>, Query, description = "1 to 500, default 100"),
           ("from" = Option<String>, Query, description = "RFC 3339")),
    responses((status = 200, body = IncidentList), (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn incidents(
    State(state): State<AppState>,
    tenant: Tenant,
    query: QueryParams,
) -> ApiResult<ApiJson<IncidentList>> {
    let (events, next_after) =
        event_page(&state, tenant.0, &query, crate::store::BREAKER_EVENT).await?;
    Ok(ApiJson(IncidentList { events, next_after }))
}
