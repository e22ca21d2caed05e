//! Database outages, logged once per episode: the first request that finds the database
//! unavailable logs a WARN, the ones after it only at DEBUG, and the first success after it an
//! INFO with how many requests were answered 503 meanwhile. An outage of a busy coordinator
//! used to write one ERROR per request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static IN_OUTAGE: AtomicBool = AtomicBool::new(false);
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// A request found the database unavailable (it is answered 503).
pub fn unavailable(detail: &str) {
    REFUSED.fetch_add(1, Ordering::Relaxed);
    if IN_OUTAGE.swap(true, Ordering::AcqRel) {
        tracing::debug!(%detail, "database unavailable");
    } else {
        tracing::warn!(
            %detail,
            "database unavailable: answering 503 until it is back (further failures are logged at DEBUG)"
        );
    }
}

/// A request that needed the database succeeded: ends an outage episode if one was running.
pub fn reachable() {
    // A plain load first: the common case (no outage) costs no write to shared memory.
    if IN_OUTAGE.load(Ordering::Relaxed) && IN_OUTAGE.swap(false, Ordering::AcqRel) {
        let refused = REFUSED.swap(0, Ordering::Relaxed);
        tracing::info!(refused_requests = refused, "database reachable again");
    }
}
