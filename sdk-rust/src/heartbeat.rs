//! The coalesced heartbeat: one request per interval (a third of the lease TTL) for every
//! lease the worker holds, carrying the latest progress and checkpoint of each. Between beats
//! a watchdog cancels jobs whose lease deadline passes on the monotonic clock — the coordinator
//! was unreachable for too long, so the lease must be presumed gone — and jobs whose run time
//! (the lease's timeout) is running out, reporting a `timeout` failure for them.

use std::sync::Arc;

use tokio::time::Instant;

use crate::engine::Engine;

/// Most leases in one heartbeat request (the coordinator's cap).
const MAX_ITEMS: usize = 1000;

pub(crate) async fn run(core: Arc<Engine>) {
    let interval = core.cfg.heartbeat_interval();
    // An answer later than half a TTL is useless for extending anything.
    let timeout = core.cfg.lease_ttl / 2;
    let mut connections = core.link.connections();
    let mut next_beat = Instant::now() + interval;
    loop {
        let earliest = core.expire_overdue(Instant::now());
        let wake = earliest.map_or(next_beat, |d| d.min(next_beat));
        tokio::select! {
            () = core.stop.cancelled() => return,
            () = tokio::time::sleep_until(wake) => {}
            // A lease with a timeout: its limits may come before `wake`.
            () = core.watchdog.notified() => continue,
            // A new connection: beat at once, the leases may have gone without one for a while.
            changed = connections.changed() => {
                if changed.is_err() {
                    return;
                }
                next_beat = Instant::now();
            }
        }
        let now = Instant::now();
        if now < next_beat {
            continue;
        }
        next_beat = now + interval;
        beat(&core, timeout).await;
    }
}

/// Sends one round of heartbeats (in chunks of 1000).
pub(crate) async fn beat(core: &Engine, timeout: std::time::Duration) {
    let now = Instant::now();
    let items = core.heartbeat_items(now, None);
    for chunk in items.chunks(MAX_ITEMS) {
        send(core, chunk, timeout).await;
    }
}

/// Sends heartbeats for `ids` only (before a failure or release of those jobs). Returns whether
/// the coordinator answered.
pub(crate) async fn beat_for(
    core: &Engine,
    ids: &[uuid::Uuid],
    timeout: std::time::Duration,
) -> bool {
    let items = core.heartbeat_items(Instant::now(), Some(ids));
    let mut ok = true;
    for chunk in items.chunks(MAX_ITEMS) {
        ok &= send(core, chunk, timeout).await;
    }
    ok
}

async fn send(
    core: &Engine,
    chunk: &[crate::bookkeeping::SentItem],
    timeout: std::time::Duration,
) -> bool {
    let sent_at = Instant::now();
    let items = chunk.iter().map(|s| s.item.clone()).collect();
    match core.send_heartbeat(items, timeout).await {
        Ok(results) => {
            core.apply_heartbeat(chunk, &results, sent_at);
            true
        }
        Err(err) => {
            tracing::warn!(error = %err, leases = chunk.len(), "heartbeat failed");
            false
        }
    }
}
