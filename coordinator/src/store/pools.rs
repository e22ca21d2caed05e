//! What a worker pool shared by several tenants (`crate::flow::pool`) asks of the store:
//! which of its tenants have work for it now, and whose jobs its leases are. Its own trait, a
//! supertrait of [`super::Store`].

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Detached, StoreResult};

/// Looks up the tenants of a shared pool's work.
#[async_trait]
pub trait PoolRecords: Send + Sync {
    /// Which of `tenants` a claim on `queues` could lease something of at `now`: a queued job
    /// that is due, or a leased one whose lease has expired. Sorted.
    async fn ready_tenants(
        &self,
        now: DateTime<Utc>,
        tenants: &[String],
        queues: &[String],
    ) -> StoreResult<Vec<String>>;

    /// The tenant of each of `ids` that exists.
    async fn job_tenants(&self, ids: &[Uuid]) -> StoreResult<HashMap<Uuid, String>>;
}

#[async_trait]
impl PoolRecords for Detached {
    async fn ready_tenants(
        &self,
        now: DateTime<Utc>,
        tenants: &[String],
        queues: &[String],
    ) -> StoreResult<Vec<String>> {
        self.0.ready_tenants(now, tenants, queues).await
    }

    async fn job_tenants(&self, ids: &[Uuid]) -> StoreResult<HashMap<Uuid, String>> {
        self.0.job_tenants(ids).await
    }
}
