//! A child that becomes ready wakes the claimers waiting for its queue at once, on SQLite and
//! PostgreSQL: a long poll parked on the child's queue, and a worker session with credit.
//! (Across two coordinator processes: tests/tests/e2e/two_replicas.rs.)
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dag::{Api, PATIENCE, Via, Worker};
use common::serve_with;
use leasehold_coordinator::handoff::Handoffs;
use leasehold_coordinator::store::Store;
use serde_json::json;

/// How soon the child must reach its waiting claimer once the parent's outcome is answered;
/// the claimer's own timeout (20 s) is far beyond it.
const PROMPT: Duration = Duration::from_secs(2);

/// a (queue `parents`) → b (queue `children`).
fn two_queues() -> serde_json::Value {
    json!([{"key": "a", "kind": "k", "queue": "parents"},
           {"key": "b", "kind": "k", "queue": "children", "depends_on": ["a"]}])
}

/// Polls until `n` claimers are parked (no sleeping for a guessed time).
async fn until_parked(handoffs: &Handoffs, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while handoffs.parked() < n {
        assert!(Instant::now() < deadline, "no claimer parked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A long poll parked on `children` receives b as soon as a is reported (as the SDKs report:
/// a batch of one), not when its 20 s wait ends.
async fn parked_long_poll_gets_the_child_at_once(store: Arc<dyn Store>) {
    let mut handoffs = None;
    let served = serve_with(store, |s| handoffs = Some(s.handoffs.clone())).await;
    let handoffs = handoffs.unwrap();
    let api = Api::new(&served.url);
    let (_, ids) = api.start_run(two_queues()).await;
    let poll = {
        let api = api.clone();
        tokio::spawn(async move { api.claim("children", 1, 20_000).await })
    };
    until_parked(&handoffs, 1).await;
    let mut parent_worker = Worker::new(&api, Via::BatchOfOne, "parents").await;
    let a = parent_worker.take().await;
    assert_eq!(parent_worker.report(&a, true).await, "succeeded");
    let reported = Instant::now();
    let leases = tokio::time::timeout(PROMPT, poll)
        .await
        .expect("the parked long poll got the child promptly")
        .unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["job"]["id"], ids["b"]);
    assert!(reported.elapsed() < PROMPT);
}

/// A worker session with credit, idle on `children`, is pushed b as soon as a is completed.
async fn session_with_credit_gets_the_child_at_once(store: Arc<dyn Store>) {
    let mut handoffs = None;
    let served = serve_with(store, |s| handoffs = Some(s.handoffs.clone())).await;
    let handoffs = handoffs.unwrap();
    let api = Api::new(&served.url);
    let (_, ids) = api.start_run(two_queues()).await;
    let mut session = Worker::new(&api, Via::WebSocket, "children").await;
    session.credit(1).await;
    until_parked(&handoffs, 1).await;
    let mut parent_worker = Worker::new(&api, Via::Single, "parents").await;
    let a = parent_worker.take().await;
    assert_eq!(parent_worker.report(&a, true).await, "succeeded");
    let lease = tokio::time::timeout(PROMPT, session.pushed())
        .await
        .expect("the session was pushed the child promptly");
    assert_eq!(lease["job"]["id"], ids["b"]);
}

/// A replayed root wakes its queue's parked claimer too.
async fn replayed_root_wakes_a_parked_claimer(store: Arc<dyn Store>) {
    let mut handoffs = None;
    let served = serve_with(store, |s| handoffs = Some(s.handoffs.clone())).await;
    let handoffs = handoffs.unwrap();
    let api = Api::new(&served.url);
    let (_, ids) = api.start_run(two_queues()).await;
    let mut worker = Worker::new(&api, Via::BatchOfOne, "parents").await;
    let a = worker.take().await;
    assert_eq!(worker.report(&a, false).await, "dead");
    let poll = {
        let api = api.clone();
        tokio::spawn(async move { api.claim("parents", 1, 20_000).await })
    };
    until_parked(&handoffs, 1).await;
    let (s, job) = api
        .post(&format!("/v1/jobs/{}/retry", ids["a"]), json!({}))
        .await;
    assert_eq!((s, &job["state"]), (200, &json!("queued")), "{job}");
    let leases = tokio::time::timeout(PROMPT, poll).await.unwrap().unwrap();
    assert_eq!(leases[0]["job"]["id"], ids["a"]);
}

on_both_backends!(
    parked_long_poll_gets_the_child_at_once,
    session_with_credit_gets_the_child_at_once,
    replayed_root_wakes_a_parked_claimer,
);
