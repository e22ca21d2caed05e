//! SQLite store: one file, WAL, a single writer connection (every write transaction starts with
//! `BEGIN IMMEDIATE`, so it never upgrades a read lock and never deadlocks) and a reader pool.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{
    Event, HeartbeatItem, HeartbeatResult, Job, JobState, Lease, QueueInfo, Run, SchedulerRun,
    SchedulerRunInput,
};
use serde_json::{Value, json};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Column, QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::dag::{self, DagEffects};
use super::sqlite_dag::SqliteDag;
use super::sqlite_direct::{Arg, Exec, JobColumns, decode_job_at};
use super::{
    Backend, ClaimParams, Claimed, Enqueued, EventFilter, Finished, JobFilter, NewJobRow,
    NewRunRow, Outcome, StateCount, Store, StoreError, StoreResult, Transition,
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
    /// How many jobs the latest claim found: the guess of how many the next one will find,
    /// which picks how its candidate search runs (see `sqlite_direct`). Only speed depends
    /// on it.
    pub(super) last_claim_size: Arc<AtomicUsize>,
    /// Bumped after commits that made jobs ready (see [`Store::ready_signal`]).
    pub(super) ready: crate::notify::ReadySignal,
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

pub(super) fn json_text(v: &Value) -> String {
    v.to_string()
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

/// Rows per multi-row statement: 17 binds per job row keeps a statement far below SQLite's
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
        // No ping before each use (sqlx's default): a file connection does not go stale, and
        // the ping is one more hand-off to the connection's thread per transaction.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(base.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(base.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            last_claim_size: Arc::default(),
            ready: crate::notify::ReadySignal::new(),
        })
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

#[async_trait]
impl Store for SqliteStore {
    fn retention(&self) -> &dyn super::RetentionStore {
        self
    }

    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn ready_signal(&self) -> crate::notify::ReadySignal {
        self.ready.clone()
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

    async fn enqueue_leased(
        &self,
        now: DateTime<Utc>,
        job: NewJobRow,
        claim: &ClaimParams,
    ) -> StoreResult<Option<(Job, Lease)>> {
        self.enqueue_leased_impl(now, job, claim).await
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
        let mut fx = DagEffects::default();
        dag::after_job_change(&mut SqliteDag(&mut tx), (&updated).into(), now, &mut fx).await?;
        tx.commit().await?;
        fx.after_commit(&self.ready);
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
        let mut fx = DagEffects::default();
        let job = dag::replay(&mut SqliteDag(&mut tx), &job, now, &mut fx).await?;
        tx.commit().await?;
        fx.after_commit(&self.ready);
        Ok(Some(Transition { job, changed: true }))
    }

    async fn claim(&self, now: DateTime<Utc>, params: &ClaimParams) -> StoreResult<Claimed> {
        self.claim_impl(now, params).await
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
        self.heartbeat_impl(now, tenant, items).await
    }

    async fn finish(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
    ) -> StoreResult<Vec<Finished>> {
        self.finish_impl(now, tenant, outcomes).await
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

    async fn settled_event_end(&self, after: i64, limit: u32) -> StoreResult<i64> {
        // One writer commits in id order, so every visible event has settled.
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(MAX(id), ?1) FROM \
             (SELECT id FROM events WHERE id > ?1 ORDER BY id LIMIT ?2)",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_one(&self.reader)
        .await?)
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
#[path = "sqlite_tests.rs"]
mod tests;
