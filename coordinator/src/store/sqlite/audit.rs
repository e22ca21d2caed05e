//! Audit events on SQLite (see `store/audit.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::Event;
use serde_json::Value;

use super::SqliteStore;
use super::rows::micros;
use super::runs::decode_event;
use crate::store::{AUDIT_EVENT, AuditRecords, StoreResult};

#[async_trait]
impl AuditRecords for SqliteStore {
    async fn record_audit(
        &self,
        tenant: &str,
        data: Value,
        now: DateTime<Utc>,
    ) -> StoreResult<Event> {
        let row = sqlx::query(
            "INSERT INTO events (tenant, type, at, data) VALUES (?, ?, ?, ?) RETURNING *",
        )
        .bind(tenant)
        .bind(AUDIT_EVENT)
        .bind(micros(now))
        .bind(data.to_string())
        .fetch_one(&self.writer)
        .await?;
        decode_event(&row)
    }
}
