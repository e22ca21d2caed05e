//! Every path that ends a job of a run runs the same run bookkeeping, on SQLite and PostgreSQL:
//! each way a worker reports (single HTTP call, batch of one, batch of many, WebSocket) ×
//! {a chain that succeeds, a root that fails for good, a job cancelled mid-chain, the run
//! cancelled mid-chain}; plus lease expiry burying a root `dead` inside a claim, and a waiting
//! job cancelled directly.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;

use common::dag::{Api, Via, Worker, chain};
use common::serve_with;
use leasehold_coordinator::clock::OffsetClock;
use leasehold_coordinator::store::{EventFilter, Store};
use serde_json::json;

/// The events of a run as `(type, key of the job or "", data)`, in order.
async fn run_events(
    store: &Arc<dyn Store>,
    api: &Api,
    run: &str,
) -> Vec<(String, String, serde_json::Value)> {
    let keys: std::collections::HashMap<String, String> = api.run(run).await["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["job_id"].as_str().unwrap().to_owned(),
                j["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let filter = EventFilter {
        run_id: Some(run.parse().unwrap()),
        limit: 1000,
        ..Default::default()
    };
    store
        .list_events(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let key = e
                .job_id
                .map(|id| keys[&id.to_string()].clone())
                .unwrap_or_default();
            (e.kind, key, e.data)
        })
        .collect()
}

/// The statuses the run went through, from its `run_status` events.
fn statuses(events: &[(String, String, serde_json::Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|(kind, _, _)| kind == "run_status")
        .map(|(_, _, data)| data["status"].as_str().unwrap().to_owned())
        .collect()
}

/// a → b → c, each reported successful: each child is unblocked by its parent's outcome and the
/// run ends `succeeded`.
async fn chain_succeeds(store: Arc<dyn Store>, via: Via) {
    let served = serve_with(store.clone(), |_| {}).await;
    let api = Api::new(&served.url);
    let (run, ids) = api.start_run(chain("steps", 3)).await;
    let mut worker = Worker::new(&api, via, "steps").await;
    for key in ["a", "b", "c"] {
        let lease = worker.take().await;
        assert_eq!(lease["job"]["id"], ids[key], "{key} next, in order");
        assert_eq!(worker.report(&lease, true).await, "succeeded");
    }
    assert_eq!(api.run(&run).await["status"], "succeeded");
    let events = run_events(&store, &api, &run).await;
    let unblocked: Vec<&str> = events
        .iter()
        .filter(|(kind, _, _)| kind == "unblocked")
        .map(|(_, key, _)| key.as_str())
        .collect();
    assert_eq!(unblocked, ["b", "c"]);
    assert_eq!(statuses(&events), ["running", "succeeded"]);
}

/// a fails for good: b and c end `cancelled` (`upstream_failed`) in the same transaction, the
/// run `failed`, and nothing of it is claimable.
async fn root_failure_cascades(store: Arc<dyn Store>, via: Via) {
    let served = serve_with(store.clone(), |_| {}).await;
    let api = Api::new(&served.url);
    let (run, ids) = api.start_run(chain("steps", 3)).await;
    let mut worker = Worker::new(&api, via, "steps").await;
    let lease = worker.take().await;
    assert_eq!(lease["job"]["id"], ids["a"]);
    assert_eq!(worker.report(&lease, false).await, "dead");
    let jobs = api.run_jobs(&run).await;
    assert_eq!(jobs["a"].0, "dead");
    for key in ["b", "c"] {
        assert_eq!(
            jobs[key],
            ("cancelled".into(), Some("upstream_failed".into())),
            "{key}"
        );
    }
    assert_eq!(api.run(&run).await["status"], "failed");
    assert!(api.claim("steps", 10, 0).await.is_empty());
    let events = run_events(&store, &api, &run).await;
    let cancelled: Vec<&str> = events
        .iter()
        .filter(|(kind, _, data)| kind == "cancelled" && data["reason"] == "upstream_failed")
        .map(|(_, key, _)| key.as_str())
        .collect();
    assert_eq!(cancelled, ["b", "c"]);
    assert_eq!(statuses(&events), ["running", "failed"]);
}

/// b is cancelled while leased; its worker sees that and reports a failure, which ends b
/// `cancelled` and c `upstream_failed`.
async fn cancel_mid_chain(store: Arc<dyn Store>, via: Via) {
    let served = serve_with(store.clone(), |_| {}).await;
    let api = Api::new(&served.url);
    let (run, ids) = api.start_run(chain("steps", 3)).await;
    let mut worker = Worker::new(&api, via, "steps").await;
    let a = worker.take().await;
    assert_eq!(worker.report(&a, true).await, "succeeded");
    let b = worker.take().await;
    assert_eq!(b["job"]["id"], ids["b"]);
    let (s, job) = api
        .post(
            &format!("/v1/jobs/{}/cancel", ids["b"]),
            json!({"reason": "operator"}),
        )
        .await;
    assert_eq!((s, &job["cancel_requested"]), (200, &json!(true)), "{job}");
    assert_eq!(worker.report(&b, false).await, "cancelled");
    let jobs = api.run_jobs(&run).await;
    assert_eq!(jobs["a"].0, "succeeded");
    assert_eq!(jobs["b"], ("cancelled".into(), Some("operator".into())));
    assert_eq!(
        jobs["c"],
        ("cancelled".into(), Some("upstream_failed".into()))
    );
    assert_eq!(api.run(&run).await["status"], "failed");
}

/// The run is cancelled while b is leased: c ends at once, b when its worker reports.
async fn run_cancel_mid_chain(store: Arc<dyn Store>, via: Via) {
    let served = serve_with(store.clone(), |_| {}).await;
    let api = Api::new(&served.url);
    let (run, _) = api.start_run(chain("steps", 3)).await;
    let mut worker = Worker::new(&api, via, "steps").await;
    let a = worker.take().await;
    assert_eq!(worker.report(&a, true).await, "succeeded");
    let b = worker.take().await;
    let (s, r) = api.post(&format!("/v1/runs/{run}/cancel"), json!({})).await;
    assert_eq!((s, &r["status"]), (200, &json!("cancelled")), "{r}");
    assert_eq!(worker.report(&b, false).await, "cancelled");
    let jobs = api.run_jobs(&run).await;
    assert_eq!(
        jobs["b"],
        ("cancelled".into(), Some("run_cancelled".into()))
    );
    assert_eq!(
        jobs["c"],
        ("cancelled".into(), Some("run_cancelled".into()))
    );
    assert_eq!(api.run(&run).await["status"], "cancelled");
    let events = run_events(&store, &api, &run).await;
    assert_eq!(statuses(&events), ["running", "cancelled"]);
}

/// Declares `scenario` × every reporting path as tests on both backends.
macro_rules! matrix {
    ($($name:ident => $scenario:ident($via:expr);)*) => {
        $(async fn $name(store: Arc<dyn Store>) { $scenario(store, $via).await })*
        on_both_backends!($($name),*);
    };
}

matrix! {
    chain_succeeds_single => chain_succeeds(Via::Single);
    chain_succeeds_batch_of_one => chain_succeeds(Via::BatchOfOne);
    chain_succeeds_batch_of_many => chain_succeeds(Via::BatchOfMany);
    chain_succeeds_websocket => chain_succeeds(Via::WebSocket);
    root_failure_cascades_single => root_failure_cascades(Via::Single);
    root_failure_cascades_batch_of_one => root_failure_cascades(Via::BatchOfOne);
    root_failure_cascades_batch_of_many => root_failure_cascades(Via::BatchOfMany);
    root_failure_cascades_websocket => root_failure_cascades(Via::WebSocket);
    cancel_mid_chain_single => cancel_mid_chain(Via::Single);
    cancel_mid_chain_batch_of_one => cancel_mid_chain(Via::BatchOfOne);
    cancel_mid_chain_batch_of_many => cancel_mid_chain(Via::BatchOfMany);
    cancel_mid_chain_websocket => cancel_mid_chain(Via::WebSocket);
    run_cancel_mid_chain_single => run_cancel_mid_chain(Via::Single);
    run_cancel_mid_chain_batch_of_one => run_cancel_mid_chain(Via::BatchOfOne);
    run_cancel_mid_chain_batch_of_many => run_cancel_mid_chain(Via::BatchOfMany);
    run_cancel_mid_chain_websocket => run_cancel_mid_chain(Via::WebSocket);
    lease_expiry_buries_and_cascades => lease_expiry_cascades(Via::Single);
    waiting_job_cancelled_directly => cancel_waiting_job(Via::Single);
}

/// a's lease expires with its attempts spent: the next claim buries it `dead` and, in the same
/// transaction, cancels b and c (`upstream_failed`) and ends the run `failed`.
async fn lease_expiry_cascades(store: Arc<dyn Store>, _via: Via) {
    let clock = OffsetClock::default();
    let c = clock.clone();
    let served = serve_with(store.clone(), move |s| s.clock = Arc::new(c)).await;
    let api = Api::new(&served.url);
    let mut jobs = chain("steps", 3);
    jobs[0]["max_attempts"] = json!(1);
    let (run, ids) = api.start_run(jobs).await;
    let (s, body) = api
        .post(
            "/v1/leases",
            json!({"worker_id": "w", "queues": ["steps"], "max_jobs": 1, "lease_ttl_ms": 1000}),
        )
        .await;
    assert_eq!(
        (s, &body["leases"][0]["job"]["id"]),
        (200, &json!(ids["a"]))
    );
    clock.advance_ms(2_000);
    assert!(
        api.claim("steps", 10, 0).await.is_empty(),
        "nothing left to lease"
    );
    let jobs = api.run_jobs(&run).await;
    assert_eq!(jobs["a"].0, "dead");
    for key in ["b", "c"] {
        assert_eq!(
            jobs[key],
            ("cancelled".into(), Some("upstream_failed".into())),
            "{key}"
        );
    }
    assert_eq!(api.run(&run).await["status"], "failed");
    let events = run_events(&store, &api, &run).await;
    assert_eq!(statuses(&events), ["running", "failed"]);
}

/// b is cancelled while still blocked: c follows (`upstream_failed`), and a's later success
/// unblocks nothing; the run ends `failed`.
async fn cancel_waiting_job(store: Arc<dyn Store>, via: Via) {
    let served = serve_with(store.clone(), |_| {}).await;
    let api = Api::new(&served.url);
    let (run, ids) = api.start_run(chain("steps", 3)).await;
    let mut worker = Worker::new(&api, via, "steps").await;
    let a = worker.take().await;
    let (s, job) = api
        .post(&format!("/v1/jobs/{}/cancel", ids["b"]), json!({}))
        .await;
    assert_eq!((s, &job["state"]), (200, &json!("cancelled")), "{job}");
    assert_eq!(
        api.run_jobs(&run).await["c"].1.as_deref(),
        Some("upstream_failed")
    );
    assert_eq!(worker.report(&a, true).await, "succeeded");
    assert!(api.claim("steps", 10, 0).await.is_empty());
    assert_eq!(api.run(&run).await["status"], "failed");
}
