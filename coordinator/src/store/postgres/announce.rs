//! Ready-channel announcements: the keys and the statement that announce queues, and for
//! single-job enqueues at most one announcement per queue and window
//! (docs/postgres-hot-path.md §11).
//!
//! A transaction that ran `pg_notify` takes, as it commits, a cluster-wide lock that it holds
//! until its commit is durable: the commits of notifying transactions follow one another, each
//! with its own WAL flush, whatever group commit would have shared. One announcement per
//! single-job enqueue made that lock the bound of concurrent enqueues, and each one also woke
//! every replica's listener. The local claimers never needed it (the enqueue's handler wakes
//! them); it is for the other replicas', and a claimer woken by it claims whatever is ready, not
//! one job. So an enqueue statement announces its queue only when this store has not done so
//! for a window (10 ms unless [`super::PostgresStore::with_announce_window`] says otherwise); a
//! queue it leaves unannounced is owed, and announced on its own, after the enqueue committed,
//! when the window ends. A replica's parked claimer hears of every job at most a window later
//! than if each enqueue had announced it; without any announcement it would still get the job
//! at its wake-up poll (docs/scaling.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

use super::READY_CHANNEL;

/// Shortest time between two announcements of one queue by one store, by default.
pub(super) const WINDOW: Duration = Duration::from_millis(10);

/// Which queues this store announced when, and which it owes an announcement.
#[derive(Debug)]
pub(super) struct Announcer {
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// By `tenant/queue`: when this store last announced it.
    last: HashMap<String, Instant>,
    /// Queues whose enqueues committed unannounced.
    owed: Vec<String>,
    /// Whether a task is waiting to announce `owed`.
    flushing: bool,
}

impl Announcer {
    /// Announces each queue at most once per `window`.
    pub(super) fn new(window: Duration) -> Self {
        Self {
            window,
            state: Mutex::default(),
        }
    }

    /// Of the queues (`tenant/queue`) a statement is about to write, those it should announce
    /// itself: the ones not announced within the window. They count as announced from now.
    pub(super) fn take(&self, keys: &[String]) -> Vec<String> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for key in keys {
            match state.last.get_mut(key) {
                Some(at) if now.duration_since(*at) < self.window => {}
                Some(at) => {
                    *at = now;
                    out.push(key.clone());
                }
                None => {
                    state.last.insert(key.clone(), now);
                    out.push(key.clone());
                }
            }
        }
        // Forget queues quiet for a while, so that the map holds only the busy ones.
        if state.last.len() > 1024 {
            state
                .last
                .retain(|_, at| now.duration_since(*at) < self.window * 100);
        }
        out
    }

    /// Records that enqueues committed jobs to the queues `written`, having announced those in
    /// `announced` (what [`Self::take`] gave them); the others are owed, and announced once
    /// their window ends, by one statement (`pool`, tagged with `origin`).
    pub(super) fn owe(
        self: &Arc<Self>,
        written: Vec<String>,
        announced: &[String],
        pool: &PgPool,
        origin: &str,
    ) {
        let keys: Vec<String> = written
            .into_iter()
            .filter(|k| !announced.contains(k))
            .collect();
        if keys.is_empty() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            if !state.owed.contains(&key) {
                state.owed.push(key);
            }
        }
        if state.flushing {
            return;
        }
        state.flushing = true;
        let (me, pool, origin) = (Arc::clone(self), pool.clone(), origin.to_owned());
        tokio::spawn(async move { me.flush(pool, origin).await });
    }

    /// Announces what is owed as each queue's window ends, until nothing is.
    async fn flush(self: Arc<Self>, pool: PgPool, origin: String) {
        loop {
            let due = {
                let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state
                    .owed
                    .iter()
                    .filter_map(|k| state.last.get(k))
                    .min()
                    .map(|at| *at + self.window)
            };
            if let Some(due) = due {
                tokio::time::sleep_until(due).await;
            }
            let keys = {
                let now = Instant::now();
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let state = &mut *state;
                let (ready, later): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut state.owed).into_iter().partition(|k| {
                        state
                            .last
                            .get(k)
                            .is_none_or(|at| now.duration_since(*at) >= self.window)
                    });
                state.owed = later;
                for k in &ready {
                    state.last.insert(k.clone(), now);
                }
                if ready.is_empty() && state.owed.is_empty() {
                    state.flushing = false;
                    return;
                }
                ready
            };
            if keys.is_empty() {
                continue;
            }
            // Lost only if the database is unreachable, when the listeners reconnect and wake
            // everyone anyway; the wake-up poll is behind them (docs/scaling.md).
            if let Err(err) = notify(&pool, &keys, &origin).await {
                tracing::debug!(%err, "announcing ready queues failed");
            }
        }
    }
}

/// The ready channel's key of a queue: `tenant/queue`.
pub(super) fn queue_key(tenant: &str, queue: &str) -> String {
    format!("{tenant}/{queue}")
}

/// The distinct [`queue_key`]s among `queues`.
pub(super) fn queue_keys<'a>(queues: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut keys: Vec<String> = queues
        .into_iter()
        .map(|(tenant, queue)| queue_key(tenant, queue))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Announces `keys` (see [`queue_key`]) on the ready channel, each payload ending with `origin`;
/// delivered when the statement's transaction commits.
pub(super) async fn notify<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    keys: &[String],
    origin: &str,
) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, k || $2) FROM unnest($3::text[]) AS k")
        .bind(READY_CHANNEL)
        .bind(origin)
        .bind(keys)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|k| (*k).to_owned()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn each_queue_is_announced_at_most_once_per_window() {
        let announcer = Announcer::new(Duration::from_millis(10));
        assert_eq!(
            announcer.take(&keys(&["t/a", "t/b"])),
            keys(&["t/a", "t/b"])
        );
        assert!(announcer.take(&keys(&["t/a", "t/b"])).is_empty());
        tokio::time::advance(Duration::from_millis(6)).await;
        // A queue of its own has a window of its own.
        assert_eq!(announcer.take(&keys(&["t/a", "t/c"])), keys(&["t/c"]));
        tokio::time::advance(Duration::from_millis(4)).await;
        assert_eq!(
            announcer.take(&keys(&["t/a", "t/b", "t/c"])),
            keys(&["t/a", "t/b"])
        );
    }
}
