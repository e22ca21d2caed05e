//! Idempotency that cannot hide a mistake: a key reused for the same work replays the first job;
//! reused for different work (another kind or payload) it is refused with 409
//! `idempotency_conflict` naming what differs, and nothing is stored — in a batch neither.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::api::Api;
use leasehold_coordinator::store::Store;
use serde_json::{Value, json};

async fn post_job(api: &Api, body: Value) -> common::api::Reply {
    api.call("POST", "/v1/jobs", Some(body)).await
}

async fn reused_keys_replay_the_same_work_and_refuse_other_work(store: Arc<dyn Store>) {
    let api = Api::new(store);
    let first = post_job(
        &api,
        json!({"queue": "q", "kind": "k", "payload": {"a": 1, "b": [1, 2]}, "idempotency_key": "K"}),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let id = first.body["id"].clone();

    // The same work (keys in another order: the payload is compared canonically) replays.
    let again = post_job(
        &api,
        json!({"queue": "q", "kind": "k", "payload": {"b": [1, 2], "a": 1}, "idempotency_key": "K"}),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["id"], id);
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");

    let before = api.snapshot().await;
    let cases = [
        (
            "another payload",
            json!({"queue": "q", "kind": "k", "payload": {"a": 2}, "idempotency_key": "K"}),
            json!(["payload"]),
        ),
        (
            "another kind",
            json!({"queue": "q", "kind": "k2", "payload": {"a": 1, "b": [1, 2]}, "idempotency_key": "K"}),
            json!(["kind"]),
        ),
        (
            "both",
            json!({"queue": "q", "kind": "k2", "idempotency_key": "K"}),
            json!(["kind", "payload"]),
        ),
    ];
    for (name, body, differs) in cases {
        let r = post_job(&api, body).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{name}: {}", r.body);
        let err = &r.body["error"];
        assert_eq!(err["code"], "idempotency_conflict", "{name}");
        assert_eq!(err["details"]["differs"], differs, "{name}");
        assert_eq!(err["details"]["job_id"], id, "{name}");
        assert_eq!(err["details"]["field"], "idempotency_key", "{name}");
        assert_eq!(api.snapshot().await, before, "{name} stored something");
    }

    // The header key is the same key.
    let r = api
        .raw(
            "POST",
            "/v1/jobs",
            serde_json::to_vec(&json!({"queue": "q", "kind": "k", "payload": 7})).unwrap(),
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "K"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    // In a batch, the conflicting job is named and the batch stores nothing, not even its
    // fresh jobs.
    let r = post_job(
        &api,
        json!({"jobs": [
            {"queue": "q", "kind": "k", "idempotency_key": "fresh"},
            {"queue": "q", "kind": "k", "payload": {"a": 1, "b": [1, 2]}, "idempotency_key": "K"},
            {"queue": "q", "kind": "k", "payload": "other", "idempotency_key": "K"},
        ]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(
        r.body["error"]["details"]["field"],
        "jobs[2].idempotency_key"
    );
    assert_eq!(api.snapshot().await, before, "the batch stored something");

    // A key is scoped to its tenant and queue: on another queue it is another job.
    let other = post_job(
        &api,
        json!({"queue": "other", "kind": "k2", "idempotency_key": "K"}),
    )
    .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    assert_ne!(other.body["id"], id);
}

on_both_backends!(reused_keys_replay_the_same_work_and_refuse_other_work);
