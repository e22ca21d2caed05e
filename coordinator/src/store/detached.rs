//! Cancellation safety: every call runs to completion on its own task.
//!
//! axum drops a handler's future when its client goes away. Dropped in the middle of a
//! transaction, a store call would leave its connection inside that transaction — on SQLite the
//! single writer would stay locked, on PostgreSQL an idle transaction would hold back the event
//! feed's horizon. [`Detached`] moves each call onto a spawned task, so the transaction always
//! commits or rolls back, whoever is still waiting for the answer.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{
    Event, HeartbeatItem, HeartbeatResult, Job, JobState, Lease, QueueInfo, Run, SchedulerRun,
    SchedulerRunInput,
};
use uuid::Uuid;

use super::{
    Backend, ClaimParams, Claimed, Enqueued, EventFilter, Finished, JobFilter, NewJobRow,
    NewRunRow, Outcome, StateCount, Store, StoreError, StoreResult, Transition,
};

/// A [`Store`] whose calls survive their caller being dropped.
#[derive(Clone)]
pub struct Detached(pub Arc<dyn Store>);

impl std::fmt::Debug for Detached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Detached").field(&self.0.backend()).finish()
    }
}

/// Runs `call` against the inner store on its own task.
macro_rules! detach {
    ($self:ident, |$s:ident| $body:expr) => {{
        let $s = $self.0.clone();
        tokio::spawn(async move { $body.await })
            .await
            .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }};
}

#[async_trait]
impl Store for Detached {
    fn backend(&self) -> Backend {
        self.0.backend()
    }

    fn ready_signal(&self) -> crate::notify::ReadySignal {
        self.0.ready_signal()
    }

    fn retention(&self) -> &dyn super::RetentionStore {
        self.0.retention()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.0.ping().await
    }

    async fn enqueue(
        &self,
        now: DateTime<Utc>,
        jobs: Vec<NewJobRow>,
    ) -> StoreResult<Vec<Enqueued>> {
        detach!(self, |s| s.enqueue(now, jobs))
    }

    async fn enqueue_leased(
        &self,
        now: DateTime<Utc>,
        job: NewJobRow,
        claim: &ClaimParams,
    ) -> StoreResult<Option<(Job, Lease)>> {
        let claim = claim.clone();
        detach!(
            self,
            |s| async move { s.enqueue_leased(now, job, &claim).await }
        )
    }

    async fn get_job(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Job>> {
        self.0.get_job(tenant, id).await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        self.0.list_jobs(filter).await
    }

    async fn cancel_job(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        id: Uuid,
        reason: &str,
    ) -> StoreResult<Option<Transition>> {
        let (tenant, reason) = (tenant.to_owned(), reason.to_owned());
        detach!(self, |s| async move {
            s.cancel_job(now, &tenant, id, &reason).await
        })
    }

    async fn retry_job(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        id: Uuid,
    ) -> StoreResult<Option<Transition>> {
        let tenant = tenant.to_owned();
        detach!(self, |s| async move { s.retry_job(now, &tenant, id).await })
    }

    async fn claim(&self, now: DateTime<Utc>, params: &ClaimParams) -> StoreResult<Claimed> {
        let params = params.clone();
        detach!(self, |s| async move { s.claim(now, &params).await })
    }

    async fn next_ready_at(
        &self,
        tenant: &str,
        queues: &[String],
    ) -> StoreResult<Option<DateTime<Utc>>> {
        self.0.next_ready_at(tenant, queues).await
    }

    async fn heartbeat(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        items: &[HeartbeatItem],
    ) -> StoreResult<Vec<HeartbeatResult>> {
        let (tenant, items) = (tenant.to_owned(), items.to_vec());
        detach!(
            self,
            |s| async move { s.heartbeat(now, &tenant, &items).await }
        )
    }

    async fn finish(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
    ) -> StoreResult<Vec<Finished>> {
        let tenant = tenant.to_owned();
        detach!(
            self,
            |s| async move { s.finish(now, &tenant, outcomes).await }
        )
    }

    async fn finish_states(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
    ) -> StoreResult<Vec<Finished<JobState>>> {
        let tenant = tenant.to_owned();
        detach!(self, |s| async move {
            s.finish_states(now, &tenant, outcomes).await
        })
    }

    async fn queues(&self, tenant: &str) -> StoreResult<Vec<QueueInfo>> {
        self.0.queues(tenant).await
    }

    async fn set_queue_paused(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        queue: &str,
        paused: bool,
    ) -> StoreResult<QueueInfo> {
        let (tenant, queue) = (tenant.to_owned(), queue.to_owned());
        detach!(self, |s| async move {
            s.set_queue_paused(now, &tenant, &queue, paused).await
        })
    }

    async fn state_counts(&self) -> StoreResult<Vec<StateCount>> {
        self.0.state_counts().await
    }

    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<Event>> {
        self.0.list_events(filter).await
    }

    async fn last_event_id(&self) -> StoreResult<i64> {
        self.0.last_event_id().await
    }

    async fn settled_event_end(&self, after: i64, limit: u32) -> StoreResult<i64> {
        self.0.settled_event_end(after, limit).await
    }

    async fn create_run(&self, now: DateTime<Utc>, run: NewRunRow) -> StoreResult<(Run, bool)> {
        detach!(self, |s| s.create_run(now, run))
    }

    async fn get_run(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Run>> {
        self.0.get_run(tenant, id).await
    }

    async fn cancel_run(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        id: Uuid,
    ) -> StoreResult<Option<Run>> {
        let tenant = tenant.to_owned();
        detach!(
            self,
            |s| async move { s.cancel_run(now, &tenant, id).await }
        )
    }

    async fn add_run_event(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        run_id: Uuid,
        kind: &str,
        job_id: Option<Uuid>,
        data: serde_json::Value,
    ) -> StoreResult<Option<Event>> {
        let (tenant, kind) = (tenant.to_owned(), kind.to_owned());
        detach!(self, |s| async move {
            s.add_run_event(now, &tenant, run_id, &kind, job_id, data)
                .await
        })
    }

    async fn record_scheduler_run(
        &self,
        now: DateTime<Utc>,
        input: &SchedulerRunInput,
    ) -> StoreResult<SchedulerRun> {
        let input = input.clone();
        detach!(self, |s| async move {
            s.record_scheduler_run(now, &input).await
        })
    }

    async fn list_scheduler_runs(&self, limit: u32) -> StoreResult<Vec<SchedulerRun>> {
        self.0.list_scheduler_runs(limit).await
    }
}
