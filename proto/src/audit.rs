//! Audited operator actions: the replay of dead jobs by filter (`POST /v1/replays`, scope
//! `orch:backfill`, with a reason and a ticket) and the audit trail (`GET /v1/audit`). Each
//! audited action is a ledger event of type `audit` whose `data` says who (`actor`), what
//! (`action`, `target`), and why (`reason`, `ticket`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// Body of `POST /v1/replays`: send the tenant's dead (or cancelled) jobs matching a filter
/// back to `queued`, each with a fresh attempt budget, as `POST /v1/jobs/{id}/retry` does.
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

/// Answer of `GET /v1/audit`: the tenant's audit events, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditList {
    /// Events of type `audit`.
    pub events: Vec<Event>,
    /// Pass as `after` for the next page (absent on the last page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
}
