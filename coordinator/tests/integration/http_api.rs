//! The v1 API through the real router (in-process, `tower::ServiceExt::oneshot`), on SQLite and
//! on PostgreSQL.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::api::Api;
use http_body_util::BodyExt;
use leasehold_coordinator::store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn walkthrough_and_headers(store: Arc<dyn Store>) {
    let api = Api::new(store);
    let job = api.enqueue("emails").await;
    assert_eq!(job["state"], "queued");
    let id = job["id"].as_str().unwrap().to_owned();
    let leases = api.claim("emails", "w1", 30_000).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["fencing_token"], 1);
    assert_eq!(leases[0]["job"]["id"], id.as_str());
    assert_eq!(leases[0]["retry"]["max_attempts"], 25);
    let hb = api
        .call("POST", "/v1/leases/heartbeat", Some(json!({"worker_id": "w1", "leases": [{"job_id": id, "fencing_token": 1, "progress": {"pct": 10}}]})))
        .await;
    assert_eq!(hb.body["leases"][0]["status"], "ok");
    let done = api
        .call(
            "POST",
            &format!("/v1/jobs/{id}/complete"),
            Some(json!({"fencing_token": 1, "result": {"sent": true}})),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body["state"], "succeeded");
    let got = api.call("GET", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(got.body["result"], json!({"sent": true}));
    let queues = api.call("GET", "/v1/queues", None).await;
    assert_eq!(queues.body["queues"][0]["depth"]["succeeded"], 1);
    let ready = api.call("GET", "/ready", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let metrics = api.raw("GET", "/metrics", vec![], &[]).await;
    let text = metrics.body.as_str().unwrap().to_owned();
    // The job has finished: no live job, but the gauge is declared.
    assert!(text.contains("# TYPE leasehold_jobs gauge"), "{text}");
    assert!(
        text.contains("leasehold_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

async fn idempotency_header_replays(store: Arc<dyn Store>) {
    let api = Api::new(store);
    let body = serde_json::to_vec(&json!({"queue": "q", "kind": "k"})).unwrap();
    let first = api
        .raw(
            "POST",
            "/v1/jobs",
            body.clone(),
            &[("idempotency-key", "order-42")],
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let second = api
        .raw("POST", "/v1/jobs", body, &[("idempotency-key", "order-42")])
        .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(second.body["id"], first.body["id"]);
    assert_eq!(second.body["idempotency_key"], "order-42");
    // Body key works the same way.
    let third = api
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"queue": "q", "kind": "k", "idempotency_key": "order-42"})),
        )
        .await;
    assert_eq!(
        (third.status, &third.body["id"]),
        (StatusCode::OK, &first.body["id"])
    );
    // Batch: per-job keys, answer in order with `replayed`.
    let batch = api
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"jobs": [
            {"queue": "q", "kind": "k", "idempotency_key": "order-42"},
            {"queue": "q", "kind": "k", "idempotency_key": "order-43"}]})),
        )
        .await;
    assert_eq!(batch.status, StatusCode::CREATED);
    assert_eq!(batch.body["jobs"][0]["replayed"], true);
    assert_eq!(batch.body["jobs"][0]["id"], first.body["id"]);
    assert_eq!(batch.body["jobs"][1]["replayed"], false);
}

async fn zombie_is_fenced_off(store: Arc<dyn Store>) {
    let api = Api::new(store);
    let id = api.enqueue("q").await["id"].as_str().unwrap().to_owned();
    let old = api.claim("q", "zombie", 1_000).await;
    assert_eq!(old[0]["fencing_token"], 1);
    api.clock.advance_ms(1_500);
    let new = api.claim("q", "fresh", 30_000).await;
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["fencing_token"], 2, "reclaimed with token + 1");
    assert_eq!(new[0]["attempt"], 2);
    let before = api.call("GET", &format!("/v1/jobs/{id}"), None).await.body;
    let hb = api
        .call("POST", "/v1/leases/heartbeat", Some(json!({"worker_id": "zombie", "leases": [{"job_id": id, "fencing_token": 1, "checkpoint": {"evil": true}}]})))
        .await;
    assert_eq!(hb.body["leases"][0]["status"], "lost");
    for (verb, body) in [
        ("complete", json!({"fencing_token": 1, "result": "zombie"})),
        (
            "fail",
            json!({"fencing_token": 1, "error": {"class": "X", "message": "m", "retryable": false}}),
        ),
        ("release", json!({"fencing_token": 1})),
    ] {
        let r = api
            .call("POST", &format!("/v1/jobs/{id}/{verb}"), Some(body))
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{verb}");
        assert_eq!(r.body["error"]["code"], "lease_lost");
        assert_eq!(r.body["error"]["details"]["state"], "leased");
    }
    assert_eq!(
        api.call("GET", &format!("/v1/jobs/{id}"), None).await.body,
        before,
        "nothing changed"
    );
    let done = api
        .call(
            "POST",
            &format!("/v1/jobs/{id}/complete"),
            Some(json!({"fencing_token": 2, "result": "fresh"})),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body["result"], "fresh");
    assert_eq!(done.body["worker_id"], "fresh");
}

async fn long_poll_wakes_on_enqueue(store: Arc<dyn Store>) {
    let api = Arc::new(Api::new(store));
    // Nothing ready: returns empty after about wait_ms.
    let started = Instant::now();
    let r = api
        .call(
            "POST",
            "/v1/leases",
            Some(json!({"worker_id": "w", "queues": ["lp"], "wait_ms": 300})),
        )
        .await;
    assert!(r.body["leases"].as_array().unwrap().is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(280),
        "{:?}",
        started.elapsed()
    );
    // A waiting claimer gets a job the moment it is enqueued.
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = api
                .call(
                    "POST",
                    "/v1/leases",
                    Some(json!({"worker_id": "w", "queues": ["lp"], "wait_ms": 20000})),
                )
                .await;
            (r.body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let enqueued_at = Instant::now();
    api.enqueue("lp").await;
    let (body, waited) = waiter.await.unwrap();
    assert_eq!(body["leases"].as_array().unwrap().len(), 1);
    assert!(waited < Duration::from_secs(5), "woke after {waited:?}");
    assert!(enqueued_at.elapsed() < Duration::from_secs(5));
    // A job scheduled shortly in the future wakes the claimer when due, with no enqueue.
    let run_at = (chrono::Utc::now() + chrono::Duration::milliseconds(400)).to_rfc3339();
    api.call(
        "POST",
        "/v1/jobs",
        Some(json!({"queue": "lp", "kind": "k", "run_at": run_at})),
    )
    .await;
    let started = Instant::now();
    let r = api
        .call(
            "POST",
            "/v1/leases",
            Some(json!({"worker_id": "w", "queues": ["lp"], "wait_ms": 20000})),
        )
        .await;
    assert_eq!(r.body["leases"].as_array().unwrap().len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

async fn cancel_retry_pause_over_http(store: Arc<dyn Store>) {
    let api = Api::new(store);
    let id = api.enqueue("q").await["id"].as_str().unwrap().to_owned();
    let c = api
        .raw("POST", &format!("/v1/jobs/{id}/cancel"), vec![], &[])
        .await;
    assert_eq!(
        (c.status, &c.body["state"]),
        (StatusCode::OK, &json!("cancelled"))
    );
    let again = api
        .call(
            "POST",
            &format!("/v1/jobs/{id}/cancel"),
            Some(json!({"reason": "twice"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "cancel is idempotent");
    let retried = api
        .call("POST", &format!("/v1/jobs/{id}/retry"), None)
        .await;
    assert_eq!(
        (retried.status, &retried.body["state"]),
        (StatusCode::OK, &json!("queued"))
    );
    let not_dead = api
        .call("POST", &format!("/v1/jobs/{id}/retry"), None)
        .await;
    assert_eq!(
        (not_dead.status, &not_dead.body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("invalid_state"))
    );
    let p = api.call("POST", "/v1/queues/q/pause", None).await;
    assert_eq!(p.body["paused"], true);
    assert!(api.claim("q", "w", 30_000).await.is_empty());
    api.call("POST", "/v1/queues/q/resume", None).await;
    let leases = api.claim("q", "w", 30_000).await;
    assert_eq!(leases.len(), 1);
    // Leased: cancel is requested, the heartbeat carries it, the worker reports cancelled.
    let c = api
        .call("POST", &format!("/v1/jobs/{id}/cancel"), None)
        .await;
    assert_eq!(
        (&c.body["state"], &c.body["cancel_requested"]),
        (&json!("leased"), &json!(true))
    );
    let token = leases[0]["fencing_token"].clone();
    let hb = api
        .call(
            "POST",
            "/v1/leases/heartbeat",
            Some(json!({"worker_id": "w", "leases": [{"job_id": id, "fencing_token": token}]})),
        )
        .await;
    assert_eq!(hb.body["leases"][0]["status"], "cancel_requested");
    let f = api
        .call("POST", &format!("/v1/jobs/{id}/fail"), Some(json!({"fencing_token": token, "error": {"class": "Cancelled", "message": "stopped"}})))
        .await;
    assert_eq!(f.body["state"], "cancelled");
    // Finished jobs cannot be cancelled.
    let id2 = api.enqueue("q").await["id"].as_str().unwrap().to_owned();
    let l = api.claim("q", "w", 30_000).await;
    api.call(
        "POST",
        &format!("/v1/jobs/{id2}/complete"),
        Some(json!({"fencing_token": l[0]["fencing_token"]})),
    )
    .await;
    let late = api
        .call("POST", &format!("/v1/jobs/{id2}/cancel"), None)
        .await;
    assert_eq!(
        (late.status, &late.body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("invalid_state"))
    );
}

async fn list_pages_with_cursor(store: Arc<dyn Store>) {
    let api = Api::new(store);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(api.enqueue("q").await["id"].clone());
    }
    let p1 = api.call("GET", "/v1/jobs?limit=2", None).await;
    assert_eq!(
        p1.body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].clone())
            .collect::<Vec<_>>(),
        vec![ids[4].clone(), ids[3].clone()]
    );
    let cursor = p1.body["next_cursor"].as_str().unwrap().to_owned();
    let p2 = api
        .call("GET", &format!("/v1/jobs?limit=2&cursor={cursor}"), None)
        .await;
    assert_eq!(p2.body["jobs"][0]["id"], ids[2]);
    let p3 = api
        .call(
            "GET",
            &format!(
                "/v1/jobs?limit=2&cursor={}",
                p2.body["next_cursor"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(p3.body["jobs"].as_array().unwrap().len(), 1);
    assert!(p3.body["next_cursor"].is_null());
    // A huge limit is capped, not an error.
    let all = api
        .call(
            "GET",
            "/v1/jobs?limit=4000000000&state=queued&queue=q",
            None,
        )
        .await;
    assert_eq!(
        (all.status, all.body["jobs"].as_array().unwrap().len()),
        (StatusCode::OK, 5)
    );
}

async fn injection_strings_are_data(store: Arc<dyn Store>) {
    let api = Api::new(store);
    let evil = "x'); DROP TABLE jobs; --";
    let r = api
        .call("POST", "/v1/jobs", Some(json!({"queue": "q", "kind": "k", "payload": {"s": evil}, "idempotency_key": evil, "correlation_id": evil, "project": evil})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let got = api
        .call(
            "GET",
            &format!("/v1/jobs/{}", r.body["id"].as_str().unwrap()),
            None,
        )
        .await;
    for field in ["idempotency_key", "correlation_id", "project"] {
        assert_eq!(got.body[field], evil);
    }
    assert_eq!(got.body["payload"]["s"], evil);
    assert_eq!(
        api.call("GET", "/v1/jobs", None).await.body["jobs"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "table intact"
    );
}

/// One row of the bad-input table: name, method, path, body, headers, status, error code.
/// One request of `proto/conformance/bad_requests.json` (placeholders not yet filled).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BadRequest {
    name: String,
    method: String,
    path: String,
    #[serde(default)]
    json: Option<Value>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    hex: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    status: u16,
    code: String,
}

/// A bad request ready to send, with the answer it must get.
struct Prepared {
    name: String,
    method: String,
    path: String,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    status: u16,
    code: String,
}

/// The table of bad requests shared with other suites, plus the ones too large to write down.
fn bad_requests(job: &str) -> Vec<Prepared> {
    let unknown = uuid::Uuid::now_v7().to_string();
    let fill = |s: &str| s.replace("{job}", job).replace("{unknown}", &unknown);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../proto/conformance/bad_requests.json"
    );
    let table: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases: Vec<BadRequest> = serde_json::from_value(table["cases"].clone()).unwrap();
    let mut out: Vec<_> = cases
        .into_iter()
        .map(|c| {
            let body = match (c.json, c.text, c.hex) {
                (Some(v), None, None) => fill(&v.to_string()).into_bytes(),
                (None, Some(t), None) => t.into_bytes(),
                (None, None, Some(h)) => (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                    .collect(),
                (None, None, None) => vec![],
                _ => panic!("{}: one body at most", c.name),
            };
            Prepared {
                path: fill(&c.path),
                headers: c.headers.into_iter().collect(),
                name: c.name,
                method: c.method,
                body,
                status: c.status,
                code: c.code,
            }
        })
        .collect();
    let j = |v: Value| serde_json::to_vec(&v).unwrap();
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"kind": "k"})).collect();
    for (name, body, status, code) in [
        (
            "payload over 1 MiB",
            j(json!({"queue": "q", "kind": "k", "payload": {"blob": "x".repeat(1_100_000)}})),
            413,
            "payload_too_large",
        ),
        (
            "body over limit",
            vec![b' '; 9 * 1024 * 1024],
            413,
            "payload_too_large",
        ),
        (
            "batch of 1001",
            j(json!({"jobs": too_many})),
            422,
            "validation_failed",
        ),
    ] {
        out.push(Prepared {
            name: name.into(),
            method: "POST".into(),
            path: "/v1/jobs".into(),
            body,
            headers: vec![],
            status,
            code: code.into(),
        });
    }
    out
}

async fn bad_inputs_are_rejected_and_change_nothing(store: Arc<dyn Store>) {
    let api = Api::new(store);
    let id = api.enqueue("q").await["id"].as_str().unwrap().to_owned();
    let cases = bad_requests(&id);
    assert!(cases.len() >= 50, "the table is read whole");
    let before = api.snapshot().await;
    for Prepared {
        name,
        method,
        path,
        body,
        headers,
        status,
        code,
    } in cases
    {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = api.raw(&method, &path, body, &headers).await;
        assert_eq!(r.status.as_u16(), status, "{name}: {}", r.body);
        assert_eq!(r.body["error"]["code"], code.as_str(), "{name}: {}", r.body);
        assert_eq!(api.snapshot().await, before, "{name} changed the store");
    }
    // Field naming on the common mistakes.
    let r = api
        .call("POST", "/v1/jobs", Some(json!({"queue": "q"})))
        .await;
    assert_eq!(r.body["error"]["details"]["field"], "kind");
    let r = api
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"jobs": [{"kind": "k"}, {"kind": "k", "priority": "x"}]})),
        )
        .await;
    assert_eq!(r.body["error"]["details"]["field"], "jobs[1].priority");
}

async fn artifacts_are_verified_and_deduplicated(store: Arc<dyn Store>) {
    use sha2::Digest;
    let api = Api::new(store);
    let bytes = b"hello artifact".to_vec();
    let digest = format!(
        "sha256:{}",
        leasehold_coordinator::http::artifacts::hex(&sha2::Sha256::digest(&bytes))
    );
    let path = format!("/v1/artifacts/{digest}");
    let missing = api.raw("GET", &path, vec![], &[]).await;
    assert_eq!(
        (missing.status, &missing.body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
    let first = api.raw("PUT", &path, bytes.clone(), &[]).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(
        (first.body["size"].as_u64(), &first.body["created"]),
        (Some(bytes.len() as u64), &json!(true))
    );
    let again = api.raw("PUT", &path, bytes.clone(), &[]).await;
    assert_eq!(
        (again.status, &again.body["created"]),
        (StatusCode::OK, &json!(false))
    );
    let response = api
        .router
        .clone()
        .oneshot(Request::builder().uri(&path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
        bytes
    );
    // A body that does not hash to the digest is refused and nothing is kept.
    let other = format!("sha256:{}", "1".repeat(64));
    let wrong = api
        .raw(
            "PUT",
            &format!("/v1/artifacts/{other}"),
            b"not it".to_vec(),
            &[],
        )
        .await;
    assert_eq!(
        (wrong.status, &wrong.body["error"]["code"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!("validation_failed")
        )
    );
    assert_eq!(
        api.raw("GET", &format!("/v1/artifacts/{other}"), vec![], &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Malformed digests and oversized blobs.
    for bad in [
        "sha256:XYZ",
        "md5:abc",
        "sha256:ABCDEF0000000000000000000000000000000000000000000000000000000000",
    ] {
        let r = api
            .raw("PUT", &format!("/v1/artifacts/{bad}"), b"x".to_vec(), &[])
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let big = vec![7u8; 1024 * 1024 + 1];
    let big_digest = format!(
        "sha256:{}",
        leasehold_coordinator::http::artifacts::hex(&sha2::Sha256::digest(&big))
    );
    let r = api
        .raw("PUT", &format!("/v1/artifacts/{big_digest}"), big, &[])
        .await;
    assert_eq!(
        (r.status, &r.body["error"]["code"]),
        (StatusCode::PAYLOAD_TOO_LARGE, &json!("payload_too_large"))
    );
    assert_eq!(
        api.raw("GET", &format!("/v1/artifacts/{big_digest}"), vec![], &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn batch_outcomes_are_fenced_one_by_one(store: Arc<dyn Store>) {
    let api = Api::new(store);
    for _ in 0..3 {
        api.enqueue("b").await;
    }
    let leases = api.claim("b", "w", 30_000).await;
    assert_eq!(leases.len(), 3);
    let id = |i: usize| leases[i]["job"]["id"].clone();
    let token = |i: usize| leases[i]["fencing_token"].clone();
    // Completions may name only stored artifacts: upload both first.
    let mut digests = vec![];
    for bytes in [b"bb".to_vec(), b"a".to_vec()] {
        use sha2::Digest;
        let digest = format!(
            "sha256:{}",
            leasehold_coordinator::http::artifacts::hex(&sha2::Sha256::digest(&bytes))
        );
        let put = api
            .raw("PUT", &format!("/v1/artifacts/{digest}"), bytes, &[])
            .await;
        assert!(put.status.is_success(), "{}", put.body);
        digests.push(digest);
    }
    let artifacts = json!([{"name": "b.txt", "digest": digests[0], "size": 2, "media_type": "text/plain"},
                           {"name": "a.txt", "digest": digests[1], "size": 1, "media_type": "text/plain"}]);
    let mut sorted = artifacts.as_array().unwrap().clone();
    sorted.sort_by_key(|a| a["name"].as_str().unwrap().to_owned());
    let manifest_digest = leasehold_coordinator::validate::jcs_digest(&Value::Array(sorted));
    // A wrong manifest digest rejects the whole batch; nothing is written.
    let bad = api
        .call("POST", "/v1/leases/outcomes", Some(json!({"outcomes": [
            {"job_id": id(0), "fencing_token": token(0), "outcome": "complete", "artifacts": artifacts, "manifest_digest": format!("sha256:{}", "0".repeat(64))}]})))
        .await;
    assert_eq!(
        (bad.status, &bad.body["error"]["details"]["field"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!("outcomes[0].manifest_digest")
        )
    );
    let r = api
        .call("POST", "/v1/leases/outcomes", Some(json!({"outcomes": [
            {"job_id": id(0), "fencing_token": token(0), "outcome": "complete", "result": 1, "artifacts": artifacts, "manifest_digest": manifest_digest},
            {"job_id": id(1), "fencing_token": token(1), "outcome": "fail", "error": {"class": "E", "message": "m", "retryable": true}},
            {"job_id": id(2), "fencing_token": token(2), "outcome": "release"},
            {"job_id": id(0), "fencing_token": 99, "outcome": "complete"},
            {"job_id": uuid::Uuid::now_v7(), "fencing_token": 1, "outcome": "release"}]})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let statuses: Vec<_> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["status"].clone(), x["state"].clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (json!("ok"), json!("succeeded")),
            (json!("ok"), json!("queued")),
            (json!("ok"), json!("queued")),
            (json!("lease_lost"), json!("succeeded")),
            (json!("not_found"), Value::Null),
        ]
    );
    let job = api
        .call(
            "GET",
            &format!("/v1/jobs/{}", id(0).as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        job.body["artifacts"][0]["name"], "a.txt",
        "manifest stored sorted by name"
    );
}

on_both_backends!(
    artifacts_are_verified_and_deduplicated,
    batch_outcomes_are_fenced_one_by_one,
    walkthrough_and_headers,
    idempotency_header_replays,
    zombie_is_fenced_off,
    long_poll_wakes_on_enqueue,
    cancel_retry_pause_over_http,
    list_pages_with_cursor,
    injection_strings_are_data,
    bad_inputs_are_rejected_and_change_nothing,
);

/// `proto/openapi.json` is the generated document, byte for byte. Regenerate with
/// `LEASEHOLD_BLESS=1 cargo test -p leasehold-coordinator --test integration http_api::openapi`.
#[tokio::test]
async fn openapi_document_is_current() {
    let generated = leasehold_coordinator::http::openapi::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/openapi.json");
    if std::env::var("LEASEHOLD_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "proto/openapi.json is stale: run LEASEHOLD_BLESS=1 cargo test -p leasehold-coordinator --test integration http_api::openapi"
    );
    let (store, _guard) = common::sqlite_store().await;
    let api = Api::new(store);
    let served = api.call("GET", "/.well-known/openapi", None).await;
    let parsed: Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(served.body, parsed);
    for path in [
        "/v1/jobs",
        "/v1/leases",
        "/v1/leases/heartbeat",
        "/v1/jobs/{id}/complete",
        "/v1/queues",
    ] {
        assert!(
            parsed["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }
}
