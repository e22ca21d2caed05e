//! A tenant's limits (`crate::flow`) as stored: their definitions, and what a claim needs to
//! run the gate. Its own trait, a supertrait of [`super::Store`]; the claims of both stores
//! run [`gate_candidates`] inside their transaction.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::LimitSpec;
use uuid::Uuid;

use super::detached::on_own_task;
use super::{Detached, StoreError, StoreResult};
use crate::flow::Rule;
use crate::flow::adaptive;
use crate::flow::breaker::{self, Change};
use crate::flow::gate::{BucketId, Gate, Level};

/// One stored limit.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLimit {
    /// Its key (`crate::flow::keys::LimitKey`).
    pub key: String,
    /// What it allows, as set.
    pub spec: LimitSpec,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Stores a tenant's limits.
#[async_trait]
pub trait LimitRecords: Send + Sync {
    /// The tenant's limits, by key.
    async fn limits(&self, tenant: &str) -> StoreResult<Vec<StoredLimit>>;

    /// Sets the limit on `key` (replacing one there was); its buckets keep their levels (a
    /// lower burst applies at their next refill).
    async fn put_limit(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        key: &str,
        spec: &LimitSpec,
    ) -> StoreResult<StoredLimit>;

    /// Removes the limit on `key` and its buckets; false when there was none.
    async fn delete_limit(&self, tenant: &str, key: &str) -> StoreResult<bool>;

    /// The stored levels of the limit on `key`'s rate buckets, by bucket.
    async fn limit_levels(&self, tenant: &str, key: &str) -> StoreResult<Vec<(String, Level)>>;

    /// Deletes the stored state of buckets at rest — a full token bucket, a closed breaker with
    /// no failures counted, an adaptive rate back at its configured value — untouched since
    /// `idle_since`: a bucket without a row is exactly that (`Level::fresh`). Bounds the rows a
    /// prefix limit keeps (one per key it met, e.g. per host). How many were deleted.
    async fn prune_resting_buckets(
        &self,
        now: DateTime<Utc>,
        idle_since: DateTime<Utc>,
    ) -> StoreResult<u64>;

    /// Tells the other replicas that leases of `tenant` ended, so that their claimers waiting
    /// for a concurrency slot ask again now (PostgreSQL: a notification on the ready channel;
    /// SQLite has no other replica). The local claimers are woken by the caller.
    async fn slots_freed(&self, tenant: &str) -> StoreResult<()>;

    /// Every limit with a circuit breaker, of every tenant: `(tenant, key, buckets whose breaker
    /// is open or half-open)`, for `/metrics`.
    async fn breaker_counts(&self) -> StoreResult<Vec<(String, String, i64)>>;

    /// The keys (`crate::flow::keys::job_keys`) of every job of the tenant that is leased now.
    async fn leased_keys(&self, tenant: &str) -> StoreResult<Vec<Vec<String>>>;

    /// Applies recorded outcomes (`(job, failure class or None for a success)`, in order) to
    /// the tenant's circuit breakers and adaptive rates, serialized with its claims; each
    /// breaker's opening and closing is written as a `breaker` event. The incidents, in order.
    async fn record_breaker_outcomes(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<(Uuid, Option<String>)>,
    ) -> StoreResult<Vec<Incident>>;
}

/// The event type of circuit breaker incidents.
pub const BREAKER_EVENT: &str = "breaker";

/// A circuit breaker that opened or closed.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// The limit's key.
    pub limit: String,
    /// The bucket whose breaker changed.
    pub bucket: String,
    /// What happened.
    pub change: Change,
    /// Consecutive counted failures at the time.
    pub failures: u32,
    /// The job whose outcome did it.
    pub job_id: Uuid,
}

impl Incident {
    /// The `data` of its `breaker` event.
    pub fn event_data(&self) -> serde_json::Value {
        serde_json::json!({"limit": self.limit, "bucket": self.bucket,
                           "state": self.change.as_str(), "failures": self.failures,
                           "job_id": self.job_id})
    }
}

/// What recorded outcomes do to a tenant's breakers and adaptive rates, decided the same for
/// both stores: the backend reads the jobs' keys and the buckets' states, this decides, the
/// backend saves the states and writes the incidents as events.
pub(crate) struct OutcomeFeed<'r> {
    rules: &'r [Rule],
    /// The outcomes whose jobs were found: `(job, its keys, failure class or None)`, in order.
    jobs: Vec<(Uuid, Vec<String>, Option<String>)>,
    now: DateTime<Utc>,
}

impl<'r> OutcomeFeed<'r> {
    /// The feed of `outcomes`, whose jobs have the keys in `keys` (an outcome of a job not found
    /// there is left out), into `rules`; `None` when no rule is fed by outcomes.
    pub(crate) fn new(
        rules: &'r [Rule],
        outcomes: Vec<(Uuid, Option<String>)>,
        keys: &HashMap<Uuid, Vec<String>>,
        now: DateTime<Utc>,
    ) -> Option<Self> {
        if rules.iter().all(|r| r.breaker.is_none() && !r.adaptive) {
            return None;
        }
        let jobs = outcomes
            .into_iter()
            .filter_map(|(id, failure)| keys.get(&id).map(|k| (id, k.clone(), failure)))
            .collect();
        Some(Self { rules, jobs, now })
    }

    /// Whether any rule is fed by outcomes (checked before reading the jobs' keys).
    pub(crate) fn wanted(rules: &[Rule]) -> bool {
        rules.iter().any(|r| r.breaker.is_some() || r.adaptive)
    }

    /// The buckets whose states [`OutcomeFeed::apply`] needs.
    pub(crate) fn buckets(&self) -> Vec<BucketId> {
        Gate::new(self.now, self.rules)
            .stateful_buckets(self.jobs.iter().map(|(_, k, _)| k.as_slice()))
    }

    /// Applies the outcomes in order to `states` (a bucket missing starts closed and at its
    /// configured rate): the incidents, and the states to save.
    pub(crate) fn apply(
        &self,
        mut states: HashMap<BucketId, Level>,
    ) -> (Vec<Incident>, Vec<(BucketId, Level)>) {
        let (rules, now) = (self.rules, self.now);
        let mut incidents = Vec::new();
        let mut changed = BTreeSet::new();
        for (job_id, keys, failure) in &self.jobs {
            let throttled = failure.as_deref() == Some(adaptive::THROTTLED);
            for rule in rules
                .iter()
                .filter(|r| r.breaker.is_some() || (r.adaptive && throttled))
            {
                for bucket in rule.matcher.buckets(keys) {
                    let id = (rule.key.clone(), bucket.to_owned());
                    let state = states
                        .entry(id.clone())
                        .or_insert_with(|| Level::fresh(f64::from(rule.burst.unwrap_or(1)), now));
                    let before = *state;
                    if rule.adaptive && throttled {
                        adaptive::throttle(state, now);
                        metrics::counter!(crate::metrics::LIMIT_THROTTLES, "limit" => rule.key.clone())
                            .increment(1);
                        if !matches!(rule.matcher, crate::flow::keys::LimitKey::Prefix(_)) {
                            let rate = rule.rate.unwrap_or(0.0) * adaptive::factor(state, now);
                            metrics::gauge!(crate::metrics::LIMIT_EFFECTIVE_RATE,
                                "limit" => rule.key.clone())
                            .set(rate);
                        }
                    }
                    if let Some(change) = breaker::record(rule, state, failure.as_deref(), now) {
                        incidents.push(Incident {
                            limit: rule.key.clone(),
                            bucket: bucket.to_owned(),
                            change,
                            failures: state.failures,
                            job_id: *job_id,
                        });
                    }
                    if *state != before {
                        changed.insert(id);
                    }
                }
            }
        }
        let save = changed
            .into_iter()
            .filter_map(|id| states.get(&id).map(|level| (id, *level)))
            .collect();
        (incidents, save)
    }
}

#[async_trait]
impl LimitRecords for Detached {
    async fn limits(&self, tenant: &str) -> StoreResult<Vec<StoredLimit>> {
        self.0.limits(tenant).await
    }

    async fn breaker_counts(&self) -> StoreResult<Vec<(String, String, i64)>> {
        self.0.breaker_counts().await
    }

    async fn slots_freed(&self, tenant: &str) -> StoreResult<()> {
        self.0.slots_freed(tenant).await
    }

    async fn prune_resting_buckets(
        &self,
        now: DateTime<Utc>,
        idle_since: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let store = self.0.clone();
        on_own_task(async move { store.prune_resting_buckets(now, idle_since).await }).await
    }

    async fn put_limit(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        key: &str,
        spec: &LimitSpec,
    ) -> StoreResult<StoredLimit> {
        let (store, tenant, key, spec) = (
            self.0.clone(),
            tenant.to_owned(),
            key.to_owned(),
            spec.clone(),
        );
        on_own_task(async move { store.put_limit(now, &tenant, &key, &spec).await }).await
    }

    async fn delete_limit(&self, tenant: &str, key: &str) -> StoreResult<bool> {
        let (store, tenant, key) = (self.0.clone(), tenant.to_owned(), key.to_owned());
        on_own_task(async move { store.delete_limit(&tenant, &key).await }).await
    }

    async fn limit_levels(&self, tenant: &str, key: &str) -> StoreResult<Vec<(String, Level)>> {
        self.0.limit_levels(tenant, key).await
    }

    async fn leased_keys(&self, tenant: &str) -> StoreResult<Vec<Vec<String>>> {
        self.0.leased_keys(tenant).await
    }

    async fn record_breaker_outcomes(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<(Uuid, Option<String>)>,
    ) -> StoreResult<Vec<Incident>> {
        let (store, tenant) = (self.0.clone(), tenant.to_owned());
        on_own_task(async move { store.record_breaker_outcomes(now, &tenant, outcomes).await })
            .await
    }
}

/// A row of a claim's read of the tenant's limits and quota: `(key, spec as JSON, None)` for a
/// limit, `(None, None, max_leased)` for the quota.
pub(crate) type RuleRow = (Option<String>, Option<serde_json::Value>, Option<i64>);

/// The rules a claim applies: the stored limits in key order, then the quota's `max_leased`
/// ([`Rule::max_leased`]). A limit that no longer parses (written by a newer version, or
/// edited by hand) is an error, not a limit silently dropped.
pub(crate) fn rules_of(rows: Vec<RuleRow>) -> StoreResult<Vec<Rule>> {
    let mut limits = Vec::with_capacity(rows.len());
    let mut max_leased = None;
    for row in rows {
        match row {
            (Some(key), Some(spec), _) => limits.push((key, spec)),
            (_, _, Some(max)) => max_leased = Some(u32::try_from(max).unwrap_or(u32::MAX)),
            _ => {}
        }
    }
    limits.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rules = limits
        .into_iter()
        .map(|(key, spec)| {
            let spec: LimitSpec = serde_json::from_value(spec)
                .map_err(|e| StoreError::Internal(format!("limit {key:?}: {e}")))?;
            Rule::new(&key, &spec)
                .map_err(|e| StoreError::Internal(format!("limit {key:?}: {}", e.message)))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    rules.extend(max_leased.map(Rule::max_leased));
    Ok(rules)
}

/// How many candidates a gated claim looks at for `max_jobs` leases: more than it may take, so
/// that jobs held back by a limit do not hide ready jobs behind them.
pub(crate) fn gated_window(max_jobs: u32) -> u32 {
    max_jobs.saturating_mul(4).saturating_add(64).min(4000)
}

/// How many candidates a gated claim reads: at most what the limits covering its whole claim
/// leave room for ([`Gate::room_for`]) plus some slack for candidates other limits hold back,
/// and never more than [`gated_window`]. A claim under a tight rate reads a few rows instead of
/// hundreds it could not lease (W8 on PostgreSQL: 633 leases/s of 2000 before, reading 464
/// candidates per claim).
pub(crate) fn gated_read(gate: &Gate<'_>, queues: &[String], max_jobs: u32) -> u32 {
    const SLACK: u64 = 16;
    let most = gated_window(max_jobs);
    match gate.room_for(queues) {
        Some(room) => u32::try_from(room.min(u64::from(max_jobs)) + SLACK)
            .unwrap_or(most)
            .min(most),
        None => most,
    }
}

/// A claim's candidate as the gate sees it.
pub(crate) struct GateCandidate {
    /// Its keys (`crate::flow::keys::job_keys`).
    pub keys: Vec<String>,
    /// False for an expired lease whose attempts are spent: it is not leased (it goes to
    /// `dead`), so it passes without taking room.
    pub lease: bool,
    /// An expired lease taken over: the slot its lease held is freed first.
    pub expired: bool,
}

/// Which candidates (in claim order) the claim takes: those the gate admits, up to `max_jobs`
/// leases, and every one that is not a lease.
pub(crate) fn gate_candidates(
    gate: &mut Gate<'_>,
    candidates: &[GateCandidate],
    max_jobs: u32,
) -> Vec<bool> {
    let mut leases = 0;
    candidates
        .iter()
        .map(|c| {
            if !c.lease {
                // Goes `dead` in this claim: its slot is free from now on.
                if c.expired {
                    gate.uncount_lease(&c.keys);
                }
                return true;
            }
            if leases >= max_jobs {
                return false;
            }
            if c.expired {
                gate.uncount_lease(&c.keys);
            }
            if !gate.admit(&c.keys) {
                if c.expired {
                    // Not taken over: its lease still holds the slot.
                    gate.count_lease(&c.keys);
                }
                return false;
            }
            leases += 1;
            true
        })
        .collect()
}
