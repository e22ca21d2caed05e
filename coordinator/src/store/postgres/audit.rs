//! Audit events on PostgreSQL (see `store/audit.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::Event;
use serde_json::Value;

use super::PostgresStore;
use super::runs::decode_event;
use crate::store::{AUDIT_EVENT, AuditRecords, StoreResult};

#[async_trait]
impl AuditRecords for PostgresStore {
    async fn record_audit(
        &self,
        tenant: &str,
        data: Value,
        now: DateTime<Utc>,
    ) -> StoreResult<Event> {
        let row = sqlx::query(
            "INSERT INTO events (tenant, type, at, data) VALUES ($1, $2, $3, $4) RETURNING *",
        )
        .bind(tenant)
        .bind(AUDIT_EVENT)
        .bind(now)
        .bind(data)
        .fetch_one(self.pool())
        .await?;
        decode_event(&row)
    }
}
