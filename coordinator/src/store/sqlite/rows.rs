//! SQLite rows: the on-disk time format, the job row codec and the event inserts every
//! statement of this backend shares.

use chrono::{DateTime, Utc};
use leasehold_proto::Job;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, Row, SqliteConnection};
use uuid::Uuid;

use super::direct::{Arg, Exec, JobColumns, decode_job_at};
use crate::store::{StoreError, StoreResult};

/// Microseconds since the epoch, the on-disk time format.
pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(super) fn from_micros(us: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Internal(format!("timestamp out of range: {us}")))
}

pub(super) fn opt_time(us: Option<i64>) -> StoreResult<Option<DateTime<Utc>>> {
    us.map(from_micros).transpose()
}

pub(super) fn json_text(v: &Value) -> String {
    v.to_string()
}

/// A job's `limit_keys` as stored: a JSON array, `NULL` when there are none.
pub(super) fn keys_text(keys: &[String]) -> Option<String> {
    (!keys.is_empty()).then(|| serde_json::Value::from(keys.to_vec()).to_string())
}

pub(super) fn decode_job(row: &SqliteRow) -> StoreResult<Job> {
    let cols = JobColumns::find(|name| Ok(row.try_column(name)?.ordinal()))?;
    decode_job_at(row, &cols)
}

/// The column list of every event insert (one-row and multi-row, sqlx and direct).
pub(super) const EVENT_INSERT: &str = "INSERT INTO events (tenant, type, job_id, run_id, \
     queue, project, kind, worker_id, correlation_id, at, data, inputs_hash, worker_version)";

/// Appends one event about `job` inside the caller's transaction.
pub(super) async fn append_event(
    conn: &mut SqliteConnection,
    job: &Job,
    kind: &str,
    now: DateTime<Utc>,
    data: Value,
) -> StoreResult<()> {
    append_events(conn, &[(job, kind, data)], now).await
}

/// Rows per multi-row statement: 18 binds per job row keeps a statement far below SQLite's
/// limit of 32766 variables.
pub(super) const BATCH_ROWS: usize = 500;

/// Appends events (`(job, type, data)`) inside the caller's transaction, in slice order (so
/// with increasing ids), with one multi-row `INSERT` per [`BATCH_ROWS`] events.
pub(super) async fn append_events(
    conn: &mut SqliteConnection,
    events: &[(&Job, &str, Value)],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    append_events_in(&mut Exec::for_rows(conn, events.len()).await?, events, now).await
}

/// [`append_events`] with statements run by `exec`.
pub(super) async fn append_events_in(
    exec: &mut Exec<'_>,
    events: &[(&Job, &str, Value)],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let at = micros(now);
    for chunk in events.chunks(BATCH_ROWS) {
        let data: Vec<String> = chunk.iter().map(|(_, _, d)| json_text(d)).collect();
        let mut sql = String::from(EVENT_INSERT);
        sql.push_str(" VALUES ");
        let mut args = Vec::with_capacity(chunk.len() * 13);
        for (n, ((job, kind, _), data)) in chunk.iter().zip(&data).enumerate() {
            sql.push_str(if n == 0 { "" } else { ", " });
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
            args.extend([
                Arg::Text(&job.tenant),
                Arg::Text(kind),
                Arg::uuid(&job.id),
                Arg::opt_uuid(job.run_id.as_ref()),
                Arg::Text(&job.queue),
                Arg::opt_text(job.project.as_deref()),
                Arg::Text(&job.kind),
                Arg::opt_text(job.worker_id.as_deref()),
                Arg::opt_text(job.correlation_id.as_deref()),
                Arg::Int(at),
                Arg::Text(data),
                Arg::Text(&job.inputs_hash),
                Arg::opt_text(job.worker_version.as_deref()),
            ]);
        }
        exec.execute(&sql, &args).await?;
    }
    Ok(())
}

pub(super) async fn fetch_job(
    conn: &mut SqliteConnection,
    tenant: &str,
    id: Uuid,
) -> StoreResult<Option<Job>> {
    let row = sqlx::query("SELECT * FROM jobs WHERE id = ? AND tenant = ?")
        .bind(id)
        .bind(tenant)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode_job).transpose()
}
