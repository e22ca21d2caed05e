//! The statements retention needs ([`RetentionStore`]); what to remove and when is decided in
//! [`crate::retention`], above the drivers. Every delete re-checks its condition inside its own
//! transaction, so a job retried or a run resumed between the decision and the delete is kept.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{JobState, LedgerSegment};
use uuid::Uuid;

use super::{StoreError, StoreResult};

/// One stored override: `queue` is empty for the tenant-wide one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    /// Tenant.
    pub tenant: String,
    /// Queue, or `""` for the whole tenant.
    pub queue: String,
    /// Window for `succeeded` jobs as written (`None`: inherited).
    pub succeeded: Option<String>,
    /// Window for `dead` and `cancelled` jobs as written (`None`: inherited).
    pub failed: Option<String>,
    /// Last write.
    pub updated_at: DateTime<Utc>,
}

/// Which finished jobs of no run in one tenant and queue are past their windows: those that
/// finished strictly before the cut-off of their state (`None`: kept forever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeCutoffs {
    /// Tenant.
    pub tenant: String,
    /// Queue.
    pub queue: String,
    /// `succeeded` jobs that finished before this go.
    pub succeeded_before: Option<DateTime<Utc>>,
    /// `dead` and `cancelled` jobs that finished before this go.
    pub failed_before: Option<DateTime<Utc>>,
}

/// What retention reads of one job of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunJobFact {
    /// The job.
    pub id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Queue.
    pub queue: String,
    /// State.
    pub state: JobState,
    /// When it finished (terminal states only).
    pub finished_at: Option<DateTime<Utc>>,
}

/// A run whose stored status is terminal, with its jobs as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRun {
    /// The run.
    pub id: Uuid,
    /// Its jobs.
    pub jobs: Vec<RunJobFact>,
}

/// Held while one sweep runs; [`SweepLock::release`] ends it. On PostgreSQL it is a session
/// advisory lock on a connection of its own, which the server drops with the connection if
/// this process dies, so a crashed replica never blocks the others.
#[derive(Debug)]
pub enum SweepLock {
    /// SQLite: one process owns the file; the coordinator's own mutex is enough.
    Local,
    /// PostgreSQL: the connection holding `pg_try_advisory_lock`.
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl SweepLock {
    /// Gives the lock back.
    pub async fn release(self) {
        if let Self::Postgres(mut conn) = self {
            let unlocked = sqlx::query(SWEEP_UNLOCK).execute(&mut *conn).await;
            if unlocked.is_err() {
                // Closing the session releases its advisory locks.
                conn.close_on_drop();
            }
        }
    }
}

/// Takes the sweep's advisory lock. Advisory locks are per database, so the key includes the
/// schema: deployments (or test suites) in separate schemas of one database sweep
/// independently. The first half is `"lret"` in ASCII.
pub(crate) const SWEEP_TRY_LOCK: &str =
    "SELECT pg_try_advisory_lock(1819436404, hashtext(current_schema()))";
/// Gives the sweep's advisory lock back.
const SWEEP_UNLOCK: &str = "SELECT pg_advisory_unlock(1819436404, hashtext(current_schema()))";

/// The statements of retention, implemented by both stores.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Overrides of one tenant (all tenants when `None`), sorted by tenant then queue.
    async fn retention_policies(&self, tenant: Option<&str>) -> StoreResult<Vec<PolicyRow>>;

    /// Creates or replaces an override.
    async fn put_retention_policy(&self, row: &PolicyRow) -> StoreResult<()>;

    /// Removes an override; false when there was none.
    async fn delete_retention_policy(&self, tenant: &str, queue: &str) -> StoreResult<bool>;

    /// The sweep lock, or `None` when another replica holds it.
    async fn try_lock_sweep(&self) -> StoreResult<Option<SweepLock>>;

    /// Every `(tenant, queue)` with finished jobs of no run.
    async fn finished_scopes(&self) -> StoreResult<Vec<(String, String)>>;

    /// Deletes up to `limit` finished jobs of no run past `cut`'s windows, oldest first, in one
    /// transaction; answers how many.
    async fn delete_finished_jobs(&self, cut: &ScopeCutoffs, limit: u32) -> StoreResult<u64>;

    /// Up to `limit` runs whose stored status is terminal, ids after `after`, with their jobs.
    async fn finished_runs(&self, after: Option<Uuid>, limit: u32)
    -> StoreResult<Vec<FinishedRun>>;

    /// Deletes `run` with its jobs and dependency edges in one transaction, if its jobs are
    /// still exactly those read, all finished at the same instants (the decision to remove it
    /// still holds); answers the jobs removed (0 when something changed: nothing removed).
    async fn delete_run(&self, run: &FinishedRun) -> StoreResult<u64>;

    /// Which of `digests` some job's artifact manifest names.
    async fn referenced_digests(&self, digests: &[String]) -> StoreResult<Vec<String>>;

    /// The archived segments in chain order (only the last one when `last_only`).
    async fn ledger_segments(&self, last_only: bool) -> StoreResult<Vec<LedgerSegment>>;

    /// In one transaction: checks that the events with ids `first_id..=last_id` still number
    /// `count`, records `segment` and deletes those events. Fails, changing nothing, when the
    /// count differs or the chain moved on (another sweep recorded `seq` first).
    async fn record_segment(&self, segment: &LedgerSegment) -> StoreResult<()>;
}

/// Terminal states and the window each uses: `succeeded`, or the failed family.
pub(crate) fn is_failed_family(state: JobState) -> bool {
    matches!(state, JobState::Dead | JobState::Cancelled)
}

/// A segment is recorded only as the next after the chain's head (`head`: the highest recorded
/// `seq`): a second sweep that lost the race records nothing.
pub(crate) fn segment_follows(head: Option<i64>, segment: &LedgerSegment) -> StoreResult<()> {
    if head.unwrap_or(0) + 1 != segment.seq {
        return Err(StoreError::Conflict(format!(
            "ledger segment {} is not next after {head:?}",
            segment.seq
        )));
    }
    Ok(())
}

/// The events a segment archived are trimmed only when all of them are still there (`present`
/// counted in its id range): nothing is deleted that the segment does not hold.
pub(crate) fn segment_covers(present: i64, segment: &LedgerSegment) -> StoreResult<()> {
    if u64::try_from(present).ok() != Some(segment.count) {
        return Err(StoreError::Conflict(format!(
            "events {}..={} number {present}, the segment holds {}: nothing trimmed",
            segment.first_id, segment.last_id, segment.count
        )));
    }
    Ok(())
}
