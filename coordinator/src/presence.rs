//! Which workers a tenant has (`GET /v1/workers`): each claim, heartbeat and session frame is
//! a sighting, written to the store (`crate::store::workers`) at most every [`WRITE_EVERY`]
//! per worker by this coordinator, on its own task (a claim never waits for it). A session's
//! end is written at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::store::{Store, WorkerSeen};

/// How often one worker's sightings are written, at most.
pub const WRITE_EVERY: Duration = Duration::from_secs(5);
/// A worker seen this recently (and whose session did not close since) is `connected`.
pub const CONNECTED_WITHIN: Duration = Duration::from_secs(60);
/// Workers whose last write is remembered before the old ones are dropped.
const MAX_REMEMBERED: usize = 100_000;

/// Whose sightings are throttled together: a tenant's worker, its heartbeats apart.
type Sighting = (String, String, bool);

/// When each worker's sighting was last written by this coordinator.
#[derive(Debug, Clone, Default)]
pub struct Presence(Arc<Mutex<HashMap<Sighting, Instant>>>);

impl Presence {
    /// Records a sighting at `now`, unless one of this worker (a heartbeat, or not) was written
    /// within [`WRITE_EVERY`] and this one is not a session's end.
    pub fn seen(&self, store: &Arc<dyn Store>, now: DateTime<Utc>, seen: WorkerSeen) {
        let key = (seen.tenant.clone(), seen.worker_id.clone(), seen.heartbeat);
        {
            let mut written = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = written
                .get(&key)
                .is_some_and(|at| at.elapsed() < WRITE_EVERY);
            if fresh && !seen.closed {
                return;
            }
            if written.len() >= MAX_REMEMBERED {
                written.retain(|_, at| at.elapsed() < WRITE_EVERY);
            }
            written.insert(key, Instant::now());
        }
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.worker_seen(now, &seen).await {
                tracing::debug!(%err, "could not record a worker's sighting");
            }
        });
    }
}
