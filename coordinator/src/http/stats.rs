//! Job statistics over HTTP (`crate::stats`): throughput per minute (`GET /v1/stats`), failed
//! attempts by class (`GET /v1/failures`), service-level objectives and their burn rates
//! (`GET /v1/slo`; set with `PUT`/`DELETE /v1/slo/{queue}`, scope `admin`, audited `slo.set`,
//! `slo.delete`). Each read first rolls up what the ledger has settled.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use leasehold_proto::{
    ErrorCode, ErrorEnvelope, FailureClasses, JobStats, QueueSlo, SloObjective, SloReport,
};
use serde_json::json;

use super::AppState;
use super::extract::{ApiJson, QueryParams, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::keys::Principal;
use crate::retention::Window;
use crate::stats::{self, ANY_QUEUE};
use crate::validate;

/// Default and longest window of the SLO report.
const SLO_WINDOW: (i64, i64) = (3600, 7 * 86_400);
/// Most failure classes answered.
const MAX_CLASSES: u32 = 500;

/// The routes of this module.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/stats", get(job_stats))
        .route("/v1/failures", get(failures))
        .route("/v1/slo", get(slo))
        .route(
            "/v1/slo/{queue}",
            get(slo_one).put(set_slo).delete(delete_slo),
        )
}

/// `since` (default `default` back) within the counts kept, and the optional `queue`.
fn range(
    query: &QueryParams,
    now: chrono::DateTime<chrono::Utc>,
    default: chrono::Duration,
) -> ApiResult<(chrono::DateTime<chrono::Utc>, Option<String>)> {
    let since = query.time("since", now)?.unwrap_or(now - default);
    if since < now - stats::KEEP {
        return Err(ApiError::validation(
            "since",
            "statistics are kept for 8 days: since is at most 8d back",
        ));
    }
    let queue = query.get("queue").map(str::to_owned);
    if let Some(q) = &queue {
        validate::name("queue", q)?;
    }
    Ok((stats::minute_of(since), queue))
}

/// The tenant's jobs per minute and queue from `since` (default: an hour back; an RFC 3339
/// time or a span such as `6h`) to now: leases, successes, failed attempts, deaths and
/// cancellations. Minutes with nothing are left out.
#[utoipa::path(get, path = "/v1/stats", tag = "operators",
    params(("since" = Option<String>, Query, description = "an RFC 3339 time or a span back from now (default `1h`, at most `8d`)"),
           ("queue" = Option<String>, Query, description = "only this queue")),
    responses((status = 200, body = JobStats), (status = 422, body = ErrorEnvelope),
              (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn job_stats(
    State(state): State<AppState>,
    tenant: Tenant,
    query: QueryParams,
) -> ApiResult<ApiJson<JobStats>> {
    query.only(&["since", "queue"])?;
    let now = state.clock.now();
    let (since, queue) = range(&query, now, chrono::Duration::hours(1))?;
    stats::catch_up(&*state.store).await?;
    let rows = state
        .store
        .job_stats(&tenant.0, since, queue.as_deref())
        .await?;
    Ok(ApiJson(JobStats {
        since,
        until: now,
        bucket_secs: 60,
        points: rows.into_iter().map(|r| r.point).collect(),
    }))
}

/// The tenant's failed attempts from `since` (default: a day back) by queue and class
/// (`error.class`; `lease_expired`; `timeout`), most first: which errors cluster where.
#[utoipa::path(get, path = "/v1/failures", tag = "operators",
    params(("since" = Option<String>, Query, description = "an RFC 3339 time or a span back from now (default `24h`, at most `8d`)"),
           ("queue" = Option<String>, Query, description = "only this queue"),
           ("limit" = Option<u32>, Query, description = "at most this many classes, 1 to 500 (default 100)")),
    responses((status = 200, body = FailureClasses), (status = 422, body = ErrorEnvelope),
              (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn failures(
    State(state): State<AppState>,
    tenant: Tenant,
    query: QueryParams,
) -> ApiResult<ApiJson<FailureClasses>> {
    query.only(&["since", "queue", "limit"])?;
    let now = state.clock.now();
    let (since, queue) = range(&query, now, chrono::Duration::hours(24))?;
    let limit = query.parse::<u32>("limit")?.unwrap_or(100);
    if !(1..=MAX_CLASSES).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("limit is 1 to {MAX_CLASSES}"),
        ));
    }
    stats::catch_up(&*state.store).await?;
    let classes = state
        .store
        .failure_classes(&tenant.0, since, queue.as_deref(), limit)
        .await?;
    Ok(ApiJson(FailureClasses {
        since,
        until: now,
        classes,
    }))
}

/// The report over `window` (default an hour; a span such as `6h`, at most `7d`): every queue,
/// or only `asked` (a queue, or `*`: the tenant's default objectives, which measure nothing).
async fn report(
    state: &AppState,
    tenant: &str,
    query: &QueryParams,
    asked: Option<&str>,
) -> ApiResult<SloReport> {
    query.only(&["window"])?;
    let secs = match query.get("window") {
        None => SLO_WINDOW.0,
        // The span parser of retention windows, without its leniency for surrounding blanks.
        Some(raw) => match raw.parse::<Window>() {
            Ok(Window::After(span))
                if raw.trim() == raw && (60..=SLO_WINDOW.1 as u64).contains(&span.as_secs()) =>
            {
                span.as_secs() as i64
            }
            _ => {
                return Err(ApiError::validation(
                    "window",
                    "window is a span from 1m to 7d, e.g. 1h or 30m",
                ));
            }
        },
    };
    let window = chrono::Duration::seconds(secs);
    stats::catch_up(&*state.store).await?;
    let since = stats::minute_of(state.clock.now() - window);
    let rows = state.store.job_stats(tenant, since, asked).await?;
    let objectives = state.store.slo_objectives(tenant).await?;
    Ok(stats::slo_report(&rows, &objectives, window, asked))
}

/// Each queue with activity in the window (or an objective of its own): its objectives (the
/// queue's, else the tenant's `*`, else 0.99 success and 0.99 of pickups within 1000 ms), the
/// share of jobs that succeeded and of leases picked up in time, and how fast each burns its
/// error budget.
#[utoipa::path(get, path = "/v1/slo", tag = "operators",
    params(("window" = Option<String>, Query, description = "the window measured: a span from `1m` to `7d` (default `1h`)")),
    responses((status = 200, body = SloReport), (status = 422, body = ErrorEnvelope),
              (status = 503, body = ErrorEnvelope)))]
pub(crate) async fn slo(
    State(state): State<AppState>,
    tenant: Tenant,
    query: QueryParams,
) -> ApiResult<ApiJson<SloReport>> {
    Ok(ApiJson(report(&state, &tenant.0, &query, None).await?))
}

/// One queue's objectives and how they fare (`*`: the tenant's default objectives, with no
/// measures).
#[utoipa::path(get, path = "/v1/slo/{queue}", tag = "operators",
    params(("queue" = String, Path), ("window" = Option<String>, Query, description = "as `GET /v1/slo`")),
    responses((status = 200, body = QueueSlo), (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn slo_one(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(queue): Path<String>,
    query: QueryParams,
) -> ApiResult<ApiJson<QueueSlo>> {
    check_queue(&queue)?;
    let report = report(&state, &tenant.0, &query, Some(&queue)).await?;
    report
        .queues
        .into_iter()
        .find(|q| q.queue == queue)
        .map(ApiJson)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Internal,
                "the report left out the queue asked for",
            )
        })
}

fn check_queue(queue: &str) -> ApiResult<()> {
    if queue == ANY_QUEUE {
        return Ok(());
    }
    validate::name("queue", queue)
}

/// Set a queue's objectives (`*`: the tenant's, for queues without their own), replaced whole.
#[utoipa::path(put, path = "/v1/slo/{queue}", tag = "operators",
    params(("queue" = String, Path, description = "a queue, or `*` for the tenant's default")),
    request_body = SloObjective,
    responses((status = 200, body = SloObjective), (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn set_slo(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    Path(queue): Path<String>,
    ApiJson(objective): ApiJson<SloObjective>,
) -> ApiResult<ApiJson<SloObjective>> {
    check_queue(&queue)?;
    stats::check_objective(&objective)?;
    let now = state.clock.now();
    state
        .store
        .set_slo_objective(now, &tenant.0, &queue, Some(objective))
        .await?;
    crate::audit::record(
        &*state.store,
        &tenant.0,
        &principal,
        "slo.set",
        json!({"queue": queue, "objective": objective}),
        None,
        now,
    )
    .await;
    Ok(ApiJson(objective))
}

/// Remove a queue's objectives (it then follows the tenant's, or the defaults).
#[utoipa::path(delete, path = "/v1/slo/{queue}", tag = "operators",
    params(("queue" = String, Path)),
    responses((status = 204), (status = 404, description = "no objectives were set", body = ErrorEnvelope)))]
pub(crate) async fn delete_slo(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    Path(queue): Path<String>,
) -> ApiResult<StatusCode> {
    check_queue(&queue)?;
    let now = state.clock.now();
    if !state
        .store
        .set_slo_objective(now, &tenant.0, &queue, None)
        .await?
    {
        return Err(ApiError::not_found(format!(
            "queue {queue:?} has no objectives of its own"
        )));
    }
    crate::audit::record(
        &*state.store,
        &tenant.0,
        &principal,
        "slo.delete",
        json!({"queue": queue}),
        None,
        now,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
