//! `GET /v1/workers`: the workers a tenant has, as the coordinator saw them claim over HTTP,
//! heartbeat and hold WebSocket sessions — transport, queues, version, leases held, last seen
//! and last heartbeat, connected or gone; another tenant's invisible; bad input named. Both
//! stores.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::keyed::{Coordinator, ROOT};

/// The worker `id` in `GET /v1/workers` once `ready` holds for it (sightings are written on
/// their own task).
async fn worker(c: &Coordinator, key: &str, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, list) = c
            .call(Some(key), Method::GET, "/v1/workers", None, &[])
            .await;
        assert_eq!(s, 200, "{list}");
        let found = list["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["worker_id"] == id)
            .cloned();
        if let Some(w) = found.filter(|w| ready(w)) {
            return w;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never as expected: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn workers_are_listed_as_they_were_seen(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    // An HTTP worker that holds one lease.
    let job = json!({"queue": "q1", "kind": "k", "payload": {}});
    assert_eq!(
        c.call(Some(ROOT), Method::POST, "/v1/jobs", Some(job), &[])
            .await
            .0,
        201
    );
    let claim = json!({"worker_id": "http-1", "queues": ["q1"], "worker_version": "app/7"});
    let (s, claimed) = c
        .call(Some(ROOT), Method::POST, "/v1/leases", Some(claim), &[])
        .await;
    assert_eq!(s, 200, "{claimed}");
    let w = worker(&c, ROOT, "http-1", |w| w["leases"] == 1).await;
    assert_eq!(
        (
            &w["transport"],
            &w["queues"],
            &w["version"],
            &w["connected"]
        ),
        (
            &json!("http"),
            &json!(["q1"]),
            &json!("app/7"),
            &json!(true)
        ),
        "{w}"
    );
    assert_eq!(w["last_heartbeat_at"], Value::Null);
    let beat = json!({"worker_id": "http-1", "leases": [{"job_id": claimed["leases"][0]["job"]["id"],
        "fencing_token": claimed["leases"][0]["fencing_token"]}]});
    let (s, a) = c
        .call(
            Some(ROOT),
            Method::POST,
            "/v1/leases/heartbeat",
            Some(beat),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{a}");
    let w = worker(&c, ROOT, "http-1", |w| w["last_heartbeat_at"].is_string()).await;
    assert_eq!(
        w["transport"], "http",
        "a heartbeat keeps what the claim said: {w}"
    );

    // A WebSocket worker: connected while its session is open, gone once it closes.
    let url = c.served.url.replace("http://", "ws://") + "/v1/workers/connect";
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {ROOT}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let hello = json!({"type": "hello", "worker_id": "ws-1", "queues": ["q2", "q3"],
                       "lease_ttl_ms": 30_000, "worker_version": "sdk/1"});
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(
        welcome.to_text().unwrap().contains("welcome"),
        "{welcome:?}"
    );
    let w = worker(&c, ROOT, "ws-1", |w| w["connected"] == true).await;
    assert_eq!(
        (&w["transport"], &w["queues"], &w["leases"]),
        (&json!("websocket"), &json!(["q2", "q3"]), &json!(0)),
        "{w}"
    );
    ws.close(None).await.unwrap();
    drop(ws);
    worker(&c, ROOT, "ws-1", |w| w["connected"] == false).await;

    // Another tenant has no workers; a window in the future keeps only the lease holder.
    let (_, beta) = c.key("beta", &["jobs:read"]).await;
    let (s, theirs) = c
        .call(Some(&beta), Method::GET, "/v1/workers", None, &[])
        .await;
    assert_eq!((s, theirs), (200, json!({"workers": []})));
    let ahead = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339()
        .replace('+', "%2B");
    let (_, later) = c
        .call(
            Some(ROOT),
            Method::GET,
            &format!("/v1/workers?since={ahead}"),
            None,
            &[],
        )
        .await;
    let ids: Vec<&str> = later["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["worker_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["http-1"], "{later}");

    for (query, field) in [("?since=yesterday", "since"), ("?limit=5", "limit")] {
        let (s, a) = c
            .call(
                Some(ROOT),
                Method::GET,
                &format!("/v1/workers{query}"),
                None,
                &[],
            )
            .await;
        assert_eq!(
            (s, a["error"]["details"]["field"].clone()),
            (422, json!(field)),
            "{a}"
        );
    }
    let (_, worker_key) = c.key("default", &["worker"]).await;
    assert_eq!(
        c.call(Some(&worker_key), Method::GET, "/v1/workers", None, &[])
            .await
            .0,
        403,
        "listing workers needs jobs:read"
    );
}

crate::on_both_backends!(workers_are_listed_as_they_were_seen);
