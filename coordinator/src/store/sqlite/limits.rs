//! Limits on SQLite (see `store/limits.rs`), and the claim's side of the gate. The claim is a
//! write transaction, so SQLite's single writer already serializes gated claims: no lock to
//! take. Times are microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::LimitSpec;
use sqlx::SqliteConnection;

use super::SqliteStore;
use super::rows::{from_micros, micros};
use crate::flow::Rule;
use crate::flow::gate::{BucketId, Gate, Level};
use crate::flow::keys::job_keys;
use crate::store::{LimitRecords, StoreError, StoreResult, StoredLimit, rules_of};

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// A job's own keys as stored (a JSON array, or `NULL`).
pub(super) fn parse_keys(text: Option<&str>) -> StoreResult<Vec<String>> {
    text.map(serde_json::from_str)
        .transpose()
        .map_err(internal)
        .map(Option::unwrap_or_default)
}

/// The tenant's limits as rules; empty for a tenant without limits (the claim is not gated).
pub(super) async fn rules(conn: &mut SqliteConnection, tenant: &str) -> StoreResult<Vec<Rule>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT key, spec FROM limits WHERE tenant = ? ORDER BY key")
            .bind(tenant)
            .fetch_all(&mut *conn)
            .await?;
    let rows = rows
        .into_iter()
        .map(|(key, spec)| Ok((key, serde_json::from_str(&spec).map_err(internal)?)))
        .collect::<StoreResult<Vec<_>>>()?;
    rules_of(rows)
}

async fn leased_keys_in(
    conn: &mut SqliteConnection,
    tenant: &str,
) -> StoreResult<Vec<Vec<String>>> {
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT queue, kind, limit_keys FROM jobs WHERE tenant = ? AND state = 'leased'",
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(queue, kind, own)| Ok(job_keys(&queue, &kind, &parse_keys(own.as_deref())?)))
        .collect()
}

/// Every leased job's keys, counted by the gate (only when some limit counts leases).
pub(super) async fn count_leases(
    conn: &mut SqliteConnection,
    tenant: &str,
    gate: &mut Gate<'_>,
) -> StoreResult<()> {
    if !gate.counts_leases() {
        return Ok(());
    }
    for keys in leased_keys_in(conn, tenant).await? {
        gate.count_lease(&keys);
    }
    Ok(())
}

/// Loads the stored levels of `buckets` into the gate.
pub(super) async fn load_levels(
    conn: &mut SqliteConnection,
    tenant: &str,
    buckets: &[BucketId],
    gate: &mut Gate<'_>,
) -> StoreResult<()> {
    if buckets.is_empty() {
        return Ok(());
    }
    let wanted = serde_json::to_string(buckets).map_err(internal)?;
    let rows: Vec<(String, String, f64, i64)> = sqlx::query_as(
        "SELECT key, bucket, tokens, refilled_at FROM limit_state WHERE tenant = ? \
         AND (key, bucket) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))",
    )
    .bind(tenant)
    .bind(wanted)
    .fetch_all(&mut *conn)
    .await?;
    for (key, bucket, tokens, refilled_at) in rows {
        gate.load_level(
            (key, bucket),
            Level {
                tokens,
                refilled_at: from_micros(refilled_at)?,
            },
        );
    }
    Ok(())
}

/// Saves the levels the gate changed.
pub(super) async fn save_levels(
    conn: &mut SqliteConnection,
    tenant: &str,
    gate: &Gate<'_>,
) -> StoreResult<()> {
    for ((key, bucket), level) in gate.changed_levels() {
        sqlx::query(
            "INSERT INTO limit_state (tenant, key, bucket, tokens, refilled_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, key, bucket) DO UPDATE \
             SET tokens = excluded.tokens, refilled_at = excluded.refilled_at",
        )
        .bind(tenant)
        .bind(key)
        .bind(bucket)
        .bind(level.tokens)
        .bind(micros(level.refilled_at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn stored(key: String, spec: &str, updated_at: i64) -> StoreResult<StoredLimit> {
    Ok(StoredLimit {
        key,
        spec: serde_json::from_str(spec).map_err(internal)?,
        updated_at: from_micros(updated_at)?,
    })
}

#[async_trait]
impl LimitRecords for SqliteStore {
    async fn limits(&self, tenant: &str) -> StoreResult<Vec<StoredLimit>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT key, spec, updated_at FROM limits WHERE tenant = ? ORDER BY key",
        )
        .bind(tenant)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(key, spec, at)| stored(key, &spec, at))
            .collect()
    }

    async fn put_limit(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        key: &str,
        spec: &LimitSpec,
    ) -> StoreResult<StoredLimit> {
        let spec = serde_json::to_string(spec).map_err(internal)?;
        sqlx::query(
            "INSERT INTO limits (tenant, key, spec, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenant, key) DO UPDATE SET spec = excluded.spec, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(key)
        .bind(&spec)
        .bind(micros(now))
        .execute(&self.writer)
        .await?;
        stored(key.to_owned(), &spec, micros(now))
    }

    async fn delete_limit(&self, tenant: &str, key: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let gone = sqlx::query("DELETE FROM limits WHERE tenant = ? AND key = ?")
            .bind(tenant)
            .bind(key)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        sqlx::query("DELETE FROM limit_state WHERE tenant = ? AND key = ?")
            .bind(tenant)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone)
    }

    async fn limit_levels(&self, tenant: &str, key: &str) -> StoreResult<Vec<(String, Level)>> {
        let rows: Vec<(String, f64, i64)> = sqlx::query_as(
            "SELECT bucket, tokens, refilled_at FROM limit_state WHERE tenant = ? AND key = ? \
             ORDER BY bucket",
        )
        .bind(tenant)
        .bind(key)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(bucket, tokens, at)| {
                Ok((
                    bucket,
                    Level {
                        tokens,
                        refilled_at: from_micros(at)?,
                    },
                ))
            })
            .collect()
    }

    async fn leased_keys(&self, tenant: &str) -> StoreResult<Vec<Vec<String>>> {
        let mut conn = self.reader.acquire().await?;
        leased_keys_in(&mut conn, tenant).await
    }
}
