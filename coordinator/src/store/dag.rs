//! Run (DAG) bookkeeping, decided once for both stores.
//!
//! Whatever ends or replays a job of a run — an outcome (single, batched, over WebSocket), a
//! lease expiry that buries the job `dead` inside a claim, a timeout that ends its attempt
//! inside a claim, a job or run cancel, a retry — calls
//! into this module inside the same transaction. The decisions live here: which children become
//! ready, which descendants end `cancelled` with `upstream_failed`, which go back to `blocked` on
//! a replay, and what the run's status becomes. The statements that carry them out are the
//! stores' ([`DagStatements`]: `postgres/dag.rs`, `sqlite/dag.rs`).
//!
//! What must not happen before the commit is collected in [`DagEffects`] and applied by the
//! caller once the transaction has committed: waking claimers (a child is not claimable before)
//! and counting ended runs (PostgreSQL may run a transaction again after a serialization
//! failure, and a run must be counted once).

use std::future::Future;

use chrono::{DateTime, Utc};
use leasehold_proto::{Job, JobState, RunStatus};
use uuid::Uuid;

use super::StoreResult;
use super::runs::aggregate;
use crate::ready::ReadySignal;

/// A run's row as the bookkeeping reads it (locked for the rest of the transaction).
#[derive(Debug, Clone)]
pub(crate) struct RunRow {
    /// The status stored last (only used to detect changes).
    pub(crate) status: String,
    /// Whether the run was cancelled.
    pub(crate) cancelled: bool,
    /// When it was submitted (for its duration).
    pub(crate) created_at: DateTime<Utc>,
}

/// A job made ready by the bookkeeping: whose claimers to wake.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ready {
    /// Tenant.
    pub(crate) tenant: String,
    /// Queue.
    pub(crate) queue: String,
}

/// The statements the bookkeeping runs, inside the caller's transaction, per backend.
pub(crate) trait DagStatements: Send {
    /// Locks `run_id`'s row until the transaction ends (two parents finishing concurrently
    /// would otherwise each miss the other's success) and reads it; `None` if it is gone.
    fn lock_run(
        &mut self,
        run_id: Uuid,
    ) -> impl Future<Output = StoreResult<Option<RunRow>>> + Send;

    /// Blocked children of `parent` whose parents have all succeeded → `queued`, each with an
    /// `unblocked` event. Returns them.
    fn unblock_children(
        &mut self,
        parent: Uuid,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Vec<Ready>>> + Send;

    /// Blocked or queued descendants of `upstream` → `cancelled` (`upstream_failed`), each with
    /// a `cancelled` event.
    fn cancel_descendants(
        &mut self,
        upstream: Uuid,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Whether every parent of `job` has succeeded (true for a job without parents).
    fn parents_succeeded(&mut self, job: Uuid) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Sends `job` (dead or cancelled) back to `to` (`queued` or `blocked`) with a fresh
    /// attempt budget and a `retried` event; returns it as stored now.
    fn replay(
        &mut self,
        job: &Job,
        to: JobState,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Job>> + Send;

    /// Descendants of `upstream` cancelled `upstream_failed` whose parents are all succeeded or
    /// still to run (none dead or cancelled) → `blocked`, each with a `reblocked` event.
    /// Returns how many; one level of the DAG per call.
    fn reblock_descendants(
        &mut self,
        upstream: Uuid,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// The state of each job of a run, and whether it ever started.
    fn job_states(
        &mut self,
        run_id: Uuid,
    ) -> impl Future<Output = StoreResult<Vec<(JobState, bool)>>> + Send;

    /// Stores a run's new status with its `run_status` event.
    fn store_run_status(
        &mut self,
        run_id: Uuid,
        from: &str,
        to: RunStatus,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Marks `run_id` (of `tenant`) cancelled unless it is cancelled or ended already; whether
    /// it did.
    fn mark_run_cancelled(
        &mut self,
        tenant: &str,
        run_id: Uuid,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The run's `blocked` and `queued` jobs → `cancelled` (`run_cancelled`), each with a
    /// `cancelled` event.
    fn cancel_unstarted(
        &mut self,
        run_id: Uuid,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The run's `leased` jobs get a cancel request (`run_cancelled`; their workers see it on
    /// their next heartbeat), each with a `cancel_requested` event.
    fn request_cancel_of_leased(
        &mut self,
        run_id: Uuid,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Tells other replicas that jobs became ready (PostgreSQL `NOTIFY`, delivered on commit);
    /// local claimers are woken by [`DagEffects::after_commit`].
    fn announce(&mut self, ready: &[Ready]) -> impl Future<Output = StoreResult<()>> + Send;
}

/// What the bookkeeping of one transaction leaves to do once it has committed.
#[derive(Debug, Default)]
#[must_use = "apply with after_commit once the transaction has committed"]
pub(crate) struct DagEffects {
    ready: bool,
    ended: Vec<(RunStatus, f64)>,
}

impl DagEffects {
    /// Counts the runs that ended and wakes local claimers if jobs became ready. Call only
    /// after the commit: a retried transaction's first attempt must leave no trace.
    pub(crate) fn after_commit(self, signal: &ReadySignal) {
        for (status, seconds) in self.ended {
            crate::metrics::run_ended(status.as_str(), seconds);
        }
        if self.ready {
            signal.notify();
        }
    }

    async fn made_ready<S: DagStatements>(
        &mut self,
        s: &mut S,
        mut ready: Vec<Ready>,
    ) -> StoreResult<()> {
        if ready.is_empty() {
            return Ok(());
        }
        ready.sort();
        ready.dedup();
        s.announce(&ready).await?;
        self.ready = true;
        Ok(())
    }
}

/// The job facts the bookkeeping reacts to (a store that did not read the whole row back
/// knows these).
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobChange {
    /// The job.
    pub(crate) id: Uuid,
    /// Its run, if any.
    pub(crate) run_id: Option<Uuid>,
    /// Its state now.
    pub(crate) state: JobState,
}

impl From<&Job> for JobChange {
    fn from(job: &Job) -> Self {
        Self {
            id: job.id,
            run_id: job.run_id,
            state: job.state,
        }
    }
}

/// Reacts to a job of a run changing state: success unblocks the children whose parents all
/// succeeded; `dead` or `cancelled` cancels every waiting descendant (`upstream_failed`); then
/// the run's status is refreshed. Nothing for a job of no run.
pub(crate) async fn after_job_change<S: DagStatements>(
    s: &mut S,
    change: JobChange,
    now: DateTime<Utc>,
    fx: &mut DagEffects,
) -> StoreResult<()> {
    let Some(run_id) = change.run_id else {
        return Ok(());
    };
    let Some(run) = s.lock_run(run_id).await? else {
        return Ok(());
    };
    match change.state {
        JobState::Succeeded => {
            let ready = s.unblock_children(change.id, now).await?;
            fx.made_ready(s, ready).await?;
        }
        JobState::Dead | JobState::Cancelled => s.cancel_descendants(change.id, now).await?,
        _ => {}
    }
    refresh_locked(s, run_id, &run, now, fx).await
}

/// Cancels a run (idempotent; an ended run stays as it ended): jobs not started are cancelled,
/// leased ones are asked to stop (their outcome still counts), then the run's status follows.
pub(crate) async fn cancel_run<S: DagStatements>(
    s: &mut S,
    tenant: &str,
    run_id: Uuid,
    now: DateTime<Utc>,
    fx: &mut DagEffects,
) -> StoreResult<()> {
    if s.mark_run_cancelled(tenant, run_id, now).await? {
        s.cancel_unstarted(run_id, now).await?;
        s.request_cancel_of_leased(run_id, now).await?;
        refresh_run_status(s, run_id, now, fx).await?;
    }
    Ok(())
}

/// Recomputes a run's status (a job of it was leased, or its jobs changed); on a change stores
/// it with a `run_status` event.
pub(crate) async fn refresh_run_status<S: DagStatements>(
    s: &mut S,
    run_id: Uuid,
    now: DateTime<Utc>,
    fx: &mut DagEffects,
) -> StoreResult<()> {
    match s.lock_run(run_id).await? {
        Some(run) => refresh_locked(s, run_id, &run, now, fx).await,
        None => Ok(()),
    }
}

async fn refresh_locked<S: DagStatements>(
    s: &mut S,
    run_id: Uuid,
    run: &RunRow,
    now: DateTime<Utc>,
    fx: &mut DagEffects,
) -> StoreResult<()> {
    let states = s.job_states(run_id).await?;
    let status = aggregate(&states, run.cancelled);
    if run.status == status.as_str() {
        return Ok(());
    }
    if status.is_terminal() {
        let seconds = (now - run.created_at).num_milliseconds() as f64 / 1000.0;
        fx.ended.push((status, seconds));
    }
    s.store_run_status(run_id, &run.status, status, now).await
}

/// Replays `job` (dead or cancelled, as read under lock by the caller) without breaking
/// dependency order: it goes back to `queued` only if all its parents have succeeded, else to
/// `blocked` (it is unblocked when they succeed). Its descendants cancelled `upstream_failed`
/// go back to `blocked` where no other parent of theirs has failed, so the run can complete;
/// the run's status follows. Returns the job as stored now.
pub(crate) async fn replay<S: DagStatements>(
    s: &mut S,
    job: &Job,
    now: DateTime<Utc>,
    fx: &mut DagEffects,
) -> StoreResult<Job> {
    let Some(run_id) = job.run_id else {
        let replayed = s.replay(job, JobState::Queued, now).await?;
        fx.made_ready(s, vec![ready_of(&replayed)]).await?;
        return Ok(replayed);
    };
    // The run first, as every other path of a run's job takes it after the job's row.
    let Some(run) = s.lock_run(run_id).await? else {
        return s.replay(job, JobState::Queued, now).await;
    };
    let to = if s.parents_succeeded(job.id).await? {
        JobState::Queued
    } else {
        JobState::Blocked
    };
    let replayed = s.replay(job, to, now).await?;
    // One level of descendants per round: a grandchild's parent must be blocked again first.
    while s.reblock_descendants(job.id, now).await? > 0 {}
    if to == JobState::Queued {
        fx.made_ready(s, vec![ready_of(&replayed)]).await?;
    }
    refresh_locked(s, run_id, &run, now, fx).await?;
    Ok(replayed)
}

fn ready_of(job: &Job) -> Ready {
    Ready {
        tenant: job.tenant.clone(),
        queue: job.queue.clone(),
    }
}
