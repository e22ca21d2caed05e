//! Idempotency keys that cannot hide a mistake: a reused key replays the first job only for the
//! same work (docs/ARCHITECTURE.md, "Idempotency keys that cannot hide a mistake").

use uuid::Uuid;

use leasehold_proto::Job;

use super::{Enqueued, NewJobRow, StoreError, StoreResult};

/// What an enqueue's reused idempotency key conflicts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyConflict {
    /// Position of the job in its enqueue request (0 for a single job).
    pub position: usize,
    /// The key.
    pub key: String,
    /// The job stored under it.
    pub existing: Uuid,
    /// What differs: `kind` and/or `payload` (compared by `inputs_hash`).
    pub differs: Vec<&'static str>,
}

/// The answer for `new`, whose idempotency key found `existing`: the earlier job, `replayed`,
/// when it is the same work (same kind and payload; the key's scope already fixes tenant and
/// queue), else an [`IdempotencyConflict`], so that a caller reusing a key by mistake learns
/// that its new work was not queued. Both stores call it inside the enqueue's transaction,
/// before committing, so a batch holding a conflict stores nothing.
pub(crate) fn replay_of(new: &NewJobRow, existing: Job, position: usize) -> StoreResult<Enqueued> {
    let mut differs = Vec::new();
    if existing.kind != new.kind {
        differs.push("kind");
    }
    if existing.inputs_hash != new.inputs_hash {
        differs.push("payload");
    }
    if !differs.is_empty() {
        return Err(StoreError::IdempotencyConflict(IdempotencyConflict {
            position,
            key: new.idempotency_key.clone().unwrap_or_default(),
            existing: existing.id,
            differs,
        }));
    }
    Ok(Enqueued {
        job: existing,
        replayed: true,
    })
}
