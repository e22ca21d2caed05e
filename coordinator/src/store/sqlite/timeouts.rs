//! Timed-out attempts on SQLite ([`super::timeouts`] decides how each ends): found by a claim's
//! candidate search and ended inside its write transaction, after its leases are granted.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use leasehold_proto::Job;
use leasehold_proto::retry::SplitMix64;
use serde_json::Value;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::SqliteStore;
use super::dag::SqliteDag;
use super::direct::{Arg, Exec, numbered_rows};
use super::rows::{append_events, decode_job, json_text, micros};
use crate::store::dag::{self, DagEffects};
use crate::store::timeouts::{self, TimedOut};
use crate::store::{StoreError, StoreResult};

/// Ends the attempts `ids` (found by the claim's candidate search: leased, their run-time
/// deadline passed), each as a `timeout` failure (queued again after its backoff, or `dead`, or
/// `cancelled`) with its event and its run's bookkeeping, inside the claim's transaction.
/// Returns how many.
pub(super) async fn end_timed_out(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    ids: &[Uuid],
    fx: &mut DagEffects,
) -> StoreResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut qb =
        QueryBuilder::<Sqlite>::new("SELECT * FROM jobs WHERE state = 'leased' AND id IN (");
    let mut sep = qb.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    qb.push(")");
    let rows = qb.build().fetch_all(&mut *conn).await?;
    let mut found = rows
        .iter()
        .map(decode_job)
        .collect::<StoreResult<Vec<_>>>()?;
    // In the order the claim found them.
    let order: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    found.sort_by_key(|job| order.get(&job.id).copied());
    let mut rng = SplitMix64::from_entropy();
    let ends: Vec<TimedOut> = found
        .iter()
        .map(|job| timeouts::decide(job, now, &mut rng))
        .collect();
    let mut updated = update(conn, now, &ends).await?;
    let jobs = ends
        .iter()
        .map(|end| {
            updated
                .remove(&end.id)
                .ok_or_else(|| StoreError::Internal(format!("timed-out job {} vanished", end.id)))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    // Events in the order found, one multi-row `INSERT` per group: a job of a run ends its
    // group, so its run's bookkeeping comes right after its own event.
    let mut start = 0;
    while start < jobs.len() {
        let mut end = start;
        while end < jobs.len() {
            end += 1;
            if jobs[end - 1].run_id.is_some() {
                break;
            }
        }
        let events: Vec<(&Job, &str, Value)> = jobs[start..end]
            .iter()
            .map(|job| {
                let (kind, data) = timeouts::event_of(job);
                (job, kind, data)
            })
            .collect();
        append_events(conn, &events, now).await?;
        dag::after_job_change(&mut SqliteDag(conn), (&jobs[end - 1]).into(), now, fx).await?;
        start = end;
    }
    Ok(jobs.len() as u64)
}

/// Writes `ends` with one `UPDATE … FROM`, each row fenced by the token of the attempt that
/// timed out; returns the rows as stored now.
async fn update(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    ends: &[TimedOut],
) -> StoreResult<HashMap<Uuid, Job>> {
    let errors: Vec<String> = ends.iter().map(|e| json_text(&e.error)).collect();
    // `?1` is the time; the rows are numbered from `?2` on.
    let sql = format!(
        "WITH i(id, token, state, run_at, finished_at, error) AS (VALUES {}) \
         UPDATE jobs SET state = i.state, run_at = i.run_at, finished_at = i.finished_at, \
           last_error = i.error, lease_expires_at = NULL, updated_at = ?1 \
         FROM i WHERE jobs.id = i.id AND +jobs.state = 'leased' AND jobs.lease_epoch = i.token \
         RETURNING *",
        numbered_rows(ends.len(), 6, 2)
    );
    let mut args = Vec::with_capacity(ends.len() * 6 + 1);
    args.push(Arg::Int(micros(now)));
    for (end, error) in ends.iter().zip(&errors) {
        args.extend([
            Arg::uuid(&end.id),
            Arg::Int(end.token),
            Arg::Text(end.state.as_str()),
            Arg::Int(micros(end.run_at)),
            Arg::opt_int(end.finished_at.map(micros)),
            Arg::Text(error),
        ]);
    }
    Exec::for_rows(conn, ends.len())
        .await?
        .fetch_jobs_by_id(&sql, &args)
        .await
}

impl SqliteStore {
    /// The `default_timeout_ms` of a queue, if it has one.
    pub(super) async fn queue_timeout(
        &self,
        tenant: &str,
        queue: &str,
    ) -> StoreResult<Option<u64>> {
        let ms: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT default_timeout_ms FROM queues WHERE tenant = ? AND name = ?",
        )
        .bind(tenant)
        .bind(queue)
        .fetch_optional(&self.reader)
        .await?;
        Ok(ms.flatten().and_then(|ms| u64::try_from(ms).ok()))
    }
}
