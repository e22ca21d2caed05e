//! Audited operator actions over HTTP (`crate::audit`): the audit trail (`GET /v1/audit`,
//! scope `admin`) and the replay of dead jobs by filter (`POST /v1/replays`, scope
//! `orch:backfill`, with a reason and a ticket).

use axum::Router;
use axum::extract::State;
use axum::routing;
use leasehold_proto::{AuditList, ErrorEnvelope, JobState, ReplayRequest, ReplayResult};
use serde_json::json;

use super::AppState;
use super::extract::{ApiJson, QueryParams, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::keys::Principal;
use crate::store::{AUDIT_EVENT, EventFilter, JobFilter, RetryJob};
use crate::validate;

/// Default and largest `limit` of a replay.
const REPLAY_LIMIT: (u32, u32) = (1000, 10_000);
/// Default and largest page of the audit trail.
const AUDIT_PAGE: (u32, u32) = (100, 500);
/// Jobs listed per store call while gathering a replay.
const LIST_PAGE: u32 = 500;

/// The audit routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/audit", routing::get(list))
        .route("/v1/replays", routing::post(replay))
}

/// The tenant's audit events, oldest first: who did what, when, why. Page with `after` (the
/// last id seen; `next_after` of the previous page); `from` keeps events at or after an
/// RFC 3339 time.
#[utoipa::path(get, path = "/v1/audit", tag = "operators",
    params(("after" = Option<i64>, Query), ("limit" = Option<u32>, Query, description = "1 to 500, default 100"),
           ("from" = Option<String>, Query, description = "RFC 3339")),
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
    let from = query
        .get("from")
        .map(|raw| {
            chrono::DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| ApiError::validation("from", "from must be an RFC 3339 time"))
        })
        .transpose()?;
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

/// Send the tenant's dead (or cancelled) jobs matching a filter back to `queued`, each with a
/// fresh attempt budget (as `POST /v1/jobs/{id}/retry`), newest first up to `limit`. Needs
/// `reason` and `ticket`, recorded with who asked in an `audit` event; `dry_run` counts and
/// names the jobs without changing or recording anything.
#[utoipa::path(post, path = "/v1/replays", tag = "operators", request_body = ReplayRequest,
    responses((status = 200, body = ReplayResult), (status = 422, description = "a missing reason or ticket, or a bad filter", body = ErrorEnvelope)))]
pub(crate) async fn replay(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    ApiJson(body): ApiJson<ReplayRequest>,
) -> ApiResult<ApiJson<ReplayResult>> {
    let why = crate::audit::justification(body.reason, body.ticket)?;
    if let Some(q) = &body.queue {
        validate::name("queue", q)?;
    }
    if let Some(k) = &body.kind {
        validate::kind(k)?;
    }
    let ended = match body.state.as_deref() {
        None | Some("dead") => JobState::Dead,
        Some("cancelled") => JobState::Cancelled,
        Some(other) => {
            return Err(ApiError::validation(
                "state",
                format!("state is `dead` or `cancelled`, not {other:?}"),
            ));
        }
    };
    let limit = body.limit.unwrap_or(REPLAY_LIMIT.0);
    if !(1..=REPLAY_LIMIT.1).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("limit is 1 to {}", REPLAY_LIMIT.1),
        ));
    }
    let mut job_ids = Vec::new();
    let mut before = None;
    while (job_ids.len() as u32) < limit {
        let want = LIST_PAGE.min(limit - job_ids.len() as u32);
        let page = state
            .store
            .list_jobs(&JobFilter {
                tenant: tenant.0.clone(),
                queue: body.queue.clone(),
                state: Some(ended),
                kind: body.kind.clone(),
                before,
                limit: want,
            })
            .await?;
        job_ids.extend(page.iter().map(|j| j.id));
        // A short page is the last one.
        if (page.len() as u32) < want {
            break;
        }
        before = job_ids.last().copied();
    }
    let matched = job_ids.len() as u64;
    if body.dry_run {
        return Ok(ApiJson(ReplayResult {
            dry_run: true,
            matched,
            replayed: 0,
            job_ids,
            audit_event_id: None,
        }));
    }
    let now = state.clock.now();
    let mut replayed = 0;
    for id in &job_ids {
        let retried = state
            .store
            .retry_job(RetryJob {
                now,
                tenant: tenant.0.clone(),
                id: *id,
            })
            .await?;
        if retried.is_some_and(|t| t.changed) {
            replayed += 1;
        }
    }
    if replayed > 0 {
        state.ready.notify();
    }
    let target = json!({
        "queue": body.queue, "kind": body.kind, "state": ended, "limit": limit,
        "matched": matched, "replayed": replayed,
    });
    let event = crate::audit::record(
        &*state.store,
        &tenant.0,
        &principal,
        "jobs.replay",
        target,
        Some(&why),
        now,
    )
    .await;
    Ok(ApiJson(ReplayResult {
        dry_run: false,
        matched,
        replayed,
        job_ids,
        audit_event_id: event.map(|e| e.id),
    }))
}
