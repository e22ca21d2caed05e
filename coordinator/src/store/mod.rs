//! Persistence: one [`Store`] trait, implemented in plain SQL for SQLite and PostgreSQL.
//!
//! Every state change of a job happens in one SQL transaction together with the event that
//! records it. The fencing token is checked inside the `UPDATE` that changes the row, so a stale
//! token changes nothing. `now` is always passed in (see [`crate::clock`]) so that tests control
//! time and no background process is needed for lease expiry to be correct.

mod artifacts;
mod audit;
mod dag;
mod detached;
mod idempotency;
mod keys;
mod limits;
mod outcomes;
mod params;
mod pools;
mod postgres;
mod queues;
mod quotas;
mod retention;
mod run_listing;
mod runs;
mod scheduler;
mod sqlite;
mod stats;
mod timeouts;
mod workers;

pub use idempotency::IdempotencyConflict;
pub(crate) use idempotency::replay_of;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{
    Artifact, BackoffHint, Event, FailureInfo, HeartbeatItem, HeartbeatResult, Job, JobState,
    Lease, QueueInfo, Run,
};
use uuid::Uuid;

pub use artifacts::ArtifactOwners;
pub use audit::{AUDIT_EVENT, AuditRecords};
pub use detached::Detached;
pub use keys::{KeyRecords, KeyRow};
pub(crate) use limits::OutcomeFeed;
pub use limits::{BREAKER_EVENT, Incident, LimitRecords, StoredLimit};
pub(crate) use limits::{GateCandidate, RuleRow, gate_candidates, gated_read, rules_of};
pub(crate) use outcomes::{event_type_for, lost_leases, outcome_chunk_end};
pub use params::{AddRunEvent, CancelJob, CancelRun, PauseQueue, RetryJob, SetQueueSettings};
pub use pools::PoolRecords;
pub use postgres::{PostgresStore, READY_CHANNEL};
pub(crate) use queues::{QueueAccumulator, pick_queue};
pub use quotas::{Quota, QuotaExceeded, QuotaRecords};
pub(crate) use retention::is_failed_family;
pub use retention::{FinishedRun, PolicyRow, RetentionStore, RunJobFact, ScopeCutoffs, SweepLock};
pub use run_listing::{RunFilter, RunListings};
pub use runs::{NewRunRow, RunJobRow};
pub use scheduler::SchedulerRecords;
pub use sqlite::{SqliteStore, SqliteSync};
pub use stats::{FailureRow, RolledUp, StatsRecords, StatsRow};
pub(crate) use timeouts::ended_by_timeout;
pub use workers::{WorkerRecords, WorkerRow, WorkerSeen};

/// Which of a claim's `n` queues goes first within each rank of candidates (fairness across
/// queues: see the claims of both stores). A fresh draw per claim: each queue leads as often
/// as the others, with no state shared between replicas.
pub(crate) fn claim_turn(n: usize) -> i64 {
    let mut bytes = [0u8; 4];
    // Without randomness (never seen), the first queue leads: still every queue is served.
    let _ = getrandom::fill(&mut bytes);
    (u32::from_le_bytes(bytes) as usize % n.max(1)) as i64
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Failures of the store, classified by what the caller should do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is shutting down: retry later (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A constraint or input the database rejected (409 or 422 depending on the caller).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A transient conflict between transactions (deadlock, serialization failure): running
    /// the same work again will succeed (503 if it keeps happening).
    #[error("transient conflict: {0}")]
    Retryable(String),
    /// Anything else: a bug or corrupt data (500; the details are logged, not shown).
    #[error("database error: {0}")]
    Internal(String),
    /// An enqueue reused an idempotency key for different work; nothing was stored (409).
    #[error("idempotency conflict: {0:?}")]
    IdempotencyConflict(IdempotencyConflict),
    /// An enqueue would take a tenant past its `max_queued`; nothing was stored (429).
    #[error("quota exceeded: {0:?}")]
    QuotaExceeded(QuotaExceeded),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &err {
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
                Self::Unavailable(err.to_string())
            }
            E::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                // PostgreSQL refusing us: connection exceptions (08…), authorization refused
                // at connect (28…), the database missing or not accepting connections (3D000,
                // 55000), out of resources (53…: too many connections), shut down or starting
                // (57P…), read-only (25006: a standby, e.g. mid-failover); SQLite busy/locked
                // (5, 6, 261, 517). Each is the database being
                // unavailable (503), never a bug of ours (500).
                if code == "40P01" || code == "40001" {
                    Self::Retryable(err.to_string())
                } else if code.starts_with("08")
                    || code.starts_with("28")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || matches!(code.as_str(), "3D000" | "55000" | "25006")
                    || matches!(code.as_str(), "5" | "6" | "261" | "517")
                {
                    Self::Unavailable(err.to_string())
                } else if db.is_unique_violation() || db.is_foreign_key_violation() {
                    Self::Conflict(err.to_string())
                } else {
                    Self::Internal(err.to_string())
                }
            }
            E::Protocol(_) => Self::Unavailable(err.to_string()),
            _ => Self::Internal(err.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(e) => e.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// A validated job ready to insert (the HTTP layer validates; the store trusts).
#[derive(Debug, Clone)]
pub struct NewJobRow {
    /// Pre-assigned id (UUIDv7).
    pub id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Queue.
    pub queue: String,
    /// Handler name.
    pub kind: String,
    /// Payload JSON.
    pub payload: serde_json::Value,
    /// Priority, higher first.
    pub priority: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Claimable from.
    pub run_at: DateTime<Utc>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Project.
    pub project: Option<String>,
    /// Run the job belongs to.
    pub run_id: Option<Uuid>,
    /// `sha256:` of the canonical payload.
    pub inputs_hash: String,
    /// Retry policy hint.
    pub backoff: Option<BackoffHint>,
    /// The job's own longest run per attempt, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Keys the tenant's limits apply to besides `queue:` and `kind:` (`crate::flow::keys`).
    pub limit_keys: Vec<String>,
    /// `blocked` for DAG children, else `queued`.
    pub state: JobState,
}

#[cfg(test)]
impl NewJobRow {
    /// A ready job of kind `k` in `tenant`/`queue` with an empty payload and nothing else set,
    /// for tests to adjust with struct-update syntax.
    pub(crate) fn sample(tenant: &str, queue: &str) -> Self {
        Self {
            id: Uuid::now_v7(),
            tenant: tenant.into(),
            queue: queue.into(),
            kind: "k".into(),
            payload: serde_json::json!({}),
            priority: 0,
            max_attempts: 3,
            run_at: Utc::now(),
            idempotency_key: None,
            correlation_id: None,
            project: None,
            run_id: None,
            inputs_hash: "sha256:0".into(),
            backoff: None,
            timeout_ms: None,
            limit_keys: Vec::new(),
            state: JobState::Queued,
        }
    }
}

/// The answer for one inserted job.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The stored job (the earlier one when `replayed`).
    pub job: Job,
    /// True when an earlier job with the same idempotency key was returned.
    pub replayed: bool,
}

/// Filters of `GET /v1/jobs`.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Tenant (always set).
    pub tenant: String,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only the jobs of this run.
    pub run_id: Option<Uuid>,
    /// Only jobs with this correlation id.
    pub correlation_id: Option<String>,
    /// Only jobs enqueued at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only jobs enqueued before this.
    pub until: Option<DateTime<Utc>>,
    /// Only ids strictly older than this one (the decoded cursor).
    pub before: Option<Uuid>,
    /// Page size.
    pub limit: u32,
}

/// A validated claim.
#[derive(Debug, Clone)]
pub struct ClaimParams {
    /// Tenant.
    pub tenant: String,
    /// Claiming worker.
    pub worker_id: String,
    /// Its version string.
    pub worker_version: Option<String>,
    /// Queues to claim from.
    pub queues: Vec<String>,
    /// Batch size.
    pub max_jobs: u32,
    /// Lease length.
    pub lease_ttl_ms: u64,
    /// The caller knows (`crate::flow::catalog`, at most a second old) that the tenant has no
    /// limits and no quota `max_leased`: the claim skips reading them.
    pub ungated: bool,
    /// Set for a worker pool shared by several tenants (`crate::flow::pool`): the claim is
    /// split among them by `crate::leasing`, which asks the store once per tenant (with this
    /// unset and `tenant` set to each).
    pub pool: Option<std::sync::Arc<crate::flow::pool::Pool>>,
}

/// What a worker reports for one lease.
#[derive(Debug, Clone)]
pub enum OutcomeKind {
    /// The handler succeeded.
    Complete {
        /// Its result.
        result: serde_json::Value,
        /// Its artifact manifest, sorted by name.
        artifacts: Vec<Artifact>,
    },
    /// The handler failed.
    Fail {
        /// What went wrong.
        error: FailureInfo,
        /// When to try again if retryable and attempts remain.
        retry_at: DateTime<Utc>,
    },
    /// The lease is given back unrun (no attempt spent).
    Release {
        /// The coordinator gives it back because the lease never reached its worker (the
        /// claimer hung up first); the `released` event says so (`"reason": "undelivered"`),
        /// so the ledger explains the lease its worker never saw.
        undelivered: bool,
    },
}

/// One outcome, fenced by its token.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The job.
    pub job_id: Uuid,
    /// The lease's token.
    pub fencing_token: i64,
    /// What happened.
    pub kind: OutcomeKind,
}

/// The answer for one outcome: `T` is what a recorded outcome carries — the job as stored now
/// ([`Store::finish`]) or its new state only ([`Store::finish_states`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Finished<T = Box<Job>> {
    /// Recorded.
    Ok(T),
    /// The job is not leased under that token; nothing changed. Carries the current state.
    LeaseLost(JobState),
    /// No such job in this tenant.
    NotFound,
}

impl<T> Finished<T> {
    /// The same answer, with what a recorded outcome carries mapped by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Finished<U> {
        match self {
            Self::Ok(value) => Finished::Ok(f(value)),
            Self::LeaseLost(state) => Finished::LeaseLost(state),
            Self::NotFound => Finished::NotFound,
        }
    }
}

/// Result of an operator transition (cancel, retry).
#[derive(Debug, Clone)]
pub struct Transition {
    /// The job after the call.
    pub job: Job,
    /// Whether the call changed anything.
    pub changed: bool,
}

/// Counts of the live states for `/metrics`, one statement on both stores, each branch read
/// through its partial index (`jobs_ready`, `jobs_lease_expiry`, `jobs_blocked`).
const LIVE_STATE_COUNTS: &str = "\
    SELECT tenant, queue, 'queued' AS state, COUNT(*) AS n FROM jobs \
     WHERE state = 'queued' GROUP BY tenant, queue \
    UNION ALL \
    SELECT tenant, queue, 'leased' AS state, COUNT(*) AS n FROM jobs \
     WHERE lease_expires_at IS NOT NULL AND state = 'leased' GROUP BY tenant, queue \
    UNION ALL \
    SELECT tenant, queue, 'blocked' AS state, COUNT(*) AS n FROM jobs \
     WHERE state = 'blocked' GROUP BY tenant, queue";

/// Jobs counted per tenant, queue and state (for metrics).
#[derive(Debug, Clone)]
pub struct StateCount {
    /// Tenant.
    pub tenant: String,
    /// Queue.
    pub queue: String,
    /// State.
    pub state: JobState,
    /// How many.
    pub count: i64,
}

/// What a claim did besides granting leases, for metrics.
#[derive(Debug, Clone, Default)]
pub struct Claimed {
    /// Granted leases.
    pub leases: Vec<Lease>,
    /// Expired leases taken over (re-leased or sent to `dead`).
    pub expired: u64,
    /// Attempts ended because their run-time deadline passed (`super::timeouts`).
    pub timed_out: u64,
    /// What the tenant's limits held back, if anything (`crate::flow`).
    pub held: Option<crate::flow::gate::Held>,
}

/// The persistence contract shared by the SQLite and PostgreSQL stores. The conformance suite
/// (`coordinator/tests/integration/store_conformance.rs`) runs the same bodies against both.
#[async_trait]
pub trait Store:
    SchedulerRecords
    + KeyRecords
    + ArtifactOwners
    + AuditRecords
    + LimitRecords
    + QuotaRecords
    + PoolRecords
    + RunListings
    + WorkerRecords
    + StatsRecords
    + Send
    + Sync
    + 'static
{
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// The signal this store bumps once a commit of its own made jobs ready (a run's child
    /// unblocked, a replay): claimers wait on it.
    fn ready_signal(&self) -> crate::ready::ReadySignal;

    /// Cheap round trip proving the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// The statements of retention (`crate::retention`).
    fn retention(&self) -> &dyn RetentionStore;

    /// Inserts jobs in one transaction, returning them in input order. A job whose
    /// `(tenant, queue, idempotency_key)` exists already returns the existing job, `replayed`.
    /// Refused whole ([`StoreError::QuotaExceeded`], nothing stored) when it would take a
    /// tenant past its `max_queued` (`quotas`).
    async fn enqueue(&self, now: DateTime<Utc>, jobs: Vec<NewJobRow>)
    -> StoreResult<Vec<Enqueued>>;

    /// [`Store::enqueue`] of one job: its answer.
    async fn enqueue_one(&self, now: DateTime<Utc>, job: NewJobRow) -> StoreResult<Enqueued> {
        self.enqueue(now, vec![job]).await.and_then(|mut done| {
            done.pop()
                .ok_or_else(|| StoreError::Internal("enqueue returned nothing".into()))
        })
    }

    /// Enqueues independent single jobs together (group commit, `crate::leasing::group`),
    /// answering each as an [`Store::enqueue`] of that job alone would: one job's refusal (an
    /// idempotency conflict, its tenant's quota) is its own answer, and every answered job is
    /// durable. `Err` only when nothing was stored (the database is unavailable, the group's
    /// statement failed): the caller may then enqueue the jobs one by one. The
    /// default tries one [`Store::enqueue`] of them all and, when it is refused for one job's
    /// sake (nothing stored then), enqueues them one by one.
    async fn enqueue_each(
        &self,
        now: DateTime<Utc>,
        jobs: Vec<NewJobRow>,
    ) -> StoreResult<Vec<StoreResult<Enqueued>>> {
        match self.enqueue(now, jobs.clone()).await {
            Ok(done) if done.len() == jobs.len() => return Ok(done.into_iter().map(Ok).collect()),
            Err(StoreError::Unavailable(why)) => return Err(StoreError::Unavailable(why)),
            _ => {}
        }
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            out.push(self.enqueue_one(now, job).await);
        }
        Ok(out)
    }

    /// Enqueues `job` (one job, ready at `now`, of no run) already leased to the worker of
    /// `claim` — a claimer parked in a long poll, see [`crate::handoff`] — in one transaction
    /// that writes the job's `enqueued` and `leased` events, as an enqueue and a claim would.
    /// Answers the job as enqueued (what [`Store::enqueue`] would have answered) and its lease.
    ///
    /// `Ok(None)` when the job cannot be handed off — its queue is paused, its idempotency key
    /// exists already, its tenant has a quota (its jobs are leased by claims, which check it),
    /// or this store does not hand off — and then nothing was written: the caller enqueues the
    /// job as usual.
    async fn enqueue_leased(
        &self,
        now: DateTime<Utc>,
        job: NewJobRow,
        claim: &ClaimParams,
    ) -> StoreResult<Option<(Job, Lease)>> {
        let _ = (now, job, claim);
        Ok(None)
    }

    /// One job of a tenant.
    async fn get_job(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Job>>;

    /// Jobs newest first (by id), at most `filter.limit`.
    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>>;

    /// Cancels: queued or blocked → cancelled; leased → `cancel_requested`; terminal → no change.
    async fn cancel_job(&self, params: CancelJob) -> StoreResult<Option<Transition>>;

    /// Sends a dead or cancelled job back to queued (blocked while a parent in its run has not
    /// succeeded) with a fresh attempt budget, re-blocking its `upstream_failed` descendants.
    async fn retry_job(&self, params: RetryJob) -> StoreResult<Option<Transition>>;

    /// Grants up to `max_jobs` leases on ready jobs (queued and due, or leased with an expired
    /// lease), highest priority first, then oldest `run_at`, then id. Expired leases whose
    /// attempts are spent go to `dead` instead. First, attempts in these queues whose run-time
    /// deadline has passed end as `timeout` failures (`timeouts`).
    async fn claim(&self, now: DateTime<Utc>, params: &ClaimParams) -> StoreResult<Claimed>;

    /// Earliest instant after `after` at which something of these tenants in these queues
    /// becomes claimable (a `run_at` or a lease deadline), for long-poll timing. What was due
    /// at `after` (a claim at that instant saw it: held back by a limit, or in a paused queue)
    /// is left out, so that a claimer does not query again at once for it.
    async fn next_ready_at(
        &self,
        after: DateTime<Utc>,
        tenants: &[String],
        queues: &[String],
    ) -> StoreResult<Option<DateTime<Utc>>>;

    /// Extends every lease still held under its token; stores latest progress and checkpoint.
    async fn heartbeat(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        items: &[HeartbeatItem],
    ) -> StoreResult<Vec<HeartbeatResult>>;

    /// Records outcomes, each fenced by its token, in one transaction.
    async fn finish(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
    ) -> StoreResult<Vec<Finished>>;

    /// Like [`finish`](Self::finish), answering with each job's new state only: all the batch
    /// endpoints report. A store may then skip reading whole rows back (PostgreSQL renders and
    /// the coordinator parses every JSON column of a returned row).
    async fn finish_states(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
    ) -> StoreResult<Vec<Finished<JobState>>> {
        Ok(self
            .finish(now, tenant, outcomes)
            .await?
            .into_iter()
            .map(|f| f.map(|job| job.state))
            .collect())
    }

    /// [`finish_states`](Self::finish_states), then [`claim`](Self::claim) for the same
    /// tenant: a worker session's outcomes and its next claim. The answers are those of the two
    /// calls in this order; a store may make them one transaction (PostgreSQL does: one commit
    /// instead of two, and no outcome batch racing the claim for the same CPU). A failure fails
    /// both: neither is then recorded. `params.tenant` must be `tenant`; limits must not apply
    /// (`params.ungated`), for they would be fed the outcomes only after the claim.
    async fn finish_and_claim(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
        params: &ClaimParams,
    ) -> StoreResult<(Vec<Finished<JobState>>, Claimed)> {
        let finished = self.finish_states(now, tenant, outcomes).await?;
        let claimed = self.claim(now, params).await?;
        Ok((finished, claimed))
    }

    /// Queues of a tenant with depth per state, sorted by name.
    async fn queues(&self, tenant: &str) -> StoreResult<Vec<QueueInfo>>;

    /// Pauses or resumes a queue (creating its row if needed).
    async fn set_queue_paused(&self, params: PauseQueue) -> StoreResult<QueueInfo>;

    /// Replaces a queue's settings (creating its row if needed).
    async fn set_queue_settings(&self, params: SetQueueSettings) -> StoreResult<QueueInfo>;

    /// How many jobs are `blocked`, `queued` and `leased` per tenant and queue (only nonzero
    /// counts). Finished jobs are not counted: that would read the whole table.
    async fn live_state_counts(&self) -> StoreResult<Vec<StateCount>>;

    /// Events with id greater than `after`, oldest first.
    async fn events_after(&self, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
        self.list_events(&EventFilter {
            after,
            limit,
            ..Default::default()
        })
        .await
    }

    /// Events matching `filter`, oldest first. With `filter.settled` on PostgreSQL only events
    /// whose transaction is older than every running one are returned, so a live reader
    /// resuming after id N never skips an id that commits late.
    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<Event>>;

    /// The newest event id (0 when the ledger is empty); where a live tail starts.
    async fn last_event_id(&self) -> StoreResult<i64>;

    /// The id of the last event a settled [`list_events`](Self::list_events) after `after`
    /// would return among its next `limit` (or `after` when there is none), without reading
    /// the events: how the live tail moves on while nobody listens.
    async fn settled_event_end(&self, after: i64, limit: u32) -> StoreResult<i64> {
        let filter = EventFilter {
            after,
            limit,
            settled: true,
            ..Default::default()
        };
        Ok(self
            .list_events(&filter)
            .await?
            .last()
            .map_or(after, |e| e.id))
    }

    /// Creates a run and its jobs (parents first) in one transaction; a known `run_token`
    /// returns the existing run with `false`. Refused whole like [`Store::enqueue`] when its
    /// jobs would take the tenant past its `max_queued`.
    async fn create_run(&self, now: DateTime<Utc>, run: NewRunRow) -> StoreResult<(Run, bool)>;

    /// One run with its jobs and aggregate status.
    async fn get_run(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Run>>;

    /// Cancels a run: queued and blocked jobs end `cancelled`, leased ones get
    /// `cancel_requested`. Cancelling an ended run changes nothing.
    async fn cancel_run(&self, params: CancelRun) -> StoreResult<Option<Run>>;

    /// Appends an event about a run (legacy checkpoints); `None` when the run does not exist.
    async fn add_run_event(&self, params: AddRunEvent) -> StoreResult<Option<Event>>;
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this tenant (all when `None`, for operators' exports).
    pub tenant: Option<String>,
    /// Ids strictly greater than this.
    pub after: i64,
    /// Only this run.
    pub run_id: Option<Uuid>,
    /// Only this job.
    pub job_id: Option<Uuid>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only these types (all when empty).
    pub types: Vec<String>,
    /// Only events at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Only events before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Page size.
    pub limit: u32,
    /// Only events no running transaction can still precede (live tails need this; a
    /// one-off read does not).
    pub settled: bool,
    /// The newest `limit` events past `after`, newest first (where a tail starts).
    pub newest_first: bool,
}

/// The lease a freshly claimed job row stands for (shared by both stores).
/// A job leased by its own enqueue (the hand-off) as that enqueue left it, before the lease
/// written in the same transaction: what `enqueue` answers for a job nobody has claimed yet.
pub(crate) fn as_enqueued(leased: &Job) -> Job {
    Job {
        state: JobState::Queued,
        attempt: leased.attempt - 1,
        fencing_token: leased.fencing_token - 1,
        updated_at: leased.created_at,
        started_at: None,
        lease_expires_at: None,
        deadline_at: None,
        worker_id: None,
        worker_version: None,
        ..leased.clone()
    }
}

pub(crate) fn lease_of(job: Job) -> StoreResult<Lease> {
    let expires_at = job
        .lease_expires_at
        .ok_or_else(|| StoreError::Internal("leased job without deadline".into()))?;
    let since_start = |at: DateTime<Utc>| {
        (at - job.started_at.unwrap_or(at))
            .num_milliseconds()
            .max(0) as u64
    };
    Ok(Lease {
        fencing_token: job.fencing_token,
        expires_at,
        lease_ttl_ms: since_start(expires_at),
        timeout_ms: job.deadline_at.map(since_start),
        deadline_at: job.deadline_at,
        attempt: job.attempt,
        checkpoint: job.checkpoint.clone(),
        retry: leasehold_proto::RetryHints {
            max_attempts: job.max_attempts,
            backoff: job.backoff.clone(),
        },
        job,
    })
}
