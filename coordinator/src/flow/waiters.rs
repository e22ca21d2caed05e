//! Claimers waiting for a concurrency slot. A claim held back by a concurrency limit marks its
//! tenant here; an outcome of that tenant then wakes the parked claimers, so a freed slot is
//! taken at once. Other replicas' outcomes do not reach this process: a claimer held back by
//! concurrency also asks again every [`SLOT_POLL`] (see docs/flow-control.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long a tenant stays marked after its last held-back claim (a long poll's longest wait).
const MARK: Duration = Duration::from_secs(60);
/// How often a claimer held back by a concurrency limit asks again at the latest.
pub const SLOT_POLL: Duration = Duration::from_secs(1);
/// Marks kept before the stale ones are dropped.
const MAX_MARKS: usize = 10_000;

/// Tenants whose claimers wait for a concurrency slot.
#[derive(Debug, Clone, Default)]
pub struct SlotWaiters(Arc<Mutex<HashMap<String, Instant>>>);

impl SlotWaiters {
    /// A claim of `tenant` was held back by a concurrency limit.
    pub fn waiting(&self, tenant: &str) {
        let now = Instant::now();
        let mut marks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if marks.len() >= MAX_MARKS {
            marks.retain(|_, at| now.duration_since(*at) < MARK);
        }
        marks.insert(tenant.to_owned(), now);
    }

    /// Whether an ended lease of `tenant` may let a waiting claimer in.
    pub fn anyone_waiting(&self, tenant: &str) -> bool {
        let marks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        marks.get(tenant).is_some_and(|at| at.elapsed() < MARK)
    }
}
