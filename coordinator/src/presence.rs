//! Which workers a tenant has (`GET /v1/workers`): each claim, heartbeat and session frame is
//! a sighting, written to the store (`crate::store::workers`) at most every [`WRITE_EVERY`]
//! per worker by this coordinator, on its own task (a claim never waits for it). A session's
//! end is written at once. A sighting not due costs a hash and a map look-up: nothing is
//! built or copied for it.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
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

/// When each worker's sightings were last written by this coordinator, by a hash of its
/// tenant, id and whether they are heartbeats (two workers sharing a hash share a throttle:
/// one of them is written a few seconds late at worst).
#[derive(Debug, Clone, Default)]
pub struct Presence(Arc<Mutex<HashMap<u64, Instant>>>);

impl Presence {
    /// Whether a sighting of this worker is due to be written now (and if so, it counts as
    /// written).
    pub fn due(&self, tenant: &str, worker_id: &str, heartbeat: bool) -> bool {
        let mut h = DefaultHasher::new();
        (tenant, worker_id, heartbeat).hash(&mut h);
        let key = h.finish();
        let mut written = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if written
            .get(&key)
            .is_some_and(|at| at.elapsed() < WRITE_EVERY)
        {
            return false;
        }
        if written.len() >= MAX_REMEMBERED {
            written.retain(|_, at| at.elapsed() < WRITE_EVERY);
        }
        written.insert(key, Instant::now());
        true
    }

    /// Writes a sighting at `now` on its own task.
    pub fn write(store: &Arc<dyn Store>, now: DateTime<Utc>, seen: WorkerSeen) {
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.worker_seen(now, &seen).await {
                tracing::debug!(%err, "could not record a worker's sighting");
            }
        });
    }
}
