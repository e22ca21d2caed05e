//! Bulk actions on the jobs a filter selects, each with a dry run that counts and names them
//! first, and each audited (a reason and a ticket are required, recorded with who asked):
//! - `POST /v1/replays` (scope `orch:backfill`): dead (or cancelled) jobs back to `queued`,
//!   each with a fresh attempt budget, as `POST /v1/jobs/{id}/retry` does;
//! - `POST /v1/cancellations` (scope `jobs:write`): waiting jobs cancelled and running ones
//!   asked to stop, as `POST /v1/jobs/{id}/cancel` does.
//!
//! The filter's fields are those of `GET /v1/jobs`: what a listing shows is what the action
//! takes (newest first, up to `limit`). Each request spells them out rather than flattening a
//! shared struct: serde cannot refuse unknown keys beside a flattened one, and a typo must never
//! widen what a bulk action takes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Body of `POST /v1/replays`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Only this queue (default: every queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Only this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Which ended jobs: `dead` (the default) or `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only the jobs of this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    /// Only jobs with this correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Only jobs enqueued at or after this: an RFC 3339 time or a span back from now (`24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only jobs enqueued before this: an RFC 3339 time or a span back from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// At most this many jobs, newest first (default 1000, at most 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Count and name the jobs that would be replayed; change nothing, record nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Why (required, up to 1000 characters): recorded in the audit event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The change ticket it belongs to (required, up to 200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// Answer of `POST /v1/replays`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplayResult {
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Jobs that matched the filter (up to `limit`).
    pub matched: u64,
    /// Jobs sent back to `queued` (or `blocked`, behind unfinished parents); 0 on a dry run.
    /// Fewer than `matched` when some changed state meanwhile.
    pub replayed: u64,
    /// The matched jobs' ids, newest first.
    pub job_ids: Vec<Uuid>,
    /// The audit event recording the replay (absent on a dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_event_id: Option<i64>,
}

/// Body of `POST /v1/cancellations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CancellationRequest {
    /// Only this queue (default: every queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Only this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only jobs in this state: `queued`, `blocked` or `leased` (default: all three). A leased
    /// job is asked to stop: its worker sees the request on its next heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only the jobs of this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    /// Only jobs with this correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Only jobs enqueued at or after this: an RFC 3339 time or a span back from now (`24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only jobs enqueued before this: an RFC 3339 time or a span back from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// At most this many jobs, newest first (default 1000, at most 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Count and name the jobs that would be cancelled; change nothing, record nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Why (required, up to 1000 characters): recorded on each job and in the audit event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The change ticket it belongs to (required, up to 200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// Answer of `POST /v1/cancellations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancellationResult {
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Jobs that matched the filter (up to `limit`).
    pub matched: u64,
    /// Waiting jobs cancelled and running jobs asked to stop; 0 on a dry run. Fewer than
    /// `matched` when some ended meanwhile.
    pub cancelled: u64,
    /// The matched jobs' ids, newest first.
    pub job_ids: Vec<Uuid>,
    /// The audit event recording the cancellation (absent on a dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_event_id: Option<i64>,
}
