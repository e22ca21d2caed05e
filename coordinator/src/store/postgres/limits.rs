//! Limits on PostgreSQL (see `store/limits.rs`), and the claim's side of the gate: the
//! tenant's limits (and quota `max_leased`) read, then an advisory lock that serializes the gated
//! claims of a tenant across every replica (so a budget is never overspent by claimers that each
//! saw it unspent), the leases held, the buckets' levels.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::LimitSpec;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};

use super::rows::internal;
use super::{PostgresStore, READY_CHANNEL};
use crate::flow::Rule;
use crate::flow::gate::{BucketId, Gate, Level};
use crate::flow::keys::job_keys;
use uuid::Uuid;

use crate::store::{
    BREAKER_EVENT, Incident, LimitRecords, OutcomeFeed, RuleRow, StoreResult, StoredLimit, rules_of,
};

/// The tenant's limits as rules, its quota's `max_leased` among them ([`Rule::max_leased`]);
/// when there are any, the tenant's claims (and the feeding of its breakers) are serialized by
/// a transaction-scoped advisory lock taken here, on every replica. Empty (and nothing locked)
/// for a tenant without limits: the claim is not gated. One statement reads both.
pub(super) async fn lock_rules(tx: &mut PgConnection, tenant: &str) -> StoreResult<Vec<Rule>> {
    let rows: Vec<RuleRow> = sqlx::query_as(
        "SELECT key, spec, NULL::bigint AS max_leased FROM limits WHERE tenant = $1 \
             UNION ALL \
             SELECT NULL, NULL, max_leased FROM quotas WHERE tenant = $1 \
               AND max_leased IS NOT NULL",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    let rules = rules_of(rows)?;
    if !rules.is_empty() {
        // Every gated claim of the tenant waits here for the one before to commit; its
        // statements then see the leases and tokens that one wrote (READ COMMITTED).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('leasehold.claims/' || $1, 0))")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
    }
    Ok(rules)
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
        // `lease_expires_at IS NOT NULL` (always true of a lease) lets the planner use the
        // partial index `jobs_lease_expiry`: without it every claim scanned the tenant's whole
        // table (W8: 1.5 s of database CPU per 1000 leases).
        "SELECT queue, kind, limit_keys FROM jobs \
         WHERE tenant = $1 AND lease_expires_at IS NOT NULL AND state = 'leased'",
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

/// The stored states of `buckets` (a bucket never met has none).
pub(super) async fn load_states(
    tx: &mut PgConnection,
    tenant: &str,
    buckets: &[BucketId],
) -> StoreResult<HashMap<BucketId, Level>> {
    if buckets.is_empty() {
        return Ok(HashMap::new());
    }
    let (keys, names): (Vec<&str>, Vec<&str>) = buckets
        .iter()
        .map(|(k, b)| (k.as_str(), b.as_str()))
        .unzip();
    let rows = sqlx::query(
        "SELECT key, bucket, tokens, refilled_at, failures, opened_at, probe_at, factor, \
           adjusted_at FROM limit_state WHERE tenant = $1 AND (key, bucket) IN (SELECT * FROM unnest($2::text[], $3::text[]))",
    )
    .bind(tenant)
    .bind(&keys)
    .bind(&names)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                (row.try_get("key")?, row.try_get("bucket")?),
                level_of(row)?,
            ))
        })
        .collect()
}

fn level_of(row: &sqlx::postgres::PgRow) -> StoreResult<Level> {
    Ok(Level {
        tokens: row.try_get("tokens")?,
        refilled_at: row.try_get("refilled_at")?,
        failures: u32::try_from(row.try_get::<i32, _>("failures")?).unwrap_or(0),
        opened_at: row.try_get("opened_at")?,
        probe_at: row.try_get("probe_at")?,
        factor: row.try_get("factor")?,
        adjusted_at: row.try_get("adjusted_at")?,
    })
}

/// Loads the stored states of `buckets` into the gate.
pub(super) async fn load_levels(
    tx: &mut PgConnection,
    tenant: &str,
    buckets: &[BucketId],
    gate: &mut Gate<'_>,
) -> StoreResult<()> {
    for (id, level) in load_states(tx, tenant, buckets).await? {
        gate.load_level(id, level);
    }
    Ok(())
}

/// Saves buckets' states.
pub(super) async fn save_states(
    tx: &mut PgConnection,
    tenant: &str,
    changed: Vec<(BucketId, Level)>,
) -> StoreResult<()> {
    if changed.is_empty() {
        return Ok(());
    }
    let n = changed.len();
    let mut keys = Vec::with_capacity(n);
    let mut buckets = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    let mut refilled = Vec::with_capacity(n);
    let mut failures = Vec::with_capacity(n);
    let mut opened = Vec::with_capacity(n);
    let mut probes = Vec::with_capacity(n);
    let mut factors = Vec::with_capacity(n);
    let mut adjusted = Vec::with_capacity(n);
    for ((key, bucket), level) in changed {
        keys.push(key);
        buckets.push(bucket);
        tokens.push(level.tokens);
        refilled.push(level.refilled_at);
        failures.push(i32::try_from(level.failures).unwrap_or(i32::MAX));
        opened.push(level.opened_at);
        probes.push(level.probe_at);
        factors.push(level.factor);
        adjusted.push(level.adjusted_at);
    }
    sqlx::query(
        "INSERT INTO limit_state (tenant, key, bucket, tokens, refilled_at, failures, opened_at, \
           probe_at, factor, adjusted_at) \
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::float8[], $5::timestamptz[], \
           $6::int[], $7::timestamptz[], $8::timestamptz[], $9::float8[], $10::timestamptz[]) \
         ON CONFLICT (tenant, key, bucket) DO UPDATE \
         SET tokens = excluded.tokens, refilled_at = excluded.refilled_at, \
           failures = excluded.failures, opened_at = excluded.opened_at, \
           probe_at = excluded.probe_at, factor = excluded.factor, \
           adjusted_at = excluded.adjusted_at",
    )
    .bind(tenant)
    .bind(&keys)
    .bind(&buckets)
    .bind(&tokens)
    .bind(&refilled)
    .bind(&failures)
    .bind(&opened)
    .bind(&probes)
    .bind(&factors)
    .bind(&adjusted)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Saves the states the gate changed.
pub(super) async fn save_levels(
    tx: &mut PgConnection,
    tenant: &str,
    gate: &Gate<'_>,
) -> StoreResult<()> {
    save_states(tx, tenant, gate.changed_levels()).await
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
    async fn slots_freed(&self, tenant: &str) -> StoreResult<()> {
        // Marked as this replica's own: its listener skips the echo.
        sqlx::query("SELECT pg_notify($1, $2 || $3)")
            .bind(READY_CHANNEL)
            .bind(tenant)
            .bind(&self.origin)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn prune_resting_buckets(
        &self,
        now: DateTime<Utc>,
        idle_since: DateTime<Utc>,
    ) -> StoreResult<u64> {
        // Full: its tokens plus what the configured rate added since, less a minute (an
        // adaptive rate regains its configured value within 50 s), reach the burst.
        let gone = sqlx::query(
            "DELETE FROM limit_state s USING limits l \
             WHERE l.tenant = s.tenant AND l.key = s.key AND s.refilled_at < $2 \
               AND s.failures = 0 AND s.opened_at IS NULL AND s.probe_at IS NULL \
               AND (s.adjusted_at IS NULL OR s.adjusted_at < $2) \
               AND (jsonb_typeof(l.spec -> 'rate') IS DISTINCT FROM 'number' \
                    OR s.tokens + (l.spec ->> 'rate')::float8 \
                       * (EXTRACT(EPOCH FROM ($1 - s.refilled_at)) - 60) \
                       >= (l.spec ->> 'burst')::float8)",
        )
        .bind(now)
        .bind(idle_since)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(gone)
    }

    async fn breaker_counts(&self) -> StoreResult<Vec<(String, String, i64)>> {
        let rows = sqlx::query_as(
            "SELECT l.tenant, l.key, count(s.opened_at) FROM limits l \
             LEFT JOIN limit_state s ON s.tenant = l.tenant AND s.key = l.key \
             WHERE jsonb_typeof(l.spec -> 'breaker') = 'object' \
             GROUP BY l.tenant, l.key ORDER BY l.tenant, l.key",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

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
        let rows = sqlx::query(
            "SELECT key, bucket, tokens, refilled_at, failures, opened_at, probe_at, factor, \
               adjusted_at FROM limit_state WHERE tenant = $1 AND key = $2 ORDER BY bucket",
        )
        .bind(tenant)
        .bind(key)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("bucket")?, level_of(row)?)))
            .collect()
    }

    async fn leased_keys(&self, tenant: &str) -> StoreResult<Vec<Vec<String>>> {
        let mut conn = self.pool().acquire().await?;
        leased_keys_in(&mut conn, tenant).await
    }

    async fn record_breaker_outcomes(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<(Uuid, Option<String>)>,
    ) -> StoreResult<Vec<Incident>> {
        let mut tx = self.pool().begin().await?;
        // The claims' lock: states change in turn with them, on every replica.
        let rules = lock_rules(&mut tx, tenant).await?;
        if !OutcomeFeed::wanted(&rules) || outcomes.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = outcomes.iter().map(|(id, _)| *id).collect();
        // By id alone, the tenant checked here: with `tenant = $1` in the statement the planner
        // may walk the tenant instead of probing the primary key (docs/postgres-hot-path.md).
        let rows =
            sqlx::query("SELECT id, tenant, queue, kind, limit_keys FROM jobs WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
        let mut keys: HashMap<Uuid, Vec<String>> = HashMap::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<&str, _>("tenant")? != tenant {
                continue;
            }
            let own: Option<Vec<String>> = row.try_get("limit_keys")?;
            keys.insert(
                row.try_get("id")?,
                job_keys(
                    row.try_get("queue")?,
                    row.try_get("kind")?,
                    &own.unwrap_or_default(),
                ),
            );
        }
        let Some(feed) = OutcomeFeed::new(&rules, outcomes, &keys, now) else {
            tx.commit().await?;
            return Ok(Vec::new());
        };
        let states = load_states(&mut tx, tenant, &feed.buckets()).await?;
        let (incidents, changed) = feed.apply(states);
        save_states(&mut tx, tenant, changed).await?;
        for incident in &incidents {
            sqlx::query("INSERT INTO events (tenant, type, at, data) VALUES ($1, $2, $3, $4)")
                .bind(tenant)
                .bind(BREAKER_EVENT)
                .bind(now)
                .bind(incident.event_data())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(incidents)
    }
}
