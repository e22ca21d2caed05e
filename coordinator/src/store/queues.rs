//! Queue listings, shared by both stores so that the two agree on which queues exist.

use leasehold_proto::{JobState, QueueInfo};

use super::{StoreError, StoreResult};

/// Folds `(queue, state, count)` rows and the rows of the `queues` table (paused flag,
/// settings) into [`QueueInfo`]s: a queue exists once it has jobs or a row of its own.
#[derive(Debug, Default)]
pub(crate) struct QueueAccumulator {
    queues: std::collections::BTreeMap<String, QueueInfo>,
}

impl QueueAccumulator {
    fn entry(&mut self, name: String) -> &mut QueueInfo {
        self.queues
            .entry(name.clone())
            .or_insert_with(|| QueueInfo {
                name,
                paused: false,
                default_timeout_ms: None,
                depth: Default::default(),
            })
    }

    pub(crate) fn add_count(&mut self, queue: String, state: &str, n: i64) {
        let depth = &mut self.entry(queue).depth;
        match JobState::parse(state) {
            Some(JobState::Blocked) => depth.blocked += n,
            Some(JobState::Queued) => depth.queued += n,
            Some(JobState::Leased) => depth.leased += n,
            Some(JobState::Succeeded) => depth.succeeded += n,
            Some(JobState::Dead) => depth.dead += n,
            Some(JobState::Cancelled) => depth.cancelled += n,
            None => {}
        }
    }

    /// A row of the `queues` table: its paused flag and settings.
    pub(crate) fn set_row(&mut self, queue: String, paused: bool, default_timeout_ms: Option<i64>) {
        let info = self.entry(queue);
        info.paused = paused;
        info.default_timeout_ms = default_timeout_ms.and_then(|ms| u64::try_from(ms).ok());
    }

    pub(crate) fn finish(self) -> Vec<QueueInfo> {
        self.queues.into_values().collect()
    }
}

/// The one queue named `name` out of a listing that must contain it.
pub(crate) fn pick_queue(queues: Vec<QueueInfo>, name: &str) -> StoreResult<QueueInfo> {
    queues
        .into_iter()
        .find(|q| q.name == name)
        .ok_or_else(|| StoreError::Internal(format!("queue {name} vanished")))
}
