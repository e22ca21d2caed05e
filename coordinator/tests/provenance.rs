//! Provenance that ties one piece of work together: a job enqueued without a `correlation_id`
//! gets its own id as one, a run's jobs share the run's, and every event carries it.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::api::Api;
use leasehold_coordinator::store::Store;
use serde_json::json;

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

on_both_backends!(every_job_and_event_has_a_correlation_id);
