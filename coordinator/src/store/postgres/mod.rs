//! PostgreSQL store: shared by any number of coordinator replicas. Claims lock candidate rows
//! with `FOR UPDATE SKIP LOCKED` inside a materialized CTE, so the `LIMIT` is applied exactly once
//! (the `IN (… LIMIT … SKIP LOCKED)` form can over-claim, PostgreSQL bug #15715). Every state
//! change and its event are written by one statement (data-modifying CTEs), hence atomically.

mod announce;
mod artifacts;
mod audit;
mod claims;
mod dag;
mod enqueue;
mod feed;
mod heartbeat;
mod hot;
mod kept;
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

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{
    Event, HeartbeatItem, HeartbeatResult, Job, JobState, Lease, QueueInfo, Run,
};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

use crate::store::dag::DagEffects;
use crate::store::{
    AddRunEvent, Backend, CancelJob, CancelRun, ClaimParams, Claimed, Enqueued, EventFilter,
    Finished, JobFilter, NewJobRow, NewRunRow, Outcome, PauseQueue, QueueAccumulator, RetryJob,
    SetQueueSettings, StateCount, Store, StoreError, StoreResult, Transition, pick_queue,
};
use rows::{decode_job, fetch_job, with_event};

/// The LISTEN/NOTIFY channel on which enqueues, releases and retries announce ready work.
pub const READY_CHANNEL: &str = "leasehold_ready";

/// The PostgreSQL implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    options: PgConnectOptions,
    /// Ends the payload of the wake-ups this store's enqueues send (see [`Self::is_own_wakeup`]).
    pub(super) origin: String,
    /// Bumped after commits that made jobs ready (see [`Store::ready_signal`]).
    pub(super) ready: crate::ready::ReadySignal,
    /// Where the live feed may read up to (`postgres/feed.rs`).
    feed: std::sync::Arc<feed::Feed>,
    /// Which queues this store's single-job enqueues announced lately (`postgres/announce.rs`).
    announcer: std::sync::Arc<announce::Announcer>,
    /// Connections kept out of the pool for the hot statements (`postgres/kept.rs`).
    kept: std::sync::Arc<kept::KeptConnections>,
}

/// Begins a transaction whose statements are planned as nested loops over index probes.
///
/// Small enqueues, claims, outcome batches and heartbeats touch a handful of rows named by id
/// (or found by an ordered index walk with a `LIMIT`), on a table that churns faster than
/// autovacuum analyzes it. Left to its statistics, the planner hash-joined a batch of 1000
/// outcomes with a sequential scan of the whole table (1.4–1.7 s per batch at 20k jobs)
/// whenever a batch looked big next to the table. Index probes are the right plan at every
/// size these statements see, so the transaction says so. With that settled, each statement's
/// generic plan is the plan: `force_generic_plan` keeps PostgreSQL from planning these
/// statements anew at every execution (1.2 ms of a 1.8 ms claim, 0.7 ms of a 1.2 ms single-job
/// enqueue). `SET LOCAL` lasts until the transaction ends; sent with `BEGIN` as one simple
/// query, it costs no round trip of its own. See docs/postgres-hot-path.md.
pub(super) async fn begin_by_index(
    pool: &sqlx::PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    pool.begin_with(BEGIN_BY_INDEX).await
}

/// [`begin_by_index`] on a connection of its own (a kept one, `kept.rs`).
pub(super) async fn begin_by_index_on(
    conn: &mut sqlx::PgConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, sqlx::Error> {
    sqlx::Connection::begin_with(conn, BEGIN_BY_INDEX).await
}

/// The `BEGIN` of [`begin_by_index`].
const BEGIN_BY_INDEX: &str = "BEGIN; SET LOCAL enable_seqscan = off; \
    SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; \
    SET LOCAL plan_cache_mode = force_generic_plan";

/// `options` with PostgreSQL's JIT compiler off, in the connection's startup packet (no round
/// trip). The coordinator's statements are short and planned generically once per connection
/// (`begin_by_index`); once the table statistics made a claim's generic plan cost more than
/// `jit_above_cost` (100 000 by default: a few hundred thousand rows of finished jobs do it),
/// every execution compiled its expressions with LLVM first — 135 ms of a claim that then ran
/// in 0.2 ms, so pickup latency went from 2 ms to seconds (docs/postgres-hot-path.md §8). A
/// database URL's own `options=-c jit=on` comes first and is overridden.
pub(crate) fn no_jit(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("jit", "off")])
}

/// Enqueues of at most this many jobs run in a [`begin_by_index`] transaction.
const BY_INDEX_ENQUEUE_MAX: usize = 8;

/// How many connections the hot statements keep out of the pool, besides its 16.
const KEPT_CONNECTIONS: usize = 4;

/// A pooled connection idle this long is pinged before use (see [`PostgresStore::connect_with`]).
const PING_IDLE: Duration = Duration::from_secs(1);

impl PostgresStore {
    /// Connects to `url` and applies migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("bad postgres url: {e}")))?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options and applies migrations. Every connection runs with
    /// `jit = off` (see [`no_jit`]).
    pub async fn connect_with(options: PgConnectOptions) -> StoreResult<Self> {
        let options = no_jit(options);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(0)
            // Fail fast when the database is down so callers get a prompt 503.
            .acquire_timeout(Duration::from_secs(3))
            // sqlx pings every connection it hands out by default: one more round trip per
            // transaction, the costliest part of a small one (a claim was five round trips).
            // Only a connection that sat idle is checked; one in steady use would have failed
            // its last statement had the server gone, and was then closed.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            options,
            origin: format!("@{}", Uuid::new_v4().simple()),
            ready: crate::ready::ReadySignal::new(),
            feed: std::sync::Arc::default(),
            announcer: std::sync::Arc::new(announce::Announcer::new(announce::WINDOW)),
            kept: std::sync::Arc::new(kept::KeptConnections::new(KEPT_CONNECTIONS)),
        })
    }

    /// Sets the shortest time between two ready-channel announcements of one queue by this
    /// store's single-job enqueues (default 10 ms; see docs/postgres-hot-path.md §11): a
    /// claimer parked on another replica hears of a job at most this much later.
    #[must_use]
    pub fn with_announce_window(mut self, window: Duration) -> Self {
        self.announcer = std::sync::Arc::new(announce::Announcer::new(window));
        self
    }

    /// Whether a ready-channel payload came from this store's own `enqueue`, whose caller wakes
    /// the local claimers itself (the HTTP handler, right after the commit). Its echo through
    /// LISTEN would wake every idle claimer a second time, each for an empty claim transaction.
    /// Wake-ups from other replicas and from other writes (runs, retries) carry no such tag.
    pub fn is_own_wakeup(&self, payload: &str) -> bool {
        payload.ends_with(&self.origin)
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

#[async_trait]
impl Store for PostgresStore {
    fn retention(&self) -> &dyn super::RetentionStore {
        self
    }

    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn ready_signal(&self) -> crate::ready::ReadySignal {
        self.ready.clone()
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
        if let [job] = jobs.as_slice() {
            if let Some(job) = self.insert_one(now, job, None).await? {
                return Ok(vec![Enqueued {
                    job,
                    replayed: false,
                }]);
            }
            // Nothing inserted: the key is taken (a replay, never refused by a quota), or the
            // tenant has a `max_queued`, which only the checked transaction below may admit.
            if let Some(earlier) = self.keyed(job).await? {
                return Ok(vec![crate::store::replay_of(job, earlier, 0)?]);
            }
        }
        // A few jobs: planned once, by index (the single-job enqueue, in this form, spent 0.7 ms
        // of 1.2 in planning; it has its own statement now). A batch keeps per-execution planning: its events are written in input
        // order by joining the inserted rows back to the input, which PostgreSQL, knowing the
        // arrays' length, hashes; forced to nested loops that join is quadratic (bulk enqueue
        // of 1000 per request fell from 15k to 7k rows/s).
        let by_index = jobs.len() <= BY_INDEX_ENQUEUE_MAX;
        let plan = if by_index {
            enqueue::Plan::ByIndex
        } else {
            enqueue::Plan::PerExecution
        };
        let mut tx = if by_index {
            begin_by_index(&self.pool).await?
        } else {
            self.pool.begin().await?
        };
        // The quota check locks the tenant's quota row until the commit (`store/quotas.rs`).
        let rows: Vec<&NewJobRow> = jobs.iter().collect();
        crate::store::quotas::check_enqueue(&mut quotas::PgQuotas(&mut tx), &rows).await?;
        let out = self
            .insert_jobs(&mut tx, now, jobs, Some(&self.origin), plan)
            .await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn enqueue_each(
        &self,
        now: DateTime<Utc>,
        jobs: Vec<NewJobRow>,
    ) -> StoreResult<Vec<StoreResult<Enqueued>>> {
        self.enqueue_group(now, jobs).await
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
        let mut conn = self.pool.acquire().await?;
        fetch_job(&mut conn, tenant, id).await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        // Only the filters given are in the statement, so a run's jobs are found through
        // `jobs_run` and the rest walk the primary key newest first (ids are UUIDv7).
        let mut qb =
            sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT * FROM jobs WHERE tenant = ");
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
            qb.push(" AND created_at >= ").push_bind(since);
        }
        if let Some(until) = filter.until {
            qb.push(" AND created_at < ").push_bind(until);
        }
        if let Some(before) = filter.before {
            qb.push(" AND id < ").push_bind(before);
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows = qb.build().fetch_all(&self.pool).await?;
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
        let mut fx = DagEffects::default();
        crate::store::dag::after_job_change(
            &mut self.dag(&mut tx),
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
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1 AND tenant = $2 FOR UPDATE")
            .bind(id)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(job) = row.as_ref().map(decode_job).transpose()? else {
            return Ok(None);
        };
        if !matches!(job.state, JobState::Dead | JobState::Cancelled) {
            return Ok(Some(Transition {
                job,
                changed: false,
            }));
        }
        let mut fx = DagEffects::default();
        let job = crate::store::dag::replay(&mut self.dag(&mut tx), &job, now, &mut fx).await?;
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
        // `lease_expires_at IS NOT NULL` lets the lease search use `jobs_lease_expiry`.
        let t: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT LEAST( \
               (SELECT MIN(run_at) FROM jobs WHERE state = 'queued' AND tenant = ANY($1) AND queue = ANY($2) \
                AND run_at > $3), \
               (SELECT MIN(lease_expires_at) FROM jobs WHERE state = 'leased' AND tenant = ANY($1) AND queue = ANY($2) \
                AND lease_expires_at IS NOT NULL AND lease_expires_at > $3))",
        )
        .bind(tenants)
        .bind(queues)
        .bind(after)
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

    async fn finish_states(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
    ) -> StoreResult<Vec<Finished<JobState>>> {
        self.finish_states_impl(now, tenant, outcomes).await
    }

    async fn finish_and_claim(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
        params: &ClaimParams,
    ) -> StoreResult<(Vec<Finished<JobState>>, Claimed)> {
        self.finish_and_claim_impl(now, tenant, outcomes, params)
            .await
    }

    async fn queues(&self, tenant: &str) -> StoreResult<Vec<QueueInfo>> {
        let counts = sqlx::query(
            "SELECT queue, state, COUNT(*) AS n FROM jobs WHERE tenant = $1 GROUP BY queue, state",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        let rows =
            sqlx::query("SELECT name, paused, default_timeout_ms FROM queues WHERE tenant = $1")
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
        for row in &rows {
            acc.set_row(
                row.try_get("name")?,
                row.try_get("paused")?,
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
            "INSERT INTO queues (tenant, name, default_timeout_ms, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, name) DO UPDATE SET \
             default_timeout_ms = excluded.default_timeout_ms, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(queue)
        .bind(timeout)
        .bind(now)
        .execute(&self.pool)
        .await?;
        pick_queue(self.queues(tenant).await?, queue)
    }

    async fn live_state_counts(&self) -> StoreResult<Vec<StateCount>> {
        // One partial index per state: the cost follows the backlog, never the history.
        let rows = sqlx::query(super::LIVE_STATE_COUNTS)
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

    async fn settled_event_end(&self, after: i64, limit: u32) -> StoreResult<i64> {
        self.settled_end(after, i64::from(limit)).await
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
