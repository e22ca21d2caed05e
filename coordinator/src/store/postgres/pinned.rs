//! A connection kept out of the pool for one hot caller: the group committer of single-job
//! enqueues (`enqueue.rs`, `enqueue_group`), whose groups follow each other back to back.
//!
//! A pooled connection costs each use a hand-out and, on its return, a round trip: sqlx pings
//! every connection the pool takes back (`PoolConnection::return_to_pool` in sqlx 0.8), and
//! the group went to whichever of the pool's backends was free, its caches cold. Kept, the one
//! connection skips both and its backend stays warm: under 16 clients of single-job enqueues
//! PostgreSQL spent 12–25% less CPU per enqueue (docs/postgres-hot-path.md §16). It is checked
//! as the pool checks its own: pinged after [`PING_IDLE`] of rest, and dropped after any error
//! (the next use takes a fresh one from the pool).

use std::time::Instant;

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Mutex;

use super::PING_IDLE;
use crate::store::StoreResult;

/// The connection and when it was last used.
#[derive(Debug)]
struct Held {
    conn: PgConnection,
    used: Instant,
}

/// One connection taken out of the pool, for one caller at a time.
#[derive(Debug, Default)]
pub(super) struct Pinned {
    held: Mutex<Option<Held>>,
}

impl Pinned {
    /// Runs `work` on the kept connection (taken from `pool` the first time, and after an
    /// error). Callers wait for each other: it is meant for one.
    pub(super) async fn with<R>(
        &self,
        pool: &PgPool,
        work: impl AsyncFnOnce(&mut PgConnection) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let mut held = self.held.lock().await;
        if let Some(h) = held.as_mut()
            && h.used.elapsed() >= PING_IDLE
            && h.conn.ping().await.is_err()
        {
            *held = None;
        }
        let h = match held.as_mut() {
            Some(h) => h,
            None => held.insert(Held {
                conn: pool.acquire().await?.detach(),
                used: Instant::now(),
            }),
        };
        let result = work(&mut h.conn).await;
        h.used = Instant::now();
        if result.is_err() {
            // Its state is unknown (a statement cut off, a broken socket): not used again.
            *held = None;
        }
        result
    }
}
