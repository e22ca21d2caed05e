//! Workers as the coordinators saw them (`GET /v1/workers`, `crate::presence`): one row per
//! tenant and worker id. Its own trait, a supertrait of [`super::Store`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::detached::on_own_task;
use super::{Detached, StoreResult};

/// What a coordinator saw of a worker just now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSeen {
    /// Tenant it claims for.
    pub tenant: String,
    /// Its id.
    pub worker_id: String,
    /// `websocket` or `http`, when it claimed (a heartbeat does not say).
    pub transport: Option<&'static str>,
    /// The queues it claims from, when it claimed.
    pub queues: Option<Vec<String>>,
    /// Its version string.
    pub version: Option<String>,
    /// It heartbeated.
    pub heartbeat: bool,
    /// Its WebSocket session closed.
    pub closed: bool,
}

/// A stored worker, with the leases it holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    /// Its id.
    pub worker_id: String,
    /// The transport it last claimed over.
    pub transport: String,
    /// The queues it last claimed from.
    pub queues: Vec<String>,
    /// Its version string.
    pub version: Option<String>,
    /// When first seen.
    pub first_seen_at: DateTime<Utc>,
    /// When last seen.
    pub last_seen_at: DateTime<Utc>,
    /// When it last heartbeated.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// When its WebSocket session last closed (it is gone unless seen since).
    pub closed_at: Option<DateTime<Utc>>,
    /// Jobs of the tenant leased to it now.
    pub leases: i64,
}

/// Stores what was seen of workers.
#[async_trait]
pub trait WorkerRecords: Send + Sync {
    /// Records a sighting at `now`.
    async fn worker_seen(&self, now: DateTime<Utc>, seen: &WorkerSeen) -> StoreResult<()>;

    /// The tenant's workers seen since `since` or holding a lease now, by id.
    async fn list_workers(&self, tenant: &str, since: DateTime<Utc>)
    -> StoreResult<Vec<WorkerRow>>;

    /// Deletes workers last seen before `before`; how many.
    async fn prune_workers(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

#[async_trait]
impl WorkerRecords for Detached {
    async fn worker_seen(&self, now: DateTime<Utc>, seen: &WorkerSeen) -> StoreResult<()> {
        let (store, seen) = (self.0.clone(), seen.clone());
        on_own_task(async move { store.worker_seen(now, &seen).await }).await
    }

    async fn list_workers(
        &self,
        tenant: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<WorkerRow>> {
        self.0.list_workers(tenant, since).await
    }

    async fn prune_workers(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let store = self.0.clone();
        on_own_task(async move { store.prune_workers(before).await }).await
    }
}
