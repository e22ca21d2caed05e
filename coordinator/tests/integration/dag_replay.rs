//! Replay keeps dependency order, on SQLite and PostgreSQL: a retried job whose parents have
//! not all succeeded goes back to `blocked`, not `queued`; retrying a failed step re-blocks its
//! `upstream_failed` descendants so the run can complete; the run's status follows.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;

use common::dag::{Api, Via, Worker, chain};
use common::serve_with;
use leasehold_coordinator::store::Store;
use serde_json::{Value, json};

async fn retry(api: &Api, job: &str) -> Value {
    let (s, body) = api.post(&format!("/v1/jobs/{job}/retry"), json!({})).await;
    assert_eq!(s, 200, "{body}");
    body
}

/// Works every job of `queue` to success in the order they become claimable, checking that
/// no job is leased before all its parents succeeded; returns their ids in that order.
async fn work_to_the_end(worker: &mut Worker, api: &Api, run: &str, queue: &str) -> Vec<String> {
    let mut done = Vec::new();
    loop {
        let leases = api.claim(queue, 10, 0).await;
        if leases.is_empty() {
            return done;
        }
        let view = api.run(run).await;
        let jobs = view["jobs"].as_array().unwrap();
        let state_of =
            |key: &Value| jobs.iter().find(|j| &j["key"] == key).unwrap()["state"].clone();
        for lease in &leases {
            let job = jobs
                .iter()
                .find(|j| j["job_id"] == lease["job"]["id"])
                .unwrap();
            for parent in job["depends_on"].as_array().unwrap() {
                assert_eq!(
                    state_of(parent),
                    "succeeded",
                    "{} leased before {parent}",
                    job["key"]
                );
            }
        }
        for lease in &leases {
            assert_eq!(worker.report(lease, true).await, "succeeded");
            done.push(lease["job"]["id"].as_str().unwrap().to_owned());
        }
    }
}

/// a → b → c; a fails for good (b and c cancelled upstream_failed, run failed). Retrying a sends
/// it back to `queued` and b, c back to `blocked`; only a is claimable; worked in order, the run
/// ends `succeeded`.
async fn retrying_a_failed_root_reblocks_its_descendants(store: Arc<dyn Store>) {
    let served = serve_with(store, |_| {}).await;
    let api = Api::new(&served.url);
    let (run, ids) = api.start_run(chain("steps", 3)).await;
    let mut worker = Worker::new(&api, Via::BatchOfOne, "steps").await;
    let a = worker.take().await;
    assert_eq!(worker.report(&a, false).await, "dead");
    assert_eq!(api.run(&run).await["status"], "failed");
    assert_eq!(retry(&api, &ids["a"]).await["state"], "queued");
    let jobs = api.run_jobs(&run).await;
    assert_eq!(jobs["a"], ("queued".into(), None));
    assert_eq!(jobs["b"], ("blocked".into(), None));
    assert_eq!(jobs["c"], ("blocked".into(), None));
    assert_eq!(api.run(&run).await["status"], "running");
    let order = work_to_the_end(&mut worker, &api, &run, "steps").await;
    assert_eq!(
        order,
        [ids["a"].clone(), ids["b"].clone(), ids["c"].clone()]
    );
    assert_eq!(api.run(&run).await["status"], "succeeded");
}

/// A descendant cancelled upstream_failed, retried before its failed parent, goes back to
/// `blocked` (not `queued`: it must not run before its parent); it runs once the parent is
/// retried and succeeds.
async fn retrying_a_child_of_a_failed_parent_blocks_it(store: Arc<dyn Store>) {
    let served = serve_with(store, |_| {}).await;
    let api = Api::new(&served.url);
    let (run, ids) = api.start_run(chain("steps", 2)).await;
    let mut worker = Worker::new(&api, Via::Single, "steps").await;
    let a = worker.take().await;
    assert_eq!(worker.report(&a, false).await, "dead");
    assert_eq!(retry(&api, &ids["b"]).await["state"], "blocked");
    assert!(api.claim("steps", 10, 0).await.is_empty(), "b waits for a");
    assert_eq!(api.run(&run).await["status"], "running");
    assert_eq!(retry(&api, &ids["a"]).await["state"], "queued");
    let order = work_to_the_end(&mut worker, &api, &run, "steps").await;
    assert_eq!(order, [ids["a"].clone(), ids["b"].clone()]);
    assert_eq!(api.run(&run).await["status"], "succeeded");
}

/// a → c ← b; a and b both fail. Retrying a leaves c cancelled (its other parent is still
/// dead); retrying b too re-blocks c, and the run completes.
async fn a_descendant_waits_for_every_failed_parent(store: Arc<dyn Store>) {
    let served = serve_with(store, |_| {}).await;
    let api = Api::new(&served.url);
    let (run, ids) = api
        .start_run(json!([{"key": "a", "kind": "k", "queue": "d"},
                          {"key": "b", "kind": "k", "queue": "d"},
                          {"key": "c", "kind": "k", "queue": "d", "depends_on": ["a", "b"]}]))
        .await;
    let mut worker = Worker::new(&api, Via::BatchOfMany, "d").await;
    for _ in 0..2 {
        let lease = worker.take().await;
        assert_eq!(worker.report(&lease, false).await, "dead");
    }
    assert_eq!(api.run(&run).await["status"], "failed");
    retry(&api, &ids["a"]).await;
    let jobs = api.run_jobs(&run).await;
    assert_eq!(
        jobs["c"],
        ("cancelled".into(), Some("upstream_failed".into()))
    );
    retry(&api, &ids["b"]).await;
    assert_eq!(api.run_jobs(&run).await["c"], ("blocked".into(), None));
    let order = work_to_the_end(&mut worker, &api, &run, "d").await;
    assert_eq!(order.len(), 3);
    assert_eq!(order[2], ids["c"], "c last");
    assert_eq!(api.run(&run).await["status"], "succeeded");
}

/// A step that failed after its parents succeeded goes straight back to `queued`; the run goes
/// from `failed` back to `running`, then `succeeded`.
async fn retrying_a_failed_step_with_done_parents_queues_it(store: Arc<dyn Store>) {
    let served = serve_with(store, |_| {}).await;
    let api = Api::new(&served.url);
    let (run, ids) = api.start_run(chain("steps", 3)).await;
    let mut worker = Worker::new(&api, Via::WebSocket, "steps").await;
    let a = worker.take().await;
    assert_eq!(worker.report(&a, true).await, "succeeded");
    let b = worker.take().await;
    assert_eq!(worker.report(&b, false).await, "dead");
    assert_eq!(api.run_jobs(&run).await["c"].0, "cancelled");
    assert_eq!(retry(&api, &ids["b"]).await["state"], "queued");
    assert_eq!(api.run_jobs(&run).await["c"], ("blocked".into(), None));
    assert_eq!(api.run(&run).await["status"], "running");
    for key in ["b", "c"] {
        let lease = worker.take().await;
        assert_eq!(lease["job"]["id"], ids[key]);
        assert_eq!(worker.report(&lease, true).await, "succeeded");
    }
    assert_eq!(api.run(&run).await["status"], "succeeded");
}

on_both_backends!(
    retrying_a_failed_root_reblocks_its_descendants,
    retrying_a_child_of_a_failed_parent_blocks_it,
    a_descendant_waits_for_every_failed_parent,
    retrying_a_failed_step_with_done_parents_queues_it,
);
