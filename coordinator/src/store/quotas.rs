//! Tenant quotas: the rows ([`QuotaRecords`], a supertrait of [`super::Store`]) and the check
//! every enqueue makes inside its own transaction ([`check_enqueue`], decided here over each
//! backend's [`QuotaStatements`]).
//!
//! `max_queued` bounds a tenant's **waiting** jobs — `queued` (due, scheduled, or waiting for a
//! retry) plus `blocked` (a run's children behind their parents) — as they stand once an
//! enqueue is stored. Only enqueues are refused: a failure scheduled for another attempt, a
//! retry or a replay brings back a job that was stored already, and is never refused, so a
//! tenant can stand above its quota until its workers drain it. An idempotent replay stores
//! nothing and is never refused either, even then.
//!
//! Exactness: the check and the insert are one transaction. On SQLite the single writer makes
//! them one step. On PostgreSQL the enqueue first locks the tenant's quota row (`FOR UPDATE`)
//! and only then counts, in a statement of its own (its snapshot is taken after the lock is
//! granted, so it sees what the enqueue that held the lock committed): enqueues of a tenant
//! with a quota run one at a time across replicas, and two never both take the last slot.
//!
//! What a tenant without a `max_queued` pays: on PostgreSQL one primary-key probe of the (small)
//! `quotas` table, inside the single-job statement (no round trip more) or as one statement of a
//! batch's or a run's transaction; on SQLite nothing (the store keeps the list of the limited
//! tenants, `sqlite/quotas.rs`). A tenant with one also pays the count of its waiting jobs,
//! which its quota bounds, and its enqueues on PostgreSQL run one at a time.
//!
//! `max_leased` is stored and read back here ([`QuotaRecords::quota`]); it is enforced where
//! leases are granted (`crate::leasing`). A job of a tenant with any quota is never handed off
//! at its enqueue (`crate::handoff`): it is leased by a claim, where that check runs.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::QuotaUsage;

use super::detached::on_own_task;
use super::{Detached, NewJobRow, StoreError, StoreResult};

/// A tenant's quota as stored. `None` is no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// Tenant.
    pub tenant: String,
    /// Most jobs waiting (`queued` or `blocked`) once an enqueue is stored.
    pub max_queued: Option<u64>,
    /// Most jobs leased at once.
    pub max_leased: Option<u64>,
    /// Last write.
    pub updated_at: DateTime<Utc>,
}

/// An enqueue refused by a tenant's `max_queued`: nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// Tenant.
    pub tenant: String,
    /// Its `max_queued`.
    pub limit: u64,
    /// Its waiting jobs before the enqueue.
    pub waiting: u64,
    /// Jobs the enqueue would have stored for it (replays not counted).
    pub adding: u64,
}

/// Stores tenants' quotas.
#[async_trait]
pub trait QuotaRecords: Send + Sync {
    /// The tenant's quota, `None` when it has none. One primary-key read: what a gate on
    /// leases calls for `max_leased`.
    async fn quota(&self, tenant: &str) -> StoreResult<Option<Quota>>;

    /// Creates or replaces the tenant's quota, in one transaction with reading the one it
    /// replaces (answered, for the audit record).
    async fn set_quota(&self, quota: &Quota) -> StoreResult<Option<Quota>>;

    /// Removes the tenant's quota; answers the removed one (`None`: there was none).
    async fn delete_quota(&self, tenant: &str) -> StoreResult<Option<Quota>>;

    /// The tenant's live jobs by state, as the quota counts them (each through its partial
    /// index: the cost follows the tenant's backlog, never its history).
    async fn quota_usage(&self, tenant: &str) -> StoreResult<QuotaUsage>;
}

#[async_trait]
impl QuotaRecords for Detached {
    async fn quota(&self, tenant: &str) -> StoreResult<Option<Quota>> {
        self.0.quota(tenant).await
    }

    async fn set_quota(&self, quota: &Quota) -> StoreResult<Option<Quota>> {
        let (store, quota) = (self.0.clone(), quota.clone());
        on_own_task(async move { store.set_quota(&quota).await }).await
    }

    async fn delete_quota(&self, tenant: &str) -> StoreResult<Option<Quota>> {
        let (store, tenant) = (self.0.clone(), tenant.to_owned());
        on_own_task(async move { store.delete_quota(&tenant).await }).await
    }

    async fn quota_usage(&self, tenant: &str) -> StoreResult<QuotaUsage> {
        self.0.quota_usage(tenant).await
    }
}

/// A tenant's `max_queued` and its waiting jobs, read inside an enqueue's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueLimit {
    /// Tenant.
    pub(crate) tenant: String,
    /// Its `max_queued`.
    pub(crate) limit: u64,
    /// Its jobs `queued` or `blocked` now.
    pub(crate) waiting: u64,
}

/// An idempotency key as stored: tenant, queue, key.
pub(crate) type KeyOf = (String, String, String);

/// What the enqueue check reads, inside the enqueue's transaction, per backend.
pub(crate) trait QuotaStatements: Send {
    /// Each of `tenants` (sorted, distinct) that has a `max_queued`, with its waiting jobs.
    /// The rows stay held until the transaction ends (PostgreSQL locks them in tenant order,
    /// then counts in a later statement; SQLite's writer holds everything). Empty — after one
    /// indexed lookup — when none of them has one.
    fn queue_limits(
        &mut self,
        tenants: &[&str],
    ) -> impl Future<Output = StoreResult<Vec<QueueLimit>>> + Send;

    /// Which of `keys` are stored already (their enqueue would be a replay).
    fn stored_keys(
        &mut self,
        keys: &[(&str, &str, &str)],
    ) -> impl Future<Output = StoreResult<HashSet<KeyOf>>> + Send;
}

/// Refuses ([`StoreError::QuotaExceeded`]) an enqueue of `rows` that would take a tenant past
/// its `max_queued`; run inside the enqueue's transaction, before its insert. A batch is refused
/// whole. Jobs whose idempotency key is stored already (or used by an earlier job of the same
/// batch) store nothing and are not counted: a replay is never refused.
pub(crate) async fn check_enqueue<S: QuotaStatements>(
    s: &mut S,
    rows: &[&NewJobRow],
) -> StoreResult<()> {
    let mut tenants: Vec<&str> = rows.iter().map(|r| r.tenant.as_str()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let limits = s.queue_limits(&tenants).await?;
    if limits.is_empty() {
        return Ok(());
    }
    let limited: HashSet<&str> = limits.iter().map(|l| l.tenant.as_str()).collect();
    let keyed: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|r| limited.contains(r.tenant.as_str()))
        .filter_map(|r| {
            let key = r.idempotency_key.as_deref()?;
            Some((r.tenant.as_str(), r.queue.as_str(), key))
        })
        .collect();
    let stored = if keyed.is_empty() {
        HashSet::new()
    } else {
        s.stored_keys(&keyed).await?
    };
    let adding = new_jobs(rows, &limited, &stored);
    for limit in limits {
        let n = adding.get(limit.tenant.as_str()).copied().unwrap_or(0);
        admit(limit, n)?;
    }
    Ok(())
}

/// How many of `rows` each tenant of `limited` would store: every job without a key, and each
/// keyed one whose key is neither in `stored` nor taken by an earlier job of the batch.
fn new_jobs<'a>(
    rows: &[&'a NewJobRow],
    limited: &HashSet<&str>,
    stored: &HashSet<KeyOf>,
) -> HashMap<&'a str, u64> {
    let mut seen: HashSet<(&str, &str, &str)> = HashSet::new();
    let mut adding: HashMap<&str, u64> = HashMap::new();
    for row in rows {
        let tenant = row.tenant.as_str();
        if !limited.contains(tenant) {
            continue;
        }
        let new = match row.idempotency_key.as_deref() {
            None => true,
            Some(key) => {
                let id = (tenant, row.queue.as_str(), key);
                let known = stored.contains(&(id.0.to_owned(), id.1.to_owned(), id.2.to_owned()));
                !known && seen.insert(id)
            }
        };
        if new {
            *adding.entry(tenant).or_insert(0) += 1;
        }
    }
    adding
}

/// Whether `adding` more jobs fit under `limit`. Adding nothing always does, even above it.
fn admit(limit: QueueLimit, adding: u64) -> StoreResult<()> {
    if adding == 0 || limit.waiting.saturating_add(adding) <= limit.limit {
        return Ok(());
    }
    Err(StoreError::QuotaExceeded(QuotaExceeded {
        tenant: limit.tenant,
        limit: limit.limit,
        waiting: limit.waiting,
        adding,
    }))
}

/// A count read from the database (never negative) as a `u64`.
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A stored limit (a `bigint`/`INTEGER` column, never negative by its `CHECK`) as a `u64`.
pub(crate) fn limit_from(n: Option<i64>) -> Option<u64> {
    n.map(count)
}

/// A limit as the database stores it (limits are at most
/// [`leasehold_proto::MAX_QUOTA_LIMIT`], far inside `i64`).
pub(crate) fn limit_to(n: Option<u64>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(tenant: &str, queue: &str, key: Option<&str>) -> NewJobRow {
        NewJobRow {
            max_attempts: 1,
            idempotency_key: key.map(str::to_owned),
            ..NewJobRow::sample(tenant, queue)
        }
    }

    fn limit(tenant: &str, limit: u64, waiting: u64) -> QueueLimit {
        QueueLimit {
            tenant: tenant.into(),
            limit,
            waiting,
        }
    }

    #[test]
    fn replays_and_repeated_keys_are_not_counted() {
        let rows = [
            row("a", "q", None),
            row("a", "q", Some("k1")),
            row("a", "q", Some("k1")), // the batch's earlier job has it: skipped
            row("a", "other", Some("k1")), // another queue: another key
            row("a", "q", Some("stored")),
            row("b", "q", None), // no quota
        ];
        let refs: Vec<&NewJobRow> = rows.iter().collect();
        let limited = HashSet::from(["a"]);
        let stored = HashSet::from([("a".to_owned(), "q".to_owned(), "stored".to_owned())]);
        let adding = new_jobs(&refs, &limited, &stored);
        assert_eq!(adding.get("a"), Some(&3));
        assert_eq!(adding.get("b"), None);
    }

    #[test]
    fn the_last_slot_is_admitted_and_one_more_refused_naming_the_numbers() {
        assert!(admit(limit("a", 5, 4), 1).is_ok());
        let Err(StoreError::QuotaExceeded(refused)) = admit(limit("a", 5, 4), 2) else {
            panic!("refused")
        };
        assert_eq!(
            refused,
            QuotaExceeded {
                tenant: "a".into(),
                limit: 5,
                waiting: 4,
                adding: 2
            }
        );
        // Storing nothing is never refused, not even above the quota or at zero.
        assert!(admit(limit("a", 5, 9), 0).is_ok());
        assert!(admit(limit("a", 0, 0), 1).is_err());
    }
}
