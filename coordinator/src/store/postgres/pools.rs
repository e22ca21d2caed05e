//! A shared worker pool's look-ups (`crate::store::pools`) on PostgreSQL.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PostgresStore;
use crate::store::{PoolRecords, StoreResult};

#[async_trait]
impl PoolRecords for PostgresStore {
    async fn ready_tenants(
        &self,
        now: DateTime<Utc>,
        tenants: &[String],
        queues: &[String],
    ) -> StoreResult<Vec<String>> {
        // One probe of `jobs_ready` and of `jobs_lease_expiry` per tenant: a tenant's backlog
        // costs its first row, not its length.
        let ready: Vec<String> = sqlx::query_scalar(
            "SELECT t FROM unnest($1::text[]) AS t \
             WHERE EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND tenant = t \
                           AND queue = ANY($2) AND run_at <= $3) \
                OR EXISTS (SELECT 1 FROM jobs WHERE state = 'leased' AND tenant = t \
                           AND queue = ANY($2) AND lease_expires_at IS NOT NULL \
                           AND lease_expires_at <= $3) \
             ORDER BY t",
        )
        .bind(tenants)
        .bind(queues)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        Ok(ready)
    }

    async fn job_tenants(&self, ids: &[Uuid]) -> StoreResult<HashMap<Uuid, String>> {
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, tenant FROM jobs WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().collect())
    }
}
