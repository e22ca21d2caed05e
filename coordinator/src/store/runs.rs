//! Backend-independent parts of runs: the rows a submission becomes, the submission itself
//! (decided here over each store's [`RunStatements`]), and the aggregate status both stores
//! compute the same way. What happens to a run's jobs later is [`super::dag`]'s.

use std::future::Future;

use chrono::{DateTime, Utc};
use leasehold_proto::{JobState, Run, RunJob, RunStatus};
use uuid::Uuid;

use super::{NewJobRow, StoreError, StoreResult};

/// The statements a run's submission runs inside one transaction, per backend.
pub(crate) trait RunStatements: Send {
    /// The run that already has `token` in `tenant`, if any. Submissions of one token are
    /// serialized from here to the commit (PostgreSQL takes an advisory lock, across replicas;
    /// SQLite's single writer already serializes them).
    fn run_with_token(
        &mut self,
        tenant: &str,
        token: &str,
    ) -> impl Future<Output = StoreResult<Option<Uuid>>> + Send;

    /// Refuses the submission ([`StoreError::QuotaExceeded`]) when `jobs` would take the tenant
    /// past its `max_queued` ([`super::quotas::check_enqueue`], inside this transaction).
    fn check_quota(&mut self, jobs: &[&NewJobRow]) -> impl Future<Output = StoreResult<()>> + Send;

    /// Inserts the run's row (`pending`) and its `run_created` event.
    fn insert_run(
        &mut self,
        run: &NewRunRow,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Inserts the run's jobs in order (parents first), with their keys and dependency edges.
    fn insert_run_jobs(
        &mut self,
        run: &NewRunRow,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The run with its jobs, as stored now.
    fn load_run(
        &mut self,
        tenant: &str,
        id: Uuid,
    ) -> impl Future<Output = StoreResult<Option<Run>>> + Send;
}

/// Submits `run`: a run token seen before returns that run (`false`: nothing was written, the
/// quota is not asked), else the run and its jobs are stored (`true`), unless they would take
/// the tenant past its `max_queued` (refused whole, nothing written).
pub(crate) async fn create<S: RunStatements>(
    s: &mut S,
    run: &NewRunRow,
    now: DateTime<Utc>,
) -> StoreResult<(Run, bool)> {
    let vanished = || StoreError::Internal(format!("run {} vanished", run.id));
    if let Some(token) = &run.run_token
        && let Some(id) = s.run_with_token(&run.tenant, token).await?
    {
        let found = s.load_run(&run.tenant, id).await?;
        return found.map(|r| (r, false)).ok_or_else(vanished);
    }
    let jobs: Vec<&NewJobRow> = run.jobs.iter().map(|j| &j.row).collect();
    s.check_quota(&jobs).await?;
    s.insert_run(run, now).await?;
    s.insert_run_jobs(run, now).await?;
    let created = s.load_run(&run.tenant, run.id).await?;
    created.map(|r| (r, true)).ok_or_else(vanished)
}

/// One job of a run, ready to insert.
#[derive(Debug, Clone)]
pub struct RunJobRow {
    /// The job (its `run_id` set; `blocked` when it has parents).
    pub row: NewJobRow,
    /// Key within the run.
    pub key: String,
    /// Ids of its parents (already assigned).
    pub parents: Vec<Uuid>,
}

/// A validated run, in topological order.
#[derive(Debug, Clone)]
pub struct NewRunRow {
    /// Run id.
    pub id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Idempotency token.
    pub run_token: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Project.
    pub project: Option<String>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Legacy dispatch mode.
    pub mode: Option<String>,
    /// Jobs, parents first.
    pub jobs: Vec<RunJobRow>,
}

/// A run row as stored (before its jobs are attached).
#[derive(Debug, Clone)]
pub(crate) struct RunRecord {
    pub(crate) id: Uuid,
    pub(crate) tenant: String,
    pub(crate) run_token: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) project: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) mode: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) cancelled_at: Option<DateTime<Utc>>,
}

/// The status a run's jobs add up to.
pub(crate) fn aggregate(states: &[(JobState, bool)], cancelled: bool) -> RunStatus {
    if cancelled {
        return RunStatus::Cancelled;
    }
    if states.is_empty() {
        return RunStatus::Pending;
    }
    if states.iter().all(|(s, _)| *s == JobState::Succeeded) {
        return RunStatus::Succeeded;
    }
    if states.iter().all(|(s, _)| s.is_terminal()) {
        return RunStatus::Failed;
    }
    if states
        .iter()
        .any(|(s, started)| *started || s.is_terminal())
    {
        return RunStatus::Running;
    }
    RunStatus::Pending
}

/// Assembles a [`Run`]: jobs sorted parents-first (by the order they were inserted, which is
/// topological), status and timings aggregated.
pub(crate) fn assemble(record: RunRecord, mut jobs: Vec<(RunJob, Uuid)>) -> Run {
    jobs.sort_by_key(|(_, id)| *id);
    let jobs: Vec<RunJob> = jobs.into_iter().map(|(j, _)| j).collect();
    let states: Vec<(JobState, bool)> = jobs
        .iter()
        .map(|j| (j.state, j.started_at.is_some()))
        .collect();
    let status = aggregate(&states, record.cancelled_at.is_some());
    let started_at = jobs.iter().filter_map(|j| j.started_at).min();
    let finished_at = if status.is_terminal() {
        jobs.iter()
            .filter_map(|j| j.finished_at)
            .max()
            .or(record.cancelled_at)
            .map(|t| t.max(record.cancelled_at.unwrap_or(t)))
    } else {
        None
    };
    let duration_seconds =
        finished_at.map(|f| (f - record.created_at).num_milliseconds() as f64 / 1000.0);
    Run {
        id: record.id,
        tenant: record.tenant,
        run_token: record.run_token,
        name: record.name,
        project: record.project,
        correlation_id: record.correlation_id,
        mode: record.mode,
        status,
        created_at: record.created_at,
        started_at,
        finished_at,
        cancelled_at: record.cancelled_at,
        duration_seconds,
        jobs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_status() {
        use JobState::*;
        assert_eq!(
            aggregate(&[(Blocked, false), (Queued, false)], false),
            RunStatus::Pending
        );
        assert_eq!(
            aggregate(&[(Leased, true), (Blocked, false)], false),
            RunStatus::Running
        );
        assert_eq!(
            aggregate(&[(Succeeded, true), (Blocked, false)], false),
            RunStatus::Running
        );
        assert_eq!(
            aggregate(&[(Succeeded, true), (Succeeded, true)], false),
            RunStatus::Succeeded
        );
        assert_eq!(
            aggregate(
                &[(Succeeded, true), (Dead, true), (Cancelled, false)],
                false
            ),
            RunStatus::Failed
        );
        assert_eq!(aggregate(&[(Queued, false)], true), RunStatus::Cancelled);
    }
}
