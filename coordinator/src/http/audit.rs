//! The audit trail over HTTP (`crate::audit`): `GET /v1/audit`, scope `admin`.

use axum::Router;
use axum::extract::State;
use axum::routing;
use leasehold_proto::{AuditList, ErrorEnvelope};

use super::AppState;
use super::extract::{ApiJson, QueryParams, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::store::{AUDIT_EVENT, EventFilter};

/// Default and largest page of the audit trail.
const AUDIT_PAGE: (u32, u32) = (100, 500);

/// The audit routes.
pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/audit", routing::get(list))
}

/// The tenant's audit events, oldest first: who did what, when, why. Page with `after` (the
/// last id seen; `next_after` of the previous page); `from` keeps events at or after an
/// RFC 3339 time.
#[utoipa::path(get, path = "/v1/audit", tag = "operators",
    params(("after" = Option<i64>, Query), ("limit" = Option<u32>, Query, description = "1 to 500, default 100"),
           ("from" = Option<String>, Query, description = "an RFC 3339 time or a span back from now (`24h`)")),
    responses((status = 200, body = AuditList), (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    query: QueryParams,
) -> ApiResult<ApiJson<AuditList>> {
    let (events, next_after) = event_page(&state, tenant.0, &query, AUDIT_EVENT).await?;
    Ok(ApiJson(AuditList { events, next_after }))
}

/// One page of the tenant's events of type `kind`, oldest first (`after`, `limit`, `from` as
/// `GET /v1/audit` takes them), and the `after` of the next page when there may be one.
pub(super) async fn event_page(
    state: &AppState,
    tenant: String,
    query: &QueryParams,
    kind: &str,
) -> ApiResult<(Vec<leasehold_proto::Event>, Option<i64>)> {
    query.only(&["after", "limit", "from"])?;
    let after = query.parse::<i64>("after")?.unwrap_or(0).max(0);
    let limit = query.parse::<u32>("limit")?.unwrap_or(AUDIT_PAGE.0);
    if !(1..=AUDIT_PAGE.1).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("limit is 1 to {}", AUDIT_PAGE.1),
        ));
    }
    let from = query.time("from", state.clock.now())?;
    let events = state
        .store
        .list_events(&EventFilter {
            tenant: Some(tenant),
            after,
            types: vec![kind.to_owned()],
            from,
            limit,
            ..Default::default()
        })
        .await?;
    let next_after = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok((events, next_after))
}
