//! How the SQLite store runs its batch statements: through sqlx, or directly on the writer's
//! handle, chosen by the number of rows.
//!
//! sqlx runs every SQLite statement on the connection's worker thread: each statement, and
//! each row it returns, is a hand-off between that thread and the task (a channel message and
//! usually a thread wake-up), and each returned value is copied (`sqlite3_value_dup`, a
//! `malloc` under SQLite's memory mutex) before the task decodes it. With one writer
//! connection those hand-offs sit inside the one critical section every write shares: under
//! W1 (100 jobs per claim) the worker thread was busy only about half of the time the writer
//! was held. A statement over many rows therefore takes the handle from the worker
//! ([`Exec::Direct`], sqlx's `lock_handle`) and runs through rusqlite on the calling thread,
//! decoding rows in place (bench/README.md, "Session-5 findings": W1 SQLite 1.5×).
//!
//! rusqlite prepares such a statement afresh each time (a connection made from a borrowed
//! handle cannot keep statements across calls: sqlx closes the handle with `sqlite3_close`,
//! which fails while any statement is unfinalized). Preparing the claim's `UPDATE … RETURNING
//! *` costs about 110 µs, five times its execution, so small batches, the single-job traffic
//! of W4, go through sqlx, whose per-connection cache prepares each text once: at one job per
//! claim the direct path cut W4's capacity at 1000 jobs/s by half. [`DIRECT_MIN_ROWS`] is the
//! break-even. Either way the statement text and its arguments ([`Arg`]) are the same, and the
//! transaction stays sqlx's (`BEGIN IMMEDIATE`, commit, rollback when dropped).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use leasehold_proto::{Job, JobState};
use rusqlite::types::{ToSqlOutput, ValueRef};
use serde_json::Value;
use sqlx::sqlite::{LockedSqliteHandle, SqliteRow};
use sqlx::{Column, Row, SqliteConnection};
use uuid::Uuid;

use super::from_micros;
use crate::store::{StoreError, StoreResult};

/// Statements over at least this many rows run directly on the handle; smaller ones through
/// sqlx. The claim's `UPDATE … RETURNING *` costs ~110 µs to prepare and saves roughly 20 µs
/// per returned row when run directly, so the break-even is about six rows.
pub(super) const DIRECT_MIN_ROWS: usize = 8;

/// One statement argument, bound the same way by sqlx and by rusqlite.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    /// SQL NULL.
    Null,
    /// An INTEGER (booleans are 0 and 1, times are microseconds since the epoch).
    Int(i64),
    /// A TEXT value.
    Text(&'a str),
    /// A BLOB value (UUIDs are their 16 bytes, as sqlx stores them).
    Blob(&'a [u8]),
}

impl<'a> Arg<'a> {
    /// A UUID as its 16 bytes.
    pub(super) fn uuid(id: &'a Uuid) -> Self {
        Self::Blob(id.as_bytes())
    }

    /// An optional UUID.
    pub(super) fn opt_uuid(id: Option<&'a Uuid>) -> Self {
        id.map_or(Self::Null, Self::uuid)
    }

    /// An optional TEXT value.
    pub(super) fn opt_text(s: Option<&'a str>) -> Self {
        s.map_or(Self::Null, Self::Text)
    }

    /// An optional INTEGER.
    pub(super) fn opt_int(v: Option<i64>) -> Self {
        v.map_or(Self::Null, Self::Int)
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Null => ValueRef::Null,
            Arg::Int(v) => ValueRef::Integer(v),
            Arg::Text(s) => ValueRef::Text(s.as_bytes()),
            Arg::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// `sql` with `args` bound, as a sqlx query.
fn sqlx_query<'q>(
    sql: &'q str,
    args: &[Arg<'q>],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    let mut q = sqlx::query(sql);
    for arg in args {
        q = match *arg {
            Arg::Null => q.bind(None::<i64>),
            Arg::Int(v) => q.bind(v),
            Arg::Text(s) => q.bind(s),
            Arg::Blob(b) => q.bind(b),
        };
    }
    q
}

/// Where statements run within a transaction: through sqlx, or on the connection's handle,
/// locked away from sqlx's worker thread for as long as this lives (so the borrow checker
/// keeps sqlx off the connection meanwhile).
pub(super) enum Exec<'c> {
    /// Through sqlx (each text prepared once per connection and cached).
    Sqlx(&'c mut SqliteConnection),
    /// On the handle, through rusqlite, on the calling thread.
    Direct(Direct<'c>),
}

/// The handle of a connection, taken from sqlx's worker thread.
pub(super) struct Direct<'c> {
    // Fields drop in order: the rusqlite connection (finalizing its statements) before the
    // lock is given back.
    db: rusqlite::Connection,
    _locked: LockedSqliteHandle<'c>,
}

impl<'c> Exec<'c> {
    /// Statements over `rows` rows on `conn`: on its handle when there are at least
    /// [`DIRECT_MIN_ROWS`] (one hand-off to take it), else through sqlx.
    pub(super) async fn for_rows(conn: &'c mut SqliteConnection, rows: usize) -> StoreResult<Self> {
        if rows < DIRECT_MIN_ROWS {
            return Ok(Self::Sqlx(conn));
        }
        let mut locked = conn.lock_handle().await?;
        let raw = locked.as_raw_handle().as_ptr();
        // SAFETY: `raw` is the open handle of this connection, and `_locked` keeps sqlx's
        // worker thread off it until after `db` is dropped (field order). `from_handle`
        // borrows the handle: a connection made this way never closes it. Its statements are
        // finalized when `db` drops, so none is left for sqlx's `sqlite3_close` to trip on.
        #[allow(unsafe_code)]
        let db = unsafe { rusqlite::Connection::from_handle(raw) }.map_err(direct_error)?;
        Ok(Self::Direct(Direct {
            db,
            _locked: locked,
        }))
    }

    /// Runs `sql` with `args` and decodes each row it returns with `decode`.
    pub(super) async fn fetch<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        mut decode: impl FnMut(&dyn ColumnValues) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        match self {
            Self::Sqlx(conn) => {
                let rows = sqlx_query(sql, args).fetch_all(&mut **conn).await?;
                rows.iter().map(|row| decode(row)).collect()
            }
            Self::Direct(d) => {
                let mut stmt = d.db.prepare_cached(sql).map_err(direct_error)?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(args))
                    .map_err(direct_error)?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(direct_error)? {
                    out.push(decode(row)?);
                }
                Ok(out)
            }
        }
    }

    /// [`fetch`](Self::fetch) for statements that return whole `jobs` rows (`RETURNING *`).
    pub(super) async fn fetch_jobs(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<Job>> {
        let mut cols: Option<JobColumns> = None;
        self.fetch(sql, args, |row| {
            let cols = match cols {
                Some(cols) => cols,
                None => *cols.insert(JobColumns::find(|name| row.index_of(name))?),
            };
            decode_job_at(row, &cols)
        })
        .await
    }

    /// [`fetch_jobs`](Self::fetch_jobs) keyed by id: `RETURNING` order is unspecified, so
    /// callers put the jobs back in their own order.
    pub(super) async fn fetch_jobs_by_id(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<HashMap<Uuid, Job>> {
        Ok(self
            .fetch_jobs(sql, args)
            .await?
            .into_iter()
            .map(|job| (job.id, job))
            .collect())
    }

    /// Runs `sql` with `args` for its effect; returns the number of rows it changed.
    pub(super) async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        match self {
            Self::Sqlx(conn) => Ok(sqlx_query(sql, args)
                .execute(&mut **conn)
                .await?
                .rows_affected()),
            Self::Direct(d) => {
                let mut stmt = d.db.prepare_cached(sql).map_err(direct_error)?;
                let n = stmt
                    .execute(rusqlite::params_from_iter(args))
                    .map_err(direct_error)?;
                Ok(n as u64)
            }
        }
    }
}

/// Maps a rusqlite error to the store's classes: busy or locked (as for sqlx's errors), a full
/// disk and I/O failures are `Unavailable` (503: retry later), constraint violations
/// `Conflict`, anything else `Internal`.
pub(super) fn direct_error(err: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match err.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => StoreError::Unavailable(err.to_string()),
        Some(C::ConstraintViolation) => StoreError::Conflict(err.to_string()),
        Some(C::DiskFull | C::SystemIoFailure | C::CannotOpen) => {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Internal(err.to_string()),
    }
}

/// Typed access to one row's values by column position, for [`decode_job_at`]: implemented
/// for sqlx's rows and for rusqlite's, so both paths decode jobs with the same code.
pub(super) trait ColumnValues {
    /// The position of the column called `name`.
    fn index_of(&self, name: &str) -> StoreResult<usize>;
    /// A TEXT value (NULL as `None`).
    fn text(&self, i: usize) -> StoreResult<Option<&str>>;
    /// An INTEGER value (NULL as `None`).
    fn int(&self, i: usize) -> StoreResult<Option<i64>>;
    /// A BLOB value (NULL as `None`).
    fn blob(&self, i: usize) -> StoreResult<Option<&[u8]>>;
}

impl ColumnValues for rusqlite::Row<'_> {
    fn index_of(&self, name: &str) -> StoreResult<usize> {
        self.as_ref().column_index(name).map_err(direct_error)
    }

    fn text(&self, i: usize) -> StoreResult<Option<&str>> {
        match self.get_ref(i).map_err(direct_error)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(Some)
                .map_err(|e| StoreError::Internal(format!("column {i}: {e}"))),
            other => Err(type_error(i, "TEXT", other)),
        }
    }

    fn int(&self, i: usize) -> StoreResult<Option<i64>> {
        match self.get_ref(i).map_err(direct_error)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(v) => Ok(Some(v)),
            other => Err(type_error(i, "INTEGER", other)),
        }
    }

    fn blob(&self, i: usize) -> StoreResult<Option<&[u8]>> {
        match self.get_ref(i).map_err(direct_error)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(b) => Ok(Some(b)),
            other => Err(type_error(i, "BLOB", other)),
        }
    }
}

fn type_error(i: usize, wanted: &str, got: ValueRef<'_>) -> StoreError {
    StoreError::Internal(format!(
        "column {i}: expected {wanted}, found {:?}",
        got.data_type()
    ))
}

impl ColumnValues for SqliteRow {
    fn index_of(&self, name: &str) -> StoreResult<usize> {
        Ok(self.try_column(name)?.ordinal())
    }

    fn text(&self, i: usize) -> StoreResult<Option<&str>> {
        Ok(self.try_get(i)?)
    }

    fn int(&self, i: usize) -> StoreResult<Option<i64>> {
        Ok(self.try_get(i)?)
    }

    fn blob(&self, i: usize) -> StoreResult<Option<&[u8]>> {
        Ok(self.try_get(i)?)
    }
}

/// Where each column of a `jobs` row is in a result (`SELECT *` / `RETURNING *`), found by
/// name once per statement.
#[derive(Debug, Clone, Copy)]
pub(super) struct JobColumns {
    id: usize,
    tenant: usize,
    queue: usize,
    kind: usize,
    state: usize,
    payload: usize,
    priority: usize,
    attempt: usize,
    max_attempts: usize,
    lease_epoch: usize,
    run_at: usize,
    created_at: usize,
    updated_at: usize,
    started_at: usize,
    finished_at: usize,
    lease_expires_at: usize,
    idempotency_key: usize,
    correlation_id: usize,
    project: usize,
    run_id: usize,
    inputs_hash: usize,
    backoff: usize,
    timeout_ms: usize,
    deadline_at: usize,
    worker_id: usize,
    worker_version: usize,
    cancel_requested: usize,
    cancel_reason: usize,
    checkpoint: usize,
    progress: usize,
    result: usize,
    last_error: usize,
    artifacts: usize,
    limit_keys: usize,
}

impl JobColumns {
    /// Looks every column up with `index_of` (column name → position).
    pub(super) fn find(mut index_of: impl FnMut(&str) -> StoreResult<usize>) -> StoreResult<Self> {
        let mut at = |name: &str| index_of(name);
        Ok(Self {
            id: at("id")?,
            tenant: at("tenant")?,
            queue: at("queue")?,
            kind: at("kind")?,
            state: at("state")?,
            payload: at("payload")?,
            priority: at("priority")?,
            attempt: at("attempt")?,
            max_attempts: at("max_attempts")?,
            lease_epoch: at("lease_epoch")?,
            run_at: at("run_at")?,
            created_at: at("created_at")?,
            updated_at: at("updated_at")?,
            started_at: at("started_at")?,
            finished_at: at("finished_at")?,
            lease_expires_at: at("lease_expires_at")?,
            idempotency_key: at("idempotency_key")?,
            correlation_id: at("correlation_id")?,
            project: at("project")?,
            run_id: at("run_id")?,
            inputs_hash: at("inputs_hash")?,
            backoff: at("backoff")?,
            timeout_ms: at("timeout_ms")?,
            deadline_at: at("deadline_at")?,
            worker_id: at("worker_id")?,
            worker_version: at("worker_version")?,
            cancel_requested: at("cancel_requested")?,
            cancel_reason: at("cancel_reason")?,
            checkpoint: at("checkpoint")?,
            progress: at("progress")?,
            result: at("result")?,
            last_error: at("last_error")?,
            artifacts: at("artifacts")?,
            limit_keys: at("limit_keys")?,
        })
    }
}

/// `v`, or an internal error naming the NULL `column`.
pub(super) fn required<T>(v: Option<T>, column: &str) -> StoreResult<T> {
    v.ok_or_else(|| StoreError::Internal(format!("column {column} is NULL")))
}

fn json_at(row: &(impl ColumnValues + ?Sized), i: usize) -> StoreResult<Option<Value>> {
    row.text(i)?
        .map(|s| serde_json::from_str(s).map_err(|e| StoreError::Internal(e.to_string())))
        .transpose()
}

/// The UUID (a 16-byte BLOB) in column `i`.
pub(super) fn uuid_at(row: &(impl ColumnValues + ?Sized), i: usize) -> StoreResult<Option<Uuid>> {
    row.blob(i)?
        .map(|b| Uuid::from_slice(b).map_err(|e| StoreError::Internal(e.to_string())))
        .transpose()
}

fn time_at(row: &(impl ColumnValues + ?Sized), i: usize) -> StoreResult<Option<DateTime<Utc>>> {
    row.int(i)?.map(from_micros).transpose()
}

fn owned(v: Option<&str>) -> Option<String> {
    v.map(str::to_owned)
}

fn int32_at(row: &(impl ColumnValues + ?Sized), i: usize, column: &str) -> StoreResult<i32> {
    i32::try_from(required(row.int(i)?, column)?)
        .map_err(|e| StoreError::Internal(format!("column {column}: {e}")))
}

/// Decodes a `jobs` row laid out as `cols` says.
pub(super) fn decode_job_at(
    row: &(impl ColumnValues + ?Sized),
    cols: &JobColumns,
) -> StoreResult<Job> {
    let state = required(row.text(cols.state)?, "state")?;
    let state = JobState::parse(state)
        .ok_or_else(|| StoreError::Internal(format!("unknown state {state}")))?;
    let artifacts = required(row.text(cols.artifacts)?, "artifacts")?;
    Ok(Job {
        id: required(uuid_at(row, cols.id)?, "id")?,
        tenant: required(row.text(cols.tenant)?, "tenant")?.to_owned(),
        queue: required(row.text(cols.queue)?, "queue")?.to_owned(),
        kind: required(row.text(cols.kind)?, "kind")?.to_owned(),
        state,
        payload: json_at(row, cols.payload)?.unwrap_or(Value::Null),
        priority: int32_at(row, cols.priority, "priority")?,
        attempt: int32_at(row, cols.attempt, "attempt")?,
        max_attempts: int32_at(row, cols.max_attempts, "max_attempts")?,
        fencing_token: required(row.int(cols.lease_epoch)?, "lease_epoch")?,
        run_at: required(time_at(row, cols.run_at)?, "run_at")?,
        created_at: required(time_at(row, cols.created_at)?, "created_at")?,
        updated_at: required(time_at(row, cols.updated_at)?, "updated_at")?,
        started_at: time_at(row, cols.started_at)?,
        finished_at: time_at(row, cols.finished_at)?,
        lease_expires_at: time_at(row, cols.lease_expires_at)?,
        idempotency_key: owned(row.text(cols.idempotency_key)?),
        correlation_id: owned(row.text(cols.correlation_id)?),
        project: owned(row.text(cols.project)?),
        run_id: uuid_at(row, cols.run_id)?,
        inputs_hash: required(row.text(cols.inputs_hash)?, "inputs_hash")?.to_owned(),
        backoff: row
            .text(cols.backoff)?
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| StoreError::Internal(e.to_string()))?,
        timeout_ms: row
            .int(cols.timeout_ms)?
            .and_then(|ms| u64::try_from(ms).ok()),
        deadline_at: time_at(row, cols.deadline_at)?,
        worker_id: owned(row.text(cols.worker_id)?),
        worker_version: owned(row.text(cols.worker_version)?),
        cancel_requested: required(row.int(cols.cancel_requested)?, "cancel_requested")? != 0,
        cancel_reason: owned(row.text(cols.cancel_reason)?),
        checkpoint: json_at(row, cols.checkpoint)?,
        progress: json_at(row, cols.progress)?,
        result: json_at(row, cols.result)?,
        last_error: json_at(row, cols.last_error)?,
        artifacts: serde_json::from_str(artifacts)
            .map_err(|e| StoreError::Internal(e.to_string()))?,
        limit_keys: row
            .text(cols.limit_keys)?
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .unwrap_or_default(),
    })
}

/// `?, ?, …` with `n` placeholders, for `IN (…)` lists.
pub(super) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

/// `(?first, …), (…), …`: `rows` rows of `width` numbered placeholders, numbered on from
/// `first`, for `VALUES` lists that follow parameters numbered explicitly (`?1`, `?2`).
pub(super) fn numbered_rows(rows: usize, width: usize, first: usize) -> String {
    let mut s = String::with_capacity(rows * width * 6);
    for r in 0..rows {
        s.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                s.push_str(", ");
            }
            s.push('?');
            s.push_str(&(first + r * width + c).to_string());
        }
        s.push(')');
    }
    s
}
