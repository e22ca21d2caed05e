//! SQLite store: one file, WAL, a single writer connection (every write transaction starts with
//! `BEGIN IMMEDIATE`, so it never upgrades a read lock and never deadlocks) and a reader pool.

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
    pub(super) async fn insert_jobs(
        &self,
        tx: &mut SqliteConnection,
        now: DateTime<Utc>,
        jobs: Vec<NewJobRow>,
    ) -> StoreResult<Vec<Enqueued>> {
        let mut out = Vec::with_capacity(jobs.len());
        for new in jobs {
            let row = sqlx::query(
                "INSERT INTO jobs (id, tenant, queue, kind, state, payload, priority, max_attempts, \
                 run_at, created_at, updated_at, idempotency_key, correlation_id, project, run_id, \
                 inputs_hash, backoff) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (tenant, queue, idempotency_key) WHERE idempotency_key IS NOT NULL \
                 DO NOTHING RETURNING *",
            )
            .bind(new.id)
            .bind(&new.tenant)
            .bind(&new.queue)
            .bind(&new.kind)
            .bind(new.state.as_str())
            .bind(json_text(&new.payload))
            .bind(new.priority)
            .bind(new.max_attempts)
            .bind(micros(new.run_at))
            .bind(micros(now))
            .bind(micros(now))
            .bind(&new.idempotency_key)
            .bind(&new.correlation_id)
            .bind(&new.project)
            .bind(new.run_id)
            .bind(&new.inputs_hash)
            .bind(new.backoff.as_ref().map(|b| json!(b).to_string()))
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                Some(row) => {
                    let job = decode_job(&row)?;
                    append_event(
                        tx,
                        &job,
                        "enqueued",
                        now,
                        json!({"to": job.state, "run_at": job.run_at, "priority": job.priority}),
                    )
                    .await?;
                    out.push(Enqueued {
                        job,
                        replayed: false,
                    });
                }
                None => {
                    let row = sqlx::query(
                        "SELECT * FROM jobs WHERE tenant = ? AND queue = ? AND idempotency_key = ?",
                    )
                    .bind(&new.tenant)
                    .bind(&new.queue)
                    .bind(&new.idempotency_key)
                    .fetch_one(&mut *tx)
                    .await?;
                    out.push(Enqueued {
                        job: decode_job(&row)?,
                        replayed: true,
                    });
                }
            }
        }
        Ok(out)
    }
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
    for row in &rows {
        let job = decode_job(row)?;
        append_event(
            conn,
            &job,
            "dead",
            now,
            json!({"from": "leased", "to": "dead", "reason": "lease_expired", "fencing_token": job.fencing_token}),
        )
        .await?;
        after_job_change(conn, &job, now).await?;
    }
    Ok(rows.len() as u64)
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
            "SELECT id, state, priority, run_at FROM jobs WHERE tenant = ",
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
        qb.push(" UNION ALL SELECT id, state, priority, run_at FROM jobs WHERE tenant = ")
            .push_bind(&params.tenant)
            .push(" AND state = 'leased' AND lease_expires_at <= ")
            .push_bind(micros(now));
        push_common(&mut qb);
        qb.push(" ORDER BY priority DESC, run_at, id LIMIT ")
            .push_bind(i64::from(params.max_jobs));
        let candidates = qb.build().fetch_all(&mut *tx).await?;

        let expires = now + chrono::Duration::milliseconds(params.lease_ttl_ms as i64);
        let mut leases = Vec::with_capacity(candidates.len());
        let mut reclaimed = 0;
        for cand in &candidates {
            let id: Uuid = cand.try_get("id")?;
            let prev: String = cand.try_get("state")?;
            let row = sqlx::query(
                "UPDATE jobs SET state = 'leased', attempt = attempt + 1, \
                 lease_epoch = lease_epoch + 1, started_at = ?, lease_expires_at = ?, \
                 lease_ttl_ms = ?, worker_id = ?, worker_version = ?, updated_at = ? \
                 WHERE id = ? RETURNING *",
            )
            .bind(micros(now))
            .bind(micros(expires))
            .bind(params.lease_ttl_ms as i64)
            .bind(&params.worker_id)
            .bind(&params.worker_version)
            .bind(micros(now))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let job = decode_job(&row)?;
            if prev == "leased" {
                reclaimed += 1;
                append_event(
                    &mut tx,
                    &job,
                    "lease_expired",
                    now,
                    json!({"from": "leased", "to": "queued", "fencing_token": job.fencing_token - 1}),
                )
                .await?;
            }
            append_event(
                &mut tx,
                &job,
                "leased",
                now,
                json!({"from": if prev == "leased" { "queued" } else { prev.as_str() }, "to": "leased",
                       "fencing_token": job.fencing_token, "attempt": job.attempt,
                       "lease_expires_at": job.lease_expires_at}),
            )
            .await?;
            if let Some(run_id) = job.run_id {
                refresh_run_status(&mut tx, run_id, now).await?;
            }
            leases.push(lease_of(job)?);
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
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let row = sqlx::query(
                "UPDATE jobs SET lease_expires_at = ? + lease_ttl_ms * 1000, \
                 progress = COALESCE(?, progress), checkpoint = COALESCE(?, checkpoint), \
                 updated_at = ? WHERE id = ? AND tenant = ? AND state = 'leased' \
                 AND lease_epoch = ? RETURNING *",
            )
            .bind(micros(now))
            .bind(item.progress.as_ref().map(json_text))
            .bind(item.checkpoint.as_ref().map(json_text))
            .bind(micros(now))
            .bind(item.job_id)
            .bind(tenant)
            .bind(item.fencing_token)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                out.push(HeartbeatResult {
                    job_id: item.job_id,
                    status: HeartbeatStatus::Lost,
                    expires_at: None,
                });
                continue;
            };
            let job = decode_job(&row)?;
            if let Some(cp) = &item.checkpoint {
                append_event(
                    &mut tx,
                    &job,
                    "checkpoint",
                    now,
                    json!({"fencing_token": job.fencing_token, "checkpoint": cp}),
                )
                .await?;
            }
            out.push(HeartbeatResult {
                job_id: job.id,
                status: if job.cancel_requested {
                    HeartbeatStatus::CancelRequested
                } else {
                    HeartbeatStatus::Ok
                },
                expires_at: job.lease_expires_at,
            });
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
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            let mut qb = QueryBuilder::<Sqlite>::new("UPDATE jobs SET ");
            let data = match &outcome.kind {
                OutcomeKind::Complete { result, artifacts } => {
                    qb.push("state = 'succeeded', result = ")
                        .push_bind(json_text(result))
                        .push(", artifacts = ")
                        .push_bind(json!(artifacts).to_string())
                        .push(", finished_at = ")
                        .push_bind(micros(now));
                    json!({"artifacts": artifacts.len()})
                }
                OutcomeKind::Fail { error, retry_at } => {
                    // SET expressions see the old row, so the terminal test is spelled twice.
                    qb.push("state = CASE WHEN cancel_requested = 1 THEN 'cancelled' WHEN ")
                        .push_bind(error.retryable)
                        .push(
                            " AND attempt < max_attempts THEN 'queued' ELSE 'dead' END, run_at = ",
                        )
                        .push_bind(micros(*retry_at))
                        .push(", last_error = ")
                        .push_bind(json!(error).to_string())
                        .push(", finished_at = CASE WHEN cancel_requested = 1 OR NOT ")
                        .push_bind(error.retryable)
                        .push(" OR attempt >= max_attempts THEN ")
                        .push_bind(micros(now))
                        .push(" ELSE NULL END");
                    json!({"error": error, "retry_at": retry_at})
                }
                OutcomeKind::Release => {
                    qb.push(
                        "state = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END, \
                         attempt = CASE WHEN cancel_requested = 1 THEN attempt ELSE attempt - 1 END, \
                         run_at = ",
                    )
                    .push_bind(micros(now))
                    .push(", finished_at = CASE WHEN cancel_requested = 1 THEN ")
                    .push_bind(micros(now))
                    .push(" ELSE NULL END");
                    json!({})
                }
            };
            // The fencing check lives in the WHERE clause of this one UPDATE: zero rows means
            // the lease is gone and nothing was written.
            qb.push(", updated_at = ")
                .push_bind(micros(now))
                .push(", lease_expires_at = NULL WHERE id = ")
                .push_bind(outcome.job_id)
                .push(" AND tenant = ")
                .push_bind(tenant)
                .push(" AND state = 'leased' AND lease_epoch = ")
                .push_bind(outcome.fencing_token)
                .push(" RETURNING *");
            match qb.build().fetch_optional(&mut *tx).await? {
                Some(row) => {
                    let job = decode_job(&row)?;
                    let mut data = data;
                    data["from"] = json!("leased");
                    data["to"] = json!(job.state);
                    data["fencing_token"] = json!(job.fencing_token);
                    data["attempt"] = json!(job.attempt);
                    append_event(
                        &mut tx,
                        &job,
                        event_type_for(job.state, &outcome.kind),
                        now,
                        data,
                    )
                    .await?;
                    after_job_change(&mut tx, &job, now).await?;
                    out.push(Finished::Ok(Box::new(job)));
                }
                None => out.push(match fetch_job(&mut tx, tenant, outcome.job_id).await? {
                    Some(job) => Finished::LeaseLost(job.state),
                    None => Finished::NotFound,
                }),
            }
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
