//! The wake-up signal for claimers waiting for work. A claimer subscribes *before* it queries,
//! so a job made ready between its empty query and its wait still wakes it (no lost wake-up, no
//! sleep loop). The stores bump it after commits that made jobs ready; `crate::notify` relays
//! other replicas' PostgreSQL notifications into it.

use std::sync::Arc;

use tokio::sync::watch;

/// A generation counter bumped whenever work may have become ready.
#[derive(Debug, Clone)]
pub struct ReadySignal {
    tx: Arc<watch::Sender<u64>>,
}

impl Default for ReadySignal {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadySignal {
    /// A fresh signal.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(0).0),
        }
    }

    /// Wakes every waiting claimer (they re-query; spurious wake-ups are harmless).
    pub fn notify(&self) {
        self.tx
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// A receiver that sees every bump after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}
