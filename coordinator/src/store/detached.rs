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
    Event, HeartbeatItem, HeartbeatResult, Job, JobState, Lease, QueueInfo, Run,
};
use uuid::Uuid;

use super::{
    AddRunEvent, Backend, CancelJob, CancelRun, ClaimParams, Claimed, Enqueued, EventFilter,
    Finished, JobFilter, NewJobRow, NewRunRow, Outcome, PauseQueue, RetryJob, SetQueueSettings,
    StateCount, Store, StoreError, StoreResult, Transition,
};

/// A [`Store`] whose calls survive their caller being dropped.
#[derive(Clone)]
pub struct Detached(pub Arc<dyn Store>);

impl std::fmt::Debug for Detached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Detached").field(&self.0.backend()).finish()
    }
}

/// Runs `work` (a call on the inner store) to completion on its own task, for the supertraits
/// of [`Store`] that live in their own modules.
pub(super) async fn on_own_task<T: Send + 'static>(
    work: impl Future<Output = StoreResult<T>> + Send + 'static,
) -> StoreResult<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
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

    fn ready_signal(&self) -> crate::ready::ReadySignal {
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

    async fn cancel_job(&self, params: CancelJob) -> StoreResult<Option<Transition>> {
        detach!(self, |s| s.cancel_job(params))
    }

    async fn retry_job(&self, params: RetryJob) -> StoreResult<Option<Transition>> {
        detach!(self, |s| s.retry_job(params))
    }

    async fn claim(&self, now: DateTime<Utc>, params: &ClaimParams) -> StoreResult<Claimed> {
        let params = params.clone();
        detach!(self, |s| async move { s.claim(now, &params).await })
    }

    async fn next_ready_at(
        &self,
        after: DateTime<Utc>,
        tenants: &[String],
        queues: &[String],
    ) -> StoreResult<Option<DateTime<Utc>>> {
        self.0.next_ready_at(after, tenants, queues).await
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

    async fn set_queue_paused(&self, params: PauseQueue) -> StoreResult<QueueInfo> {
        detach!(self, |s| s.set_queue_paused(params))
    }

    async fn set_queue_settings(&self, params: SetQueueSettings) -> StoreResult<QueueInfo> {
        detach!(self, |s| s.set_queue_settings(params))
    }

    async fn live_state_counts(&self) -> StoreResult<Vec<StateCount>> {
        self.0.live_state_counts().await
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

    async fn cancel_run(&self, params: CancelRun) -> StoreResult<Option<Run>> {
        detach!(self, |s| s.cancel_run(params))
    }

    async fn add_run_event(&self, params: AddRunEvent) -> StoreResult<Option<Event>> {
        detach!(self, |s| s.add_run_event(params))
    }
}
