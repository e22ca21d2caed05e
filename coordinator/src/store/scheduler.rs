//! The scheduler's run records (`/orchestrator/runs`), a surface of the systems Leasehold
//! replaces, kept apart from the v1 store: its own trait, a supertrait of [`super::Store`] so
//! every store has it. Retiring the surface is deleting this file, the backends'
//! `scheduler.rs`, `http/compat/scheduler.rs` and the supertrait bound.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{SchedulerRun, SchedulerRunInput};

use super::{Detached, StoreError, StoreResult};

/// Stores and lists scheduler run records.
#[async_trait]
pub trait SchedulerRecords: Send + Sync {
    /// Stores one scheduler run record of `tenant`.
    async fn record_scheduler_run(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        input: &SchedulerRunInput,
    ) -> StoreResult<SchedulerRun>;

    /// `tenant`'s scheduler run records, newest first.
    async fn list_scheduler_runs(&self, tenant: &str, limit: u32)
    -> StoreResult<Vec<SchedulerRun>>;
}

#[async_trait]
impl SchedulerRecords for Detached {
    async fn record_scheduler_run(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        input: &SchedulerRunInput,
    ) -> StoreResult<SchedulerRun> {
        // On its own task, like every write of `Detached`.
        let (store, tenant, input) = (self.0.clone(), tenant.to_owned(), input.clone());
        tokio::spawn(async move { store.record_scheduler_run(now, &tenant, &input).await })
            .await
            .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }

    async fn list_scheduler_runs(
        &self,
        tenant: &str,
        limit: u32,
    ) -> StoreResult<Vec<SchedulerRun>> {
        self.0.list_scheduler_runs(tenant, limit).await
    }
}
