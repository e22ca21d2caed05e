//! The runbook's start (`POST /api/v1/orchestrator/runs`): "Idempotency via runToken; reruns
//! should reuse the same token" — a rerun with the same `runToken` returns the same run.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::api::Api;
use leasehold_coordinator::store::Store;
use serde_json::json;

async fn a_rerun_with_the_same_run_token_returns_the_same_run(store: Arc<dyn Store>) {
    let api = Api::new(store);
    let body = json!({"runToken": "nightly-2026-12-05", "name": "nightly",
                      "jobs": [{"key": "a", "kind": "k", "queue": "rb"},
                               {"key": "b", "kind": "k", "queue": "rb", "depends_on": ["a"]}]});
    let first = api
        .call("POST", "/api/v1/orchestrator/runs", Some(body.clone()))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["run_token"], "nightly-2026-12-05");
    let before = api.snapshot().await;
    let rerun = api
        .call("POST", "/api/v1/orchestrator/runs", Some(body))
        .await;
    assert_eq!(rerun.status, StatusCode::OK, "{}", rerun.body);
    assert_eq!(rerun.body["id"], first.body["id"]);
    assert_eq!(api.snapshot().await, before, "the rerun created jobs");
    // The v1 spelling names the same token.
    let v1 = api
        .call(
            "POST",
            "/v1/runs",
            Some(json!({"run_token": "nightly-2026-12-05", "jobs": [{"key": "a", "kind": "k"}]})),
        )
        .await;
    assert_eq!(v1.body["id"], first.body["id"]);
    // Both spellings at once is a mistake, refused by name.
    let both = api
        .call(
            "POST",
            "/api/v1/orchestrator/runs",
            Some(json!({"runToken": "x", "run_token": "y", "jobs": [{"key": "a", "kind": "k"}]})),
        )
        .await;
    assert_eq!(both.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(both.body["error"]["details"]["field"], "runToken");
}

on_both_backends!(a_rerun_with_the_same_run_token_returns_the_same_run);
