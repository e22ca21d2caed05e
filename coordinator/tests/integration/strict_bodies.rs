//! Request bodies are strict: a key the v1 API does not know is refused with 422
//! `validation_failed` naming it (`details.field`), and nothing is stored or changed — a typo
//! must never change what runs. One row per body of the v1 API, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::api::Api;
use leasehold_coordinator::store::Store;
use serde_json::{Value, json};

async fn unknown_keys_are_refused_by_name(store: Arc<dyn Store>) {
    let api = Api::new(store);
    // A job leased under a valid token: even with the right token, a typo changes nothing.
    api.enqueue("q").await;
    let lease = api.claim("q", "w1", 30_000).await.remove(0);
    let id = lease["job"]["id"].as_str().unwrap().to_owned();
    let token = lease["fencing_token"].as_i64().unwrap();
    let digest = format!("sha256:{}", "0".repeat(64));

    let cases: Vec<(&str, String, Value, &str)> = vec![
        (
            "the issue's example",
            "/v1/jobs".into(),
            json!({"queue": "q", "kind": "k", "max_atempts": 5}),
            "max_atempts",
        ),
        (
            "a job of a batch",
            "/v1/jobs".into(),
            json!({"jobs": [{"kind": "k"}, {"kind": "k", "prioirty": 1}]}),
            "jobs[1].prioirty",
        ),
        (
            "beside a batch",
            "/v1/jobs".into(),
            json!({"jobs": [{"kind": "k"}], "queue": "q"}),
            "queue",
        ),
        (
            "inside a backoff",
            "/v1/jobs".into(),
            json!({"kind": "k", "backoff": {"initial_ms": 10, "multiplier": 2.0, "max_delay_ms": 100, "jitter": false}}),
            "backoff.jitter",
        ),
        (
            "claim",
            "/v1/leases".into(),
            json!({"worker_id": "w2", "queues": ["q"], "max_job": 5}),
            "max_job",
        ),
        (
            "heartbeat item",
            "/v1/leases/heartbeat".into(),
            json!({"worker_id": "w1", "leases": [{"job_id": id, "fencing_token": token, "progres": 0.5}]}),
            "leases[0].progres",
        ),
        (
            "batch outcome",
            "/v1/leases/outcomes".into(),
            json!({"outcomes": [{"job_id": id, "fencing_token": token, "outcome": "complete", "reslt": {}}]}),
            "outcomes[0].reslt",
        ),
        (
            "batch outcome with another outcome's key",
            "/v1/leases/outcomes".into(),
            json!({"outcomes": [{"job_id": id, "fencing_token": token, "outcome": "release", "error": {"class": "x"}}]}),
            "outcomes[0].error",
        ),
        (
            "complete",
            format!("/v1/jobs/{id}/complete"),
            json!({"fencing_token": token, "reslt": {"ok": true}}),
            "reslt",
        ),
        (
            "an artifact of a complete",
            format!("/v1/jobs/{id}/complete"),
            json!({"fencing_token": token, "artifacts": [{"name": "a", "digest": digest, "size": 1, "mediatype": "text/plain"}]}),
            "artifacts[0].mediatype",
        ),
        (
            "fail",
            format!("/v1/jobs/{id}/fail"),
            json!({"fencing_token": token, "error": {"class": "x", "retriable": false}}),
            "error.retriable",
        ),
        (
            "release",
            format!("/v1/jobs/{id}/release"),
            json!({"fencing_token": token, "reason": "drain"}),
            "reason",
        ),
        (
            "cancel",
            format!("/v1/jobs/{id}/cancel"),
            json!({"reson": "typo"}),
            "reson",
        ),
        (
            "a job of a run",
            "/v1/runs".into(),
            json!({"jobs": [{"key": "a", "kind": "k"}, {"key": "b", "kind": "k", "depends": ["a"]}]}),
            "jobs[1].depends",
        ),
        (
            "plan",
            "/v1/runs/plan".into(),
            json!({"run_tokn": "t", "jobs": [{"key": "a", "kind": "k"}]}),
            "run_tokn",
        ),
    ];
    let before = api.snapshot().await;
    for (name, path, body, field) in cases {
        let r = api.call("POST", &path, Some(body)).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name}: {}",
            r.body
        );
        assert_eq!(r.body["error"]["code"], "validation_failed", "{name}");
        assert_eq!(
            r.body["error"]["details"]["field"], field,
            "{name}: {}",
            r.body
        );
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("unknown field `{field}`")),
            "{name}: {message}"
        );
        assert_eq!(api.snapshot().await, before, "{name} changed the store");
    }

    // The common typo gets the field it meant.
    let r = api
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"kind": "k", "max_atempts": 5})),
        )
        .await;
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("did you mean `max_attempts`?"),
        "{message}"
    );

    // The lease is untouched: the right body still completes it.
    let r = api
        .call(
            "POST",
            &format!("/v1/jobs/{id}/complete"),
            Some(json!({"fencing_token": token, "result": {"ok": true}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

on_both_backends!(unknown_keys_are_refused_by_name);
