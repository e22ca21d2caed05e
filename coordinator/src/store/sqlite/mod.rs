//! SQLite store: one file, WAL, a single writer connection (every write transaction starts with
//! `BEGIN IMMEDIATE`, so it never upgrades a read lock and never deadlocks) and a reader pool.

mod artifacts;
mod audit;
mod dag;
mod direct;
mod enqueue;
mod handoff;
mod heartbeat;
mod keys;
mod leases;
mod limits;
mod pools;
mod quotas;
mod retention;
mod rows;
mod run_listing;
mod runs;
mod scheduler;
mod stats;
mod timeouts;
mod workers;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{
    Event, HeartbeatItem, HeartbeatResult, Job, JobState, Lease, QueueInfo, Run,
};
use serde_json::json;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use crate::store::dag::DagEffects;
use crate::store::{
    AddRunEvent, Backend, CancelJob, CancelRun, ClaimParams, Claimed, Enqueued, EventFilter,
    Finished, JobFilter, NewJobRow, NewRunRow, Outcome, PauseQueue, RetryJob, SetQueueSettings,
    StateCount, Store, StoreError, StoreResult, Transition,
};
use dag::SqliteDag;
use rows::{append_event, decode_job, fetch_job, from_micros, micros, opt_time};

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
    pub(super) ready: crate::ready::ReadySignal,
    /// The tenants with a `max_queued`: an enqueue of another tenant skips the quota check's
    /// statement (`sqlite/quotas.rs`).
    queue_quotas: Arc<quotas::QueueQuotas>,
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
        let queue_quotas = Arc::new(quotas::QueueQuotas::load(&writer).await?);
        Ok(Self {
            writer,
            reader,
            last_claim_size: Arc::default(),
            ready: crate::ready::ReadySignal::new(),
            queue_quotas,
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

    fn ready_signal(&self) -> crate::ready::ReadySignal {
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
        // Inside the write transaction: nothing can change the count before the insert.
        let rows: Vec<&NewJobRow> = jobs.iter().collect();
        let mut limits = quotas::SqliteQuotas {
            conn: &mut tx,
            known: &self.queue_quotas,
        };
        crate::store::quotas::check_enqueue(&mut limits, &rows).await?;
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
        if let Some(run) = filter.run_id {
            qb.push(" AND run_id = ").push_bind(run);
        }
        if let Some(correlation) = &filter.correlation_id {
            qb.push(" AND correlation_id = ").push_bind(correlation);
        }
        if let Some(since) = filter.since {
            qb.push(" AND created_at >= ").push_bind(micros(since));
        }
        if let Some(until) = filter.until {
            qb.push(" AND created_at < ").push_bind(micros(until));
        }
        if let Some(before) = filter.before {
            qb.push(" AND id < ").push_bind(before);
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter().map(decode_job).collect()
    }

    async fn cancel_job(&self, params: CancelJob) -> StoreResult<Option<Transition>> {
        let CancelJob {
            now,
            tenant,
            id,
            reason,
        } = params;
        let tenant = tenant.as_str();
        let reason = reason.as_str();
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
        crate::store::dag::after_job_change(
            &mut SqliteDag(&mut tx),
            (&updated).into(),
            now,
            &mut fx,
        )
        .await?;
        tx.commit().await?;
        fx.after_commit(&self.ready);
        Ok(Some(Transition {
            job: updated,
            changed: true,
        }))
    }

    async fn retry_job(&self, params: RetryJob) -> StoreResult<Option<Transition>> {
        let RetryJob { now, tenant, id } = params;
        let tenant = tenant.as_str();
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
        let job = crate::store::dag::replay(&mut SqliteDag(&mut tx), &job, now, &mut fx).await?;
        tx.commit().await?;
        fx.after_commit(&self.ready);
        Ok(Some(Transition { job, changed: true }))
    }

    async fn claim(&self, now: DateTime<Utc>, params: &ClaimParams) -> StoreResult<Claimed> {
        self.claim_impl(now, params).await
    }

    async fn next_ready_at(
        &self,
        after: DateTime<Utc>,
        tenants: &[String],
        queues: &[String],
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let after = micros(after);
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT MIN(t) FROM (SELECT MIN(run_at) AS t FROM jobs WHERE state = 'queued' AND tenant IN (",
        );
        let mut sep = qb.separated(", ");
        for t in tenants {
            sep.push_bind(t);
        }
        qb.push(") AND queue IN (");
        let mut sep = qb.separated(", ");
        for q in queues {
            sep.push_bind(q);
        }
        qb.push(") AND run_at > ")
            .push_bind(after)
            .push(" UNION ALL SELECT MIN(lease_expires_at) FROM jobs WHERE state = 'leased' AND tenant IN (");
        let mut sep = qb.separated(", ");
        for t in tenants {
            sep.push_bind(t);
        }
        qb.push(") AND queue IN (");
        let mut sep = qb.separated(", ");
        for q in queues {
            sep.push_bind(q);
        }
        qb.push(") AND lease_expires_at > ")
            .push_bind(after)
            .push(")");
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
        let paused =
            sqlx::query("SELECT name, paused, default_timeout_ms FROM queues WHERE tenant = ?")
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
            acc.set_row(
                row.try_get("name")?,
                row.try_get::<i64, _>("paused")? != 0,
                row.try_get("default_timeout_ms")?,
            );
        }
        Ok(acc.finish())
    }

    async fn set_queue_paused(&self, params: PauseQueue) -> StoreResult<QueueInfo> {
        let PauseQueue {
            now,
            tenant,
            queue,
            paused,
        } = params;
        let tenant = tenant.as_str();
        let queue = queue.as_str();
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

    async fn set_queue_settings(&self, params: SetQueueSettings) -> StoreResult<QueueInfo> {
        let SetQueueSettings {
            now,
            tenant,
            queue,
            settings,
        } = params;
        let tenant = tenant.as_str();
        let queue = queue.as_str();
        let settings = &settings;
        let timeout = settings
            .default_timeout_ms
            .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
        sqlx::query(
            "INSERT INTO queues (tenant, name, default_timeout_ms, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenant, name) DO UPDATE SET \
             default_timeout_ms = excluded.default_timeout_ms, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(queue)
        .bind(timeout)
        .bind(micros(now))
        .execute(&self.writer)
        .await?;
        let queues = self.queues(tenant).await?;
        super::pick_queue(queues, queue)
    }

    async fn live_state_counts(&self) -> StoreResult<Vec<StateCount>> {
        // One partial index per state: the cost follows the backlog, never the history.
        let rows = sqlx::query(super::LIVE_STATE_COUNTS)
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

    async fn cancel_run(&self, params: CancelRun) -> StoreResult<Option<Run>> {
        let CancelRun { now, tenant, id } = params;
        let tenant = tenant.as_str();
        self.cancel_run_impl(now, tenant, id).await
    }

    async fn add_run_event(&self, params: AddRunEvent) -> StoreResult<Option<Event>> {
        let AddRunEvent {
            now,
            tenant,
            run_id,
            kind,
            job_id,
            data,
        } = params;
        let tenant = tenant.as_str();
        let kind = kind.as_str();
        self.add_run_event_impl(now, tenant, run_id, kind, job_id, data)
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
