//! `GET /v1/workers`: the tenant's workers as the coordinators saw them (`crate::presence`).

use axum::Router;
use axum::extract::State;
use axum::routing;
use chrono::Duration;
use leasehold_proto::{ErrorEnvelope, WorkerInfo, WorkerList};

use super::AppState;
use super::extract::{ApiJson, QueryParams, Tenant};
use crate::error::ApiResult;
use crate::presence::CONNECTED_WITHIN;

/// `/v1/workers`.
pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/workers", routing::get(list))
}

/// How far back `GET /v1/workers` looks when not told.
const DEFAULT_WINDOW: Duration = Duration::hours(1);

/// The tenant's workers seen since `since` (default: the last hour) or holding leases now:
/// their transport, queues, version, when last seen and last heartbeating, whether connected,
/// and how many of the tenant's jobs each holds.
#[utoipa::path(get, path = "/v1/workers", tag = "leases",
    params(("since" = Option<String>, Query, description = "seen at or after this: an RFC 3339 time or a span back from now (`10m`, `24h`); default an hour ago")),
    responses((status = 200, body = WorkerList), (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    query: QueryParams,
) -> ApiResult<ApiJson<WorkerList>> {
    query.only(&["since"])?;
    let now = state.clock.now();
    let since = query.time("since", now)?.unwrap_or(now - DEFAULT_WINDOW);
    let recent = now - Duration::from_std(CONNECTED_WITHIN).unwrap_or_default();
    let workers = state
        .store
        .list_workers(&tenant.0, since)
        .await?
        .into_iter()
        .map(|w| WorkerInfo {
            connected: w.last_seen_at >= recent
                && w.closed_at.is_none_or(|closed| closed < w.last_seen_at),
            worker_id: w.worker_id,
            transport: w.transport,
            queues: w.queues,
            version: w.version,
            first_seen_at: w.first_seen_at,
            last_seen_at: w.last_seen_at,
            last_heartbeat_at: w.last_heartbeat_at,
            leases: u64::try_from(w.leases).unwrap_or(0),
        })
        .collect();
    Ok(ApiJson(WorkerList { workers }))
}
