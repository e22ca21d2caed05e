//! The operators' calls of a client: runs and workers listed, the jobs a filter selects
//! cancelled or replayed, job statistics, failure classes and SLO reports. Each takes JSON and
//! writes the coordinator's JSON answer.

use std::ffi::c_char;

use leasehold::ListRuns;
use leasehold::proto::{CancellationRequest, ReplayRequest, RunStatus};
use serde::Deserialize;

use super::{Argument, json_call, lh_client};
use crate::cancel::lh_cancel;
use crate::error::lh_result;
use crate::mem::lh_bytes;

/// The filters `lh_client_runs` takes, as JSON (every key optional; unknown keys refused).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunQuery {
    status: Option<RunStatus>,
    name: Option<String>,
    project: Option<String>,
    correlation_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

impl From<RunQuery> for ListRuns {
    fn from(q: RunQuery) -> Self {
        let mut l = ListRuns::default();
        l.status = q.status;
        l.name = q.name;
        l.project = q.project;
        l.correlation_id = q.correlation_id;
        l.since = q.since;
        l.until = q.until;
        l.limit = q.limit;
        l.cursor = q.cursor;
        l
    }
}

/// `{"since"}` of `lh_client_workers`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkersQuery {
    since: Option<String>,
}

/// `{"since", "queue"}` of `lh_client_stats` and `lh_client_failures`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    since: Option<String>,
    queue: Option<String>,
}

/// `{"window"}` of `lh_client_slo`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SloQuery {
    window: Option<String>,
}

/// Writes a page of the tenant's runs, newest first, each with its jobs counted by state, as
/// JSON (`{"runs": […], "next_cursor": …}`). `query_json` (NULL or empty: no filter) may hold
/// `status` (`pending`, `running`, `succeeded`, `failed`, `cancelled`), `name`, `project`,
/// `correlation_id`, `since`, `until` (as for `lh_client_list`), `limit` and `cursor`.
///
/// # Safety
/// As `lh_client_list`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_runs(
    client: *const lh_client,
    query_json: *const c_char,
    len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    // SAFETY: per the contract.
    unsafe {
        json_call(
            client,
            (query_json, len, Argument::Query),
            cancel,
            out,
            |client, q: RunQuery| async move { client.list_runs(&ListRuns::from(q)).await },
        )
    }
}

/// Writes the tenant's workers seen since `since` (default: the last hour) or holding leases
/// now, as a JSON array (each with `worker_id`, `transport`, `queues`, `version`,
/// `first_seen_at`, `last_seen_at`, `last_heartbeat_at`, `connected`, `leases`). `query_json`:
/// NULL, empty or `{"since": …}` (an RFC 3339 time or a span back from now).
///
/// # Safety
/// As `lh_client_list`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_workers(
    client: *const lh_client,
    query_json: *const c_char,
    len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    // SAFETY: per the contract.
    unsafe {
        json_call(
            client,
            (query_json, len, Argument::Query),
            cancel,
            out,
            |client, q: WorkersQuery| async move { client.workers(q.since.as_deref()).await },
        )
    }
}

/// Cancels the jobs a filter selects and writes what was done as JSON (`{"dry_run", "matched",
/// "cancelled", "job_ids", "audit_event_id"}`). `request_json` is the coordinator's
/// `CancellationRequest`: the filter of `lh_client_list` (`state`: `queued`, `blocked` or
/// `leased`; default all three) with `limit` (default 1000, newest first), `dry_run` (count and
/// name the jobs only) and the required `reason` and `ticket`, recorded in the audit trail (a
/// missing or blank one is `LH_INVALID_ARGUMENT` naming it, before anything is sent).
///
/// # Safety
/// `client` is NULL or live; `request_json` is valid for reads of `len` bytes; `cancel` is NULL
/// or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_cancel_jobs(
    client: *const lh_client,
    request_json: *const c_char,
    len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    // SAFETY: per the contract.
    unsafe {
        json_call(
            client,
            (request_json, len, Argument::Request),
            cancel,
            out,
            |client, r: CancellationRequest| async move { client.cancel_jobs(&r).await },
        )
    }
}

/// Sends the `dead` jobs a filter selects (with `"state": "cancelled"`, the cancelled ones)
/// back to `queued` with a fresh attempt budget, and writes what was done as JSON
/// (`{"dry_run", "matched", "replayed", "job_ids", "audit_event_id"}`). `request_json` is the
/// coordinator's `ReplayRequest`, with the required `reason` and `ticket` as for
/// `lh_client_cancel_jobs`.
///
/// # Safety
/// As `lh_client_cancel_jobs`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_replay_jobs(
    client: *const lh_client,
    request_json: *const c_char,
    len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    // SAFETY: per the contract.
    unsafe {
        json_call(
            client,
            (request_json, len, Argument::Request),
            cancel,
            out,
            |client, r: ReplayRequest| async move { client.replay_jobs(&r).await },
        )
    }
}

/// Writes the tenant's jobs per minute and queue as JSON (`{"since", "until", "bucket_secs",
/// "points": [{"at", "queue", "leased", "succeeded", "failed", "dead", "cancelled"}]}`).
/// `query_json`: NULL, empty, or `{"since", "queue"}` (`since`: an RFC 3339 time or a span back
/// from now, default `1h`, at most `8d`; `queue`: only that queue).
///
/// # Safety
/// As `lh_client_list`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_stats(
    client: *const lh_client,
    query_json: *const c_char,
    len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    // SAFETY: per the contract.
    unsafe {
        json_call(
            client,
            (query_json, len, Argument::Query),
            cancel,
            out,
            |client, q: StatsQuery| async move {
                client.stats(q.since.as_deref(), q.queue.as_deref()).await
            },
        )
    }
}

/// Writes the tenant's failed attempts by queue and error class, most first, as JSON
/// (`{"since", "until", "classes": [{"queue", "class", "count", "last_at"}]}`). `query_json`
/// as for `lh_client_stats` (`since` default `24h`).
///
/// # Safety
/// As `lh_client_list`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_failures(
    client: *const lh_client,
    query_json: *const c_char,
    len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    // SAFETY: per the contract.
    unsafe {
        json_call(
            client,
            (query_json, len, Argument::Query),
            cancel,
            out,
            |client, q: StatsQuery| async move {
                client
                    .failures(q.since.as_deref(), q.queue.as_deref())
                    .await
            },
        )
    }
}

/// Writes each queue's service-level objectives and how they fare over a window as JSON
/// (`{"window_secs", "queues": [{"queue", "objective", "configured", "success", "pickup"}]}`).
/// `query_json`: NULL, empty, or `{"window": …}` (a span from `1m` to `7d`, default `1h`).
///
/// # Safety
/// As `lh_client_list`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_slo(
    client: *const lh_client,
    query_json: *const c_char,
    len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    // SAFETY: per the contract.
    unsafe {
        json_call(
            client,
            (query_json, len, Argument::Query),
            cancel,
            out,
            |client, q: SloQuery| async move { client.slo(q.window.as_deref()).await },
        )
    }
}
