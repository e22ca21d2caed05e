//! What is known of a tenant's limits, cached for a second per coordinator: whether its claims
//! are gated (it has limits or a quota `max_leased`) and whether its outcomes feed limits
//! (circuit breakers, adaptive rates). Every claim and every recorded outcome asks; a tenant
//! without limits must not pay a query for them each time (W1 on PostgreSQL, no limits: 0.90×
//! with a statement per claim that asked, 2026-12-05).
//!
//! A change made on this coordinator applies at once (the routes that change limits and quotas
//! forget the tenant); one made on another replica, within a second: a limit set there is
//! enforced here from the next claim after that. Once a tenant is known to have limits, every
//! claim of it reads them inside its transaction, so what is enforced is always what is stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::{Store, StoreResult};

/// How long an answer is kept.
const FRESH: Duration = Duration::from_secs(1);
/// Answers kept before the stale ones are dropped.
const MAX_KEPT: usize = 10_000;

/// What the cache knows of one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// Its claims go through the gate: it has limits, or a quota `max_leased`.
    pub gated: bool,
    /// Its outcomes feed limits: a breaker or an adaptive rate.
    pub fed_by_outcomes: bool,
    /// Its leases are counted: a concurrency limit, or a quota `max_leased`. An ended lease
    /// may let a waiting claimer in.
    pub counts_slots: bool,
}

/// The cache.
#[derive(Debug, Clone, Default)]
pub struct Catalog(Arc<Mutex<HashMap<String, (Instant, Facts)>>>);

impl Catalog {
    /// What is known of `tenant` (from the cache when fresh).
    pub async fn facts(&self, store: &dyn Store, tenant: &str) -> StoreResult<Facts> {
        if let Some((at, facts)) = self.lock().get(tenant).copied()
            && at.elapsed() < FRESH
        {
            return Ok(facts);
        }
        let limits = store.limits(tenant).await?;
        let max_leased = store
            .quota(tenant)
            .await?
            .is_some_and(|q| q.max_leased.is_some());
        let facts = Facts {
            gated: !limits.is_empty() || max_leased,
            fed_by_outcomes: limits
                .iter()
                .any(|l| l.spec.breaker.is_some() || l.spec.adaptive),
            counts_slots: max_leased || limits.iter().any(|l| l.spec.concurrency.is_some()),
        };
        let mut kept = self.lock();
        if kept.len() >= MAX_KEPT {
            kept.retain(|_, (at, _)| at.elapsed() < FRESH);
        }
        kept.insert(tenant.to_owned(), (Instant::now(), facts));
        Ok(facts)
    }

    /// Forgets what is known of `tenant` (its limits or quota changed here).
    pub fn forget(&self, tenant: &str) {
        self.lock().remove(tenant);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Facts)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
