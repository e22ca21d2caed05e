//! Limits on SQLite (see `store/limits.rs`), and the claim's side of the gate. The claim is a
//! write transaction, so SQLite's single writer already serializes gated claims: no lock to
//! take. Times are microseconds.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::LimitSpec;
use sqlx::SqliteConnection;

use super::SqliteStore;
use super::rows::{from_micros, micros};
use crate::flow::Rule;
use crate::flow::gate::{BucketId, Gate, Level};
use crate::flow::keys::job_keys;
use uuid::Uuid;

use crate::store::{
    BREAKER_EVENT, Incident, LimitRecords, OutcomeFeed, RuleRow, StoreError, StoreResult,
    StoredLimit, rules_of,
};

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

/// The tenant's limits as rules, its quota's `max_leased` among them ([`Rule::max_leased`]);
/// empty for a tenant without limits (the claim is not gated).
pub(super) async fn rules(conn: &mut SqliteConnection, tenant: &str) -> StoreResult<Vec<Rule>> {
    let rows: Vec<(Option<String>, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT key, spec, NULL AS max_leased FROM limits WHERE tenant = ?1 \
         UNION ALL \
         SELECT NULL, NULL, max_leased FROM quotas WHERE tenant = ?1 AND max_leased IS NOT NULL",
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await?;
    let rows = rows
        .into_iter()
        .map(|(key, spec, max)| {
            let spec = spec
                .map(|s| serde_json::from_str(&s).map_err(internal))
                .transpose()?;
            Ok((key, spec, max))
        })
        .collect::<StoreResult<Vec<RuleRow>>>()?;
    let rules = rules_of(rows)?;
    Ok(rules)
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

/// The stored states of `buckets` (a bucket never met has none).
pub(super) async fn load_states(
    conn: &mut SqliteConnection,
    tenant: &str,
    buckets: &[BucketId],
) -> StoreResult<HashMap<BucketId, Level>> {
    if buckets.is_empty() {
        return Ok(HashMap::new());
    }
    let wanted = serde_json::to_string(buckets).map_err(internal)?;
    let rows: Vec<StateRow> = sqlx::query_as(
        "SELECT key, bucket, tokens, refilled_at, failures, opened_at, probe_at, factor, \
           adjusted_at FROM limit_state WHERE tenant = ? AND (key, bucket) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))",
    )
    .bind(tenant)
    .bind(wanted)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let (key, bucket) = (row.0.clone(), row.1.clone());
            Ok(((key, bucket), level_of(row)?))
        })
        .collect()
}

/// A `limit_state` row: key, bucket, tokens, refilled_at, failures, opened_at, probe_at,
/// factor, adjusted_at.
type StateRow = (
    String,
    String,
    f64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    f64,
    Option<i64>,
);

fn level_of(row: StateRow) -> StoreResult<Level> {
    let (_, _, tokens, refilled_at, failures, opened_at, probe_at, factor, adjusted_at) = row;
    Ok(Level {
        tokens,
        refilled_at: from_micros(refilled_at)?,
        failures: u32::try_from(failures).unwrap_or(0),
        opened_at: opened_at.map(from_micros).transpose()?,
        probe_at: probe_at.map(from_micros).transpose()?,
        factor,
        adjusted_at: adjusted_at.map(from_micros).transpose()?,
    })
}

/// Loads the stored states of `buckets` into the gate.
pub(super) async fn load_levels(
    conn: &mut SqliteConnection,
    tenant: &str,
    buckets: &[BucketId],
    gate: &mut Gate<'_>,
) -> StoreResult<()> {
    for (id, level) in load_states(conn, tenant, buckets).await? {
        gate.load_level(id, level);
    }
    Ok(())
}

/// Saves buckets' states.
pub(super) async fn save_states(
    conn: &mut SqliteConnection,
    tenant: &str,
    changed: Vec<(BucketId, Level)>,
) -> StoreResult<()> {
    for ((key, bucket), level) in changed {
        sqlx::query(
            "INSERT INTO limit_state (tenant, key, bucket, tokens, refilled_at, failures, \
               opened_at, probe_at, factor, adjusted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant, key, bucket) DO UPDATE \
             SET tokens = excluded.tokens, refilled_at = excluded.refilled_at, \
               failures = excluded.failures, opened_at = excluded.opened_at, \
               probe_at = excluded.probe_at, factor = excluded.factor, \
               adjusted_at = excluded.adjusted_at",
        )
        .bind(tenant)
        .bind(key)
        .bind(bucket)
        .bind(level.tokens)
        .bind(micros(level.refilled_at))
        .bind(i64::from(level.failures))
        .bind(level.opened_at.map(micros))
        .bind(level.probe_at.map(micros))
        .bind(level.factor)
        .bind(level.adjusted_at.map(micros))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Saves the states the gate changed.
pub(super) async fn save_levels(
    conn: &mut SqliteConnection,
    tenant: &str,
    gate: &Gate<'_>,
) -> StoreResult<()> {
    save_states(conn, tenant, gate.changed_levels()).await
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
    async fn slots_freed(&self, _tenant: &str) -> StoreResult<()> {
        Ok(())
    }

    async fn prune_resting_buckets(
        &self,
        now: DateTime<Utc>,
        idle_since: DateTime<Utc>,
    ) -> StoreResult<u64> {
        // As on PostgreSQL (`postgres/limits.rs`); times are microseconds here.
        let gone = sqlx::query(
            "DELETE FROM limit_state WHERE rowid IN (SELECT s.rowid FROM limit_state s \
             JOIN limits l ON l.tenant = s.tenant AND l.key = s.key \
             WHERE s.refilled_at < ?2 AND s.failures = 0 AND s.opened_at IS NULL \
               AND s.probe_at IS NULL AND (s.adjusted_at IS NULL OR s.adjusted_at < ?2) \
               AND (json_type(l.spec, '$.rate') NOT IN ('integer', 'real') \
                    OR json_type(l.spec, '$.rate') IS NULL \
                    OR s.tokens + json_extract(l.spec, '$.rate') \
                       * ((?1 - s.refilled_at) / 1e6 - 60) >= json_extract(l.spec, '$.burst')))",
        )
        .bind(micros(now))
        .bind(micros(idle_since))
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(gone)
    }

    async fn breaker_counts(&self) -> StoreResult<Vec<(String, String, i64)>> {
        let rows = sqlx::query_as(
            "SELECT l.tenant, l.key, count(s.opened_at) FROM limits l \
             LEFT JOIN limit_state s ON s.tenant = l.tenant AND s.key = l.key \
             WHERE json_type(l.spec, '$.breaker') = 'object' \
             GROUP BY l.tenant, l.key ORDER BY l.tenant, l.key",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(rows)
    }

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
        let rows: Vec<StateRow> = sqlx::query_as(
            "SELECT key, bucket, tokens, refilled_at, failures, opened_at, probe_at, factor, \
               adjusted_at FROM limit_state WHERE tenant = ? AND key = ? ORDER BY bucket",
        )
        .bind(tenant)
        .bind(key)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|row| {
                let bucket = row.1.clone();
                Ok((bucket, level_of(row)?))
            })
            .collect()
    }

    async fn leased_keys(&self, tenant: &str) -> StoreResult<Vec<Vec<String>>> {
        let mut conn = self.reader.acquire().await?;
        leased_keys_in(&mut conn, tenant).await
    }

    async fn record_breaker_outcomes(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<(Uuid, Option<String>)>,
    ) -> StoreResult<Vec<Incident>> {
        // A write transaction: in turn with the claims.
        let mut tx = self.begin_write().await?;
        let rules = rules(&mut tx, tenant).await?;
        if !OutcomeFeed::wanted(&rules) || outcomes.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let mut keys: HashMap<Uuid, Vec<String>> = HashMap::with_capacity(outcomes.len());
        for chunk in outcomes.chunks(500) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT id, queue, kind, limit_keys FROM jobs WHERE +tenant = ",
            );
            qb.push_bind(tenant).push(" AND id IN (");
            let mut ids = qb.separated(", ");
            for (id, _) in chunk {
                ids.push_bind(*id);
            }
            qb.push(")");
            let rows: Vec<(Uuid, String, String, Option<String>)> =
                qb.build_query_as().fetch_all(&mut *tx).await?;
            for (id, queue, kind, own) in rows {
                keys.insert(id, job_keys(&queue, &kind, &parse_keys(own.as_deref())?));
            }
        }
        let Some(feed) = OutcomeFeed::new(&rules, outcomes, &keys, now) else {
            tx.commit().await?;
            return Ok(Vec::new());
        };
        let states = load_states(&mut tx, tenant, &feed.buckets()).await?;
        let (incidents, changed) = feed.apply(states);
        save_states(&mut tx, tenant, changed).await?;
        for incident in &incidents {
            sqlx::query("INSERT INTO events (tenant, type, at, data) VALUES (?, ?, ?, ?)")
                .bind(tenant)
                .bind(BREAKER_EVENT)
                .bind(micros(now))
                .bind(incident.event_data().to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(incidents)
    }
}
