//! A worker on several queues is served from each of them, whatever their depths: a backlog in
//! one queue no longer starves the others (it got 0 of 300 claims before), and priorities
//! still hold within a queue. Both stores.

use std::sync::Arc;

use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::keyed::{Coordinator, ROOT};

async fn claim(c: &Coordinator, max_jobs: u32) -> Vec<Value> {
    let body = json!({"worker_id": "w", "queues": ["bulk", "interactive"], "max_jobs": max_jobs,
                      "lease_ttl_ms": 3_600_000});
    let (s, a) = c
        .call(Some(ROOT), Method::POST, "/v1/leases", Some(body), &[])
        .await;
    assert_eq!(s, 200, "{a}");
    a["leases"].as_array().unwrap().clone()
}

async fn a_backlog_in_one_queue_does_not_starve_another(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    // The backlog: older, and of higher priority.
    let bulk: Vec<Value> = (0..300)
        .map(|n| json!({"queue": "bulk", "kind": "k", "payload": {"n": n}, "priority": 5}))
        .collect();
    let (s, a) = c
        .call(
            Some(ROOT),
            Method::POST,
            "/v1/jobs",
            Some(json!({"jobs": bulk})),
            &[],
        )
        .await;
    assert_eq!(s, 201, "{a}");
    // The trickle, with priorities of its own.
    for (n, priority) in [0, 3, 1, 2, 0, 0].into_iter().enumerate() {
        let job =
            json!({"queue": "interactive", "kind": "k", "payload": {"n": n}, "priority": priority});
        assert_eq!(
            c.call(Some(ROOT), Method::POST, "/v1/jobs", Some(job), &[])
                .await
                .0,
            201
        );
    }

    // One job per claim: which queue leads is drawn per claim, so the trickle gets one claim
    // in two; its six are all served within 60 claims but for a run of luck of about one in
    // 10^11 (fewer than 6 heads in 60 tosses).
    let mut interactive = Vec::new();
    for _ in 0..60 {
        for lease in claim(&c, 1).await {
            if lease["job"]["queue"] == "interactive" {
                interactive.push(lease["job"]["priority"].as_i64().unwrap());
            }
        }
    }
    assert_eq!(
        interactive,
        [3, 2, 1, 0, 0, 0],
        "all of the trickle, in priority order"
    );

    // A claim of ten takes from both queues, the best of each first.
    for n in 0..4 {
        let job = json!({"queue": "interactive", "kind": "k", "payload": {"again": n}});
        assert_eq!(
            c.call(Some(ROOT), Method::POST, "/v1/jobs", Some(job), &[])
                .await
                .0,
            201
        );
    }
    let leases = claim(&c, 10).await;
    let from = |q: &str| leases.iter().filter(|l| l["job"]["queue"] == q).count();
    assert_eq!(
        (from("bulk"), from("interactive")),
        (6, 4),
        "rank by rank: 4 each, then bulk"
    );
}

crate::on_both_backends!(a_backlog_in_one_queue_does_not_starve_another);
