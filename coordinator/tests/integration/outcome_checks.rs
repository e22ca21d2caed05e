//! What the coordinator checks or fills in on an outcome: a completion naming an artifact that
//! was never uploaded is refused by name (the job stays leased), a retryable failure reported
//! without `retry_at` is scheduled by the job's backoff, not retried at once, and an outcome
//! retried after it was recorded is answered as recorded.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use common::api::Api;
use common::digest_of;
use leasehold_coordinator::store::Store;
use serde_json::{Value, json};

async fn lease(api: &Api, body: Value) -> (String, i64) {
    let r = api.call("POST", "/v1/jobs", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let queue = r.body["queue"].as_str().unwrap().to_owned();
    let lease = api.claim(&queue, "w1", 30_000).await.remove(0);
    (
        lease["job"]["id"].as_str().unwrap().to_owned(),
        lease["fencing_token"].as_i64().unwrap(),
    )
}

async fn completions_name_only_stored_artifacts(store: Arc<dyn Store>) {
    let api = Api::new(store);
    let (id, token) = lease(&api, json!({"queue": "art", "kind": "k"})).await;
    let bytes = b"hello artifact".to_vec();
    let digest = digest_of(&bytes);
    let artifact = json!({"name": "out.txt", "digest": digest, "size": bytes.len(), "media_type": "text/plain"});

    let before = api.snapshot().await;
    let r = api
        .call(
            "POST",
            &format!("/v1/jobs/{id}/complete"),
            Some(json!({"fencing_token": token, "artifacts": [artifact]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["error"]["details"]["field"], "artifacts[0].digest");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&digest)
    );
    let r = api
        .call(
            "POST",
            "/v1/leases/outcomes",
            Some(json!({"outcomes": [{"job_id": id, "fencing_token": token, "outcome": "complete", "artifacts": [artifact]}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(
        r.body["error"]["details"]["field"],
        "outcomes[0].artifacts[0].digest"
    );
    assert_eq!(
        api.snapshot().await,
        before,
        "a refused completion changed something"
    );

    // Uploaded first, the same completion is recorded.
    let put = api
        .raw("PUT", &format!("/v1/artifacts/{digest}"), bytes, &[])
        .await;
    assert!(put.status.is_success(), "{}", put.body);
    let r = api
        .call(
            "POST",
            &format!("/v1/jobs/{id}/complete"),
            Some(json!({"fencing_token": token, "artifacts": [artifact]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["state"], "succeeded");
}

fn run_at(job: &Value) -> DateTime<Utc> {
    job["run_at"].as_str().unwrap().parse().unwrap()
}

async fn failures_without_retry_at_get_the_jobs_backoff(store: Arc<dyn Store>) {
    let api = Api::new(store);
    let hour = 3_600_000_u64;
    // The job's own hint: the first retry waits up to an hour (full jitter).
    let (id, token) = lease(
        &api,
        json!({"queue": "b1", "kind": "k", "backoff": {"initial_ms": hour, "multiplier": 2.0, "max_delay_ms": hour}}),
    )
    .await;
    let failed_at = Utc::now();
    let r = api
        .call(
            "POST",
            &format!("/v1/jobs/{id}/fail"),
            Some(json!({"fencing_token": token, "error": {"class": "boom", "message": "x"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["state"], "queued");
    let delay = run_at(&r.body) - failed_at;
    assert!(
        delay > chrono::Duration::zero()
            && delay <= chrono::Duration::milliseconds(hour as i64 + 1000),
        "retry in {delay}"
    );
    assert!(
        api.claim("b1", "w2", 30_000).await.is_empty(),
        "retried at once"
    );

    // Without a hint: the default job policy (first ceiling 1 s), through a batch outcome.
    let (id, token) = lease(&api, json!({"queue": "b2", "kind": "k"})).await;
    let failed_at = Utc::now();
    let r = api
        .call(
            "POST",
            "/v1/leases/outcomes",
            Some(json!({"outcomes": [{"job_id": id, "fencing_token": token, "outcome": "fail", "error": {"class": "boom"}}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let job = api.call("GET", &format!("/v1/jobs/{id}"), None).await.body;
    let delay = run_at(&job) - failed_at;
    assert!(
        delay <= chrono::Duration::milliseconds(2000),
        "retry in {delay}"
    );

    // A given retry_at is kept as it is; a fatal failure is not rescheduled.
    let (id, token) = lease(&api, json!({"queue": "b3", "kind": "k"})).await;
    let at = "2031-01-01T00:00:00Z";
    let r = api
        .call(
            "POST",
            &format!("/v1/jobs/{id}/fail"),
            Some(json!({"fencing_token": token, "error": {"class": "boom"}, "retry_at": at})),
        )
        .await;
    assert_eq!(run_at(&r.body), at.parse::<DateTime<Utc>>().unwrap());
    let (id, token) = lease(&api, json!({"queue": "b4", "kind": "k"})).await;
    let r = api
        .call(
            "POST",
            &format!("/v1/jobs/{id}/fail"),
            Some(json!({"fencing_token": token, "error": {"class": "boom", "retryable": false}})),
        )
        .await;
    assert_eq!(r.body["state"], "dead");
}

/// A worker whose answer was lost retries the same outcome under the same token: it is answered
/// as recorded (200), not `lease_lost`; a different outcome, or any outcome once a newer lease
/// exists, is still refused.
async fn a_retried_outcome_that_committed_is_answered_as_recorded(store: Arc<dyn Store>) {
    let api = Api::new(store);
    let (id, token) = lease(&api, json!({"queue": "again", "kind": "k"})).await;
    let complete = json!({"fencing_token": token, "result": {"n": 1}});
    let path = format!("/v1/jobs/{id}/complete");
    let first = api.call("POST", &path, Some(complete.clone())).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let before = api.snapshot().await;
    let again = api.call("POST", &path, Some(complete)).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["state"], "succeeded");
    assert_eq!(api.snapshot().await, before, "the retry wrote something");
    let batch =
        json!({"outcomes": [{"job_id": id, "fencing_token": token, "outcome": "complete"}]});
    let r = api.call("POST", "/v1/leases/outcomes", Some(batch)).await;
    assert_eq!(r.body["results"][0]["status"], "ok", "{}", r.body);
    assert_eq!(r.body["results"][0]["state"], "succeeded");
    // Another outcome under that token was never recorded: refused.
    let r = api
        .call(
            "POST",
            &format!("/v1/jobs/{id}/fail"),
            Some(json!({"fencing_token": token, "error": {"class": "x"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(api.snapshot().await, before);

    // A retryable failure, retried: recorded once. Once the job is leased again, the old
    // token's outcome is refused.
    let (id, token) = lease(&api, json!({"queue": "again2", "kind": "k"})).await;
    let fail = json!({"fencing_token": token, "error": {"class": "x"}, "retry_at": "2000-01-01T00:00:00Z"});
    let path = format!("/v1/jobs/{id}/fail");
    assert_eq!(
        api.call("POST", &path, Some(fail.clone())).await.status,
        StatusCode::OK
    );
    let r = api.call("POST", &path, Some(fail.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["attempt"], 1);
    assert_eq!(api.claim("again2", "w2", 30_000).await.len(), 1);
    let r = api.call("POST", &path, Some(fail)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "lease_lost");
}

on_both_backends!(
    completions_name_only_stored_artifacts,
    failures_without_retry_at_get_the_jobs_backoff,
    a_retried_outcome_that_committed_is_answered_as_recorded,
);
