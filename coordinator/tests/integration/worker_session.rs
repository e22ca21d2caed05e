//! The WebSocket worker session over a real socket, on SQLite and PostgreSQL: credit-bounded
//! pushes, heartbeats and outcomes on the same socket, drain, and protocol errors.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use leasehold_coordinator::store::Store;
use leasehold_coordinator::{AppState, app};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Server {
    url: String,
    _dir: common::DirGuard,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

async fn serve(store: Arc<dyn Store>) -> Server {
    let dir = common::temp_dir("ws");
    let (state, shutdown) = AppState::new(store, dir.0.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    Server {
        url: format!("127.0.0.1:{}", addr.port()),
        _dir: dir,
        _shutdown: shutdown,
    }
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON frame, skipping pings; `None` on close or after `wait`.
async fn recv(ws: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

async fn enqueue(server: &Server, n: usize) {
    let jobs: Vec<Value> = (0..n)
        .map(|i| json!({"queue": "ws", "kind": "k", "payload": {"i": i}}))
        .collect();
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/jobs", server.url))
        .json(&json!({"jobs": jobs}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

async fn open(server: &Server) -> Socket {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/workers/connect", server.url))
            .await
            .unwrap();
    send(&mut ws, json!({"type": "hello", "worker_id": "ws-1", "queues": ["ws"], "lease_ttl_ms": 30000, "worker_version": "test/1"})).await;
    let welcome = recv(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    ws
}

/// Whether every outcome an `outcomes_ack` answers was recorded, its job succeeded.
fn all_succeeded(ack: &Value) -> bool {
    ack["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["status"] == "ok" && r["state"] == "succeeded")
}

async fn pushes_up_to_credit_and_takes_outcomes(store: Arc<dyn Store>) {
    let server = serve(store).await;
    let mut ws = open(&server).await;
    enqueue(&server, 3).await;
    // No credit yet: nothing is pushed.
    assert!(recv(&mut ws, Duration::from_millis(300)).await.is_none());
    send(&mut ws, json!({"type": "credit", "n": 2})).await;
    let mut leases = Vec::new();
    while leases.len() < 2 {
        let msg = recv(&mut ws, Duration::from_secs(5))
            .await
            .expect("leases pushed");
        assert_eq!(msg["type"], "leases", "{msg}");
        leases.extend(msg["leases"].as_array().unwrap().clone());
    }
    assert_eq!(leases.len(), 2, "never more than the credit");
    assert!(
        recv(&mut ws, Duration::from_millis(300)).await.is_none(),
        "third job waits for credit"
    );

    let hb: Vec<Value> = leases.iter().map(|l| json!({"job_id": l["job"]["id"], "fencing_token": l["fencing_token"], "checkpoint": {"step": 1}})).collect();
    send(
        &mut ws,
        json!({"type": "heartbeat", "seq": 7, "leases": hb}),
    )
    .await;
    let ack = recv(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_u64()),
        (Some("heartbeat_ack"), Some(7))
    );
    assert!(
        ack["leases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["status"] == "ok"),
        "{ack}"
    );

    let outcomes: Vec<Value> = leases.iter().map(|l| json!({"job_id": l["job"]["id"], "fencing_token": l["fencing_token"], "outcome": "complete", "result": "done"})).collect();
    send(
        &mut ws,
        json!({"type": "outcomes", "seq": 8, "outcomes": outcomes}),
    )
    .await;
    let ack = recv(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_u64()),
        (Some("outcomes_ack"), Some(8))
    );
    assert!(all_succeeded(&ack), "{ack}");

    // One more credit: the waiting job arrives at once.
    send(&mut ws, json!({"type": "credit", "n": 1})).await;
    let msg = recv(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(msg["leases"].as_array().unwrap().len(), 1);
    // A new job is pushed the moment it is enqueued (credit 5, nothing ready).
    send(&mut ws, json!({"type": "credit", "n": 5})).await;
    enqueue(&server, 1).await;
    let msg = recv(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(msg["type"], "leases");
    // After drain nothing more is pushed, but the socket still answers heartbeats.
    send(&mut ws, json!({"type": "drain"})).await;
    enqueue(&server, 1).await;
    assert!(
        recv(&mut ws, Duration::from_millis(500)).await.is_none(),
        "drained session got a lease"
    );
    send(
        &mut ws,
        json!({"type": "heartbeat", "seq": 9, "leases": []}),
    )
    .await;
    let ack = recv(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ack["type"], "heartbeat_ack");
}

async fn protocol_errors_are_reported(store: Arc<dyn Store>) {
    let server = serve(store).await;
    // A bad hello gets an error frame and the socket closes.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/workers/connect", server.url))
            .await
            .unwrap();
    send(
        &mut ws,
        json!({"type": "hello", "worker_id": "w", "queues": ["bad queue"], "lease_ttl_ms": 30000}),
    )
    .await;
    let err = recv(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (err["type"].as_str(), err["error"]["code"].as_str()),
        (Some("error"), Some("validation_failed")),
        "{err}"
    );
    assert!(
        recv(&mut ws, Duration::from_secs(5)).await.is_none(),
        "closed after a bad hello"
    );
    // A bad request inside a session answers that seq and keeps the session.
    let mut ws = open(&server).await;
    send(&mut ws, json!({"type": "outcomes", "seq": 3, "outcomes": [{"job_id": uuid::Uuid::now_v7(), "fencing_token": 1, "outcome": "complete", "artifacts": [{"name": "../x", "digest": "sha256:00", "size": 1, "media_type": "a/b"}]}]})).await;
    let err = recv(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (err["seq"].as_u64(), err["error"]["code"].as_str()),
        (Some(3), Some("validation_failed")),
        "{err}"
    );
    send(&mut ws, json!({"type": "heartbeat", "seq": 4, "leases": [{"job_id": uuid::Uuid::now_v7(), "fencing_token": 1}]})).await;
    let ack = recv(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ack["leases"][0]["status"], "lost");
    // Garbage ends the session with an error frame.
    ws.send(Message::Text("{not json".into())).await.unwrap();
    let err = recv(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_request");
    // A plain GET (no upgrade) is a client error in the envelope.
    let r = reqwest::get(format!("http://{}/v1/workers/connect", server.url))
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
}

/// Outcomes and credit sent together are answered as when sent apart (the pusher records a
/// single tenant's outcomes in its next claim's transaction): a bad batch is refused alone, a
/// job sent back to the queue is leased again at once, and after a drain outcomes are still
/// recorded although nothing more is leased.
async fn outcomes_and_credit_sent_together(store: Arc<dyn Store>) {
    let server = serve(store).await;
    let mut ws = open(&server).await;
    enqueue(&server, 2).await;
    send(&mut ws, json!({"type": "credit", "n": 2})).await;
    let mut leases = Vec::new();
    while leases.len() < 2 {
        let msg = recv(&mut ws, Duration::from_secs(5)).await.unwrap();
        assert_eq!(msg["type"], "leases", "{msg}");
        leases.extend(msg["leases"].as_array().unwrap().clone());
    }
    let (a, b) = (&leases[0], &leases[1]);
    let now = chrono::Utc::now().to_rfc3339();
    // Three frames at once: a batch with a bad artifact name, a retryable failure due now,
    // and credit for one lease.
    send(&mut ws, json!({"type": "outcomes", "seq": 1, "outcomes": [{"job_id": a["job"]["id"], "fencing_token": a["fencing_token"], "outcome": "complete", "artifacts": [{"name": "../x", "digest": "sha256:00", "size": 1, "media_type": "a/b"}]}]})).await;
    send(&mut ws, json!({"type": "outcomes", "seq": 2, "outcomes": [{"job_id": b["job"]["id"], "fencing_token": b["fencing_token"], "outcome": "fail", "error": {"class": "flaky", "message": "try again", "retryable": true}, "retry_at": now}]})).await;
    send(&mut ws, json!({"type": "credit", "n": 1})).await;
    let (mut refused, mut acked, mut again) = (None, None, None);
    while refused.is_none() || acked.is_none() || again.is_none() {
        let msg = recv(&mut ws, Duration::from_secs(5))
            .await
            .expect("every frame answered");
        match (msg["type"].as_str(), msg["seq"].as_u64()) {
            (Some("error"), Some(1)) => refused = Some(msg),
            (Some("outcomes_ack"), Some(2)) => acked = Some(msg),
            (Some("leases"), None) => again = Some(msg),
            _ => panic!("unexpected frame {msg}"),
        }
    }
    assert_eq!(refused.unwrap()["error"]["code"], "validation_failed");
    let acked = acked.unwrap();
    assert_eq!(acked["results"][0]["status"], "ok", "{acked}");
    assert_eq!(acked["results"][0]["state"], "queued", "{acked}");
    let again = &again.unwrap()["leases"][0];
    assert_eq!(
        again["job"]["id"], b["job"]["id"],
        "the retried job is leased again"
    );
    assert_eq!(again["attempt"], 2);
    // After a drain: no lease for a new job, yet both outcomes are recorded.
    send(&mut ws, json!({"type": "drain"})).await;
    send(&mut ws, json!({"type": "credit", "n": 5})).await;
    enqueue(&server, 1).await;
    send(&mut ws, json!({"type": "outcomes", "seq": 3, "outcomes": [
        {"job_id": a["job"]["id"], "fencing_token": a["fencing_token"], "outcome": "complete"},
        {"job_id": again["job"]["id"], "fencing_token": again["fencing_token"], "outcome": "complete"}]})).await;
    let ack = recv(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_u64()),
        (Some("outcomes_ack"), Some(3)),
        "{ack}"
    );
    assert!(all_succeeded(&ack), "{ack}");
    assert!(
        recv(&mut ws, Duration::from_millis(500)).await.is_none(),
        "a drained session got a lease"
    );
}

on_both_backends!(
    pushes_up_to_credit_and_takes_outcomes,
    outcomes_and_credit_sent_together,
    protocol_errors_are_reported
);
