//! Every operation of the OpenAPI document, tried by one tenant against another's data, over a
//! real socket on SQLite and PostgreSQL. Tenant alpha owns a queued, a leased and a dead job, a
//! run, an artifact, a scheduler record, a key, queue settings, a retention override and a
//! quota, all marked with a secret string; beta, holding a key with every scope, calls each
//! operation with alpha's ids, digest, queue and lease, reads each stream for a while, and must
//! never see the secret, never get a server error, and leave every one of alpha's things as it
//! was.
//!
//! The operations come from the document itself: one without a request here fails the test, so
//! a route added later cannot be forgotten.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::digest_of;
use crate::common::keyed::{Coordinator, ROOT};

const SECRET: &str = "alpha-secret-7f3a";
/// The key of alpha's limit (a limit holds no free text: beta names the same key for its own).
const ALPHA_LIMIT: &str = "host:alpha.example.com";
/// Every scope there is.
const ALL: &[&str] = &leasehold_proto::SCOPES;

/// What alpha owns.
struct Alpha {
    key: String,
    key_id: String,
    queued: String,
    leased: String,
    token: i64,
    dead: String,
    run: String,
    digest: String,
}

async fn ok(c: &Coordinator, key: &str, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, answer) = c.call(Some(key), method.clone(), path, body, &[]).await;
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {answer}"
    );
    answer
}

async fn alpha_world(c: &Coordinator) -> Alpha {
    let (key_id, key) = c.key("alpha", ALL).await;
    let job = |n: u32| {
        json!({"queue": "alpha-q", "kind": "k", "payload": {"secret": SECRET, "n": n},
                            "idempotency_key": format!("alpha-idem-{n}"), "max_attempts": 1})
    };
    // The dead job first (leased and failed), then the leased one, then the queued one.
    let dead = ok(c, &key, Method::POST, "/v1/jobs", Some(job(1))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let claim = json!({"worker_id": "alpha-w", "queues": ["alpha-q"], "max_jobs": 1, "wait_ms": 0});
    let lease =
        ok(c, &key, Method::POST, "/v1/leases", Some(claim.clone())).await["leases"][0].clone();
    ok(c, &key, Method::POST, &format!("/v1/jobs/{dead}/fail"),
       Some(json!({"fencing_token": lease["fencing_token"], "error": {"class": "E", "message": SECRET, "retryable": false}}))).await;
    let leased = ok(c, &key, Method::POST, "/v1/jobs", Some(job(2))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lease = ok(c, &key, Method::POST, "/v1/leases", Some(claim)).await["leases"][0].clone();
    assert_eq!(lease["job"]["id"], json!(leased));
    let token = lease["fencing_token"].as_i64().unwrap();
    let queued = ok(c, &key, Method::POST, "/v1/jobs", Some(job(3))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = ok(c, &key, Method::POST, "/v1/runs", Some(json!({"name": SECRET, "run_token": "alpha-run",
        "jobs": [{"key": "a", "kind": "k", "queue": "alpha-runs", "payload": {"secret": SECRET}},
                 {"key": "b", "kind": "k", "queue": "alpha-runs", "payload": {}, "depends_on": ["a"]}]}))).await;
    let run = run["id"].as_str().unwrap().to_owned();
    let bytes = format!("artifact of {SECRET}");
    let digest = digest_of(bytes.as_bytes());
    assert_eq!(c.put_artifact(&key, &digest, bytes.as_bytes()).await.0, 201);
    ok(c, &key, Method::POST, "/orchestrator/runs", Some(json!({
        "started_at": "2026-12-05T10:00:00Z", "completed_at": "2026-12-05T10:01:00Z", "status": "failed",
        "tables_assessed": 1, "tables_skipped": 0, "tables_healthy": 0, "jobs_submitted": 1,
        "jobs_completed": 0, "jobs_failed": 1, "dry_run": false, "error": SECRET}))).await;
    ok(
        c,
        &key,
        Method::PUT,
        "/v1/queues/alpha-q/settings",
        Some(json!({"default_timeout_ms": 60000})),
    )
    .await;
    ok(
        c,
        &key,
        Method::PUT,
        "/v1/retention/queues/alpha-q",
        Some(json!({"succeeded": "2h"})),
    )
    .await;
    ok(
        c,
        &key,
        Method::PUT,
        "/v1/retention/tenant",
        Some(json!({"failed": "3d"})),
    )
    .await;
    ok(
        c,
        &key,
        Method::PUT,
        &format!("/v1/limits/{ALPHA_LIMIT}"),
        Some(json!({"concurrency": 5, "reason": "r", "ticket": "t"})),
    )
    .await;
    ok(
        c,
        &key,
        Method::PUT,
        "/v1/quota",
        Some(json!({"max_queued": 100, "max_leased": 10, "reason": SECRET, "ticket": "T-1"})),
    )
    .await;
    ok(
        c,
        &key,
        Method::POST,
        "/v1/runs/plan",
        Some(json!({"jobs": [{"key": "a", "kind": "k", "queue": "q", "payload": {}}]})),
    )
    .await;
    Alpha {
        key,
        key_id,
        queued,
        leased,
        token,
        dead,
        run,
        digest,
    }
}

/// Everything alpha can see of its own things, to compare before and after beta's attempts.
async fn alpha_view(c: &Coordinator, a: &Alpha) -> Value {
    let mut view = json!({});
    for path in [
        format!("/v1/jobs/{}", a.queued),
        format!("/v1/jobs/{}", a.leased),
        format!("/v1/jobs/{}", a.dead),
        format!("/v1/runs/{}", a.run),
        "/v1/queues".to_owned(),
        "/v1/retention".to_owned(),
        "/v1/limits".to_owned(),
        "/v1/quota".to_owned(),
        "/v1/keys".to_owned(),
        "/orchestrator/runs".to_owned(),
    ] {
        let mut got = ok(c, &a.key, Method::GET, &path, None).await;
        // Reading refreshes these; they are not alpha's state.
        if let Some(keys) = got.get_mut("keys").and_then(Value::as_array_mut) {
            for key in keys {
                key["last_used_at"] = Value::Null;
            }
        }
        view[path] = got;
    }
    let (status, bytes) = c.get_artifact(&a.key, &a.digest).await;
    view["artifact"] = json!([status, String::from_utf8_lossy(&bytes)]);
    view
}

/// The request beta makes for one documented operation: the path with alpha's values and a
/// body. `None` for an operation this table does not know: the test then fails.
fn request(method: &str, path: &str, a: &Alpha) -> Option<(String, Option<Value>)> {
    let fill = path
        .replace(
            "{id}",
            match path {
                p if p.starts_with("/v1/runs/") => &a.run,
                p if p.starts_with("/v1/keys/") => &a.key_id,
                p if p.contains("/complete") || p.contains("/fail") || p.contains("/release") => {
                    &a.leased
                }
                p if p.contains("/retry") => &a.dead,
                _ => &a.queued,
            },
        )
        .replace("{runId}", &a.run)
        .replace("{digest}", &a.digest)
        .replace("{name}", "alpha-q")
        .replace("{queue}", "alpha-q")
        .replace("{key}", ALPHA_LIMIT);
    let lease = json!({"fencing_token": a.token});
    let body = match (method, path) {
        ("GET" | "DELETE", _)
        | (
            "POST",
            "/v1/jobs/{id}/retry"
            | "/v1/runs/{id}/cancel"
            | "/runs/{runId}:cancel"
            | "/v1/queues/{name}/pause"
            | "/v1/queues/{name}/resume"
            | "/v1/retention/sweep",
        ) => None,
        ("POST", "/v1/jobs") => Some(
            json!({"queue": "alpha-q", "kind": "k", "payload": {}, "idempotency_key": "alpha-idem-3"}),
        ),
        ("POST", "/v1/jobs/{id}/cancel") => Some(json!({"reason": "beta was here"})),
        ("POST", "/v1/jobs/{id}/complete") => Some(json!({"fencing_token": a.token, "result": {}})),
        ("POST", "/v1/jobs/{id}/fail") => Some(
            json!({"fencing_token": a.token, "error": {"class": "E", "message": "m", "retryable": false}}),
        ),
        ("POST", "/v1/jobs/{id}/release") => Some(lease),
        ("POST", "/v1/leases") => Some(
            json!({"worker_id": "beta-w", "queues": ["alpha-q", "alpha-runs"], "max_jobs": 10, "wait_ms": 0, "tenant": "alpha"}),
        ),
        ("POST", "/v1/leases/heartbeat") => Some(
            json!({"worker_id": "alpha-w", "leases": [{"job_id": a.leased, "fencing_token": a.token}]}),
        ),
        ("POST", "/v1/leases/outcomes") => Some(
            json!({"outcomes": [{"job_id": a.leased, "fencing_token": a.token, "outcome": "release"}]}),
        ),
        ("PUT", "/v1/artifacts/{digest}") => Some(json!("not the bytes")),
        ("POST", "/v1/keys") => Some(json!({"tenant": "alpha", "scopes": ["admin"]})),
        ("POST", "/v1/replays") => Some(json!({"queue": "alpha-q", "reason": "r", "ticket": "t"})),
        ("POST", "/v1/cancellations") => {
            Some(json!({"queue": "alpha-q", "run_id": a.run, "reason": "r", "ticket": "t"}))
        }
        ("PUT", "/v1/queues/{name}/settings") => Some(json!({"default_timeout_ms": null})),
        ("PUT", "/v1/slo/{queue}") => {
            Some(json!({"success_ratio": 0.5, "pickup_ms": 10, "pickup_ratio": 0.5}))
        }
        ("PUT", "/v1/limits/{key}") => {
            Some(json!({"rate": 1.0, "reason": "beta was here", "ticket": "B-1"}))
        }
        ("PUT", "/v1/quota") => Some(
            json!({"max_queued": 0, "max_leased": 0, "reason": "beta was here", "ticket": "t"}),
        ),
        ("PUT", "/v1/retention/queues/{name}" | "/v1/retention/tenant") => {
            Some(json!({"succeeded": "1m"}))
        }
        ("POST", "/v1/runs" | "/runs" | "/api/v1/orchestrator/runs") => Some(
            json!({"run_token": "alpha-run", "jobs": [{"key": "a", "kind": "k", "queue": "alpha-q", "payload": {}}]}),
        ),
        ("POST", "/v1/runs/plan") => {
            Some(json!({"jobs": [{"key": "a", "kind": "k", "queue": "q", "payload": {}}]}))
        }
        ("POST", "/runs/{runId}/checkpoints") => Some(json!({"name": "beta", "data": {}})),
        ("POST", "/orchestrator/runs") => Some(json!({
            "started_at": "2026-12-05T10:00:00Z", "completed_at": "2026-12-05T10:01:00Z", "status": "succeeded",
            "tables_assessed": 0, "tables_skipped": 0, "tables_healthy": 0, "jobs_submitted": 0,
            "jobs_completed": 0, "jobs_failed": 0, "dry_run": true})),
        _ => return None,
    };
    let fill = match path {
        "/v1/ledger/export" => format!("{fill}?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"),
        "/v1/events" | "/runs/{runId}/events" => format!("{fill}?after=0"),
        "/v1/limits/{key}" if method == "DELETE" => format!("{fill}?reason=r&ticket=t"),
        "/v1/quota" if method == "DELETE" => format!("{fill}?reason=beta&ticket=t"),
        _ => fill,
    };
    Some((fill, body))
}

/// Reads a streaming answer for a while: its status and what arrived.
async fn read_stream(c: &Coordinator, key: &str, path: &str) -> (u16, String) {
    let mut r = c
        .http
        .get(format!("{}{path}", c.served.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(400), async {
        while let Ok(Some(chunk)) = r.chunk().await {
            got.extend_from_slice(&chunk);
        }
    })
    .await;
    (status, String::from_utf8_lossy(&got).into_owned())
}

/// Opens a WebSocket as beta, sends `first` (if any), reads for a while.
async fn read_socket(c: &Coordinator, key: &str, path: &str, first: Option<Value>) -> String {
    let url = format!("{}{path}", c.served.url.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    if let Some(first) = first {
        ws.send(Message::Text(first.to_string().into()))
            .await
            .unwrap();
        ws.send(Message::Text(
            json!({"type": "credit", "n": 10}).to_string().into(),
        ))
        .await
        .unwrap();
    }
    let mut got = String::new();
    let _ = tokio::time::timeout(Duration::from_millis(400), async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                got.push_str(&t);
            }
        }
    })
    .await;
    got
}

async fn no_operation_reaches_another_tenants_data(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let a = alpha_world(&c).await;
    let (_, beta) = c.key("beta", ALL).await;
    let before = alpha_view(&c, &a).await;
    assert!(
        before.to_string().contains(SECRET),
        "alpha sees its own secret"
    );

    let doc = ok(&c, &beta, Method::GET, "/.well-known/openapi", None).await;
    let mut missing = Vec::new();
    let mut tried = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete"] {
            if ops.get(method).is_none() {
                continue;
            }
            let upper = method.to_uppercase();
            let Some((target, body)) = request(&upper, path, &a) else {
                missing.push(format!("{upper} {path}"));
                continue;
            };
            tried += 1;
            let (status, text) = match (upper.as_str(), path.as_str()) {
                ("GET", "/v1/workers/connect") => {
                    let hello = json!({"type": "hello", "worker_id": "beta-w", "queues": ["alpha-q", "alpha-runs"], "lease_ttl_ms": 30000});
                    (101, read_socket(&c, &beta, &target, Some(hello)).await)
                }
                ("GET", "/runs/stream") => (101, read_socket(&c, &beta, &target, None).await),
                ("GET", "/v1/events" | "/runs/{runId}/events") => {
                    read_stream(&c, &beta, &target).await
                }
                ("PUT", "/v1/artifacts/{digest}") => {
                    let (status, body) = c.put_artifact(&beta, &a.digest, b"not the bytes").await;
                    (status, body.to_string())
                }
                _ => {
                    let m = Method::from_bytes(upper.as_bytes()).unwrap();
                    let (status, body) = c.call(Some(&beta), m, &target, body, &[]).await;
                    (status, body.to_string())
                }
            };
            assert!(status < 500, "{upper} {path}: {status} {text}");
            assert!(
                !text.contains(SECRET),
                "{upper} {path} showed alpha's data to beta: {text}"
            );
        }
    }
    assert!(
        missing.is_empty(),
        "operations without a cross-tenant request: {missing:?}"
    );
    assert!(tried >= 50, "{tried}");
    // Nothing of alpha's changed.
    assert_eq!(alpha_view(&c, &a).await, before);
}

crate::on_both_backends!(no_operation_reaches_another_tenants_data);
