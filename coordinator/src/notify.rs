//! Wake-ups across replicas: on PostgreSQL a LISTEN connection turns `pg_notify` from any
//! replica into a local wake-up (`crate::ready`), so an enqueue on one replica wakes a claimer
//! waiting on another.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::ready::ReadySignal;
use crate::store::PostgresStore;

/// Relays PostgreSQL notifications into `signal` until `shutdown` turns true. Reconnects on its
/// own when the database goes away and comes back; every reconnect also bumps the signal, since
/// notifications sent while disconnected are lost.
pub fn spawn_pg_listener(
    store: &PostgresStore,
    signal: ReadySignal,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let pool = store.pool().clone();
    let store = store.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(mut l) => match l.listen(crate::store::READY_CHANNEL).await {
                    Ok(()) => l,
                    Err(err) => {
                        tracing::warn!(%err, "LISTEN failed; retrying");
                        if wait_or_shutdown(&mut shutdown, backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
                Err(err) => {
                    tracing::debug!(%err, "LISTEN connection unavailable; retrying");
                    if wait_or_shutdown(&mut shutdown, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            signal.notify();
            loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    msg = listener.try_recv() => match msg {
                        // Our own enqueue's echo: its handler has woken the local claimers.
                        Ok(Some(n)) if store.is_own_wakeup(n.payload()) => {}
                        Ok(Some(_)) => signal.notify(),
                        // Connection lost: the next try_recv reconnects; wake claimers now.
                        Ok(None) => signal.notify(),
                        Err(err) => {
                            tracing::debug!(%err, "LISTEN connection failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            if wait_or_shutdown(&mut shutdown, backoff).await {
                return;
            }
        }
    })
}

/// Sleeps for `d` unless shutdown comes first; returns true on shutdown.
async fn wait_or_shutdown(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = shutdown.changed() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
