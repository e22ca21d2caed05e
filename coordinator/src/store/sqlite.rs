//! SQLite store: one file, WAL, a single writer connection (every write transaction starts with
//! `BEGIN IMMEDIATE`, so it never upgrades a read lock and never deadlocks) and a reader pool.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{
    Event, HeartbeatItem, HeartbeatResult, HeartbeatStatus, Job, JobState, QueueInfo, Run,
    SchedulerRun, SchedulerRunInput,
};
use serde_json::{Value, json};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::sqlite_runs::{after_job_change, refresh_run_status};
use super::{
    Backend, ClaimParams, Claimed, Enqueued, EventFilter, Finished, JobFilter, NewJobRow,
    NewRunRow, Outcome, OutcomeKind, StateCount, Store, StoreError, StoreResult, Transition,
    event_type_for, lease_of,
};

/// SQLite's `synchronous` setting: `Normal` is durable across application crashes and fast;
/// `Full` also survives power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SqliteSync {
    /// `synchronous=NORMAL` (default).
    #[default]
    Normal,
    /// `synchronous=FULL`.
    Full,
}

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) writer: SqlitePool,
    pub(super) reader: SqlitePool,
}

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

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn parse_json(s: Option<String>) -> StoreResult<Option<Value>> {
    s.map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Internal(e.to_string())))
        .transpose()
}

pub(super) fn decode_job(row: &SqliteRow) -> StoreResult<Job> {
    let state: String = row.try_get("state")?;
    let state = JobState::parse(&state)
        .ok_or_else(|| StoreError::Internal(format!("unknown state {state}")))?;
    let artifacts: String = row.try_get("artifacts")?;
    let backoff: Option<String> = row.try_get("backoff")?;
    Ok(Job {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        queue: row.try_get("queue")?,
        kind: row.try_get("kind")?,
        state,
        payload: parse_json(Some(row.try_get("payload")?))?.unwrap_or(Value::Null),
        priority: row.try_get("priority")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        fencing_token: row.try_get("lease_epoch")?,
        run_at: from_micros(row.try_get("run_at")?)?,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
        started_at: opt_time(row.try_get("started_at")?)?,
        finished_at: opt_time(row.try_get("finished_at")?)?,
        lease_expires_at: opt_time(row.try_get("lease_expires_at")?)?,
        idempotency_key: row.try_get("idempotency_key")?,
        correlation_id: row.try_get("correlation_id")?,
        project: row.try_get("project")?,
        run_id: row.try_get("run_id")?,
        inputs_hash: row.try_get("inputs_hash")?,
        backoff: backoff
            .map(|b| serde_json::from_str(&b))
            .transpose()
            .map_err(|e| StoreError::Internal(e.to_string()))?,
        worker_id: row.try_get("worker_id")?,
        worker_version: row.try_get("worker_version")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        cancel_reason: row.try_get("cancel_reason")?,
        checkpoint: parse_json(row.try_get("checkpoint")?)?,
        progress: parse_json(row.try_get("progress")?)?,
        result: parse_json(row.try_get("result")?)?,
        last_error: parse_json(row.try_get("last_error")?)?,
        artifacts: serde_json::from_str(&artifacts)
            .map_err(|e| StoreError::Internal(e.to_string()))?,
    })
}

/// Appends one event about `job` inside the caller's transaction.
pub(super) async fn append_event(
    conn: &mut SqliteConnection,
    job: &Job,
    kind: &str,
    now: DateTime<Utc>,
    data: Value,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO events (tenant, type, job_id, run_id, queue, project, kind, worker_id, \
         correlation_id, at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&job.tenant)
    .bind(kind)
    .bind(job.id)
    .bind(job.run_id)
    .bind(&job.queue)
    .bind(&job.project)
    .bind(&job.kind)
    .bind(&job.worker_id)
    .bind(&job.correlation_id)
    .bind(micros(now))
    .bind(json_text(&data))
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows per multi-row statement: 17 binds per job row keeps a statement far below SQLite's
/// limit of 32766 variables.
const BATCH_ROWS: usize = 500;

/// Appends events (`(job, type, data)`) inside the caller's transaction, in slice order (so
/// with increasing ids), with one multi-row `INSERT` per [`BATCH_ROWS`] events.
pub(super) async fn append_events(
    conn: &mut SqliteConnection,
    events: &[(&Job, &str, Value)],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for chunk in events.chunks(BATCH_ROWS) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (tenant, type, job_id, run_id, queue, project, kind, worker_id, \
             correlation_id, at, data) ",
        );
        qb.push_values(chunk, |mut b, (job, kind, data)| {
            b.push_bind(job.tenant.as_str())
                .push_bind(*kind)
                .push_bind(job.id)
                .push_bind(job.run_id)
                .push_bind(job.queue.as_str())
                .push_bind(job.project.as_deref())
                .push_bind(job.kind.as_str())
                .push_bind(job.worker_id.as_deref())
                .push_bind(job.correlation_id.as_deref())
                .push_bind(micros(now))
                .push_bind(json_text(data));
        });
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Applies `outcomes` (distinct jobs, at most [`BATCH_ROWS`]) with one `UPDATE … FROM`, each
/// fenced by its token in the WHERE clause (an outcome whose lease is gone matches no row and
/// writes nothing; SET expressions read the row as it was). Returns the updated job for each
/// outcome, `None` where the lease was not held under that token. Writes no events.
async fn finish_chunk(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    tenant: &str,
    outcomes: &[Outcome],
) -> StoreResult<Vec<Option<Job>>> {
    let mut qb = QueryBuilder::<Sqlite>::new(
        "WITH i(id, token, outcome, result, artifacts, retryable, retry_at, error) AS (",
    );
    qb.push_values(outcomes, |mut b, o| {
        b.push_bind(o.job_id).push_bind(o.fencing_token);
        match &o.kind {
            OutcomeKind::Complete { result, artifacts } => {
                b.push_bind("complete")
                    .push_bind(Some(json_text(result)))
                    .push_bind(Some(json!(artifacts).to_string()))
                    .push_bind(false)
                    .push_bind(None::<i64>)
                    .push_bind(None::<String>);
            }
            OutcomeKind::Fail { error, retry_at } => {
                b.push_bind("fail")
                    .push_bind(None::<String>)
                    .push_bind(None::<String>)
                    .push_bind(error.retryable)
                    .push_bind(Some(micros(*retry_at)))
                    .push_bind(Some(json!(error).to_string()));
            }
            OutcomeKind::Release => {
                b.push_bind("release")
                    .push_bind(None::<String>)
                    .push_bind(None::<String>)
                    .push_bind(false)
                    .push_bind(None::<i64>)
                    .push_bind(None::<String>);
            }
        }
    });
    let t = micros(now);
    // Per kind exactly the SET list of the one-job statements it replaces; the terminal test
    // of a failure is spelled twice because SET expressions see the old row.
    qb.push(
        ") UPDATE jobs SET \
         state = CASE i.outcome \
           WHEN 'complete' THEN 'succeeded' \
           WHEN 'fail' THEN CASE WHEN jobs.cancel_requested = 1 THEN 'cancelled' \
             WHEN i.retryable AND jobs.attempt < jobs.max_attempts THEN 'queued' ELSE 'dead' END \
           ELSE CASE WHEN jobs.cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END END, \
         attempt = CASE WHEN i.outcome = 'release' THEN \
           CASE WHEN jobs.cancel_requested = 1 THEN jobs.attempt ELSE jobs.attempt - 1 END \
           ELSE jobs.attempt END, \
         result = CASE WHEN i.outcome = 'complete' THEN i.result ELSE jobs.result END, \
         artifacts = CASE WHEN i.outcome = 'complete' THEN i.artifacts ELSE jobs.artifacts END, \
         last_error = CASE WHEN i.outcome = 'fail' THEN i.error ELSE jobs.last_error END, \
         run_at = CASE i.outcome WHEN 'fail' THEN i.retry_at WHEN 'release' THEN ",
    )
    .push_bind(t)
    .push(
        " ELSE jobs.run_at END, \
         finished_at = CASE i.outcome WHEN 'complete' THEN ",
    )
    .push_bind(t)
    .push(
        " WHEN 'fail' THEN CASE WHEN jobs.cancel_requested = 1 OR NOT i.retryable \
           OR jobs.attempt >= jobs.max_attempts THEN ",
    )
    .push_bind(t)
    .push(" ELSE NULL END ELSE CASE WHEN jobs.cancel_requested = 1 THEN ")
    .push_bind(t)
    .push(" ELSE NULL END END, updated_at = ")
    .push_bind(t)
    .push(
        ", lease_expires_at = NULL FROM i \
         WHERE jobs.id = i.id AND jobs.tenant = ",
    )
    .push_bind(tenant)
    .push(" AND jobs.state = 'leased' AND jobs.lease_epoch = i.token RETURNING *");
    let rows = qb.build().fetch_all(&mut *conn).await?;
    let mut updated = HashMap::with_capacity(rows.len());
    for row in &rows {
        let job = decode_job(row)?;
        updated.insert(job.id, job);
    }
    Ok(outcomes.iter().map(|o| updated.remove(&o.job_id)).collect())
}

/// The ids among `ids` (in `tenant`) for which `filter` (a condition on `jobs`) holds, with
/// their state; one query per [`BATCH_ROWS`] ids.
async fn states_of(
    conn: &mut SqliteConnection,
    tenant: &str,
    ids: &[Uuid],
    filter: &str,
) -> StoreResult<HashMap<Uuid, JobState>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(BATCH_ROWS) {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT id, state FROM jobs WHERE tenant = ");
        qb.push_bind(tenant)
            .push(" AND ")
            .push(filter)
            .push(" AND id IN (");
        let mut sep = qb.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        qb.push(")");
        for row in qb.build().fetch_all(&mut *conn).await? {
            let state: String = row.try_get("state")?;
            let state = JobState::parse(&state)
                .ok_or_else(|| StoreError::Internal(format!("unknown state {state}")))?;
            out.insert(row.try_get("id")?, state);
        }
    }
    Ok(out)
}

async fn fetch_job(
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

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and applies migrations.
    pub async fn open(path: &Path, sync: SqliteSync) -> StoreResult<Self> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match sync {
                SqliteSync::Normal => SqliteSynchronous::Normal,
                SqliteSync::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(base.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(base.read_only(true))
            .await?;
        Ok(Self { writer, reader })
    }

    /// Opens a database from a `sqlite:` URL (`sqlite://leasehold.db`, `sqlite:///abs/path`).
    pub async fn open_url(url: &str, sync: SqliteSync) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("bad sqlite url: {e}")))?;
        Self::open(opts.get_filename(), sync).await
    }

    pub(super) async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

impl SqliteStore {
    /// Inserts jobs (with their `enqueued` events) inside the caller's transaction; a job whose
    /// idempotency key exists already comes back `replayed`.
    ///
    /// One multi-row `INSERT … ON CONFLICT DO NOTHING` per [`BATCH_ROWS`] jobs: rows are inserted
    /// in input order, so of two jobs with one idempotency key the first is stored and the
    /// second skipped, as with one statement per job. Replays are looked up in one query and
    /// the events written by one multi-row `INSERT`, in input order.
    pub(super) async fn insert_jobs(
        &self,
        tx: &mut SqliteConnection,
        now: DateTime<Utc>,
        jobs: Vec<NewJobRow>,
    ) -> StoreResult<Vec<Enqueued>> {
        let mut out = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(BATCH_ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO jobs (id, tenant, queue, kind, state, payload, priority, max_attempts, \
                 run_at, created_at, updated_at, idempotency_key, correlation_id, project, run_id, \
                 inputs_hash, backoff) ",
            );
            qb.push_values(chunk, |mut b, new| {
                b.push_bind(new.id)
                    .push_bind(new.tenant.as_str())
                    .push_bind(new.queue.as_str())
                    .push_bind(new.kind.as_str())
                    .push_bind(new.state.as_str())
                    .push_bind(json_text(&new.payload))
                    .push_bind(new.priority)
                    .push_bind(new.max_attempts)
                    .push_bind(micros(new.run_at))
                    .push_bind(micros(now))
                    .push_bind(micros(now))
                    .push_bind(new.idempotency_key.as_deref())
                    .push_bind(new.correlation_id.as_deref())
                    .push_bind(new.project.as_deref())
                    .push_bind(new.run_id)
                    .push_bind(new.inputs_hash.as_str())
                    .push_bind(new.backoff.as_ref().map(|b| json!(b).to_string()));
            });
            qb.push(
                " ON CONFLICT (tenant, queue, idempotency_key) WHERE idempotency_key IS NOT NULL \
                 DO NOTHING RETURNING *",
            );
            let rows = qb.build().fetch_all(&mut *tx).await?;
            let mut inserted = HashMap::with_capacity(rows.len());
            for row in &rows {
                let job = decode_job(row)?;
                inserted.insert(job.id, job);
            }
            // Replays: the stored job of each idempotency key that was skipped.
            let skipped: Vec<&NewJobRow> = chunk
                .iter()
                .filter(|new| !inserted.contains_key(&new.id))
                .collect();
            let mut existing = HashMap::new();
            if !skipped.is_empty() {
                let mut qb =
                    QueryBuilder::<Sqlite>::new("WITH k(tenant, queue, idempotency_key) AS (");
                qb.push_values(&skipped, |mut b, new| {
                    b.push_bind(new.tenant.as_str())
                        .push_bind(new.queue.as_str())
                        .push_bind(new.idempotency_key.as_deref());
                });
                qb.push(
                    ") SELECT DISTINCT jobs.* FROM k JOIN jobs ON jobs.tenant = k.tenant \
                     AND jobs.queue = k.queue AND jobs.idempotency_key = k.idempotency_key",
                );
                for row in qb.build().fetch_all(&mut *tx).await? {
                    let job = decode_job(&row)?;
                    let key = (
                        job.tenant.clone(),
                        job.queue.clone(),
                        job.idempotency_key.clone(),
                    );
                    existing.insert(key, job);
                }
            }
            let events: Vec<(&Job, &str, Value)> = chunk
                .iter()
                .filter_map(|new| inserted.get(&new.id))
                .map(|job| {
                    let data =
                        json!({"to": job.state, "run_at": job.run_at, "priority": job.priority});
                    (job, "enqueued", data)
                })
                .collect();
            append_events(tx, &events, now).await?;
            for new in chunk {
                match inserted.remove(&new.id) {
                    Some(job) => out.push(Enqueued {
                        job,
                        replayed: false,
                    }),
                    None => {
                        let key = (
                            new.tenant.clone(),
                            new.queue.clone(),
                            new.idempotency_key.clone(),
                        );
                        let job = existing.get(&key).cloned().ok_or_else(|| {
                            StoreError::Internal(format!(
                                "job {} neither inserted nor found",
                                new.id
                            ))
                        })?;
                        out.push(Enqueued {
                            job,
                            replayed: true,
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A job chosen by a claim, in claim order.
struct Candidate {
    id: Uuid,
    /// Taken over from an expired lease (else it was queued).
    expired: bool,
    run_id: Option<Uuid>,
}

/// Expired leases whose attempts are spent: they end `dead` instead of being re-leased.
async fn bury_exhausted(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    params: &ClaimParams,
) -> StoreResult<u64> {
    let mut qb = QueryBuilder::<Sqlite>::new("UPDATE jobs SET state = 'dead', finished_at = ");
    qb.push_bind(micros(now))
        .push(", updated_at = ")
        .push_bind(micros(now))
        .push(", lease_expires_at = NULL, last_error = ")
        .push_bind(
            json!({"class": "lease_expired", "message": "lease expired and attempts are spent", "retryable": false})
                .to_string(),
        )
        .push(" WHERE tenant = ")
        .push_bind(&params.tenant)
        .push(" AND state = 'leased' AND lease_expires_at <= ")
        .push_bind(micros(now))
        .push(" AND attempt >= max_attempts AND queue IN (");
    let mut sep = qb.separated(", ");
    for q in &params.queues {
        sep.push_bind(q);
    }
    qb.push(") RETURNING *");
    let rows = qb.build().fetch_all(&mut *conn).await?;
    let jobs = rows
        .iter()
        .map(decode_job)
        .collect::<StoreResult<Vec<_>>>()?;
    // Events in the order the rows came back (as before), one multi-row `INSERT` per group:
    // a job that belongs to a run ends its group, so its DAG bookkeeping (and events) come
    // right after its own event, as with one job at a time.
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
                (
                    job,
                    "dead",
                    json!({"from": "leased", "to": "dead", "reason": "lease_expired",
                           "fencing_token": job.fencing_token}),
                )
            })
            .collect();
        append_events(conn, &events, now).await?;
        after_job_change(conn, &jobs[end - 1], now).await?;
        start = end;
    }
    Ok(jobs.len() as u64)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn enqueue(
        &self,
        now: DateTime<Utc>,
        jobs: Vec<NewJobRow>,
    ) -> StoreResult<Vec<Enqueued>> {
        let mut tx = self.begin_write().await?;
        let out = self.insert_jobs(&mut tx, now, jobs).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn get_job(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Job>> {
        let mut conn = self.reader.acquire().await?;
        fetch_job(&mut conn, tenant, id).await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT * FROM jobs WHERE tenant = ");
        qb.push_bind(&filter.tenant);
        if let Some(queue) = &filter.queue {
            qb.push(" AND queue = ").push_bind(queue);
        }
        if let Some(state) = filter.state {
            qb.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(kind) = &filter.kind {
            qb.push(" AND kind = ").push_bind(kind);
        }
        if let Some(before) = filter.before {
            qb.push(" AND id < ").push_bind(before);
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter().map(decode_job).collect()
    }

    async fn cancel_job(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        id: Uuid,
        reason: &str,
    ) -> StoreResult<Option<Transition>> {
        let mut tx = self.begin_write().await?;
        let Some(job) = fetch_job(&mut tx, tenant, id).await? else {
            return Ok(None);
        };
        let (query, event) = match job.state {
            JobState::Queued | JobState::Blocked => (
                sqlx::query(
                    "UPDATE jobs SET state = 'cancelled', cancel_reason = ?1, finished_at = ?2, \
                     updated_at = ?2 WHERE id = ?3 RETURNING *",
                ),
                "cancelled",
            ),
            // A leased job keeps running until its worker sees `cancel_requested` on a heartbeat.
            JobState::Leased if !job.cancel_requested => (
                sqlx::query(
                    "UPDATE jobs SET cancel_requested = 1, cancel_reason = ?1, updated_at = ?2 \
                     WHERE id = ?3 RETURNING *",
                ),
                "cancel_requested",
            ),
            _ => {
                return Ok(Some(Transition {
                    job,
                    changed: false,
                }));
            }
        };
        let row = query
            .bind(reason)
            .bind(micros(now))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let updated = decode_job(&row)?;
        append_event(
            &mut tx,
            &updated,
            event,
            now,
            json!({"from": job.state, "to": updated.state, "reason": reason}),
        )
        .await?;
        after_job_change(&mut tx, &updated, now).await?;
        tx.commit().await?;
        Ok(Some(Transition {
            job: updated,
            changed: true,
        }))
    }

    async fn retry_job(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        id: Uuid,
    ) -> StoreResult<Option<Transition>> {
        let mut tx = self.begin_write().await?;
        let Some(job) = fetch_job(&mut tx, tenant, id).await? else {
            return Ok(None);
        };
        if !matches!(job.state, JobState::Dead | JobState::Cancelled) {
            return Ok(Some(Transition {
                job,
                changed: false,
            }));
        }
        let row = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempt = 0, run_at = ?, updated_at = ?, \
             finished_at = NULL, cancel_requested = 0, cancel_reason = NULL, \
             lease_expires_at = NULL WHERE id = ? RETURNING *",
        )
        .bind(micros(now))
        .bind(micros(now))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let updated = decode_job(&row)?;
        append_event(
            &mut tx,
            &updated,
            "retried",
            now,
            json!({"from": job.state, "to": "queued"}),
        )
        .await?;
        after_job_change(&mut tx, &updated, now).await?;
        tx.commit().await?;
        Ok(Some(Transition {
            job: updated,
            changed: true,
        }))
    }

    async fn claim(&self, now: DateTime<Utc>, params: &ClaimParams) -> StoreResult<Claimed> {
        let mut tx = self.begin_write().await?;
        let buried = bury_exhausted(&mut tx, now, params).await?;
        // Two index-friendly halves (ready queued jobs, expired leases), merged in claim order.
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT id, state, priority, run_at, run_id FROM jobs WHERE tenant = ",
        );
        let push_common = |qb: &mut QueryBuilder<'_, Sqlite>| {
            qb.push(" AND queue IN (");
            let mut sep = qb.separated(", ");
            for q in &params.queues {
                sep.push_bind(q.clone());
            }
            qb.push(") AND queue NOT IN (SELECT name FROM queues WHERE paused = 1 AND tenant = ")
                .push_bind(params.tenant.clone())
                .push(")");
        };
        qb.push_bind(&params.tenant)
            .push(" AND state = 'queued' AND run_at <= ")
            .push_bind(micros(now));
        push_common(&mut qb);
        qb.push(" UNION ALL SELECT id, state, priority, run_at, run_id FROM jobs WHERE tenant = ")
            .push_bind(&params.tenant)
            .push(" AND state = 'leased' AND lease_expires_at <= ")
            .push_bind(micros(now));
        push_common(&mut qb);
        qb.push(" ORDER BY priority DESC, run_at, id LIMIT ")
            .push_bind(i64::from(params.max_jobs));
        let candidates = qb
            .build()
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| {
                Ok(Candidate {
                    id: row.try_get("id")?,
                    expired: row.try_get::<String, _>("state")? == "leased",
                    run_id: row.try_get("run_id")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;

        // Leases are granted with one `UPDATE` per chunk of the candidates, in claim order. As in `finish`, a chunk ends after a
        // job of a run, so that run's status is refreshed (and its event written) before the
        // next job is leased, as with one job at a time.
        let expires = now + chrono::Duration::milliseconds(params.lease_ttl_ms as i64);
        let mut leases = Vec::with_capacity(candidates.len());
        let mut reclaimed = 0;
        let mut start = 0;
        while start < candidates.len() {
            let mut end = start;
            while end < candidates.len() && end - start < BATCH_ROWS {
                end += 1;
                if candidates[end - 1].run_id.is_some() {
                    break;
                }
            }
            let chunk = &candidates[start..end];
            let mut qb = QueryBuilder::<Sqlite>::new(
                "UPDATE jobs SET state = 'leased', attempt = attempt + 1, \
                 lease_epoch = lease_epoch + 1, started_at = ",
            );
            qb.push_bind(micros(now))
                .push(", lease_expires_at = ")
                .push_bind(micros(expires))
                .push(", lease_ttl_ms = ")
                .push_bind(params.lease_ttl_ms as i64)
                .push(", worker_id = ")
                .push_bind(&params.worker_id)
                .push(", worker_version = ")
                .push_bind(&params.worker_version)
                .push(", updated_at = ")
                .push_bind(micros(now))
                .push(" WHERE id IN (");
            let mut sep = qb.separated(", ");
            for cand in chunk {
                sep.push_bind(cand.id);
            }
            qb.push(") RETURNING *");
            let rows = qb.build().fetch_all(&mut *tx).await?;
            let mut updated = HashMap::with_capacity(rows.len());
            for row in &rows {
                let job = decode_job(row)?;
                updated.insert(job.id, job);
            }
            // RETURNING order is unspecified: put the jobs back in claim order.
            let jobs = chunk
                .iter()
                .map(|cand| {
                    updated
                        .remove(&cand.id)
                        .map(|job| (cand.expired, job))
                        .ok_or_else(|| {
                            StoreError::Internal(format!("claimed job {} vanished", cand.id))
                        })
                })
                .collect::<StoreResult<Vec<_>>>()?;
            let mut events: Vec<(&Job, &str, Value)> = Vec::with_capacity(jobs.len() + 1);
            for (expired, job) in &jobs {
                if *expired {
                    reclaimed += 1;
                    events.push((
                        job,
                        "lease_expired",
                        json!({"from": "leased", "to": "queued", "fencing_token": job.fencing_token - 1}),
                    ));
                }
                events.push((
                    job,
                    "leased",
                    json!({"from": "queued", "to": "leased",
                           "fencing_token": job.fencing_token, "attempt": job.attempt,
                           "lease_expires_at": job.lease_expires_at}),
                ));
            }
            append_events(&mut tx, &events, now).await?;
            // Only the last job of a chunk can belong to a run.
            if let Some(run_id) = jobs.last().and_then(|(_, job)| job.run_id) {
                refresh_run_status(&mut tx, run_id, now).await?;
            }
            for (_, job) in jobs {
                leases.push(lease_of(job)?);
            }
            start = end;
        }
        tx.commit().await?;
        Ok(Claimed {
            leases,
            expired: buried + reclaimed,
        })
    }

    async fn next_ready_at(
        &self,
        tenant: &str,
        queues: &[String],
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT MIN(t) FROM (SELECT MIN(run_at) AS t FROM jobs WHERE state = 'queued' AND tenant = ",
        );
        qb.push_bind(tenant).push(" AND queue IN (");
        let mut sep = qb.separated(", ");
        for q in queues {
            sep.push_bind(q);
        }
        qb.push(") UNION ALL SELECT MIN(lease_expires_at) FROM jobs WHERE state = 'leased' AND tenant = ")
            .push_bind(tenant)
            .push(" AND queue IN (");
        let mut sep = qb.separated(", ");
        for q in queues {
            sep.push_bind(q);
        }
        qb.push("))");
        let t: Option<i64> = qb.build_query_scalar().fetch_one(&self.reader).await?;
        opt_time(t)
    }

    async fn heartbeat(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        items: &[HeartbeatItem],
    ) -> StoreResult<Vec<HeartbeatResult>> {
        // One `UPDATE … FROM` per chunk, each item fenced by its token in the WHERE clause; a
        // chunk ends before a job named twice (the second heartbeat sees the first's writes),
        // and the checkpoint events of a chunk are written by one `INSERT` in input order.
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(items.len());
        let mut start = 0;
        while start < items.len() {
            let mut seen = HashSet::new();
            let mut end = start;
            while end < items.len() && end - start < BATCH_ROWS && seen.insert(items[end].job_id) {
                end += 1;
            }
            let chunk = &items[start..end];
            let mut qb =
                QueryBuilder::<Sqlite>::new("WITH i(id, token, progress, checkpoint) AS (");
            qb.push_values(chunk, |mut b, item| {
                b.push_bind(item.job_id)
                    .push_bind(item.fencing_token)
                    .push_bind(item.progress.as_ref().map(json_text))
                    .push_bind(item.checkpoint.as_ref().map(json_text));
            });
            qb.push(") UPDATE jobs SET lease_expires_at = ")
                .push_bind(micros(now))
                .push(
                    " + jobs.lease_ttl_ms * 1000, \
                     progress = COALESCE(i.progress, jobs.progress), \
                     checkpoint = COALESCE(i.checkpoint, jobs.checkpoint), updated_at = ",
                )
                .push_bind(micros(now))
                .push(" FROM i WHERE jobs.id = i.id AND jobs.tenant = ")
                .push_bind(tenant)
                .push(" AND jobs.state = 'leased' AND jobs.lease_epoch = i.token RETURNING *");
            let rows = qb.build().fetch_all(&mut *tx).await?;
            let mut updated = HashMap::with_capacity(rows.len());
            for row in &rows {
                let job = decode_job(row)?;
                updated.insert(job.id, job);
            }
            let jobs: Vec<Option<Job>> = chunk.iter().map(|i| updated.remove(&i.job_id)).collect();
            let events: Vec<(&Job, &str, Value)> = chunk
                .iter()
                .zip(&jobs)
                .filter_map(|(item, job)| Some((job.as_ref()?, item.checkpoint.as_ref()?)))
                .map(|(job, cp)| {
                    (
                        job,
                        "checkpoint",
                        json!({"fencing_token": job.fencing_token, "checkpoint": cp}),
                    )
                })
                .collect();
            append_events(&mut tx, &events, now).await?;
            for (item, job) in chunk.iter().zip(jobs) {
                out.push(match job {
                    None => HeartbeatResult {
                        job_id: item.job_id,
                        status: HeartbeatStatus::Lost,
                        expires_at: None,
                    },
                    Some(job) => HeartbeatResult {
                        job_id: job.id,
                        status: if job.cancel_requested {
                            HeartbeatStatus::CancelRequested
                        } else {
                            HeartbeatStatus::Ok
                        },
                        expires_at: job.lease_expires_at,
                    },
                });
            }
            start = end;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn finish(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
    ) -> StoreResult<Vec<Finished>> {
        // Outcomes are applied in input order, one `UPDATE … FROM` per chunk of the batch. A
        // chunk ends before a job named a second time (that report must see the first one's
        // effect) and after a job that belongs to a run (its DAG bookkeeping must run, and
        // write its events, before the next outcome), so results and events are exactly
        // those of applying the outcomes one by one. A batch without runs or repeats (and at
        // most BATCH_ROWS long) is one chunk: one UPDATE, one INSERT of its events, and one
        // SELECT if some lease was lost.
        let mut tx = self.begin_write().await?;
        // `run_id` never changes, so this holds for the whole transaction.
        let in_run: HashSet<Uuid> = if outcomes.len() > 1 {
            let ids: Vec<Uuid> = outcomes.iter().map(|o| o.job_id).collect();
            states_of(&mut tx, tenant, &ids, "run_id IS NOT NULL")
                .await?
                .into_keys()
                .collect()
        } else {
            HashSet::new()
        };
        let mut out = Vec::with_capacity(outcomes.len());
        let mut start = 0;
        while start < outcomes.len() {
            let mut seen = HashSet::new();
            let mut end = start;
            while end < outcomes.len()
                && end - start < BATCH_ROWS
                && seen.insert(outcomes[end].job_id)
            {
                end += 1;
                if in_run.contains(&outcomes[end - 1].job_id) {
                    break;
                }
            }
            let chunk = &outcomes[start..end];
            let updated = finish_chunk(&mut tx, now, tenant, chunk).await?;
            let lost: Vec<Uuid> = chunk
                .iter()
                .zip(&updated)
                .filter(|(_, job)| job.is_none())
                .map(|(o, _)| o.job_id)
                .collect();
            let current = if lost.is_empty() {
                HashMap::new()
            } else {
                states_of(&mut tx, tenant, &lost, "1").await?
            };
            let events: Vec<(&Job, &str, Value)> = chunk
                .iter()
                .zip(&updated)
                .filter_map(|(outcome, job)| job.as_ref().map(|job| (outcome, job)))
                .map(|(outcome, job)| {
                    let mut data = match &outcome.kind {
                        OutcomeKind::Complete { artifacts, .. } => {
                            json!({"artifacts": artifacts.len()})
                        }
                        OutcomeKind::Fail { error, retry_at } => {
                            json!({"error": error, "retry_at": retry_at})
                        }
                        OutcomeKind::Release => json!({}),
                    };
                    data["from"] = json!("leased");
                    data["to"] = json!(job.state);
                    data["fencing_token"] = json!(job.fencing_token);
                    data["attempt"] = json!(job.attempt);
                    (job, event_type_for(job.state, &outcome.kind), data)
                })
                .collect();
            append_events(&mut tx, &events, now).await?;
            // Only the last job of a chunk can belong to a run (no-op for the others).
            for job in updated.iter().flatten() {
                after_job_change(&mut tx, job, now).await?;
            }
            for (outcome, job) in chunk.iter().zip(updated) {
                out.push(match job {
                    Some(job) => Finished::Ok(Box::new(job)),
                    None => match current.get(&outcome.job_id) {
                        Some(state) => Finished::LeaseLost(*state),
                        None => Finished::NotFound,
                    },
                });
            }
            start = end;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn queues(&self, tenant: &str) -> StoreResult<Vec<QueueInfo>> {
        let counts = sqlx::query(
            "SELECT queue, state, COUNT(*) AS n FROM jobs WHERE tenant = ? GROUP BY queue, state",
        )
        .bind(tenant)
        .fetch_all(&self.reader)
        .await?;
        let paused = sqlx::query("SELECT name, paused FROM queues WHERE tenant = ?")
            .bind(tenant)
            .fetch_all(&self.reader)
            .await?;
        let mut acc = super::QueueAccumulator::default();
        for row in &counts {
            acc.add_count(
                row.try_get("queue")?,
                &row.try_get::<String, _>("state")?,
                row.try_get("n")?,
            );
        }
        for row in &paused {
            acc.set_paused(row.try_get("name")?, row.try_get::<i64, _>("paused")? != 0);
        }
        Ok(acc.finish())
    }

    async fn set_queue_paused(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        queue: &str,
        paused: bool,
    ) -> StoreResult<QueueInfo> {
        sqlx::query(
            "INSERT INTO queues (tenant, name, paused, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenant, name) DO UPDATE SET paused = excluded.paused, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(queue)
        .bind(paused)
        .bind(micros(now))
        .execute(&self.writer)
        .await?;
        let queues = self.queues(tenant).await?;
        super::pick_queue(queues, queue)
    }

    async fn state_counts(&self) -> StoreResult<Vec<StateCount>> {
        let rows = sqlx::query(
            "SELECT tenant, queue, state, COUNT(*) AS n FROM jobs GROUP BY tenant, queue, state",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state")?;
                Ok(StateCount {
                    tenant: row.try_get("tenant")?,
                    queue: row.try_get("queue")?,
                    state: JobState::parse(&state)
                        .ok_or_else(|| StoreError::Internal(format!("unknown state {state}")))?,
                    count: row.try_get("n")?,
                })
            })
            .collect()
    }

    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<Event>> {
        self.list_events_impl(filter).await
    }

    async fn last_event_id(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
                .fetch_one(&self.reader)
                .await?,
        )
    }

    async fn create_run(&self, now: DateTime<Utc>, run: NewRunRow) -> StoreResult<(Run, bool)> {
        self.create_run_impl(now, run).await
    }

    async fn get_run(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Run>> {
        self.get_run_impl(tenant, id).await
    }

    async fn cancel_run(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        id: Uuid,
    ) -> StoreResult<Option<Run>> {
        self.cancel_run_impl(now, tenant, id).await
    }

    async fn add_run_event(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        run_id: Uuid,
        kind: &str,
        job_id: Option<Uuid>,
        data: Value,
    ) -> StoreResult<Option<Event>> {
        self.add_run_event_impl(now, tenant, run_id, kind, job_id, data)
            .await
    }

    async fn record_scheduler_run(
        &self,
        now: DateTime<Utc>,
        input: &SchedulerRunInput,
    ) -> StoreResult<SchedulerRun> {
        self.record_scheduler_run_impl(now, input).await
    }

    async fn list_scheduler_runs(&self, limit: u32) -> StoreResult<Vec<SchedulerRun>> {
        self.list_scheduler_runs_impl(limit).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The batch paths (finish, enqueue) answer per item exactly as one-by-one application.
    use super::*;
    use chrono::Duration as Span;
    use leasehold_proto::{FailureInfo, Lease};

    struct TempDb {
        store: SqliteStore,
        path: std::path::PathBuf,
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = self.path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
    }

    async fn store() -> TempDb {
        let path = std::env::temp_dir().join(format!("leasehold-sqlite-{}.db", Uuid::now_v7()));
        let store = SqliteStore::open(&path, SqliteSync::Normal).await.unwrap();
        TempDb { store, path }
    }

    fn job(queue: &str, key: Option<&str>, now: DateTime<Utc>) -> NewJobRow {
        NewJobRow {
            id: Uuid::now_v7(),
            tenant: "default".into(),
            queue: queue.into(),
            kind: "k".into(),
            payload: json!({"q": queue}),
            priority: 0,
            max_attempts: 3,
            run_at: now,
            idempotency_key: key.map(str::to_owned),
            correlation_id: None,
            project: None,
            run_id: None,
            inputs_hash: "sha256:0".into(),
            backoff: None,
            state: JobState::Queued,
        }
    }

    fn params(max_jobs: u32) -> ClaimParams {
        ClaimParams {
            tenant: "default".into(),
            worker_id: "w".into(),
            worker_version: None,
            queues: vec!["q".into()],
            max_jobs,
            lease_ttl_ms: 60_000,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
    }

    /// A batch naming one job twice, mixing kinds, stale tokens and unknown jobs answers each
    /// item as if applied one by one; a batch enqueue with a repeated key stores the first.
    #[tokio::test]
    async fn batches_answer_per_item() {
        let db = store().await;
        let store = &db.store;
        let now = now();
        let rows = vec![
            job("q", Some("a"), now),
            job("q", None, now),
            job("q", Some("a"), now),
            job("q", None, now),
        ];
        let enq = store.enqueue(now, rows.clone()).await.unwrap();
        assert_eq!(
            enq.iter().map(|e| e.replayed).collect::<Vec<_>>(),
            [false, false, true, false]
        );
        assert_eq!(enq[2].job.id, rows[0].id);
        let ids: Vec<Uuid> = enq.iter().map(|e| e.job.id).collect();
        assert_eq!(ids, [rows[0].id, rows[1].id, rows[0].id, rows[3].id]);
        let again = store
            .enqueue(
                now,
                vec![
                    job("q", None, now),
                    job("q", Some("a"), now),
                    job("q", Some("b"), now),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            again.iter().map(|e| e.replayed).collect::<Vec<_>>(),
            [false, true, false]
        );
        assert_eq!(again[1].job.id, rows[0].id);
        let enqueued = store
            .list_events(&EventFilter {
                after: 0,
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let enqueued: Vec<Option<Uuid>> = enqueued.iter().map(|e| e.job_id).collect();
        assert_eq!(
            enqueued,
            [
                rows[0].id,
                rows[1].id,
                rows[3].id,
                again[0].job.id,
                again[2].job.id
            ]
            .map(Some)
            .to_vec()
        );

        let leases = store.claim(now, &params(3)).await.unwrap().leases;
        assert_eq!(leases.len(), 3);
        let (a, b, c) = (&leases[0], &leases[1], &leases[2]);
        let outcome = |l: &Lease, token: i64, kind: OutcomeKind| Outcome {
            job_id: l.job.id,
            fencing_token: token,
            kind,
        };
        let complete = OutcomeKind::Complete {
            result: json!({"ok": 1}),
            artifacts: vec![],
        };
        let fail = OutcomeKind::Fail {
            error: FailureInfo {
                class: "E".into(),
                message: "m".into(),
                retryable: true,
            },
            retry_at: now + Span::seconds(30),
        };
        let missing = Outcome {
            job_id: Uuid::now_v7(),
            fencing_token: 1,
            kind: OutcomeKind::Release,
        };
        let last = store.last_event_id().await.unwrap();
        let results = store
            .finish(
                now,
                "default",
                vec![
                    outcome(a, a.fencing_token + 1, complete.clone()),
                    outcome(a, a.fencing_token, complete.clone()),
                    outcome(a, a.fencing_token, OutcomeKind::Release),
                    outcome(b, b.fencing_token, fail),
                    missing,
                    outcome(c, c.fencing_token, OutcomeKind::Release),
                ],
            )
            .await
            .unwrap();
        let summary: Vec<String> = results
            .iter()
            .map(|r| match r {
                Finished::Ok(job) => format!("ok {}", job.state.as_str()),
                Finished::LeaseLost(state) => format!("lost {}", state.as_str()),
                Finished::NotFound => "not found".into(),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "lost leased",
                "ok succeeded",
                "lost succeeded",
                "ok queued",
                "not found",
                "ok queued"
            ]
        );
        let Finished::Ok(released) = &results[5] else {
            unreachable!()
        };
        assert_eq!((released.attempt, released.run_at), (0, now));
        let Finished::Ok(failed) = &results[3] else {
            unreachable!()
        };
        assert_eq!(
            (failed.attempt, failed.run_at, failed.finished_at),
            (1, now + Span::seconds(30), None)
        );
        let events = store
            .list_events(&EventFilter {
                after: last,
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let got: Vec<(&str, Option<Uuid>)> =
            events.iter().map(|e| (e.kind.as_str(), e.job_id)).collect();
        assert_eq!(
            got,
            [
                ("succeeded", Some(a.job.id)),
                ("retry_scheduled", Some(b.job.id)),
                ("released", Some(c.job.id)),
            ]
        );
        assert!(events.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(
            events[0].data,
            json!({"from": "leased", "to": "succeeded", "fencing_token": a.fencing_token,
                   "attempt": 1, "artifacts": 0})
        );
        assert_eq!(
            events[2].data,
            json!({"from": "leased", "to": "queued", "fencing_token": c.fencing_token,
                   "attempt": 0})
        );
    }

    /// A job of a run ends its chunk: its DAG bookkeeping (here unblocking a child) is written
    /// before the next outcome of the batch, as with one-by-one application.
    #[tokio::test]
    async fn run_job_bookkeeping_precedes_next_outcome() {
        let db = store().await;
        let store = &db.store;
        let now = now();
        let run_id = Uuid::now_v7();
        let mut parent = job("q", None, now);
        parent.run_id = Some(run_id);
        let mut child = job("q", None, now);
        child.run_id = Some(run_id);
        child.state = JobState::Blocked;
        let run = NewRunRow {
            id: run_id,
            tenant: "default".into(),
            run_token: None,
            name: None,
            project: None,
            correlation_id: None,
            mode: None,
            jobs: vec![
                super::super::RunJobRow {
                    row: parent.clone(),
                    key: "p".into(),
                    parents: vec![],
                },
                super::super::RunJobRow {
                    row: child.clone(),
                    key: "c".into(),
                    parents: vec![parent.id],
                },
            ],
        };
        store.create_run(now, run).await.unwrap();
        let single = job("q", None, now);
        store.enqueue(now, vec![single.clone()]).await.unwrap();
        let leases = store.claim(now, &params(10)).await.unwrap().leases;
        assert_eq!(leases.len(), 2);
        let last = store.last_event_id().await.unwrap();
        let complete = |l: &Lease| Outcome {
            job_id: l.job.id,
            fencing_token: l.fencing_token,
            kind: OutcomeKind::Complete {
                result: json!(null),
                artifacts: vec![],
            },
        };
        let by_id = |id: Uuid| leases.iter().find(|l| l.job.id == id).unwrap();
        let results = store
            .finish(
                now,
                "default",
                vec![complete(by_id(parent.id)), complete(by_id(single.id))],
            )
            .await
            .unwrap();
        assert!(results.iter().all(|r| matches!(r, Finished::Ok(_))));
        let events = store
            .list_events(&EventFilter {
                after: last,
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let got: Vec<(&str, Option<Uuid>)> =
            events.iter().map(|e| (e.kind.as_str(), e.job_id)).collect();
        assert_eq!(got.first(), Some(&("succeeded", Some(parent.id))));
        assert_eq!(got.get(1), Some(&("unblocked", Some(child.id))));
        assert_eq!(got.last(), Some(&("succeeded", Some(single.id))));
        assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    }

    /// Timing of the batch paths (run by hand: `cargo test -p leasehold-coordinator --lib
    /// store::sqlite::tests::batch_timing -- --ignored --nocapture`).
    #[tokio::test]
    #[ignore]
    async fn batch_timing() {
        const N: usize = 1000;
        let db = store().await;
        let store = &db.store;
        let now = now();
        let mut enqueue_ms = Vec::new();
        let mut finish_ms = Vec::new();
        let mut claim_ms = Vec::new();
        let mut heartbeat_ms = Vec::new();
        for round in 0..5 {
            let rows: Vec<NewJobRow> = (0..N)
                .map(|i| job("q", Some(&format!("{round}-{i}")), now))
                .collect();
            let t = std::time::Instant::now();
            store.enqueue(now, rows).await.unwrap();
            enqueue_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let t = std::time::Instant::now();
            let leases = store.claim(now, &params(N as u32)).await.unwrap().leases;
            claim_ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(leases.len(), N);
            let items: Vec<HeartbeatItem> = leases
                .iter()
                .map(|l| HeartbeatItem {
                    job_id: l.job.id,
                    fencing_token: l.fencing_token,
                    progress: Some(json!({"done": 1})),
                    checkpoint: None,
                })
                .collect();
            let t = std::time::Instant::now();
            let beats = store.heartbeat(now, "default", &items).await.unwrap();
            heartbeat_ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(beats.iter().all(|b| b.status == HeartbeatStatus::Ok));
            let outcomes: Vec<Outcome> = leases
                .iter()
                .map(|l| Outcome {
                    job_id: l.job.id,
                    fencing_token: l.fencing_token,
                    kind: OutcomeKind::Complete {
                        result: json!({"n": 1}),
                        artifacts: vec![],
                    },
                })
                .collect();
            let t = std::time::Instant::now();
            let done = store.finish(now, "default", outcomes).await.unwrap();
            finish_ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(done.iter().all(|d| matches!(d, Finished::Ok(_))));
        }
        println!("enqueue {N} jobs, ms per batch: {enqueue_ms:.1?}");
        println!("finish {N} completes, ms per batch: {finish_ms:.1?}");
        println!("claim {N} jobs, ms per batch: {claim_ms:.1?}");
        println!("heartbeat {N} leases, ms per batch: {heartbeat_ms:.1?}");
        // Claims of 100 out of a deeper queue.
        let rows: Vec<NewJobRow> = (0..N).map(|_| job("q", None, now)).collect();
        store.enqueue(now, rows).await.unwrap();
        let mut claim100_ms = Vec::new();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let leases = store.claim(now, &params(100)).await.unwrap().leases;
            claim100_ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(leases.len(), 100);
        }
        println!("claim 100 jobs, ms per batch: {claim100_ms:.1?}");
    }

    /// Claim order (priority, then run_at, then id) across two queues, skipping a paused queue
    /// and a job not yet due, taking over an expired lease (new token, attempt spent) and
    /// burying an expired lease whose attempts are spent; events in a fixed order.
    #[tokio::test]
    async fn claim_order_takeover_and_events() {
        let db = store().await;
        let store = &db.store;
        let t0 = now();
        let s = Span::seconds;
        let mk = |queue: &str, priority: i32, run_at: DateTime<Utc>, max_attempts: i32| {
            let mut j = job(queue, None, t0);
            j.priority = priority;
            j.run_at = run_at;
            j.max_attempts = max_attempts;
            j
        };
        let exhausted = mk("a", 0, t0 - s(300), 1);
        let expired = mk("b", 1, t0 - s(200), 3);
        let a_low = mk("a", 0, t0 - s(10), 3);
        let a_high = mk("a", 5, t0, 3);
        let b_high = mk("b", 5, t0 - s(5), 3);
        let b_later = mk("b", 0, t0 + s(3600), 3);
        let paused = mk("c", 9, t0 - s(100), 3);
        let a_low_tie = mk("a", 0, t0 - s(10), 3);
        let rows = vec![
            exhausted.clone(),
            expired.clone(),
            a_low.clone(),
            a_high.clone(),
            b_high.clone(),
            b_later.clone(),
            paused.clone(),
            a_low_tie.clone(),
        ];
        store.enqueue(t0 - s(400), rows).await.unwrap();
        store
            .set_queue_paused(t0, "default", "c", true)
            .await
            .unwrap();
        let mut p = params(1);
        p.queues = vec!["a".into()];
        let first = store.claim(t0 - s(250), &p).await.unwrap();
        assert_eq!(first.leases[0].job.id, exhausted.id);
        p.queues = vec!["b".into()];
        let second = store.claim(t0 - s(120), &p).await.unwrap();
        assert_eq!(second.leases[0].job.id, expired.id);
        let last = store.last_event_id().await.unwrap();

        let mut p = params(10);
        p.queues = vec!["a".into(), "b".into(), "c".into()];
        p.worker_id = "w2".into();
        p.worker_version = Some("v2".into());
        p.lease_ttl_ms = 30_000;
        let claimed = store.claim(t0, &p).await.unwrap();
        assert_eq!(claimed.expired, 2);
        let ids: Vec<Uuid> = claimed.leases.iter().map(|l| l.job.id).collect();
        assert_eq!(
            ids,
            [b_high.id, a_high.id, expired.id, a_low.id, a_low_tie.id]
        );
        for l in &claimed.leases {
            let takeover = l.job.id == expired.id;
            assert_eq!(l.fencing_token, if takeover { 2 } else { 1 });
            assert_eq!(l.attempt, if takeover { 2 } else { 1 });
            assert_eq!(l.expires_at, t0 + s(30));
            assert_eq!(l.lease_ttl_ms, 30_000);
            assert_eq!(l.job.state, JobState::Leased);
            assert_eq!(l.job.worker_id.as_deref(), Some("w2"));
            assert_eq!(l.job.worker_version.as_deref(), Some("v2"));
            assert_eq!((l.job.started_at, l.job.updated_at), (Some(t0), t0));
            let stored = store.get_job("default", l.job.id).await.unwrap().unwrap();
            assert_eq!(stored, l.job);
        }
        let dead = store
            .get_job("default", exhausted.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((dead.state, dead.finished_at), (JobState::Dead, Some(t0)));
        for id in [b_later.id, paused.id] {
            let j = store.get_job("default", id).await.unwrap().unwrap();
            assert_eq!(j.state, JobState::Queued);
        }

        let events = store
            .list_events(&EventFilter {
                after: last,
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(events.windows(2).all(|w| w[0].id < w[1].id));
        let got: Vec<(&str, Option<Uuid>, Option<&str>, Value)> = events
            .iter()
            .map(|e| {
                (
                    e.kind.as_str(),
                    e.job_id,
                    e.worker_id.as_deref(),
                    e.data.clone(),
                )
            })
            .collect();
        let leased = |id: Uuid, from: &str, token: i64| {
            (
                "leased",
                Some(id),
                Some("w2"),
                json!({"from": from, "to": "leased", "fencing_token": token,
                       "attempt": token, "lease_expires_at": t0 + s(30)}),
            )
        };
        assert_eq!(
            got,
            [
                (
                    "dead",
                    Some(exhausted.id),
                    Some("w"),
                    json!({"from": "leased", "to": "dead", "reason": "lease_expired",
                           "fencing_token": 1})
                ),
                leased(b_high.id, "queued", 1),
                leased(a_high.id, "queued", 1),
                (
                    "lease_expired",
                    Some(expired.id),
                    Some("w2"),
                    json!({"from": "leased", "to": "queued", "fencing_token": 1})
                ),
                leased(expired.id, "queued", 2),
                leased(a_low.id, "queued", 1),
                leased(a_low_tie.id, "queued", 1),
            ]
        );
    }

    /// A heartbeat batch answers per item as one-by-one application: a job named twice (the
    /// second keeps the first's progress), a stale token, an unknown job, a cancel request;
    /// checkpoint events in input order.
    #[tokio::test]
    async fn heartbeat_batch_answers_per_item() {
        let db = store().await;
        let store = &db.store;
        let t0 = now();
        let rows: Vec<NewJobRow> = (0..3).map(|_| job("q", None, t0)).collect();
        store.enqueue(t0, rows).await.unwrap();
        let leases = store.claim(t0, &params(3)).await.unwrap().leases;
        let (a, b, c) = (&leases[0], &leases[1], &leases[2]);
        store
            .cancel_job(t0, "default", c.job.id, "stop")
            .await
            .unwrap();
        let last = store.last_event_id().await.unwrap();
        let t1 = t0 + Span::seconds(10);
        let item = |l: &Lease, token: i64, progress: Option<Value>, checkpoint: Option<Value>| {
            HeartbeatItem {
                job_id: l.job.id,
                fencing_token: token,
                progress,
                checkpoint,
            }
        };
        let unknown = HeartbeatItem {
            job_id: Uuid::now_v7(),
            fencing_token: 1,
            progress: None,
            checkpoint: None,
        };
        let results = store
            .heartbeat(
                t1,
                "default",
                &[
                    item(
                        a,
                        a.fencing_token,
                        Some(json!({"p": 1})),
                        Some(json!({"c": 1})),
                    ),
                    item(b, b.fencing_token + 1, None, Some(json!({"c": "stale"}))),
                    item(a, a.fencing_token, None, Some(json!({"c": 2}))),
                    unknown.clone(),
                    item(c, c.fencing_token, Some(json!({"p": 3})), None),
                    item(b, b.fencing_token, None, Some(json!({"c": "b"}))),
                ],
            )
            .await
            .unwrap();
        let got: Vec<(Uuid, HeartbeatStatus, Option<DateTime<Utc>>)> = results
            .iter()
            .map(|r| (r.job_id, r.status, r.expires_at))
            .collect();
        let until = Some(t1 + Span::seconds(60));
        assert_eq!(
            got,
            [
                (a.job.id, HeartbeatStatus::Ok, until),
                (b.job.id, HeartbeatStatus::Lost, None),
                (a.job.id, HeartbeatStatus::Ok, until),
                (unknown.job_id, HeartbeatStatus::Lost, None),
                (c.job.id, HeartbeatStatus::CancelRequested, until),
                (b.job.id, HeartbeatStatus::Ok, until),
            ]
        );
        let ja = store.get_job("default", a.job.id).await.unwrap().unwrap();
        assert_eq!(
            (ja.progress, ja.checkpoint, ja.updated_at),
            (Some(json!({"p": 1})), Some(json!({"c": 2})), t1)
        );
        let jc = store.get_job("default", c.job.id).await.unwrap().unwrap();
        assert_eq!((jc.progress, jc.checkpoint), (Some(json!({"p": 3})), None));
        let events = store
            .list_events(&EventFilter {
                after: last,
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(events.windows(2).all(|w| w[0].id < w[1].id));
        let got: Vec<(&str, Option<Uuid>, Value)> = events
            .iter()
            .map(|e| (e.kind.as_str(), e.job_id, e.data.clone()))
            .collect();
        let cp = |l: &Lease, c: Value| {
            (
                "checkpoint",
                Some(l.job.id),
                json!({"fencing_token": l.fencing_token, "checkpoint": c}),
            )
        };
        assert_eq!(
            got,
            [
                cp(a, json!({"c": 1})),
                cp(a, json!({"c": 2})),
                cp(b, json!({"c": "b"}))
            ]
        );
    }
}
