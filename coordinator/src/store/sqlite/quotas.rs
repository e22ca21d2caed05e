//! Tenant quotas on SQLite (see `store/quotas.rs`): the rows, and the enqueue check's
//! statements inside the enqueue's write transaction (the single writer holds everything from
//! `BEGIN IMMEDIATE` to the commit, so the check and the insert are one step).

use std::collections::HashSet;

use async_trait::async_trait;
use leasehold_proto::QuotaUsage;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::rows::{from_micros, micros};
use crate::store::quotas::{KeyOf, QueueLimit, QuotaStatements, count, limit_from, limit_to};
use crate::store::{Quota, QuotaRecords, StoreError, StoreResult};

fn quota(row: &SqliteRow) -> StoreResult<Quota> {
    Ok(Quota {
        tenant: row.try_get("tenant")?,
        max_queued: limit_from(row.try_get("max_queued")?),
        max_leased: limit_from(row.try_get("max_leased")?),
        updated_at: from_micros(row.try_get("updated_at")?)?,
    })
}

#[async_trait]
impl QuotaRecords for SqliteStore {
    async fn quota(&self, tenant: &str) -> StoreResult<Option<Quota>> {
        let row = sqlx::query("SELECT * FROM quotas WHERE tenant = ?")
            .bind(tenant)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(quota).transpose()
    }

    async fn set_quota(&self, new: &Quota) -> StoreResult<Option<Quota>> {
        let mut tx = self.begin_write().await?;
        let old = sqlx::query("SELECT * FROM quotas WHERE tenant = ?")
            .bind(&new.tenant)
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO quotas (tenant, max_queued, max_leased, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenant) DO UPDATE SET max_queued = excluded.max_queued, \
             max_leased = excluded.max_leased, updated_at = excluded.updated_at",
        )
        .bind(&new.tenant)
        .bind(limit_to(new.max_queued))
        .bind(limit_to(new.max_leased))
        .bind(micros(new.updated_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        old.as_ref().map(quota).transpose()
    }

    async fn delete_quota(&self, tenant: &str) -> StoreResult<Option<Quota>> {
        let row = sqlx::query("DELETE FROM quotas WHERE tenant = ? RETURNING *")
            .bind(tenant)
            .fetch_optional(&self.writer)
            .await?;
        row.as_ref().map(quota).transpose()
    }

    async fn quota_usage(&self, tenant: &str) -> StoreResult<QuotaUsage> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM jobs WHERE tenant = ?1 AND state = 'queued') AS queued, \
                    (SELECT count(*) FROM jobs WHERE tenant = ?1 AND state = 'blocked') AS blocked, \
                    (SELECT count(*) FROM jobs WHERE tenant = ?1 AND state = 'leased') AS leased",
        )
        .bind(tenant)
        .fetch_one(&self.reader)
        .await?;
        Ok(QuotaUsage {
            queued: count(row.try_get("queued")?),
            blocked: count(row.try_get("blocked")?),
            leased: count(row.try_get("leased")?),
        })
    }
}

/// [`QuotaStatements`] inside the caller's write transaction.
pub(super) struct SqliteQuotas<'a>(pub(super) &'a mut SqliteConnection);

impl QuotaStatements for SqliteQuotas<'_> {
    async fn queue_limits(&mut self, tenants: &[&str]) -> StoreResult<Vec<QueueLimit>> {
        // One statement whatever the number of tenants (one text, prepared once): a probe of
        // `quotas` by primary key per tenant, and the counts only for a tenant that has a
        // `max_queued` (each state through its partial index, `jobs_ready` and `jobs_blocked`).
        let names = serde_json::to_string(tenants)
            .map_err(|e| StoreError::Internal(format!("tenant list: {e}")))?;
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT q.tenant, q.max_queued, \
               (SELECT count(*) FROM jobs j WHERE j.tenant = q.tenant AND j.state = 'queued') \
               + (SELECT count(*) FROM jobs j WHERE j.tenant = q.tenant AND j.state = 'blocked') \
             FROM quotas q \
             WHERE q.tenant IN (SELECT value FROM json_each(?)) AND q.max_queued IS NOT NULL \
             ORDER BY q.tenant",
        )
        .bind(names)
        .fetch_all(&mut *self.0)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(tenant, limit, waiting)| QueueLimit {
                tenant,
                limit: count(limit),
                waiting: count(waiting),
            })
            .collect())
    }

    async fn stored_keys(&mut self, keys: &[(&str, &str, &str)]) -> StoreResult<HashSet<KeyOf>> {
        let mut found = HashSet::new();
        // 3 binds per key: chunks keep each statement far below SQLite's variable limit.
        for chunk in keys.chunks(super::rows::BATCH_ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new("WITH k(tenant, queue, idempotency_key) AS (");
            qb.push_values(chunk, |mut row, (tenant, queue, key)| {
                row.push_bind(*tenant).push_bind(*queue).push_bind(*key);
            });
            qb.push(
                ") SELECT jobs.tenant, jobs.queue, jobs.idempotency_key FROM k JOIN jobs \
                 ON jobs.tenant = k.tenant AND jobs.queue = k.queue \
                 AND jobs.idempotency_key = k.idempotency_key \
                 WHERE jobs.idempotency_key IS NOT NULL",
            );
            let rows: Vec<KeyOf> = qb.build_query_as().fetch_all(&mut *self.0).await?;
            found.extend(rows);
        }
        Ok(found)
    }
}
