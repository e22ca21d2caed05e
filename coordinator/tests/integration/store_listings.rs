//! Store suite, listings: queue pause and depths, job listing pages and filters, the settled
//! event tail. Every body runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;

use chrono::Utc;
use common::rows::{claim_params, new_job};
use leasehold_coordinator::store::PauseQueue;
use leasehold_coordinator::store::{JobFilter, NewJobRow, Store};
use leasehold_proto::JobState;

async fn paused_queue_grants_nothing(store: Arc<dyn Store>) {
    let now = Utc::now();
    store
        .enqueue(now, vec![new_job("q", "k", now), new_job("q", "k", now)])
        .await
        .unwrap();
    let info = store
        .set_queue_paused(PauseQueue {
            now,
            tenant: "default".into(),
            queue: "q".into(),
            paused: true,
        })
        .await
        .unwrap();
    assert!(info.paused);
    assert_eq!(info.depth.queued, 2);
    assert!(
        store
            .claim(now, &claim_params("q", 5, 30_000))
            .await
            .unwrap()
            .leases
            .is_empty()
    );
    store
        .set_queue_paused(PauseQueue {
            now,
            tenant: "default".into(),
            queue: "q".into(),
            paused: false,
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .claim(now, &claim_params("q", 5, 30_000))
            .await
            .unwrap()
            .leases
            .len(),
        2
    );
    let queues = store.queues("default").await.unwrap();
    assert_eq!(queues.len(), 1);
    assert_eq!((queues[0].depth.leased, queues[0].paused), (2, false));
    // Pausing a queue with no jobs yet is allowed (prepare before deploying producers).
    let empty = store
        .set_queue_paused(PauseQueue {
            now,
            tenant: "default".into(),
            queue: "later".into(),
            paused: true,
        })
        .await
        .unwrap();
    assert!(empty.paused);
}

async fn list_is_newest_first_with_filters(store: Arc<dyn Store>) {
    let now = Utc::now();
    let mut ids = Vec::new();
    for i in 0..7 {
        let row = new_job(if i % 2 == 0 { "even" } else { "odd" }, "k", now);
        ids.push(store.enqueue(now, vec![row]).await.unwrap()[0].job.id);
    }
    let page1 = store
        .list_jobs(&JobFilter {
            tenant: "default".into(),
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page1.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[6], ids[5], ids[4]]
    );
    let page2 = store
        .list_jobs(&JobFilter {
            tenant: "default".into(),
            limit: 3,
            before: Some(ids[4]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page2.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[3], ids[2], ids[1]]
    );
    let evens = store
        .list_jobs(&JobFilter {
            tenant: "default".into(),
            queue: Some("even".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(evens.len(), 4);
    let leased = store
        .list_jobs(&JobFilter {
            tenant: "default".into(),
            state: Some(JobState::Leased),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(leased.is_empty());
    let other = store
        .list_jobs(&JobFilter {
            tenant: "nobody".into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(other.is_empty(), "tenants are isolated");
}

/// The live tail's cursor moves exactly as far as a settled read would reach.
async fn settled_event_end_matches_a_settled_read(store: Arc<dyn Store>) {
    let now = Utc::now();
    let start = store.last_event_id().await.unwrap();
    let rows: Vec<NewJobRow> = (0..5).map(|_| new_job("se", "k", now)).collect();
    store.enqueue(now, rows).await.unwrap();
    let filter = |limit| leasehold_coordinator::store::EventFilter {
        after: start,
        limit,
        settled: true,
        ..Default::default()
    };
    // On PostgreSQL an event is settled once every transaction older than its own has ended,
    // in the whole cluster (other tests' included); from then on it stays settled.
    let mut all = Vec::new();
    for _ in 0..200 {
        all = store.list_events(&filter(1000)).await.unwrap();
        if all.len() == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(all.len(), 5, "one enqueued event per job");
    for limit in [1, 3, 5, 1000] {
        let read = store.list_events(&filter(limit)).await.unwrap();
        assert_eq!(
            store.settled_event_end(start, limit).await.unwrap(),
            read.last().unwrap().id,
            "limit {limit}"
        );
    }
    let end = all.last().unwrap().id;
    assert_eq!(store.settled_event_end(end, 10).await.unwrap(), end);
}

on_both_backends!(
    paused_queue_grants_nothing,
    list_is_newest_first_with_filters,
    settled_event_end_matches_a_settled_read,
);
