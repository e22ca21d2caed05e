//! Connections kept out of the pool for the hot statements: single-job enqueue groups
//! (`enqueue.rs`), claims, outcome batches and worker sessions' turns (`hot.rs`), which follow
//! each other back to back.
//!
//! A pooled connection costs each use a hand-out and, on its return, a round trip: sqlx pings
//! every connection the pool takes back (`PoolConnection::return_to_pool` in sqlx 0.8), and its
//! idle connections are handed out oldest first, so consecutive transactions went round all of
//! the pool's backends, their caches cold. Kept connections are handed out most recently used
//! first and go back without a ping: under 16 clients of single-job enqueues PostgreSQL spent
//! 12–25% less CPU per enqueue (docs/postgres-hot-path.md §16). They are checked as the pool
//! checks its own: pinged after [`PING_IDLE`] of rest, dropped after any error, and replaced
//! after [`KEEP_AT_MOST`] (as the pool's `max_lifetime` replaces its own).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};

use super::PING_IDLE;
use crate::store::StoreResult;

/// How long a connection is kept before it is closed and another taken.
const KEEP_AT_MOST: Duration = Duration::from_secs(30 * 60);

/// A kept connection.
#[derive(Debug)]
struct Held {
    conn: PgConnection,
    /// When it was taken from the pool.
    since: Instant,
    /// When it was last used.
    used: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Kept connections not in use, the most recently used last.
    idle: Vec<Held>,
    /// Kept connections, in use or not.
    kept: usize,
}

/// Up to `most` connections taken out of the pool.
#[derive(Debug)]
pub(super) struct KeptConnections {
    state: Mutex<State>,
    most: usize,
}

impl KeptConnections {
    /// Keeps at most `most` connections.
    pub(super) fn new(most: usize) -> Self {
        Self {
            state: Mutex::default(),
            most,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle kept connection that is still fit for use.
    async fn take(&self) -> Option<Lent<'_>> {
        loop {
            let mut lent = Lent {
                owner: self,
                held: Some(self.lock().idle.pop()?),
            };
            let held = lent.held.as_mut()?;
            let fit = held.since.elapsed() < KEEP_AT_MOST
                && (held.used.elapsed() < PING_IDLE || held.conn.ping().await.is_ok());
            if fit {
                return Some(lent);
            }
        }
    }

    /// Runs `work` on a kept connection, or on one of `pool`'s (kept afterwards when fewer than
    /// `most` are). A connection whose work failed, or was cancelled, is not used again: its
    /// state is unknown (a statement cut off, a broken socket).
    pub(super) async fn with<R>(
        &self,
        pool: &PgPool,
        work: impl AsyncFnOnce(&mut PgConnection) -> StoreResult<R>,
    ) -> StoreResult<R> {
        if let Some(mut lent) = self.take().await
            && let Some(held) = lent.held.as_mut()
        {
            let result = work(&mut held.conn).await;
            if result.is_ok() {
                lent.give_back();
            }
            return result;
        }
        let mut conn: PoolConnection<Postgres> = pool.acquire().await?;
        let result = work(&mut conn).await;
        if result.is_ok() {
            let mut state = self.lock();
            if state.kept < self.most {
                state.kept += 1;
                let now = Instant::now();
                state.idle.push(Held {
                    conn: conn.detach(),
                    since: now,
                    used: now,
                });
            }
        }
        // Otherwise `conn` goes back to the pool.
        result
    }
}

/// A kept connection in use: back among the idle ones by [`Lent::give_back`], else closed and
/// no longer counted when dropped (after an error, or when its caller was cancelled).
struct Lent<'a> {
    owner: &'a KeptConnections,
    held: Option<Held>,
}

impl Lent<'_> {
    fn give_back(mut self) {
        if let Some(mut held) = self.held.take() {
            held.used = Instant::now();
            self.owner.lock().idle.push(held);
        }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if self.held.take().is_some() {
            self.owner.lock().kept -= 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn pool(test: &str) -> Option<PgPool> {
        let base = leasehold_testkit::postgres_url(test)?;
        Some(PgPool::connect(&base).await.unwrap())
    }

    fn counts(kept: &KeptConnections) -> (usize, usize) {
        let state = kept.lock();
        (state.idle.len(), state.kept)
    }

    /// Connections are kept up to the bound, the most recently used is lent first, and one
    /// whose work failed or was cancelled is closed and no longer counted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeps_at_most_its_bound_and_forgets_failed_and_cancelled_work() {
        let Some(pool) = pool("postgres::kept").await else {
            return;
        };
        let kept = KeptConnections::new(2);
        let pid = async |conn: &mut PgConnection| -> StoreResult<i32> {
            Ok(sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(conn)
                .await?)
        };
        // Three at once: two are kept afterwards, the third goes back to the pool.
        let slow = async |conn: &mut PgConnection| -> StoreResult<i32> {
            sqlx::query("SELECT pg_sleep(0.2)")
                .execute(&mut *conn)
                .await?;
            pid(conn).await
        };
        let (a, b, c) = tokio::join!(
            kept.with(&pool, slow),
            kept.with(&pool, slow),
            kept.with(&pool, slow)
        );
        let mut three = [a.unwrap(), b.unwrap(), c.unwrap()];
        three.sort();
        assert_eq!(counts(&kept), (2, 2));
        // The most recently used first, again and again.
        let first = kept.with(&pool, pid).await.unwrap();
        assert_eq!(kept.with(&pool, pid).await.unwrap(), first);
        assert!(three.binary_search(&first).is_ok());
        // Failed work: that connection is closed and not counted.
        let failed = kept
            .with(&pool, async |conn: &mut PgConnection| -> StoreResult<()> {
                sqlx::query("SELECT 1/0").execute(conn).await?;
                Ok(())
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(counts(&kept), (1, 1));
        // Cancelled work: the same.
        let cancelled = tokio::time::timeout(
            Duration::from_millis(50),
            kept.with(&pool, async |conn: &mut PgConnection| -> StoreResult<()> {
                sqlx::query("SELECT pg_sleep(5)").execute(conn).await?;
                Ok(())
            }),
        )
        .await;
        assert!(cancelled.is_err());
        assert_eq!(counts(&kept), (0, 0));
        // And connections are kept again.
        kept.with(&pool, pid).await.unwrap();
        assert_eq!(counts(&kept), (1, 1));
    }
}
