//! Tenant quotas on SQLite (see `store/quotas.rs`): the rows, and the enqueue check's
//! statements inside the enqueue's write transaction (the single writer holds everything from
//! `BEGIN IMMEDIATE` to the commit, so the check and the insert are one step).
//!
//! On SQLite the cost of a small write transaction is its trips to sqlx's connection thread,
//! made while the single writer is held (docs/sqlite-direct.md): a probe of `quotas` in a
//! statement of its own would add one to every enqueue of every tenant. So the store remembers
//! which tenants have a `max_queued` ([`QueueQuotas`]) and asks the database only about those:
//! an enqueue of any other tenant runs the statements it ran before quotas existed. One process
//! owns a SQLite file and every write of `quotas` goes through this store, so the list cannot
//! miss a tenant; it errs only the safe way (a tenant it still lists after a change asks the
//! database, which has the answer). A quota written into the file by other means counts from
//! the next start.

use std::collections::HashSet;
use std::sync::RwLock;

use async_trait::async_trait;
use leasehold_proto::QuotaUsage;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};

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

/// The tenants with a `max_queued`, as this store wrote them: the enqueue check asks the
/// database about these only. A tenant is added before its quota commits and removed after its
/// limit is gone, so at every instant the set holds every tenant the database limits.
#[derive(Debug, Default)]
pub(super) struct QueueQuotas(RwLock<HashSet<String>>);

impl QueueQuotas {
    /// The tenants the database limits now (at start-up).
    pub(super) async fn load(pool: &SqlitePool) -> StoreResult<Self> {
        let tenants: Vec<String> =
            sqlx::query_scalar("SELECT tenant FROM quotas WHERE max_queued IS NOT NULL")
                .fetch_all(pool)
                .await?;
        Ok(Self(RwLock::new(tenants.into_iter().collect())))
    }

    /// Those of `tenants` that may have a `max_queued` (all of them should the lock be
    /// poisoned: the database then decides).
    fn limited<'a>(&self, tenants: &[&'a str]) -> Vec<&'a str> {
        match self.0.read() {
            Ok(known) => tenants
                .iter()
                .copied()
                .filter(|t| known.contains(*t))
                .collect(),
            Err(_) => tenants.to_vec(),
        }
    }

    fn add(&self, tenant: &str) {
        if let Ok(mut known) = self.0.write() {
            known.insert(tenant.to_owned());
        }
    }

    fn remove(&self, tenant: &str) {
        if let Ok(mut known) = self.0.write() {
            known.remove(tenant);
        }
    }
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
        // Listed before the limit can apply, unlisted only once it no longer does.
        if new.max_queued.is_some() {
            self.queue_quotas.add(&new.tenant);
        }
        tx.commit().await?;
        if new.max_queued.is_none() {
            self.queue_quotas.remove(&new.tenant);
        }
        old.as_ref().map(quota).transpose()
    }

    async fn delete_quota(&self, tenant: &str) -> StoreResult<Option<Quota>> {
        let row = sqlx::query("DELETE FROM quotas WHERE tenant = ? RETURNING *")
            .bind(tenant)
            .fetch_optional(&self.writer)
            .await?;
        self.queue_quotas.remove(tenant);
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
pub(super) struct SqliteQuotas<'a> {
    /// The transaction.
    pub(super) conn: &'a mut SqliteConnection,
    /// The store's list of limited tenants.
    pub(super) known: &'a QueueQuotas,
}

impl QuotaStatements for SqliteQuotas<'_> {
    async fn queue_limits(&mut self, tenants: &[&str]) -> StoreResult<Vec<QueueLimit>> {
        let tenants = self.known.limited(tenants);
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        // One statement whatever the number of tenants (one text, prepared once): a probe of
        // `quotas` by primary key per tenant, and the counts only for a tenant that has a
        // `max_queued` (each state through its partial index, `jobs_ready` and `jobs_blocked`).
        let names = serde_json::to_string(&tenants)
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
        .fetch_all(&mut *self.conn)
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
            let rows: Vec<KeyOf> = qb.build_query_as().fetch_all(&mut *self.conn).await?;
            found.extend(rows);
        }
        Ok(found)
    }
}
