//! Bulk actions on the jobs a filter selects (`leasehold_proto::bulk`): `POST /v1/replays`
//! (dead or cancelled jobs back to `queued`) and `POST /v1/cancellations` (waiting jobs
//! cancelled, running ones asked to stop). Each takes the filter of `GET /v1/jobs`, answers a
//! dry run with the count and the ids, and otherwise acts job by job (as the single-job routes
//! do, so each job's own rules and events hold) and records one audit event with the reason and
//! ticket it requires.

use axum::Router;
use axum::extract::State;
use axum::routing;
use chrono::{DateTime, Utc};
use leasehold_proto::{
    CancellationRequest, CancellationResult, ErrorEnvelope, JobState, ReplayRequest, ReplayResult,
};
use serde_json::json;
use uuid::Uuid;

use super::AppState;
use super::extract::{ApiJson, Tenant, time_value};
use crate::error::{ApiError, ApiResult};
use crate::keys::Principal;
use crate::store::{CancelJob, JobFilter, RetryJob};
use crate::validate;

/// Default and largest `limit` of a bulk action.
const BULK_LIMIT: (u32, u32) = (1000, 10_000);
/// Jobs listed per store call while gathering a selection.
const LIST_PAGE: u32 = 500;

/// The bulk routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/replays", routing::post(replay))
        .route("/v1/cancellations", routing::post(cancel))
}

/// The jobs a bulk action takes: the `GET /v1/jobs` filter, in one or more states.
struct Selection {
    queue: Option<String>,
    kind: Option<String>,
    states: Vec<JobState>,
    run_id: Option<Uuid>,
    correlation_id: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: u32,
}

/// What a bulk action did.
struct Done {
    matched: u64,
    /// Jobs the action changed (fewer than `matched` when some changed state meanwhile).
    acted: u64,
    job_ids: Vec<Uuid>,
    audit_event_id: Option<i64>,
}

impl Selection {
    /// Checks the filter's fields as `GET /v1/jobs` does (422 naming the first bad one).
    #[allow(clippy::too_many_arguments)] // The request's own fields, each checked here.
    fn checked(
        queue: Option<String>,
        kind: Option<String>,
        states: Vec<JobState>,
        run_id: Option<Uuid>,
        correlation_id: Option<String>,
        since: Option<String>,
        until: Option<String>,
        limit: Option<u32>,
        now: DateTime<Utc>,
    ) -> ApiResult<Self> {
        validate::job_filter(queue.as_deref(), kind.as_deref(), correlation_id.as_deref())?;
        let limit = limit.unwrap_or(BULK_LIMIT.0);
        if !(1..=BULK_LIMIT.1).contains(&limit) {
            return Err(ApiError::validation(
                "limit",
                format!("limit is 1 to {}", BULK_LIMIT.1),
            ));
        }
        let time =
            |field: &str, raw: Option<String>| raw.map(|r| time_value(field, &r, now)).transpose();
        Ok(Self {
            queue,
            kind,
            states,
            run_id,
            correlation_id,
            since: time("since", since)?,
            until: time("until", until)?,
            limit,
        })
    }

    /// What the audit event says was selected.
    fn target(&self, matched: u64, acted: (&str, u64)) -> serde_json::Value {
        let mut target = json!({
            "queue": self.queue, "kind": self.kind, "states": self.states,
            "run_id": self.run_id, "correlation_id": self.correlation_id,
            "since": self.since, "until": self.until, "limit": self.limit,
            "matched": matched,
        });
        target[acted.0] = json!(acted.1);
        target
    }

    /// Applies `each` to the selected jobs one at a time (it answers whether the job changed)
    /// and records `action` in the audit trail with the count under `counted`; a dry run only
    /// selects.
    #[allow(clippy::too_many_arguments)] // The action's whole context, passed once.
    async fn act<F, Fut>(
        &self,
        state: &AppState,
        tenant: &str,
        principal: &Principal,
        why: &crate::audit::Justification,
        dry_run: bool,
        (action, counted): (&str, &str),
        each: F,
    ) -> ApiResult<Done>
    where
        F: Fn(Uuid) -> Fut,
        Fut: std::future::Future<Output = ApiResult<bool>>,
    {
        let job_ids = self.ids(state, tenant).await?;
        let matched = job_ids.len() as u64;
        if dry_run {
            return Ok(Done {
                matched,
                acted: 0,
                job_ids,
                audit_event_id: None,
            });
        }
        let mut acted = 0;
        for id in &job_ids {
            if each(*id).await? {
                acted += 1;
            }
        }
        let event = crate::audit::record(
            &*state.store,
            tenant,
            principal,
            action,
            self.target(matched, (counted, acted)),
            Some(why),
            state.clock.now(),
        )
        .await;
        Ok(Done {
            matched,
            acted,
            job_ids,
            audit_event_id: event.map(|e| e.id),
        })
    }

    /// The selected jobs' ids, newest first, at most `limit`.
    async fn ids(&self, state: &AppState, tenant: &str) -> ApiResult<Vec<Uuid>> {
        let mut ids = Vec::new();
        for job_state in &self.states {
            let mut before = None;
            let mut taken = 0;
            while taken < self.limit {
                let want = LIST_PAGE.min(self.limit - taken);
                let page = state
                    .store
                    .list_jobs(&JobFilter {
                        tenant: tenant.to_owned(),
                        queue: self.queue.clone(),
                        state: Some(*job_state),
                        kind: self.kind.clone(),
                        run_id: self.run_id,
                        correlation_id: self.correlation_id.clone(),
                        since: self.since,
                        until: self.until,
                        before,
                        limit: want,
                    })
                    .await?;
                taken += page.len() as u32;
                ids.extend(page.iter().map(|j| j.id));
                // A short page is the last one.
                if (page.len() as u32) < want {
                    break;
                }
                before = page.last().map(|j| j.id);
            }
        }
        // Newest first across the states (ids are UUIDv7), then the limit.
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.truncate(self.limit as usize);
        Ok(ids)
    }
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
    let now = state.clock.now();
    let selection = Selection::checked(
        body.queue,
        body.kind,
        vec![ended],
        body.run_id,
        body.correlation_id,
        body.since,
        body.until,
        body.limit,
        now,
    )?;
    let store = state.store.clone();
    let tenant = tenant.0;
    let done = selection
        .act(
            &state,
            &tenant,
            &principal,
            &why,
            body.dry_run,
            ("jobs.replay", "replayed"),
            |id| {
                let (store, tenant) = (store.clone(), tenant.clone());
                async move {
                    let retried = store.retry_job(RetryJob { now, tenant, id }).await?;
                    Ok(retried.is_some_and(|t| t.changed))
                }
            },
        )
        .await?;
    if done.acted > 0 {
        state.ready.notify();
    }
    Ok(ApiJson(ReplayResult {
        dry_run: body.dry_run,
        matched: done.matched,
        replayed: done.acted,
        job_ids: done.job_ids,
        audit_event_id: done.audit_event_id,
    }))
}

/// Cancel the tenant's jobs matching a filter, newest first up to `limit`: queued and blocked
/// ones at once, leased ones on their worker's next heartbeat (as `POST /v1/jobs/{id}/cancel`,
/// each job's reason being the request's). Needs `reason` and `ticket`, recorded with who asked
/// in an `audit` event; `dry_run` counts and names the jobs without changing anything.
#[utoipa::path(post, path = "/v1/cancellations", tag = "operators", request_body = CancellationRequest,
    responses((status = 200, body = CancellationResult), (status = 422, description = "a missing reason or ticket, or a bad filter", body = ErrorEnvelope)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    tenant: Tenant,
    principal: Principal,
    ApiJson(body): ApiJson<CancellationRequest>,
) -> ApiResult<ApiJson<CancellationResult>> {
    let why = crate::audit::justification(body.reason, body.ticket)?;
    let states = match body.state.as_deref() {
        None => vec![JobState::Queued, JobState::Blocked, JobState::Leased],
        Some("queued") => vec![JobState::Queued],
        Some("blocked") => vec![JobState::Blocked],
        Some("leased") => vec![JobState::Leased],
        Some(other) => {
            return Err(ApiError::validation(
                "state",
                format!(
                    "state is `queued`, `blocked` or `leased` (default: all three), not {other:?}"
                ),
            ));
        }
    };
    let now = state.clock.now();
    let selection = Selection::checked(
        body.queue,
        body.kind,
        states,
        body.run_id,
        body.correlation_id,
        body.since,
        body.until,
        body.limit,
        now,
    )?;
    let store = state.store.clone();
    let tenant = tenant.0;
    let reason = why.reason.clone();
    let done = selection
        .act(
            &state,
            &tenant,
            &principal,
            &why,
            body.dry_run,
            ("jobs.cancel", "cancelled"),
            |id| {
                let (store, tenant, reason) = (store.clone(), tenant.clone(), reason.clone());
                async move {
                    let cancelled = store
                        .cancel_job(CancelJob {
                            now,
                            tenant,
                            id,
                            reason,
                        })
                        .await?;
                    Ok(cancelled.is_some_and(|t| t.changed))
                }
            },
        )
        .await?;
    Ok(ApiJson(CancellationResult {
        dry_run: body.dry_run,
        matched: done.matched,
        cancelled: done.acted,
        job_ids: done.job_ids,
        audit_event_id: done.audit_event_id,
    }))
}
