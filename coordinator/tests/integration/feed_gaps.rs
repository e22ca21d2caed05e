//! A gap-free live feed on PostgreSQL. Event ids are taken before commit, so a lower id can
//! become visible after a higher one; the feed must never step over it. The interleaving from
//! the report: A takes its transaction id, B inserts event 3, A inserts event 4 and commits, B
//! commits — the feed delivers 1, 2, 3, 4, and a follower resuming after 2 sees 3. A rolled-back
//! id holds the feed only until its transaction is gone. And under concurrent writers the live
//! feed equals the ledger, id by id.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use leasehold_coordinator::store::{EventFilter, Store};
use serde_json::json;
use sqlx::{PgConnection, Row};

async fn insert_event(conn: &mut PgConnection, label: &str) -> i64 {
    sqlx::query(
        "INSERT INTO events (tenant, type, at, data) VALUES ('default', 'test', now(), \
         jsonb_build_object('label', $1::text)) RETURNING id",
    )
    .bind(label)
    .fetch_one(conn)
    .await
    .unwrap()
    .get("id")
}

async fn settled_ids(store: &Arc<dyn Store>, after: i64) -> Vec<i64> {
    store
        .list_events(&EventFilter {
            after,
            limit: 1000,
            settled: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_delivered_in_order() {
    let Some((store, pg)) = common::pg_store("feed_gaps::late_commit").await else {
        return;
    };
    let served = common::serve_with(store.clone(), |_| {}).await;
    let follower = reqwest::Client::new()
        .get(format!("{}/v1/events", served.url))
        .send()
        .await
        .unwrap();
    let mut live = common::SseReader::new(follower);
    let pool = pg.pool();
    let mut c = pool.acquire().await.unwrap();
    let e1 = insert_event(&mut c, "1").await;
    let e2 = insert_event(&mut c, "2").await;

    let mut a = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *a)
        .await
        .unwrap();
    let mut b = pool.begin().await.unwrap();
    let e3 = insert_event(&mut b, "3").await;
    let e4 = insert_event(&mut a, "4").await;
    assert!(e1 < e2 && e2 < e3 && e3 < e4);
    a.commit().await.unwrap();

    // 4 is visible, 3 is not yet: a settled read stops after 2, however long we ask.
    assert_eq!(settled_ids(&store, 0).await, vec![e1, e2]);
    assert_eq!(store.settled_event_end(0, 100).await.unwrap(), e2);
    tokio::time::sleep(Duration::from_millis(600)).await; // well past the hole watch's margin
    assert_eq!(settled_ids(&store, e2).await, Vec::<i64>::new());
    b.commit().await.unwrap();
    assert_eq!(settled_ids(&store, e2).await, vec![e3, e4]);

    // The live follower got every id, in order.
    let mut got = vec![];
    while got.len() < 4 {
        let ev = live
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("the live feed stopped after {got:?}"));
        if let Some(id) = ev.id.and_then(|i| i.parse::<i64>().ok()) {
            got.push(id);
        }
    }
    assert_eq!(got, vec![e1, e2, e3, e4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_id_holds_the_feed_only_until_its_transaction_is_gone() {
    let Some((store, pg)) = common::pg_store("feed_gaps::rollback").await else {
        return;
    };
    let pool = pg.pool();
    let mut c = pool.acquire().await.unwrap();
    let e1 = insert_event(&mut c, "1").await;
    let mut doomed = pool.begin().await.unwrap();
    let lost = insert_event(&mut doomed, "lost").await;
    let e3 = insert_event(&mut c, "3").await;
    assert_eq!(settled_ids(&store, 0).await, vec![e1], "in flight: wait");
    doomed.rollback().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ids = settled_ids(&store, 0).await;
        if ids == vec![e1, e3] {
            break;
        }
        assert!(
            !ids.contains(&lost) && Instant::now() < deadline,
            "the feed is stuck at the rolled-back id: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Concurrent writers through the real API while a follower reads the live feed: what it got is
/// exactly the ledger, id by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_concurrent_writers_the_live_feed_equals_the_ledger() {
    let Some((store, _pg)) = common::pg_store("feed_gaps::soak").await else {
        return;
    };
    let served = common::serve_with(store.clone(), |_| {}).await;
    let http = reqwest::Client::new();
    let follower = http
        .get(format!("{}/v1/events", served.url))
        .send()
        .await
        .unwrap();
    let mut live = common::SseReader::new(follower);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (http, url) = (http.clone(), served.url.clone());
            tokio::spawn(async move {
                for i in 0..40 {
                    let queue = format!("soak{}", (w + i) % 3);
                    let r = http
                        .post(format!("{url}/v1/jobs"))
                        .json(&json!({"queue": queue, "kind": "k", "payload": {"w": w, "i": i}}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                    let claim: serde_json::Value = http
                        .post(format!("{url}/v1/leases"))
                        .json(&json!({"worker_id": format!("w{w}"), "queues": [queue], "max_jobs": 2}))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    for lease in claim["leases"].as_array().unwrap() {
                        let id = lease["job"]["id"].as_str().unwrap();
                        http.post(format!("{url}/v1/jobs/{id}/complete"))
                            .json(&json!({"fencing_token": lease["fencing_token"]}))
                            .send()
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let ledger: Vec<i64> = store
        .list_events(&EventFilter {
            after: 0,
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert!(ledger.len() >= 8 * 40 * 2, "{} events", ledger.len());
    let mut got = vec![];
    while got.len() < ledger.len() {
        let Some(ev) = live.next(Duration::from_secs(15)).await else {
            break;
        };
        if let Some(id) = ev.id.and_then(|i| i.parse::<i64>().ok()) {
            got.push(id);
        }
    }
    assert_eq!(got, ledger, "the live feed differs from the ledger");
}
