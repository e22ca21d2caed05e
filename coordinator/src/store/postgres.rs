//! PostgreSQL store: shared by any number of coordinator replicas. Claims lock candidate rows
//! with `FOR UPDATE SKIP LOCKED` inside a materialized CTE, so the `LIMIT` is applied exactly once
//! (the `IN (… LIMIT … SKIP LOCKED)` form can over-claim, PostgreSQL bug #15715). Every state
//! change and its event are written by one statement (data-modifying CTEs), hence atomically.

use std::collections::{HashMap, HashSet};
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

/// Applies `outcomes` (distinct jobs) in one statement, each fenced by its token, with one
/// event per recorded outcome in input order. Returns the updated job for each outcome, `None`
/// where the lease was not held under that token (nothing written).
async fn finish_chunk(
    tx: &mut PgConnection,
    now: DateTime<Utc>,
    tenant: &str,
    outcomes: &[Outcome],
) -> StoreResult<Vec<Option<Job>>> {
    let n = outcomes.len();
    let mut ids = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut results: Vec<Option<String>> = Vec::with_capacity(n);
    let mut artifact_lists: Vec<Option<String>> = Vec::with_capacity(n);
    let mut retryable = Vec::with_capacity(n);
    let mut retry_at = Vec::with_capacity(n);
    let mut errors: Vec<Option<String>> = Vec::with_capacity(n);
    for outcome in outcomes {
        ids.push(outcome.job_id);
        tokens.push(outcome.fencing_token);
        let (kind, result, artifacts, error) = match &outcome.kind {
            OutcomeKind::Complete { result, artifacts } => (
                "complete",
                Some(result.to_string()),
                Some(serde_json::to_string(artifacts).map_err(internal)?),
                None,
            ),
            OutcomeKind::Fail { error, .. } => (
                "fail",
                None,
                None,
                Some(serde_json::to_string(error).map_err(internal)?),
            ),
            OutcomeKind::Release => ("release", None, None, None),
        };
        kinds.push(kind);
        results.push(result);
        artifact_lists.push(artifacts);
        errors.push(error);
        match &outcome.kind {
            OutcomeKind::Fail {
                error,
                retry_at: at,
            } => {
                retryable.push(error.retryable);
                retry_at.push(*at);
            }
            _ => {
                retryable.push(false);
                retry_at.push(now);
            }
        }
    }
    // The fencing check lives in the WHERE clause of the one UPDATE: an outcome whose lease is
    // gone matches no row and writes nothing. SET expressions read the row as it was.
    let sql = format!(
        "WITH input AS ( \
           SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
                                $6::bool[], $7::timestamptz[], $8::text[]) WITH ORDINALITY \
             AS t(id, token, outcome, result, artifacts, retryable, retry_at, error, ord)), \
         u AS ( \
           UPDATE jobs j SET \
             state = CASE i.outcome \
               WHEN 'complete' THEN 'succeeded' \
               WHEN 'fail' THEN CASE WHEN j.cancel_requested THEN 'cancelled' \
                 WHEN i.retryable AND j.attempt < j.max_attempts THEN 'queued' ELSE 'dead' END \
               ELSE CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'queued' END END, \
             attempt = CASE WHEN i.outcome = 'release' AND NOT j.cancel_requested \
               THEN j.attempt - 1 ELSE j.attempt END, \
             result = CASE WHEN i.outcome = 'complete' THEN i.result::jsonb ELSE j.result END, \
             artifacts = CASE WHEN i.outcome = 'complete' THEN i.artifacts::jsonb \
               ELSE j.artifacts END, \
             last_error = CASE WHEN i.outcome = 'fail' THEN i.error::jsonb ELSE j.last_error END, \
             run_at = CASE i.outcome WHEN 'fail' THEN i.retry_at WHEN 'release' THEN $9 \
               ELSE j.run_at END, \
             finished_at = CASE i.outcome \
               WHEN 'complete' THEN $9 \
               WHEN 'fail' THEN CASE WHEN j.cancel_requested OR NOT i.retryable \
                 OR j.attempt >= j.max_attempts THEN $9 END \
               ELSE CASE WHEN j.cancel_requested THEN $9 END END, \
             updated_at = $9, \
             lease_expires_at = NULL \
           FROM input i \
           WHERE j.id = i.id AND j.tenant = $10 AND j.state = 'leased' AND j.lease_epoch = i.token \
           RETURNING j.*, i.ord, i.outcome), \
         ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
           SELECT u.tenant, \
                  CASE u.outcome WHEN 'complete' THEN 'succeeded' \
                    WHEN 'fail' THEN CASE u.state WHEN 'queued' THEN 'retry_scheduled' ELSE u.state END \
                    ELSE CASE u.state WHEN 'queued' THEN 'released' ELSE u.state END END, \
                  u.id, u.run_id, u.queue, u.project, u.kind, u.worker_id, u.correlation_id, $9, \
                  CASE u.outcome \
                    WHEN 'complete' THEN jsonb_build_object('from', 'leased', 'to', u.state, \
                      'fencing_token', u.lease_epoch, 'attempt', u.attempt, \
                      'artifacts', jsonb_array_length(u.artifacts)) \
                    WHEN 'fail' THEN jsonb_build_object('from', 'leased', 'to', u.state, \
                      'fencing_token', u.lease_epoch, 'attempt', u.attempt, \
                      'error', u.last_error, 'retry_at', u.run_at) \
                    ELSE jsonb_build_object('from', 'leased', 'to', u.state, \
                      'fencing_token', u.lease_epoch) END \
           FROM u ORDER BY u.ord) \
         SELECT * FROM u ORDER BY ord"
    );
    let rows = sqlx::query(&sql)
        .bind(&ids)
        .bind(&tokens)
        .bind(&kinds)
        .bind(&results)
        .bind(&artifact_lists)
        .bind(&retryable)
        .bind(&retry_at)
        .bind(&errors)
        .bind(now)
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?;
    let mut out: Vec<Option<Job>> = vec![None; n];
    for row in &rows {
        let ord: i64 = row.try_get("ord")?;
        let slot = usize::try_from(ord - 1)
            .ok()
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| StoreError::Internal(format!("outcome ordinal {ord} out of range")))?;
        *slot = Some(decode_job(row)?);
    }
    Ok(out)
}

/// The current state of each of `ids` that exists in `tenant` (for lease-lost answers).
async fn current_states(
    tx: &mut PgConnection,
    tenant: &str,
    ids: &[Uuid],
) -> StoreResult<HashMap<Uuid, JobState>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query("SELECT id, state FROM jobs WHERE tenant = $1 AND id = ANY($2)")
        .bind(tenant)
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get("state")?;
            let state = JobState::parse(&state)
                .ok_or_else(|| StoreError::Internal(format!("unknown state {state}")))?;
            Ok((row.try_get("id")?, state))
        })
        .collect()
}

fn internal(err: serde_json::Error) -> StoreError {
    StoreError::Internal(err.to_string())
}

/// Claims naming up to this many queues use one merged, exactly-locking scan; more queues use a
/// `LATERAL` per queue (planning the merged form grows with the number of branches: ~3 ms at
/// 8 queues, 100+ ms at 100).
const MERGED_CLAIM_MAX_QUEUES: usize = 8;

/// The body of the claim's `cand` CTE for `queues` distinct queues (`$1` tenant, `$2` the
/// sorted queue names, `$3` now, `$4` how many): rows `(id, prev, exhausted)`, at most `$4`,
/// each locked `FOR UPDATE SKIP LOCKED`, in claim order (priority descending, `run_at`, id).
///
/// Each queue contributes two index-ordered branches: due queued jobs (`jobs_ready`, already in
/// claim order) and expired leases (`jobs_leased` range, sorted; few rows). A paused queue's
/// branches are switched off by a one-time filter, so its backlog is never read. The old single
/// scan with `queue = ANY($2)` and an `OR` of the two states could use no index order and cost a
/// sequential scan plus a sort of the whole table on every claim.
fn claim_candidates(queues: usize) -> String {
    const ORDER: &str = "ORDER BY priority DESC, run_at, id";
    let paused = |queue: &str| {
        format!(
            "NOT EXISTS (SELECT 1 FROM queues q WHERE q.tenant = $1 AND q.name = {queue} \
             AND q.paused)"
        )
    };
    let fresh = |queue: &str| {
        format!(
            "jobs WHERE tenant = $1 AND queue = {queue} AND state = 'queued' AND run_at <= $3 \
             AND {}",
            paused(queue)
        )
    };
    let expired = |queue: &str| {
        format!(
            "jobs WHERE tenant = $1 AND queue = {queue} AND state = 'leased' \
             AND lease_expires_at <= $3 AND {}",
            paused(queue)
        )
    };
    if queues <= MERGED_CLAIM_MAX_QUEUES {
        // The branches are read without locks and merged lazily (Merge Append); the join back
        // to `jobs j` is what gets locked, one row at a time in claim order, until `$4` are
        // held. A row another claimer holds is skipped; one changed since the snapshot is
        // re-checked against the WHERE clause on `j` (hence repeated there). Locking inside the
        // branches instead would lose their order (PostgreSQL drops sort order across a
        // LockRows node) and lock rows that are then not claimed. `c` must stay a subquery
        // (its ORDER BY keeps it from being flattened): a re-check of a row changed since the
        // snapshot then reuses the candidate row instead of re-running every branch, which
        // under concurrent claimers cost seconds per claim.
        let branches = (1..=queues)
            .flat_map(|i| {
                let queue = format!("($2::text[])[{i}]");
                [
                    format!(
                        "SELECT * FROM (SELECT id, priority, run_at FROM {} {ORDER}) f{i}",
                        fresh(&queue)
                    ),
                    format!(
                        "SELECT * FROM (SELECT id, priority, run_at FROM {} {ORDER}) e{i}",
                        expired(&queue)
                    ),
                ]
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        format!(
            "SELECT j.id, j.state AS prev, \
                    (j.state = 'leased' AND j.attempt >= j.max_attempts) AS exhausted \
             FROM (SELECT * FROM ({branches}) m {ORDER}) c JOIN jobs j ON j.id = c.id \
             WHERE j.tenant = $1 \
               AND ((j.state = 'queued' AND j.run_at <= $3) \
                    OR (j.state = 'leased' AND j.lease_expires_at <= $3)) \
             ORDER BY c.priority DESC, c.run_at, c.id \
             LIMIT $4 \
             FOR UPDATE OF j SKIP LOCKED"
        )
    } else {
        // Per queue, each branch locks its first `$4` free rows in order; the best `$4` of
        // those are claimed. Rows locked but not claimed are released at commit.
        let queue = "qn.name";
        format!(
            "SELECT c.id, c.prev, c.exhausted \
             FROM unnest($2::text[]) AS qn(name) CROSS JOIN LATERAL ( \
               SELECT * FROM (SELECT id, state AS prev, false AS exhausted, priority, run_at \
                              FROM {} {ORDER} LIMIT $4 FOR UPDATE SKIP LOCKED) f \
               UNION ALL \
               SELECT * FROM (SELECT id, state AS prev, attempt >= max_attempts AS exhausted, \
                                     priority, run_at \
                              FROM {} {ORDER} LIMIT $4 FOR UPDATE SKIP LOCKED) e) c \
             ORDER BY c.priority DESC, c.run_at, c.id \
             LIMIT $4",
            fresh(queue),
            expired(queue),
        )
    }
}

impl PostgresStore {
    /// Inserts jobs (with their `enqueued` events, in input order) inside the caller's
    /// transaction with one `INSERT … SELECT FROM UNNEST(…)`, and announces them on the ready
    /// channel (delivered on commit). A job whose idempotency key exists already (or appeared
    /// earlier in the same batch) is not inserted; the existing job is returned, `replayed`.
    pub(super) async fn insert_jobs(
        &self,
        tx: &mut PgConnection,
        now: DateTime<Utc>,
        jobs: Vec<NewJobRow>,
    ) -> StoreResult<Vec<Enqueued>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let n = jobs.len();
        let mut ids = Vec::with_capacity(n);
        let mut tenants = Vec::with_capacity(n);
        let mut queues = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut states = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        let mut priorities = Vec::with_capacity(n);
        let mut max_attempts = Vec::with_capacity(n);
        let mut run_ats = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        let mut correlation_ids = Vec::with_capacity(n);
        let mut projects = Vec::with_capacity(n);
        let mut run_ids = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        let mut backoffs = Vec::with_capacity(n);
        for new in &jobs {
            ids.push(new.id);
            tenants.push(new.tenant.as_str());
            queues.push(new.queue.as_str());
            kinds.push(new.kind.as_str());
            states.push(new.state.as_str());
            payloads.push(new.payload.to_string());
            priorities.push(new.priority);
            max_attempts.push(new.max_attempts);
            run_ats.push(new.run_at);
            keys.push(new.idempotency_key.as_deref());
            correlation_ids.push(new.correlation_id.as_deref());
            projects.push(new.project.as_deref());
            run_ids.push(new.run_id);
            hashes.push(new.inputs_hash.as_str());
            backoffs.push(
                new.backoff
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(internal)?,
            );
        }
        // Rows are inserted in input order, so of two jobs with one idempotency key the first
        // is stored and the second skipped, as with one statement per job.
        let sql = format!(
            "WITH input AS ( \
               SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                    $6::text[], $7::int[], $8::int[], $9::timestamptz[], \
                                    $10::text[], $11::text[], $12::text[], $13::uuid[], \
                                    $14::text[], $15::text[]) WITH ORDINALITY \
                 AS t(id, tenant, queue, kind, state, payload, priority, max_attempts, run_at, \
                      idempotency_key, correlation_id, project, run_id, inputs_hash, backoff, \
                      ord)), \
             u AS ( \
               INSERT INTO jobs (id, tenant, queue, kind, state, payload, priority, max_attempts, \
                 run_at, created_at, updated_at, idempotency_key, correlation_id, project, run_id, \
                 inputs_hash, backoff) \
               SELECT id, tenant, queue, kind, state, payload::jsonb, priority, max_attempts, \
                 run_at, $16, $16, idempotency_key, correlation_id, project, run_id, inputs_hash, \
                 backoff::jsonb \
               FROM input ORDER BY ord \
               ON CONFLICT (tenant, queue, idempotency_key) WHERE idempotency_key IS NOT NULL \
               DO NOTHING RETURNING *), \
             ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
               SELECT u.tenant, 'enqueued', u.id, u.run_id, u.queue, u.project, u.kind, \
                      u.worker_id, u.correlation_id, $16, \
                      jsonb_build_object('to', u.state, 'run_at', u.run_at, 'priority', u.priority) \
               FROM u JOIN input i ON i.id = u.id ORDER BY i.ord) \
             SELECT * FROM u"
        );
        let rows = sqlx::query(&sql)
            .bind(&ids)
            .bind(&tenants)
            .bind(&queues)
            .bind(&kinds)
            .bind(&states)
            .bind(&payloads)
            .bind(&priorities)
            .bind(&max_attempts)
            .bind(&run_ats)
            .bind(&keys)
            .bind(&correlation_ids)
            .bind(&projects)
            .bind(&run_ids)
            .bind(&hashes)
            .bind(&backoffs)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        let mut inserted = HashMap::with_capacity(rows.len());
        for row in &rows {
            let job = decode_job(row)?;
            inserted.insert(job.id, job);
        }
        // Replays: the stored job of each idempotency key that was skipped (all in one query).
        let skipped: Vec<&NewJobRow> = jobs
            .iter()
            .filter(|new| !inserted.contains_key(&new.id))
            .collect();
        let mut existing = HashMap::new();
        if !skipped.is_empty() {
            let rows = sqlx::query(
                "SELECT * FROM jobs WHERE (tenant, queue, idempotency_key) IN \
                 (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]))",
            )
            .bind(
                skipped
                    .iter()
                    .map(|j| j.tenant.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(skipped.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
            .bind(
                skipped
                    .iter()
                    .map(|j| j.idempotency_key.as_deref())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *tx)
            .await?;
            for row in &rows {
                let job = decode_job(row)?;
                let key = (
                    job.tenant.clone(),
                    job.queue.clone(),
                    job.idempotency_key.clone(),
                );
                existing.insert(key, job);
            }
        }
        let mut out = Vec::with_capacity(n);
        let mut channels: Vec<String> = Vec::new();
        for new in jobs {
            match inserted.remove(&new.id) {
                Some(job) => {
                    let channel_key = format!("{}/{}", job.tenant, job.queue);
                    if !channels.contains(&channel_key) {
                        channels.push(channel_key);
                    }
                    out.push(Enqueued {
                        job,
                        replayed: false,
                    });
                }
                None => {
                    let key = (new.tenant, new.queue, new.idempotency_key);
                    let job = existing.get(&key).cloned().ok_or_else(|| {
                        StoreError::Internal(format!("job {} neither inserted nor found", new.id))
                    })?;
                    out.push(Enqueued {
                        job,
                        replayed: true,
                    });
                }
            }
        }
        // Delivered on commit to every replica LISTENing, so a claimer waiting anywhere wakes.
        for key in &channels {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(READY_CHANNEL)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        Ok(out)
    }

    /// One attempt at recording outcomes (see [`Store::finish`]).
    ///
    /// Outcomes are applied in input order, one `UPDATE … FROM UNNEST(…)` per chunk of the
    /// batch. A chunk ends before a job named a second time (that report must see the first
    /// one's effect) and after a job that belongs to a run (its DAG bookkeeping must run before
    /// the next outcome), so results and events are exactly those of applying the outcomes one
    /// by one. A batch without runs or repeats is one chunk.
    async fn finish_once(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: &[Outcome],
    ) -> StoreResult<Vec<Finished>> {
        let mut tx = self.pool.begin().await?;
        // `run_id` never changes, so this holds for the whole transaction.
        let in_run: HashSet<Uuid> = if outcomes.len() > 1 {
            let ids: Vec<Uuid> = outcomes.iter().map(|o| o.job_id).collect();
            sqlx::query_scalar(
                "SELECT id FROM jobs WHERE tenant = $1 AND id = ANY($2) AND run_id IS NOT NULL",
            )
            .bind(tenant)
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
        } else {
            HashSet::new()
        };
        let mut out = Vec::with_capacity(outcomes.len());
        let mut notify = false;
        let mut start = 0;
        while start < outcomes.len() {
            let mut seen = HashSet::new();
            let mut end = start;
            while end < outcomes.len() && seen.insert(outcomes[end].job_id) {
                end += 1;
                if in_run.contains(&outcomes[end - 1].job_id) {
                    break;
                }
            }
            let chunk = &outcomes[start..end];
            let mut updated = finish_chunk(&mut tx, now, tenant, chunk).await?;
            let lost: Vec<Uuid> = chunk
                .iter()
                .zip(&updated)
                .filter(|(_, job)| job.is_none())
                .map(|(o, _)| o.job_id)
                .collect();
            let current = current_states(&mut tx, tenant, &lost).await?;
            for (outcome, job) in chunk.iter().zip(updated.drain(..)) {
                out.push(match job {
                    Some(job) => {
                        notify |= job.state == JobState::Queued;
                        after_job_change(&mut tx, &job, now).await?;
                        Finished::Ok(Box::new(job))
                    }
                    None => match current.get(&outcome.job_id) {
                        Some(state) => Finished::LeaseLost(*state),
                        None => Finished::NotFound,
                    },
                });
            }
            start = end;
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
        let mut queues = params.queues.clone();
        queues.sort();
        queues.dedup();
        if queues.is_empty() {
            return Ok(Claimed::default());
        }
        let mut tx = self.pool.begin().await?;
        // `prev` tells fresh claims from expired leases taken over; an expired lease whose
        // attempts are spent goes to `dead` instead of being leased again.
        let sql = format!(
            "WITH cand AS MATERIALIZED ({cand}), \
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
             SELECT * FROM u ORDER BY priority DESC, run_at, id",
            cand = claim_candidates(queues.len()),
        );
        let rows = sqlx::query(&sql)
            .bind(&params.tenant)
            .bind(&queues)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The batch paths and both claim forms against a real PostgreSQL (skipped without one,
    //! like the conformance suite).
    use super::*;
    use chrono::Duration as Span;
    use leasehold_proto::{FailureInfo, Lease};

    async fn store(test: &str) -> Option<PostgresStore> {
        let base = leasehold_testkit::postgres_url(test)?;
        let url = leasehold_testkit::fresh_schema(&base).await.unwrap();
        Some(PostgresStore::connect(&url).await.unwrap())
    }

    fn job(queue: &str, priority: i32, run_at: DateTime<Utc>, key: Option<&str>) -> NewJobRow {
        NewJobRow {
            id: Uuid::now_v7(),
            tenant: "default".into(),
            queue: queue.into(),
            kind: "k".into(),
            payload: serde_json::json!({"q": queue}),
            priority,
            max_attempts: 3,
            run_at,
            idempotency_key: key.map(str::to_owned),
            correlation_id: None,
            project: None,
            run_id: None,
            inputs_hash: "sha256:0".into(),
            backoff: None,
            state: JobState::Queued,
        }
    }

    fn params(queues: &[String], max_jobs: u32) -> ClaimParams {
        ClaimParams {
            tenant: "default".into(),
            worker_id: "w".into(),
            worker_version: None,
            queues: queues.to_vec(),
            max_jobs,
            lease_ttl_ms: 60_000,
        }
    }

    /// Claim order across queues (priority, then run_at, then id), paused queues skipped and
    /// expired leases taken over, for the merged form and the per-queue form alike.
    #[tokio::test]
    async fn claim_orders_across_queues_in_both_forms() {
        for n_queues in [3, MERGED_CLAIM_MAX_QUEUES + 4] {
            let Some(store) = store("postgres::claim_orders_across_queues").await else {
                return;
            };
            let t0 = Utc::now() - Span::minutes(10);
            let queues: Vec<String> = (0..n_queues).map(|i| format!("q{i}")).collect();
            let mut rows = Vec::new();
            for (i, q) in queues.iter().enumerate() {
                for k in 0..4 {
                    let at = t0 + Span::seconds((k * n_queues + i) as i64);
                    rows.push(job(q, (k % 2) as i32, at, None));
                }
            }
            // Not yet due, and in a queue that will be paused: never claimed.
            rows.push(job(&queues[0], 9, t0 + Span::hours(1), None));
            rows.push(job("paused", 9, t0, None));
            let mut all = queues.clone();
            all.push("paused".into());
            store.enqueue(t0, rows.clone()).await.unwrap();
            store
                .set_queue_paused(t0, "default", "paused", true)
                .await
                .unwrap();
            // One lease that has expired by `now`, taken over in its place in the order.
            let first = store.claim(t0, &params(&queues[..1], 1)).await.unwrap();
            let expired_id = first.leases[0].job.id;
            let now = t0 + Span::minutes(5);

            let mut expected: Vec<&NewJobRow> = rows
                .iter()
                .filter(|r| r.queue != "paused" && r.run_at <= now)
                .collect();
            expected.sort_by(|a, b| {
                b.priority
                    .cmp(&a.priority)
                    .then(a.run_at.cmp(&b.run_at))
                    .then(a.id.cmp(&b.id))
            });
            let expected: Vec<Uuid> = expected.iter().map(|r| r.id).collect();
            assert!(expected.contains(&expired_id));

            let mut got = Vec::new();
            let mut expired = 0;
            loop {
                let claimed = store.claim(now, &params(&all, 5)).await.unwrap();
                if claimed.leases.is_empty() {
                    break;
                }
                expired += claimed.expired;
                got.extend(claimed.leases.iter().map(|l| l.job.id));
            }
            assert_eq!(got, expected, "{n_queues} queues");
            assert_eq!(expired, 1);
        }
    }

    /// A batch naming one job twice, mixing kinds, stale tokens and unknown jobs answers each
    /// item as if applied one by one; a batch enqueue with a repeated key stores the first.
    #[tokio::test]
    async fn batches_answer_per_item() {
        let Some(store) = store("postgres::batches_answer_per_item").await else {
            return;
        };
        // PostgreSQL keeps microseconds.
        let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
        let rows = vec![
            job("q", 0, now, Some("a")),
            job("q", 0, now, None),
            job("q", 0, now, Some("a")),
            job("q", 0, now, None),
        ];
        let enq = store.enqueue(now, rows.clone()).await.unwrap();
        assert_eq!(
            enq.iter().map(|e| e.replayed).collect::<Vec<_>>(),
            [false, false, true, false]
        );
        assert_eq!(enq[2].job.id, rows[0].id);
        let again = store
            .enqueue(now, vec![job("q", 0, now, Some("a"))])
            .await
            .unwrap();
        assert!(again[0].replayed);
        assert_eq!(again[0].job.id, rows[0].id);

        let leases = store
            .claim(now, &params(&["q".into()], 10))
            .await
            .unwrap()
            .leases;
        assert_eq!(leases.len(), 3);
        let (a, b, c) = (&leases[0], &leases[1], &leases[2]);
        let outcome = |l: &Lease, token: i64, kind: OutcomeKind| Outcome {
            job_id: l.job.id,
            fencing_token: token,
            kind,
        };
        let complete = OutcomeKind::Complete {
            result: serde_json::json!({"ok": 1}),
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
        let events = store
            .list_events(&EventFilter {
                after: 0,
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let tail: Vec<&str> = events
            .iter()
            .rev()
            .take(3)
            .map(|e| e.kind.as_str())
            .collect();
        assert_eq!(tail, ["released", "retry_scheduled", "succeeded"]);
        assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    }
}
