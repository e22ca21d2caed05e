//! PostgreSQL store: shared by any number of coordinator replicas. Claims lock candidate rows
//! with `FOR UPDATE SKIP LOCKED` inside a materialized CTE, so the `LIMIT` is applied exactly once
//! (the `IN (… LIMIT … SKIP LOCKED)` form can over-claim, PostgreSQL bug #15715). Every state
//! change and its event are written by one statement (data-modifying CTEs), hence atomically.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{
    Event, HeartbeatItem, HeartbeatResult, HeartbeatStatus, Job, JobState, QueueInfo, Run,
    SchedulerRun, SchedulerRunInput,
};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::postgres_runs::{after_job_change, refresh_run_status};
use super::{
    Backend, ClaimParams, Claimed, Enqueued, EventFilter, Finished, JobFilter, NewJobRow,
    NewRunRow, Outcome, OutcomeKind, QueueAccumulator, StateCount, Store, StoreError, StoreResult,
    Transition, lease_of, pick_queue,
};

/// The LISTEN/NOTIFY channel on which enqueues, releases and retries announce ready work.
pub const READY_CHANNEL: &str = "leasehold_ready";

/// The PostgreSQL implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    options: PgConnectOptions,
}

/// The columns every event insert copies from a job row; `job` is the CTE alias of that row.
pub(super) const EVENT_COLUMNS: &str =
    "tenant, type, job_id, run_id, queue, project, kind, worker_id, correlation_id, at, data";

pub(super) fn decode_job(row: &PgRow) -> StoreResult<Job> {
    let state: String = row.try_get("state")?;
    let state = JobState::parse(&state)
        .ok_or_else(|| StoreError::Internal(format!("unknown state {state}")))?;
    let backoff: Option<Json<leasehold_proto::BackoffHint>> = row.try_get("backoff")?;
    let artifacts: Json<Vec<leasehold_proto::Artifact>> = row.try_get("artifacts")?;
    Ok(Job {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        queue: row.try_get("queue")?,
        kind: row.try_get("kind")?,
        state,
        payload: row.try_get("payload")?,
        priority: row.try_get("priority")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        fencing_token: row.try_get("lease_epoch")?,
        run_at: row.try_get("run_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        idempotency_key: row.try_get("idempotency_key")?,
        correlation_id: row.try_get("correlation_id")?,
        project: row.try_get("project")?,
        run_id: row.try_get("run_id")?,
        inputs_hash: row.try_get("inputs_hash")?,
        backoff: backoff.map(|b| b.0),
        worker_id: row.try_get("worker_id")?,
        worker_version: row.try_get("worker_version")?,
        cancel_requested: row.try_get("cancel_requested")?,
        cancel_reason: row.try_get("cancel_reason")?,
        checkpoint: row.try_get("checkpoint")?,
        progress: row.try_get("progress")?,
        result: row.try_get("result")?,
        last_error: row.try_get("last_error")?,
        artifacts: artifacts.0,
    })
}

/// Whether an error is worth running the same transaction again (deadlock, serialization).
fn is_retryable(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("40P01") | Some("40001")))
}

impl PostgresStore {
    /// Connects to `url` and applies migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("bad postgres url: {e}")))?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options and applies migrations.
    pub async fn connect_with(options: PgConnectOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(0)
            // Fail fast when the database is down so callers get a prompt 503.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool, options })
    }

    /// Options for a dedicated connection (the LISTEN side of wake-ups).
    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// The pool, for the LISTEN connection and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn fetch_job(conn: &mut PgConnection, tenant: &str, id: Uuid) -> StoreResult<Option<Job>> {
    let row = sqlx::query("SELECT * FROM jobs WHERE id = $1 AND tenant = $2")
        .bind(id)
        .bind(tenant)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode_job).transpose()
}

/// Runs `UPDATE … RETURNING *` given as `update_sql` (its row alias must be the whole job) and
/// appends one event per returned row, `type` and `data` computed in SQL by `event_sql`
/// (expressions over the returned row `u`).
fn with_event(update_sql: &str, event_type_sql: &str, event_data_sql: &str, at: &str) -> String {
    format!(
        "WITH u AS ({update_sql}), \
         ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
                SELECT u.tenant, {event_type_sql}, u.id, u.run_id, u.queue, u.project, u.kind, \
                       u.worker_id, u.correlation_id, {at}, {event_data_sql} FROM u) \
         SELECT * FROM u"
    )
}

impl PostgresStore {
    /// Inserts jobs (with their `enqueued` events) inside the caller's transaction and
    /// announces them on the ready channel (delivered on commit).
    pub(super) async fn insert_jobs(
        &self,
        tx: &mut PgConnection,
        now: DateTime<Utc>,
        jobs: Vec<NewJobRow>,
    ) -> StoreResult<Vec<Enqueued>> {
        let insert = with_event(
            "INSERT INTO jobs (id, tenant, queue, kind, state, payload, priority, max_attempts, \
             run_at, created_at, updated_at, idempotency_key, correlation_id, project, run_id, \
             inputs_hash, backoff) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, \
             $13, $14, $15, $16) \
             ON CONFLICT (tenant, queue, idempotency_key) WHERE idempotency_key IS NOT NULL \
             DO NOTHING RETURNING *",
            "'enqueued'",
            "jsonb_build_object('to', u.state, 'run_at', u.run_at, 'priority', u.priority)",
            "$10",
        );
        let mut out = Vec::with_capacity(jobs.len());
        let mut queues: Vec<String> = Vec::new();
        for new in &jobs {
            let row = sqlx::query(&insert)
                .bind(new.id)
                .bind(&new.tenant)
                .bind(&new.queue)
                .bind(&new.kind)
                .bind(new.state.as_str())
                .bind(&new.payload)
                .bind(new.priority)
                .bind(new.max_attempts)
                .bind(new.run_at)
                .bind(now)
                .bind(&new.idempotency_key)
                .bind(&new.correlation_id)
                .bind(&new.project)
                .bind(new.run_id)
                .bind(&new.inputs_hash)
                .bind(new.backoff.as_ref().map(Json))
                .fetch_optional(&mut *tx)
                .await?;
            match row {
                Some(row) => {
                    let job = decode_job(&row)?;
                    let channel_key = format!("{}/{}", job.tenant, job.queue);
                    if !queues.contains(&channel_key) {
                        queues.push(channel_key);
                    }
                    out.push(Enqueued {
                        job,
                        replayed: false,
                    });
                }
                None => {
                    let row = sqlx::query(
                        "SELECT * FROM jobs WHERE tenant = $1 AND queue = $2 AND idempotency_key = $3",
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
        // Delivered on commit to every replica LISTENing, so a claimer waiting anywhere wakes.
        for key in &queues {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(READY_CHANNEL)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        Ok(out)
    }

    /// One attempt at recording outcomes (see [`Store::finish`]).
    async fn finish_once(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: &[Outcome],
    ) -> StoreResult<Vec<Finished>> {
        // The fencing check lives in the WHERE clause of the one UPDATE: zero rows means the
        // lease is gone and nothing was written.
        const FENCE: &str =
            " WHERE id = $1 AND tenant = $2 AND state = 'leased' AND lease_epoch = $3 RETURNING *";
        let complete = with_event(
            &format!(
                "UPDATE jobs SET state = 'succeeded', result = $5, artifacts = $6, finished_at = $4, \
                 updated_at = $4, lease_expires_at = NULL{FENCE}"
            ),
            "'succeeded'",
            "jsonb_build_object('from', 'leased', 'to', u.state, 'fencing_token', u.lease_epoch, \
             'attempt', u.attempt, 'artifacts', jsonb_array_length(u.artifacts))",
            "$4",
        );
        let fail = with_event(
            &format!(
                "UPDATE jobs SET state = CASE WHEN cancel_requested THEN 'cancelled' \
                   WHEN $5 AND attempt < max_attempts THEN 'queued' ELSE 'dead' END, \
                 run_at = $6, last_error = $7, updated_at = $4, lease_expires_at = NULL, \
                 finished_at = CASE WHEN cancel_requested OR NOT $5 OR attempt >= max_attempts \
                   THEN $4 ELSE NULL END{FENCE}"
            ),
            "CASE u.state WHEN 'queued' THEN 'retry_scheduled' ELSE u.state END",
            "jsonb_build_object('from', 'leased', 'to', u.state, 'fencing_token', u.lease_epoch, \
             'attempt', u.attempt, 'error', u.last_error, 'retry_at', u.run_at)",
            "$4",
        );
        let release = with_event(
            &format!(
                "UPDATE jobs SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, \
                 attempt = CASE WHEN cancel_requested THEN attempt ELSE attempt - 1 END, \
                 run_at = $4, updated_at = $4, lease_expires_at = NULL, \
                 finished_at = CASE WHEN cancel_requested THEN $4 ELSE NULL END{FENCE}"
            ),
            "CASE u.state WHEN 'queued' THEN 'released' ELSE u.state END",
            "jsonb_build_object('from', 'leased', 'to', u.state, 'fencing_token', u.lease_epoch)",
            "$4",
        );
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(outcomes.len());
        let mut notify = false;
        for outcome in outcomes {
            let query = match &outcome.kind {
                OutcomeKind::Complete { result, artifacts } => sqlx::query(&complete)
                    .bind(outcome.job_id)
                    .bind(tenant)
                    .bind(outcome.fencing_token)
                    .bind(now)
                    .bind(result)
                    .bind(Json(artifacts)),
                OutcomeKind::Fail { error, retry_at } => sqlx::query(&fail)
                    .bind(outcome.job_id)
                    .bind(tenant)
                    .bind(outcome.fencing_token)
                    .bind(now)
                    .bind(error.retryable)
                    .bind(*retry_at)
                    .bind(Json(error)),
                OutcomeKind::Release => sqlx::query(&release)
                    .bind(outcome.job_id)
                    .bind(tenant)
                    .bind(outcome.fencing_token)
                    .bind(now),
            };
            match query.fetch_optional(&mut *tx).await? {
                Some(row) => {
                    let job = decode_job(&row)?;
                    notify |= job.state == JobState::Queued;
                    after_job_change(&mut tx, &job, now).await?;
                    out.push(Finished::Ok(Box::new(job)));
                }
                None => out.push(match fetch_job(&mut tx, tenant, outcome.job_id).await? {
                    Some(job) => Finished::LeaseLost(job.state),
                    None => Finished::NotFound,
                }),
            }
        }
        if notify {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(READY_CHANNEL)
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn claim_once(&self, now: DateTime<Utc>, params: &ClaimParams) -> StoreResult<Claimed> {
        let mut tx = self.pool.begin().await?;
        // `prev` tells fresh claims from expired leases taken over; an expired lease whose
        // attempts are spent goes to `dead` instead of being leased again.
        let sql = format!(
            "WITH cand AS MATERIALIZED ( \
               SELECT id, state AS prev, (state = 'leased' AND attempt >= max_attempts) AS exhausted \
               FROM jobs \
               WHERE tenant = $1 AND queue = ANY($2) \
                 AND ((state = 'queued' AND run_at <= $3) \
                      OR (state = 'leased' AND lease_expires_at <= $3)) \
                 AND NOT EXISTS (SELECT 1 FROM queues q \
                                 WHERE q.tenant = jobs.tenant AND q.name = jobs.queue AND q.paused) \
               ORDER BY priority DESC, run_at, id \
               LIMIT $4 \
               FOR UPDATE SKIP LOCKED), \
             u AS ( \
               UPDATE jobs j SET \
                 state = CASE WHEN c.exhausted THEN 'dead' ELSE 'leased' END, \
                 attempt = CASE WHEN c.exhausted THEN j.attempt ELSE j.attempt + 1 END, \
                 lease_epoch = CASE WHEN c.exhausted THEN j.lease_epoch ELSE j.lease_epoch + 1 END, \
                 started_at = CASE WHEN c.exhausted THEN j.started_at ELSE $3 END, \
                 lease_expires_at = CASE WHEN c.exhausted THEN NULL ELSE $3 + $5 * interval '1 millisecond' END, \
                 finished_at = CASE WHEN c.exhausted THEN $3 ELSE NULL END, \
                 last_error = CASE WHEN c.exhausted THEN '{{\"class\":\"lease_expired\",\"message\":\"lease expired and attempts are spent\",\"retryable\":false}}'::jsonb ELSE j.last_error END, \
                 lease_ttl_ms = $5, \
                 worker_id = CASE WHEN c.exhausted THEN j.worker_id ELSE $6 END, \
                 worker_version = CASE WHEN c.exhausted THEN j.worker_version ELSE $7 END, \
                 updated_at = $3 \
               FROM cand c WHERE j.id = c.id \
               RETURNING j.*, c.prev, c.exhausted), \
             ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
               SELECT e.tenant, e.etype, e.id, e.run_id, e.queue, e.project, e.kind, e.worker_id, \
                      e.correlation_id, $3, e.edata FROM ( \
                 SELECT u.*, 0 AS ord, \
                        CASE WHEN u.exhausted THEN 'dead' ELSE 'lease_expired' END AS etype, \
                        jsonb_build_object('from', 'leased', \
                          'to', CASE WHEN u.exhausted THEN 'dead' ELSE 'queued' END, \
                          'reason', 'lease_expired', \
                          'fencing_token', CASE WHEN u.exhausted THEN u.lease_epoch ELSE u.lease_epoch - 1 END) AS edata \
                 FROM u WHERE u.prev = 'leased' \
                 UNION ALL \
                 SELECT u.*, 1 AS ord, 'leased' AS etype, \
                        jsonb_build_object('from', 'queued', 'to', 'leased', \
                          'fencing_token', u.lease_epoch, 'attempt', u.attempt, \
                          'lease_expires_at', u.lease_expires_at) AS edata \
                 FROM u WHERE NOT u.exhausted) e \
               ORDER BY e.priority DESC, e.run_at, e.id, e.ord) \
             SELECT * FROM u ORDER BY priority DESC, run_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(&params.tenant)
            .bind(&params.queues)
            .bind(now)
            .bind(i64::from(params.max_jobs))
            .bind(params.lease_ttl_ms as i64)
            .bind(&params.worker_id)
            .bind(&params.worker_version)
            .fetch_all(&mut *tx)
            .await?;
        let mut claimed = Claimed::default();
        for row in &rows {
            let prev: String = row.try_get("prev")?;
            let exhausted: bool = row.try_get("exhausted")?;
            if prev == "leased" {
                claimed.expired += 1;
            }
            let job = decode_job(row)?;
            if exhausted {
                after_job_change(&mut tx, &job, now).await?;
            } else {
                if let Some(run_id) = job.run_id {
                    refresh_run_status(&mut tx, run_id, now).await?;
                }
                claimed.leases.push(lease_of(job)?);
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn enqueue(
        &self,
        now: DateTime<Utc>,
        jobs: Vec<NewJobRow>,
    ) -> StoreResult<Vec<Enqueued>> {
        let mut tx = self.pool.begin().await?;
        let out = self.insert_jobs(&mut tx, now, jobs).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn get_job(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Job>> {
        let mut conn = self.pool.acquire().await?;
        fetch_job(&mut conn, tenant, id).await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE tenant = $1 \
             AND ($2::text IS NULL OR queue = $2) \
             AND ($3::text IS NULL OR state = $3) \
             AND ($4::text IS NULL OR kind = $4) \
             AND ($5::uuid IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6",
        )
        .bind(&filter.tenant)
        .bind(&filter.queue)
        .bind(filter.state.map(|s| s.as_str()))
        .bind(&filter.kind)
        .bind(filter.before)
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_job).collect()
    }

    async fn cancel_job(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        id: Uuid,
        reason: &str,
    ) -> StoreResult<Option<Transition>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1 AND tenant = $2 FOR UPDATE")
            .bind(id)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(job) = row.as_ref().map(decode_job).transpose()? else {
            return Ok(None);
        };
        let (update, event) = match job.state {
            JobState::Queued | JobState::Blocked => (
                "UPDATE jobs SET state = 'cancelled', cancel_reason = $1, finished_at = $2, \
                 updated_at = $2 WHERE id = $3 RETURNING *",
                "cancelled",
            ),
            // A leased job keeps running until its worker sees `cancel_requested` on a heartbeat.
            JobState::Leased if !job.cancel_requested => (
                "UPDATE jobs SET cancel_requested = true, cancel_reason = $1, updated_at = $2 \
                 WHERE id = $3 RETURNING *",
                "cancel_requested",
            ),
            _ => {
                return Ok(Some(Transition {
                    job,
                    changed: false,
                }));
            }
        };
        let sql = with_event(
            update,
            &format!("'{event}'"),
            "jsonb_build_object('from', $4::text, 'to', u.state, 'reason', $1::text)",
            "$2",
        );
        let row = sqlx::query(&sql)
            .bind(reason)
            .bind(now)
            .bind(id)
            .bind(job.state.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let updated = decode_job(&row)?;
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
        let sql = with_event(
            "UPDATE jobs SET state = 'queued', attempt = 0, run_at = $1, updated_at = $1, \
             finished_at = NULL, cancel_requested = false, cancel_reason = NULL, \
             lease_expires_at = NULL WHERE id = $2 AND tenant = $3 \
             AND state IN ('dead', 'cancelled') RETURNING *",
            "'retried'",
            "jsonb_build_object('to', 'queued')",
            "$1",
        );
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&sql)
            .bind(now)
            .bind(id)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
        let transition = match row {
            Some(row) => {
                let job = decode_job(&row)?;
                after_job_change(&mut tx, &job, now).await?;
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(READY_CHANNEL)
                    .bind(format!("{}/{}", job.tenant, job.queue))
                    .execute(&mut *tx)
                    .await?;
                Some(Transition { job, changed: true })
            }
            None => fetch_job(&mut tx, tenant, id).await?.map(|job| Transition {
                job,
                changed: false,
            }),
        };
        tx.commit().await?;
        Ok(transition)
    }

    async fn claim(&self, now: DateTime<Utc>, params: &ClaimParams) -> StoreResult<Claimed> {
        let mut tries = 0;
        loop {
            match self.claim_once(now, params).await {
                Err(StoreError::Retryable(_)) if tries < 3 => tries += 1,
                other => return other,
            }
        }
    }

    async fn next_ready_at(
        &self,
        tenant: &str,
        queues: &[String],
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let t: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT LEAST( \
               (SELECT MIN(run_at) FROM jobs WHERE state = 'queued' AND tenant = $1 AND queue = ANY($2)), \
               (SELECT MIN(lease_expires_at) FROM jobs WHERE state = 'leased' AND tenant = $1 AND queue = ANY($2)))",
        )
        .bind(tenant)
        .bind(queues)
        .fetch_one(&self.pool)
        .await?;
        Ok(t)
    }

    async fn heartbeat(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        items: &[HeartbeatItem],
    ) -> StoreResult<Vec<HeartbeatResult>> {
        // Rows are locked in id order so that concurrent batches never deadlock each other.
        let mut sorted: Vec<&HeartbeatItem> = items.iter().collect();
        sorted.sort_by_key(|i| i.job_id);
        let ids: Vec<Uuid> = sorted.iter().map(|i| i.job_id).collect();
        let tokens: Vec<i64> = sorted.iter().map(|i| i.fencing_token).collect();
        let progress: Vec<Option<String>> = sorted
            .iter()
            .map(|i| i.progress.as_ref().map(Value::to_string))
            .collect();
        let checkpoints: Vec<Option<String>> = sorted
            .iter()
            .map(|i| i.checkpoint.as_ref().map(Value::to_string))
            .collect();
        let sql = format!(
            "WITH input AS (SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[]) \
                            AS t(id, token, progress, checkpoint)), \
             locked AS (SELECT j.id FROM jobs j JOIN input ON j.id = input.id \
                        WHERE j.tenant = $6 AND j.state = 'leased' AND j.lease_epoch = input.token \
                        ORDER BY j.id FOR UPDATE OF j), \
             u AS (UPDATE jobs j SET \
                     lease_expires_at = $5 + j.lease_ttl_ms * interval '1 millisecond', \
                     progress = COALESCE(input.progress::jsonb, j.progress), \
                     checkpoint = COALESCE(input.checkpoint::jsonb, j.checkpoint), \
                     updated_at = $5 \
                   FROM input, locked \
                   WHERE j.id = input.id AND j.id = locked.id AND j.lease_epoch = input.token \
                     AND j.state = 'leased' \
                   RETURNING j.*, input.checkpoint IS NOT NULL AS checkpointed), \
             ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
                    SELECT u.tenant, 'checkpoint', u.id, u.run_id, u.queue, u.project, u.kind, \
                           u.worker_id, u.correlation_id, $5, \
                           jsonb_build_object('fencing_token', u.lease_epoch, 'checkpoint', u.checkpoint) \
                    FROM u WHERE u.checkpointed) \
             SELECT id, cancel_requested, lease_expires_at FROM u"
        );
        let mut tries = 0;
        let rows = loop {
            let result = sqlx::query(&sql)
                .bind(&ids)
                .bind(&tokens)
                .bind(&progress)
                .bind(&checkpoints)
                .bind(now)
                .bind(tenant)
                .fetch_all(&self.pool)
                .await;
            match result {
                Ok(rows) => break rows,
                Err(err) if is_retryable(&err) && tries < 3 => tries += 1,
                Err(err) => return Err(err.into()),
            }
        };
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: Uuid = row.try_get("id")?;
            let cancel: bool = row.try_get("cancel_requested")?;
            let expires: Option<DateTime<Utc>> = row.try_get("lease_expires_at")?;
            found.insert(id, (cancel, expires));
        }
        Ok(items
            .iter()
            .map(|item| match found.get(&item.job_id) {
                Some((cancel, expires)) => HeartbeatResult {
                    job_id: item.job_id,
                    status: if *cancel {
                        HeartbeatStatus::CancelRequested
                    } else {
                        HeartbeatStatus::Ok
                    },
                    expires_at: *expires,
                },
                None => HeartbeatResult {
                    job_id: item.job_id,
                    status: HeartbeatStatus::Lost,
                    expires_at: None,
                },
            })
            .collect())
    }

    async fn finish(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
    ) -> StoreResult<Vec<Finished>> {
        let mut tries = 0;
        loop {
            match self.finish_once(now, tenant, &outcomes).await {
                Err(StoreError::Retryable(_)) if tries < 3 => tries += 1,
                other => return other,
            }
        }
    }

    async fn queues(&self, tenant: &str) -> StoreResult<Vec<QueueInfo>> {
        let counts = sqlx::query(
            "SELECT queue, state, COUNT(*) AS n FROM jobs WHERE tenant = $1 GROUP BY queue, state",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        let paused = sqlx::query("SELECT name, paused FROM queues WHERE tenant = $1")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        let mut acc = QueueAccumulator::default();
        for row in &counts {
            acc.add_count(
                row.try_get("queue")?,
                &row.try_get::<String, _>("state")?,
                row.try_get("n")?,
            );
        }
        for row in &paused {
            acc.set_paused(row.try_get("name")?, row.try_get("paused")?);
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO queues (tenant, name, paused, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant, name) DO UPDATE SET paused = excluded.paused, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(queue)
        .bind(paused)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if !paused {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(READY_CHANNEL)
                .bind(format!("{tenant}/{queue}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        pick_queue(self.queues(tenant).await?, queue)
    }

    async fn state_counts(&self) -> StoreResult<Vec<StateCount>> {
        let rows = sqlx::query(
            "SELECT tenant, queue, state, COUNT(*) AS n FROM jobs GROUP BY tenant, queue, state",
        )
        .fetch_all(&self.pool)
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
        self.last_settled_event_id().await
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
