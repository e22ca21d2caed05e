//! Worker pools shared by several tenants, and the fair share of their leases.
//!
//! A pool's claim names its tenants and their weights ([`Pool`]). Each claim splits its batch
//! among the pool's tenants that have ready jobs by *virtual time* (stride scheduling, as
//! weighted fair queueing does): a tenant's virtual time grows by `1 / weight` per lease it is
//! granted, and each lease of the batch goes to the tenant whose virtual time, counting what
//! the batch already gave it, is the lowest. A tenant that had nothing ready is forgotten, and
//! comes back level with the least-served busy tenant: idle time earns no credit, so a tenant
//! that was quiet for an hour cannot then take the pool for an hour. One tenant's flood thus
//! delays another's trickle by at most the batch it shares the claim with.
//!
//! The virtual times live in the coordinator's memory, per pool (its queues and tenants):
//! each replica is fair on its own, and so is the sum of fair replicas.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use leasehold_proto::{MAX_POOL_TENANTS, MAX_TENANT_WEIGHT};

use crate::error::{ApiError, ApiResult};
use crate::validate;

/// Pools whose virtual times are kept; past this, all are forgotten (and start level again).
const MAX_POOLS: usize = 1024;

/// The tenants a shared worker pool claims for, with their weights, sorted by tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    members: Vec<(String, u32)>,
}

impl Pool {
    /// Validates a claim's `tenants` and `tenant_weights`: 1 to [`MAX_POOL_TENANTS`] valid
    /// names (duplicates are one), weights 1 to [`MAX_TENANT_WEIGHT`] for named tenants only.
    pub fn new(tenants: Vec<String>, weights: Option<BTreeMap<String, u32>>) -> ApiResult<Self> {
        if tenants.is_empty() || tenants.len() > MAX_POOL_TENANTS {
            return Err(ApiError::validation(
                "tenants",
                format!("name 1 to {MAX_POOL_TENANTS} tenants"),
            ));
        }
        for t in &tenants {
            validate::name("tenants", t)?;
        }
        let weights = weights.unwrap_or_default();
        for (tenant, weight) in &weights {
            if !tenants.contains(tenant) {
                return Err(ApiError::validation(
                    "tenant_weights",
                    format!("`{tenant}` is not one of the pool's tenants"),
                ));
            }
            validate::range("tenant_weights", *weight, 1, MAX_TENANT_WEIGHT)?;
        }
        let mut members: Vec<(String, u32)> = tenants
            .into_iter()
            .map(|t| {
                let w = weights.get(&t).copied().unwrap_or(1);
                (t, w)
            })
            .collect();
        members.sort();
        members.dedup();
        Ok(Self { members })
    }

    /// The tenants, sorted.
    pub fn tenants(&self) -> Vec<String> {
        self.members.iter().map(|(t, _)| t.clone()).collect()
    }

    /// The weight of `tenant` (1 for one not in the pool).
    pub fn weight(&self, tenant: &str) -> u32 {
        self.members
            .iter()
            .find(|(t, _)| t == tenant)
            .map_or(1, |(_, w)| *w)
    }

    /// Whether `tenant` is one of the pool's.
    pub fn has(&self, tenant: &str) -> bool {
        self.members.iter().any(|(t, _)| t == tenant)
    }
}

/// The virtual times of every pool's tenants on this coordinator.
#[derive(Debug, Clone, Default)]
pub struct FairShare(Arc<Mutex<HashMap<String, HashMap<String, f64>>>>);

impl FairShare {
    /// Splits a batch of `n` leases among `ready` (the pool's tenants with ready jobs, sorted):
    /// each tenant's share, in the order to claim them (the least served first), zeros left
    /// out. `pool_key` names the pool (its queues and tenants). Tenants of the pool not in
    /// `ready` are forgotten.
    pub fn split(
        &self,
        pool_key: &str,
        pool: &Pool,
        ready: &[String],
        n: u32,
    ) -> Vec<(String, u32)> {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() >= MAX_POOLS && !all.contains_key(pool_key) {
            all.clear();
        }
        let times = all.entry(pool_key.to_owned()).or_default();
        times.retain(|t, _| ready.contains(t));
        // A tenant back from idle starts level with the least-served busy one.
        let floor = times.values().copied().fold(f64::INFINITY, f64::min);
        let floor = if floor.is_finite() { floor } else { 0.0 };
        let mut slots: Vec<(String, f64, f64, u32)> = ready
            .iter()
            .map(|t| {
                let vt = *times.entry(t.clone()).or_insert(floor);
                (t.clone(), vt, 1.0 / f64::from(pool.weight(t)), 0)
            })
            .collect();
        for _ in 0..n {
            // The lowest virtual time after this lease; ties go to the first in name order.
            let Some(next) = (0..slots.len()).min_by(|&a, &b| {
                let after = |i: usize| slots[i].1 + f64::from(slots[i].3 + 1) * slots[i].2;
                after(a).total_cmp(&after(b)).then(a.cmp(&b))
            }) else {
                break;
            };
            slots[next].3 += 1;
        }
        slots.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        slots
            .into_iter()
            .filter(|s| s.3 > 0)
            .map(|(t, _, _, share)| (t, share))
            .collect()
    }

    /// Counts `leased` leases granted to `tenant` in the pool.
    pub fn served(&self, pool_key: &str, pool: &Pool, tenant: &str, leased: usize) {
        if leased == 0 {
            return;
        }
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let times = all.entry(pool_key.to_owned()).or_default();
        *times.entry(tenant.to_owned()).or_insert(0.0) +=
            leased as f64 / f64::from(pool.weight(tenant));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(spec: &[(&str, u32)]) -> Pool {
        Pool::new(
            spec.iter().map(|(t, _)| t.to_string()).collect(),
            Some(spec.iter().map(|(t, w)| (t.to_string(), *w)).collect()),
        )
        .expect("a valid pool")
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Runs `claims` claims of `n`, every tenant always ready and always granted its share.
    fn serve(pool: &Pool, ready: &[&str], claims: usize, n: u32) -> HashMap<String, usize> {
        let fair = FairShare::default();
        let mut got: HashMap<String, usize> = HashMap::new();
        for _ in 0..claims {
            for (t, share) in fair.split("p", pool, &names(ready), n) {
                fair.served("p", pool, &t, share as usize);
                *got.entry(t).or_default() += share as usize;
            }
        }
        got
    }

    #[test]
    fn equal_weights_alternate_one_lease_claims() {
        let p = pool(&[("a", 1), ("b", 1)]);
        let fair = FairShare::default();
        let mut order = Vec::new();
        for _ in 0..6 {
            let split = fair.split("p", &p, &names(&["a", "b"]), 1);
            assert_eq!(split.len(), 1);
            fair.served("p", &p, &split[0].0, 1);
            order.push(split[0].0.clone());
        }
        assert_eq!(order, ["a", "b", "a", "b", "a", "b"]);
    }

    #[test]
    fn weights_share_the_leases_in_proportion() {
        let p = pool(&[("big", 3), ("small", 1)]);
        let got = serve(&p, &["big", "small"], 10, 4);
        assert_eq!(got["big"], 30);
        assert_eq!(got["small"], 10);
        // One lease at a time, the same proportion.
        let got = serve(&p, &["big", "small"], 40, 1);
        assert_eq!((got["big"], got["small"]), (30, 10));
    }

    #[test]
    fn a_batch_is_split_and_the_least_served_claims_first() {
        let p = pool(&[("a", 1), ("b", 1), ("c", 1)]);
        let fair = FairShare::default();
        fair.served("p", &p, "a", 5);
        fair.served("p", &p, "b", 5);
        fair.served("p", &p, "c", 5);
        fair.served("p", &p, "a", 2);
        let split = fair.split("p", &p, &names(&["a", "b", "c"]), 4);
        assert_eq!(split, [("b".to_string(), 2), ("c".to_string(), 2)]);
    }

    #[test]
    fn idle_time_earns_no_credit() {
        let p = pool(&[("flood", 1), ("trickle", 1)]);
        let fair = FairShare::default();
        // The flood alone for a long time.
        for _ in 0..1000 {
            fair.split("p", &p, &names(&["flood"]), 10);
            fair.served("p", &p, "flood", 10);
        }
        // The trickle comes back: it shares from now on, it does not take 10,000 leases first.
        let split = fair.split("p", &p, &names(&["flood", "trickle"]), 10);
        assert_eq!(
            split,
            [("flood".to_string(), 5), ("trickle".to_string(), 5)],
            "{split:?}"
        );
    }

    #[test]
    fn bad_pools_are_refused() {
        assert!(Pool::new(vec![], None).is_err());
        assert!(Pool::new(names(&["a b"]), None).is_err());
        let too_many = (0..=MAX_POOL_TENANTS).map(|i| format!("t{i}")).collect();
        assert!(Pool::new(too_many, None).is_err());
        let stray = Some([("c".to_string(), 2)].into_iter().collect());
        assert!(Pool::new(names(&["a", "b"]), stray).is_err());
        let zero = Some([("a".to_string(), 0)].into_iter().collect());
        assert!(Pool::new(names(&["a", "b"]), zero).is_err());
        let p = Pool::new(names(&["b", "a", "b"]), None).expect("duplicates are one");
        assert_eq!(p.tenants(), ["a", "b"]);
    }
}
