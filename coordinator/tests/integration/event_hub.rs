//! A listener that stops reading while the ledger grows past the live buffer gets one `resync`
//! marker and then every event exactly once, from the database; other listeners are unaffected.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use leasehold_coordinator::events::{Delivery, EventHub, LISTENER_BUFFER, Listener};
use leasehold_coordinator::store::{EventFilter, Store};
use leasehold_coordinator::validate;
use leasehold_proto::NewJob;
use serde_json::json;

async fn enqueue(store: &Arc<dyn Store>, n: usize) {
    let now = Utc::now();
    let rows: Vec<_> = (0..n)
        .map(|i| {
            let job: NewJob =
                serde_json::from_value(json!({"queue": "flood", "kind": "k", "payload": {"i": i}}))
                    .unwrap();
            validate::new_job(job, "default", None, now).unwrap()
        })
        .collect();
    store.enqueue(now, rows).await.unwrap();
}

async fn next(l: &mut Listener) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), l.next())
        .await
        .expect("a delivery")
        .unwrap()
}

async fn slow_listener_resyncs_without_loss(store: Arc<dyn Store>) {
    let (_tx, shutdown) = tokio::sync::watch::channel(false);
    let hub = EventHub::start(store.clone(), shutdown);
    let filter = EventFilter {
        tenant: Some("default".into()),
        ..Default::default()
    };
    let mut slow = Listener::new(store.clone(), hub.clone(), filter.clone());
    let mut fast = Listener::new(store.clone(), hub.clone(), filter);
    // Both are live: each has seen the first event.
    enqueue(&store, 1).await;
    assert!(matches!(next(&mut slow).await, Delivery::Event(_)));
    assert!(matches!(next(&mut fast).await, Delivery::Event(_)));
    // Flood past the live buffer; the fast listener keeps reading, the slow one does not.
    let total = LISTENER_BUFFER + 476; // 1500: five batches of 300
    let producer = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..5 {
                enqueue(&store, 300).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut fast_ids = Vec::new();
    while fast_ids.len() < total {
        match next(&mut fast).await {
            Delivery::Event(e) => fast_ids.push(e.id),
            Delivery::Resync { .. } => {}
        }
    }
    producer.await.unwrap();
    let mut slow_ids = Vec::new();
    let mut resyncs = 0;
    while slow_ids.len() < total {
        match next(&mut slow).await {
            Delivery::Event(e) => slow_ids.push(e.id),
            Delivery::Resync { .. } => resyncs += 1,
        }
    }
    assert_eq!(resyncs, 1, "the slow listener was told once");
    assert_eq!(
        slow_ids, fast_ids,
        "same events, same order, none lost or repeated"
    );
    assert!(slow_ids.windows(2).all(|w| w[0] < w[1]));
}

on_both_backends!(slow_listener_resyncs_without_loss);
