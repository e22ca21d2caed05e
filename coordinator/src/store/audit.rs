//! Audit events (`crate::audit`): ledger rows of type `audit`, about no job or run. Their own
//! trait, a supertrait of [`super::Store`]; they are read back with the other events
//! ([`super::Store::list_events`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::Event;
use serde_json::Value;

use super::detached::on_own_task;
use super::{Detached, StoreResult};

/// The event type of audit records.
pub const AUDIT_EVENT: &str = "audit";

/// Writes audit events.
#[async_trait]
pub trait AuditRecords: Send + Sync {
    /// Appends an `audit` event for `tenant` at `now` with `data`; the stored event.
    async fn record_audit(
        &self,
        tenant: &str,
        data: Value,
        now: DateTime<Utc>,
    ) -> StoreResult<Event>;
}

#[async_trait]
impl AuditRecords for Detached {
    async fn record_audit(
        &self,
        tenant: &str,
        data: Value,
        now: DateTime<Utc>,
    ) -> StoreResult<Event> {
        let (store, tenant) = (self.0.clone(), tenant.to_owned());
        on_own_task(async move { store.record_audit(&tenant, data, now).await }).await
    }
}
