//! Which tenants have limits that outcomes feed (circuit breakers, adaptive rates), cached for
//! a second: every recorded outcome asks, and a tenant without them must not pay a query per
//! outcome for them. A breaker set on another
//! replica starts counting here within a second; one set here, at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::{Store, StoreResult};

/// How long an answer is kept.
const FRESH: Duration = Duration::from_secs(1);
/// Answers kept before the stale ones are dropped.
const MAX_KEPT: usize = 10_000;

/// The cache.
#[derive(Debug, Clone, Default)]
pub struct Catalog(Arc<Mutex<HashMap<String, (Instant, bool)>>>);

impl Catalog {
    /// Whether `tenant` has a limit that outcomes feed: a breaker or an adaptive rate (from the
    /// cache when fresh).
    pub async fn fed_by_outcomes(&self, store: &dyn Store, tenant: &str) -> StoreResult<bool> {
        if let Some((at, answer)) = self.lock().get(tenant).copied()
            && at.elapsed() < FRESH
        {
            return Ok(answer);
        }
        let answer = store
            .limits(tenant)
            .await?
            .iter()
            .any(|l| l.spec.breaker.is_some() || l.spec.adaptive);
        let mut kept = self.lock();
        if kept.len() >= MAX_KEPT {
            kept.retain(|_, (at, _)| at.elapsed() < FRESH);
        }
        kept.insert(tenant.to_owned(), (Instant::now(), answer));
        Ok(answer)
    }

    /// Forgets what is known of `tenant` (its limits changed here).
    pub fn forget(&self, tenant: &str) {
        self.lock().remove(tenant);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, bool)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
