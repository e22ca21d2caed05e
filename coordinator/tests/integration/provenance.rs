//! Provenance that ties one piece of work together: a job enqueued without a `correlation_id`
//! gets its own id as one, a run's jobs share the run's, and every event carries it.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::http::StatusCode;
use common::api::Api;
use leasehold_coordinator::store::Store;
use serde_json::{Value, json};

async fn every_job_and_event_has_a_correlation_id(store: Arc<dyn Store>) {
    let api = Api::new(store.clone());
    let job = api.enqueue("prov").await;
    assert_eq!(job["correlation_id"], job["id"]);

    let given = api
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"queue": "prov", "kind": "k", "correlation_id": "req-42"})),
        )
        .await;
    assert_eq!(given.body["correlation_id"], "req-42");

    let run = api
        .call(
            "POST",
            "/v1/runs",
            Some(json!({"jobs": [{"key": "a", "kind": "k", "queue": "prov"}, {"key": "b", "kind": "k", "queue": "prov", "depends_on": ["a"]}]})),
        )
        .await;
    assert_eq!(run.status, StatusCode::CREATED, "{}", run.body);
    let run_id = run.body["id"].as_str().unwrap().to_owned();
    for j in run.body["jobs"].as_array().unwrap() {
        let id = j["job_id"].as_str().unwrap();
        let stored = api.call("GET", &format!("/v1/jobs/{id}"), None).await.body;
        assert_eq!(stored["correlation_id"], run_id.as_str(), "{stored}");
    }
    let with_own = api
        .call(
            "POST",
            "/v1/runs",
            Some(json!({"correlation_id": "batch-7", "jobs": [{"key": "a", "kind": "k", "queue": "prov"}]})),
        )
        .await;
    let id = with_own.body["jobs"][0]["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = api.call("GET", &format!("/v1/jobs/{id}"), None).await.body;
    assert_eq!(stored["correlation_id"], "batch-7");

    let events = store.events_after(0, 1000).await.unwrap();
    assert!(!events.is_empty());
    for e in &events {
        if e.job_id.is_some() {
            assert!(
                e.correlation_id.is_some(),
                "event without correlation id: {e:?}"
            );
        }
    }
}

/// Claims every queued job of `queue` as `worker` at `version`.
async fn claim_as(api: &Api, queue: &str, worker: &str, version: &str, ttl: u64) -> Vec<Value> {
    let r = api
        .call(
            "POST",
            "/v1/leases",
            Some(
                json!({"worker_id": worker, "worker_version": version, "queues": [queue],
                        "max_jobs": 10, "lease_ttl_ms": ttl}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["leases"].as_array().unwrap().clone()
}

fn by_key(leases: &[Value]) -> HashMap<String, Value> {
    leases
        .iter()
        .map(|l| {
            (
                l["job"]["payload"]["key"].as_str().unwrap().to_owned(),
                l.clone(),
            )
        })
        .collect()
}

/// Every job event carries the job's `inputs_hash`; the events a worker causes (its lease, its
/// checkpoint, its outcome) carry that worker's id and version, on every path that writes them:
/// claim, heartbeat, single and batched outcomes, lease expiry, an execution timeout and the
/// hand-off.
async fn every_event_carries_inputs_hash_and_worker_version(store: Arc<dyn Store>) {
    let api = Api::new(store.clone());
    let q = "prov-ev";
    let mut hashes = HashMap::new();
    for key in ["complete", "fail", "release", "batch", "expire", "timeout"] {
        let mut job = json!({"queue": q, "kind": "k", "payload": {"key": key}});
        if key == "timeout" {
            job["timeout_ms"] = json!(20_000);
        }
        let r = api.call("POST", "/v1/jobs", Some(job)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        hashes.insert(
            r.body["id"].as_str().unwrap().to_owned(),
            r.body["inputs_hash"].clone(),
        );
    }
    let leases = by_key(&claim_as(&api, q, "w-1", "1.2.3", 30_000).await);
    assert_eq!(leases.len(), 6);
    let path = |key: &str, verb: &str| {
        format!(
            "/v1/jobs/{}/{verb}",
            leases[key]["job"]["id"].as_str().unwrap()
        )
    };
    let token = |key: &str| leases[key]["fencing_token"].clone();

    let hb = api
        .call(
            "POST",
            "/v1/leases/heartbeat",
            Some(
                json!({"worker_id": "w-1", "leases": [{"job_id": leases["complete"]["job"]["id"],
                                    "fencing_token": token("complete"),
                                    "checkpoint": {"step": 1}}]}),
            ),
        )
        .await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);
    for (key, verb, body) in [
        (
            "complete",
            "complete",
            json!({"fencing_token": token("complete"), "result": {}}),
        ),
        (
            "fail",
            "fail",
            json!({"fencing_token": token("fail"),
                   "error": {"class": "Io", "message": "later", "retryable": true}}),
        ),
        (
            "release",
            "release",
            json!({"fencing_token": token("release")}),
        ),
    ] {
        let r = api.call("POST", &path(key, verb), Some(body)).await;
        assert_eq!(r.status, StatusCode::OK, "{key}: {}", r.body);
    }
    let batch = api
        .call(
            "POST",
            "/v1/leases/outcomes",
            Some(json!({"outcomes": [{"job_id": leases["batch"]["job"]["id"],
                                      "fencing_token": token("batch"),
                                      "outcome": "complete", "result": {}}]})),
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK, "{}", batch.body);

    // The `expire` lease runs out and the `timeout` job's run time too; a second worker's claim
    // reclaims the first and ends the second as a `timeout` failure.
    api.clock.advance_ms(31_000);
    let second = by_key(&claim_as(&api, q, "w-2", "2.0.0", 30_000).await);
    assert!(second.contains_key("expire"), "{second:?}");

    // The hand-off: a parked claimer gets the job at its enqueue.
    let parked = {
        let api = api.clone();
        tokio::spawn(async move {
            api.call(
                "POST",
                "/v1/leases",
                Some(
                    json!({"worker_id": "w-3", "worker_version": "3.0.0", "queues": ["prov-ho"],
                            "max_jobs": 1, "lease_ttl_ms": 30000, "wait_ms": 20000}),
                ),
            )
            .await
        })
    };
    let mut handed = None;
    for _ in 0..200 {
        let r = api
            .call(
                "POST",
                "/v1/jobs",
                Some(
                    json!({"queue": "prov-ho", "kind": "k", "payload": {"key": "handoff"},
                            "idempotency_key": "ho-1"}),
                ),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
        if r.body["state"] == "leased" {
            handed = Some(r.body.clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let handed = handed.expect("the enqueue was handed to the parked claimer");
    hashes.insert(
        handed["id"].as_str().unwrap().to_owned(),
        handed["inputs_hash"].clone(),
    );
    let got = parked.await.unwrap();
    assert_eq!(
        got.body["leases"][0]["job"]["id"], handed["id"],
        "{}",
        got.body
    );

    let events = store.events_after(0, 1000).await.unwrap();
    let mut seen = HashSet::new();
    let timeout_id = leases["timeout"]["job"]["id"].as_str().unwrap();
    assert!(
        events.iter().any(|e| e.kind == "retry_scheduled"
            && e.job_id.unwrap().to_string() == timeout_id
            && e.data["reason"] == "timeout"),
        "no timeout event for {timeout_id}"
    );
    for e in events
        .iter()
        .filter(|e| e.queue.as_deref().is_some_and(|q| q.starts_with("prov-")))
    {
        let id = e.job_id.unwrap().to_string();
        assert_eq!(
            e.inputs_hash.as_deref(),
            hashes[&id].as_str(),
            "inputs_hash of {e:?}"
        );
        let version = match (e.kind.as_str(), e.worker_id.as_deref()) {
            ("enqueued", _) => None,
            (_, Some("w-1")) => Some("1.2.3"),
            (_, Some("w-2")) => Some("2.0.0"),
            (_, Some("w-3")) => Some("3.0.0"),
            (kind, worker) => panic!("a {kind} event names worker {worker:?}: {e:?}"),
        };
        assert_eq!(e.worker_version.as_deref(), version, "{e:?}");
        seen.insert(e.kind.clone());
    }
    for kind in [
        "enqueued",
        "leased",
        "checkpoint",
        "succeeded",
        "retry_scheduled",
        "released",
        "lease_expired",
    ] {
        assert!(seen.contains(kind), "no {kind} event among {seen:?}");
    }
}

on_both_backends!(
    every_job_and_event_has_a_correlation_id,
    every_event_carries_inputs_hash_and_worker_version
);
