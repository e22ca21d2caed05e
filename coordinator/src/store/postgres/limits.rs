//! Limits on PostgreSQL (see `store/limits.rs`), and the claim's side of the gate: the
//! tenant's limits read under a row lock, which serializes the gated claims of a tenant across
//! every replica (so a budget is never overspent by claimers that each saw it unspent), the
//! leases held, the buckets' levels.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::LimitSpec;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};

use super::PostgresStore;
use super::rows::internal;
use crate::flow::Rule;
use crate::flow::gate::{BucketId, Gate, Level};
use crate::flow::keys::job_keys;
use crate::store::{LimitRecords, StoreResult, StoredLimit, rules_of};

/// The tenant's limits as rules, their rows locked until the claim's transaction ends. Empty
/// (and nothing locked) for a tenant without limits: the claim is not gated.
pub(super) async fn lock_rules(tx: &mut PgConnection, tenant: &str) -> StoreResult<Vec<Rule>> {
    let rows: Vec<(String, Json<serde_json::Value>)> =
        sqlx::query_as("SELECT key, spec FROM limits WHERE tenant = $1 ORDER BY key FOR UPDATE")
            .bind(tenant)
            .fetch_all(&mut *tx)
            .await?;
    rules_of(rows.into_iter().map(|(k, s)| (k, s.0)).collect())
}

/// Every leased job's keys, counted by the gate (only when some limit counts leases).
pub(super) async fn count_leases(
    tx: &mut PgConnection,
    tenant: &str,
    gate: &mut Gate<'_>,
) -> StoreResult<()> {
    if !gate.counts_leases() {
        return Ok(());
    }
    for keys in leased_keys_in(tx, tenant).await? {
        gate.count_lease(&keys);
    }
    Ok(())
}

async fn leased_keys_in(tx: &mut PgConnection, tenant: &str) -> StoreResult<Vec<Vec<String>>> {
    let rows = sqlx::query(
        "SELECT queue, kind, limit_keys FROM jobs WHERE tenant = $1 AND state = 'leased'",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|row| {
            let own: Option<Vec<String>> = row.try_get("limit_keys")?;
            Ok(job_keys(
                row.try_get("queue")?,
                row.try_get("kind")?,
                &own.unwrap_or_default(),
            ))
        })
        .collect()
}

/// Loads the stored levels of `buckets` into the gate.
pub(super) async fn load_levels(
    tx: &mut PgConnection,
    tenant: &str,
    buckets: &[BucketId],
    gate: &mut Gate<'_>,
) -> StoreResult<()> {
    if buckets.is_empty() {
        return Ok(());
    }
    let (keys, names): (Vec<&str>, Vec<&str>) = buckets
        .iter()
        .map(|(k, b)| (k.as_str(), b.as_str()))
        .unzip();
    let rows: Vec<(String, String, f64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT key, bucket, tokens, refilled_at FROM limit_state WHERE tenant = $1 \
         AND (key, bucket) IN (SELECT * FROM unnest($2::text[], $3::text[]))",
    )
    .bind(tenant)
    .bind(&keys)
    .bind(&names)
    .fetch_all(&mut *tx)
    .await?;
    for (key, bucket, tokens, refilled_at) in rows {
        gate.load_level(
            (key, bucket),
            Level {
                tokens,
                refilled_at,
            },
        );
    }
    Ok(())
}

/// Saves the levels the gate changed.
pub(super) async fn save_levels(
    tx: &mut PgConnection,
    tenant: &str,
    gate: &Gate<'_>,
) -> StoreResult<()> {
    let changed = gate.changed_levels();
    if changed.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::with_capacity(changed.len());
    let mut buckets = Vec::with_capacity(changed.len());
    let mut tokens = Vec::with_capacity(changed.len());
    let mut times = Vec::with_capacity(changed.len());
    for ((key, bucket), level) in changed {
        keys.push(key);
        buckets.push(bucket);
        tokens.push(level.tokens);
        times.push(level.refilled_at);
    }
    sqlx::query(
        "INSERT INTO limit_state (tenant, key, bucket, tokens, refilled_at) \
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::float8[], $5::timestamptz[]) \
         ON CONFLICT (tenant, key, bucket) DO UPDATE \
         SET tokens = excluded.tokens, refilled_at = excluded.refilled_at",
    )
    .bind(tenant)
    .bind(&keys)
    .bind(&buckets)
    .bind(&tokens)
    .bind(&times)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn stored(
    key: String,
    spec: serde_json::Value,
    updated_at: DateTime<Utc>,
) -> StoreResult<StoredLimit> {
    Ok(StoredLimit {
        key,
        spec: serde_json::from_value(spec).map_err(internal)?,
        updated_at,
    })
}

#[async_trait]
impl LimitRecords for PostgresStore {
    async fn limits(&self, tenant: &str) -> StoreResult<Vec<StoredLimit>> {
        let rows: Vec<(String, Json<serde_json::Value>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT key, spec, updated_at FROM limits WHERE tenant = $1 ORDER BY key",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(key, spec, at)| stored(key, spec.0, at))
            .collect()
    }

    async fn put_limit(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        key: &str,
        spec: &LimitSpec,
    ) -> StoreResult<StoredLimit> {
        let spec = serde_json::to_value(spec).map_err(internal)?;
        sqlx::query(
            "INSERT INTO limits (tenant, key, spec, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant, key) DO UPDATE SET spec = excluded.spec, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(key)
        .bind(Json(&spec))
        .bind(now)
        .execute(self.pool())
        .await?;
        stored(key.to_owned(), spec, now)
    }

    async fn delete_limit(&self, tenant: &str, key: &str) -> StoreResult<bool> {
        let mut tx = self.pool().begin().await?;
        let gone = sqlx::query("DELETE FROM limits WHERE tenant = $1 AND key = $2")
            .bind(tenant)
            .bind(key)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        sqlx::query("DELETE FROM limit_state WHERE tenant = $1 AND key = $2")
            .bind(tenant)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone)
    }

    async fn limit_levels(&self, tenant: &str, key: &str) -> StoreResult<Vec<(String, Level)>> {
        let rows: Vec<(String, f64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT bucket, tokens, refilled_at FROM limit_state WHERE tenant = $1 AND key = $2 \
             ORDER BY bucket",
        )
        .bind(tenant)
        .bind(key)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(bucket, tokens, refilled_at)| {
                (
                    bucket,
                    Level {
                        tokens,
                        refilled_at,
                    },
                )
            })
            .collect())
    }

    async fn leased_keys(&self, tenant: &str) -> StoreResult<Vec<Vec<String>>> {
        let mut conn = self.pool().acquire().await?;
        leased_keys_in(&mut conn, tenant).await
    }
}
