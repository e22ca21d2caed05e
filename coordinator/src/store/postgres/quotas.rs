//! Tenant quotas on PostgreSQL (see `store/quotas.rs`): the rows, and the enqueue check's
//! statements inside the enqueue's transaction.

use std::collections::HashSet;

use async_trait::async_trait;
use leasehold_proto::QuotaUsage;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::PostgresStore;
use crate::store::quotas::{KeyOf, QueueLimit, QuotaStatements, count, limit_from, limit_to};
use crate::store::{Quota, QuotaRecords, StoreResult};

fn quota(row: &PgRow) -> StoreResult<Quota> {
    Ok(Quota {
        tenant: row.try_get("tenant")?,
        max_queued: limit_from(row.try_get("max_queued")?),
        max_leased: limit_from(row.try_get("max_leased")?),
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait]
impl QuotaRecords for PostgresStore {
    async fn quota(&self, tenant: &str) -> StoreResult<Option<Quota>> {
        let row = sqlx::query("SELECT * FROM quotas WHERE tenant = $1")
            .bind(tenant)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(quota).transpose()
    }

    async fn set_quota(&self, new: &Quota) -> StoreResult<Option<Quota>> {
        let mut tx = self.pool().begin().await?;
        let old = sqlx::query("SELECT * FROM quotas WHERE tenant = $1 FOR UPDATE")
            .bind(&new.tenant)
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO quotas (tenant, max_queued, max_leased, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant) DO UPDATE SET \
             max_queued = excluded.max_queued, max_leased = excluded.max_leased, \
             updated_at = excluded.updated_at",
        )
        .bind(&new.tenant)
        .bind(limit_to(new.max_queued))
        .bind(limit_to(new.max_leased))
        .bind(new.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        old.as_ref().map(quota).transpose()
    }

    async fn delete_quota(&self, tenant: &str) -> StoreResult<Option<Quota>> {
        let row = sqlx::query("DELETE FROM quotas WHERE tenant = $1 RETURNING *")
            .bind(tenant)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(quota).transpose()
    }

    async fn quota_usage(&self, tenant: &str) -> StoreResult<QuotaUsage> {
        // `lease_expires_at IS NOT NULL` lets the leased count use `jobs_lease_expiry`.
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM jobs WHERE tenant = $1 AND state = 'queued') AS queued, \
                    (SELECT count(*) FROM jobs WHERE tenant = $1 AND state = 'blocked') AS blocked, \
                    (SELECT count(*) FROM jobs WHERE tenant = $1 AND state = 'leased' \
                       AND lease_expires_at IS NOT NULL) AS leased",
        )
        .bind(tenant)
        .fetch_one(self.pool())
        .await?;
        Ok(QuotaUsage {
            queued: count(row.try_get("queued")?),
            blocked: count(row.try_get("blocked")?),
            leased: count(row.try_get("leased")?),
        })
    }
}

/// [`QuotaStatements`] inside the caller's transaction.
pub(super) struct PgQuotas<'a>(pub(super) &'a mut PgConnection);

impl QuotaStatements for PgQuotas<'_> {
    async fn queue_limits(&mut self, tenants: &[&str]) -> StoreResult<Vec<QueueLimit>> {
        // The lock first, in tenant order (two batches naming the same tenants cannot deadlock),
        // and only the rows with a `max_queued`: a tenant limited on leases alone is not
        // serialized here. Under READ COMMITTED a statement that waited for a lock still reads
        // with the snapshot it started with; the count, a statement of its own, starts after
        // the lock was granted and so sees every job the previous holder committed.
        let locked: Vec<(String, i64)> = sqlx::query_as(
            "SELECT tenant, max_queued FROM quotas \
             WHERE tenant = ANY($1) AND max_queued IS NOT NULL ORDER BY tenant FOR UPDATE",
        )
        .bind(tenants)
        .fetch_all(&mut *self.0)
        .await?;
        if locked.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = locked.iter().map(|(t, _)| t.as_str()).collect();
        // Each state through its partial index (`jobs_ready`, `jobs_blocked`): the cost follows
        // the tenant's backlog, which its quota bounds.
        let waiting: Vec<(String, i64)> = sqlx::query_as(
            "SELECT t.tenant, \
               (SELECT count(*) FROM jobs j WHERE j.tenant = t.tenant AND j.state = 'queued') \
               + (SELECT count(*) FROM jobs j WHERE j.tenant = t.tenant AND j.state = 'blocked') \
             FROM UNNEST($1::text[]) AS t(tenant)",
        )
        .bind(&names)
        .fetch_all(&mut *self.0)
        .await?;
        let limits = locked
            .into_iter()
            .map(|(tenant, limit)| {
                let n = waiting
                    .iter()
                    .find(|(t, _)| *t == tenant)
                    .map_or(0, |(_, n)| *n);
                QueueLimit {
                    tenant,
                    limit: count(limit),
                    waiting: count(n),
                }
            })
            .collect();
        Ok(limits)
    }

    async fn stored_keys(&mut self, keys: &[(&str, &str, &str)]) -> StoreResult<HashSet<KeyOf>> {
        let rows: Vec<KeyOf> = sqlx::query_as(
            "SELECT tenant, queue, idempotency_key FROM jobs \
             WHERE (tenant, queue, idempotency_key) IN \
             (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]))",
        )
        .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.2).collect::<Vec<_>>())
        .fetch_all(&mut *self.0)
        .await?;
        Ok(rows.into_iter().collect())
    }
}
