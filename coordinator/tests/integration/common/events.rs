//! The event log as the store suites check it.

use std::sync::Arc;

use leasehold_coordinator::store::Store;

/// The kinds of `job`'s events in order, after checking that event ids strictly increase.
pub async fn event_types(store: &Arc<dyn Store>, job: uuid::Uuid) -> Vec<String> {
    let events = store.events_after(0, 10_000).await.unwrap();
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "event ids strictly increase: {ids:?}"
    );
    events
        .into_iter()
        .filter(|e| e.job_id == Some(job))
        .map(|e| e.kind)
        .collect()
}
