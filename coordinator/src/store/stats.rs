//! Job statistics rolled up per minute from the ledger (`crate::stats`), and the tenants'
//! service-level objectives. Its own trait, a supertrait of [`super::Store`].
//!
//! A roll-up step reads the cursor, finds how far the ledger is settled, aggregates the events
//! in between on a reader (no write lock held while counting), then in one short write
//! transaction moves the cursor with a compare-and-set and adds the counts: should another
//! coordinator have moved the cursor first, nothing is added, so a range is never counted twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{FailureClass, PICKUP_BOUNDS_MS, SloObjective, StatsPoint};

use super::detached::on_own_task;
use super::{Detached, StoreResult};

/// One queue's counts in one minute, with its pickup latencies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsRow {
    /// The tenant.
    pub tenant: String,
    /// What the API shows.
    pub point: StatsPoint,
    /// Leases granted within each of [`PICKUP_BOUNDS_MS`] of the job becoming due.
    pub pickup_le: [u64; PICKUP_BOUNDS_MS.len()],
}

/// Failed attempts of one class in one queue and minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRow {
    /// The tenant.
    pub tenant: String,
    /// Queue.
    pub queue: String,
    /// The failure's class.
    pub class: String,
    /// The minute.
    pub minute: DateTime<Utc>,
    /// How many.
    pub count: u64,
}

/// What one roll-up step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolledUp {
    /// Events rolled up (0: nothing settled was left, or another coordinator took the range).
    pub events: u64,
    /// The failure counts added (for the metric of failure classes).
    pub failures: Vec<FailureRow>,
}

/// The columns of the pickup latencies, in [`PICKUP_BOUNDS_MS`] order.
pub(crate) fn pickup_columns() -> Vec<String> {
    PICKUP_BOUNDS_MS
        .iter()
        .map(|b| format!("pickup_le_{b}"))
        .collect()
}

/// The event types a roll-up counts.
pub(crate) const COUNTED_TYPES: &str =
    "('leased', 'succeeded', 'retry_scheduled', 'lease_expired', 'dead', 'cancelled')";
/// The event types of a failed attempt.
pub(crate) const FAILURE_TYPES: &str = "('retry_scheduled', 'lease_expired', 'dead')";

/// Stores job statistics and objectives.
#[async_trait]
pub trait StatsRecords: Send + Sync {
    /// Rolls up at most `max_events` settled events past the cursor.
    async fn roll_up_stats(&self, max_events: i64) -> StoreResult<RolledUp>;

    /// The tenant's per-minute counts from `since` on, by minute then queue.
    async fn job_stats(
        &self,
        tenant: &str,
        since: DateTime<Utc>,
        queue: Option<&str>,
    ) -> StoreResult<Vec<StatsRow>>;

    /// The tenant's failed attempts from `since` on by queue and class, most first, at most
    /// `limit`.
    async fn failure_classes(
        &self,
        tenant: &str,
        since: DateTime<Utc>,
        queue: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<FailureClass>>;

    /// Deletes the counts of minutes before `before`; how many rows.
    async fn prune_stats(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    /// The tenant's objectives by queue (`*`: its default).
    async fn slo_objectives(&self, tenant: &str) -> StoreResult<Vec<(String, SloObjective)>>;

    /// Sets (or, with `None`, removes) an objective; false when removing one that was not set.
    async fn set_slo_objective(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        queue: &str,
        objective: Option<SloObjective>,
    ) -> StoreResult<bool>;
}

#[async_trait]
impl StatsRecords for Detached {
    async fn roll_up_stats(&self, max_events: i64) -> StoreResult<RolledUp> {
        let store = self.0.clone();
        on_own_task(async move { store.roll_up_stats(max_events).await }).await
    }

    async fn job_stats(
        &self,
        tenant: &str,
        since: DateTime<Utc>,
        queue: Option<&str>,
    ) -> StoreResult<Vec<StatsRow>> {
        self.0.job_stats(tenant, since, queue).await
    }

    async fn failure_classes(
        &self,
        tenant: &str,
        since: DateTime<Utc>,
        queue: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<FailureClass>> {
        self.0.failure_classes(tenant, since, queue, limit).await
    }

    async fn prune_stats(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let store = self.0.clone();
        on_own_task(async move { store.prune_stats(before).await }).await
    }

    async fn slo_objectives(&self, tenant: &str) -> StoreResult<Vec<(String, SloObjective)>> {
        self.0.slo_objectives(tenant).await
    }

    async fn set_slo_objective(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        queue: &str,
        objective: Option<SloObjective>,
    ) -> StoreResult<bool> {
        let (store, tenant, queue) = (self.0.clone(), tenant.to_owned(), queue.to_owned());
        on_own_task(async move {
            store
                .set_slo_objective(now, &tenant, &queue, objective)
                .await
        })
        .await
    }
}
