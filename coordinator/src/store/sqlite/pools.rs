//! A shared worker pool's look-ups (`crate::store::pools`) on SQLite.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite};
use uuid::Uuid;

use super::SqliteStore;
use super::rows::micros;
use crate::store::{PoolRecords, StoreResult};

#[async_trait]
impl PoolRecords for SqliteStore {
    async fn ready_tenants(
        &self,
        now: DateTime<Utc>,
        tenants: &[String],
        queues: &[String],
    ) -> StoreResult<Vec<String>> {
        let now = micros(now);
        let mut ready = Vec::new();
        let mut conn = self.reader.acquire().await?;
        // One probe of the ready and the lease-expiry indexes per tenant.
        for tenant in tenants {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND tenant = ",
            );
            qb.push_bind(tenant).push(" AND queue IN (");
            let mut sep = qb.separated(", ");
            for q in queues {
                sep.push_bind(q);
            }
            qb.push(") AND run_at <= ")
                .push_bind(now)
                .push(") OR EXISTS (SELECT 1 FROM jobs WHERE state = 'leased' AND tenant = ")
                .push_bind(tenant)
                .push(" AND queue IN (");
            let mut sep = qb.separated(", ");
            for q in queues {
                sep.push_bind(q);
            }
            qb.push(") AND lease_expires_at IS NOT NULL AND lease_expires_at <= ")
                .push_bind(now)
                .push(")");
            let found: bool = qb.build_query_scalar().fetch_one(&mut *conn).await?;
            if found {
                ready.push(tenant.clone());
            }
        }
        ready.sort();
        Ok(ready)
    }

    async fn job_tenants(&self, ids: &[Uuid]) -> StoreResult<HashMap<Uuid, String>> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(500) {
            let mut qb = QueryBuilder::<Sqlite>::new("SELECT id, tenant FROM jobs WHERE id IN (");
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            qb.push(")");
            let rows: Vec<(Uuid, String)> = qb.build_query_as().fetch_all(&self.reader).await?;
            found.extend(rows);
        }
        Ok(found)
    }
}
