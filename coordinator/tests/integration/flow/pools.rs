//! A worker pool shared by several tenants (docs/flow-control.md, "Fairness across tenants"):
//! the coordinator's own key claims for a list of tenants, and the leases interleave them by
//! weight, whatever one tenant's backlog; heartbeats and outcomes name the tenant `*` (each
//! job's own), over HTTP and over a WebSocket session; each tenant's limits still apply; a
//! tenant's key can do none of it. Both stores.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::keyed::{Coordinator, ROOT};

/// Enqueues `n` jobs on queue `shared` with `key` (its tenant's).
async fn enqueue(c: &Coordinator, key: &str, n: usize) {
    let jobs: Vec<Value> = (0..n)
        .map(|i| json!({"queue": "shared", "kind": "k", "payload": {"i": i}}))
        .collect();
    let (s, a) = c
        .call(
            Some(key),
            Method::POST,
            "/v1/jobs",
            Some(json!({"jobs": jobs})),
            &[],
        )
        .await;
    assert_eq!(s, 201, "{a}");
}

/// One pool claim with the coordinator's own key: the answer.
async fn pool_claim(c: &Coordinator, tenants: &[&str], weights: Value, max_jobs: u32) -> Value {
    let body = json!({"worker_id": "pool-1", "queues": ["shared"], "max_jobs": max_jobs,
                      "lease_ttl_ms": 600_000, "tenants": tenants, "tenant_weights": weights});
    let (s, a) = c
        .call(Some(ROOT), Method::POST, "/v1/leases", Some(body), &[])
        .await;
    assert_eq!(s, 200, "{a}");
    a
}

/// Leases per tenant in a claim's answer.
fn per_tenant(answer: &Value) -> HashMap<String, usize> {
    let mut got = HashMap::new();
    for lease in answer["leases"].as_array().unwrap() {
        *got.entry(lease["job"]["tenant"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    got
}

async fn a_flood_does_not_starve_a_trickle_and_weights_share_the_pool(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, flood) = c.key("flood", &["jobs:write", "jobs:read"]).await;
    let (_, trickle) = c.key("trickle", &["jobs:write", "jobs:read"]).await;
    // The flood first: older jobs, 50 times as many.
    enqueue(&c, &flood, 500).await;
    enqueue(&c, &trickle, 10).await;

    // Claims of two: one of each while the trickle lasts, then the flood alone.
    for n in 0..10 {
        let got = per_tenant(&pool_claim(&c, &["flood", "trickle"], json!({}), 2).await);
        assert_eq!(
            (got.get("flood"), got.get("trickle")),
            (Some(&1), Some(&1)),
            "claim {n}: {got:?}"
        );
    }
    let got = per_tenant(&pool_claim(&c, &["flood", "trickle"], json!({}), 2).await);
    assert_eq!(
        got.get("flood"),
        Some(&2),
        "the trickle is served out: {got:?}"
    );

    // Weights 3:1 while both have work: 30 and 10 of 40, claim after claim.
    let (_, heavy) = c.key("heavy", &["jobs:write"]).await;
    let (_, light) = c.key("light", &["jobs:write"]).await;
    enqueue(&c, &heavy, 100).await;
    enqueue(&c, &light, 100).await;
    let mut total: HashMap<String, usize> = HashMap::new();
    for _ in 0..10 {
        let answer = pool_claim(&c, &["heavy", "light"], json!({"heavy": 3}), 4).await;
        for (t, n) in per_tenant(&answer) {
            *total.entry(t).or_default() += n;
        }
    }
    assert_eq!((total["heavy"], total["light"]), (30, 10), "{total:?}");

    // A tenant with nothing ready leaves the whole batch to the others.
    let got = per_tenant(&pool_claim(&c, &["trickle", "light"], json!({}), 5).await);
    assert_eq!(got.get("light"), Some(&5), "{got:?}");
}

async fn a_pools_heartbeats_and_outcomes_act_for_each_jobs_tenant(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, alpha) = c.key("alpha", &["jobs:write", "jobs:read"]).await;
    let (_, beta) = c.key("beta", &["jobs:write", "jobs:read"]).await;
    enqueue(&c, &alpha, 2).await;
    enqueue(&c, &beta, 2).await;
    let answer = pool_claim(&c, &["alpha", "beta"], json!({}), 4).await;
    let leases = answer["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 4, "{answer}");

    let items: Vec<Value> = leases
        .iter()
        .map(|l| json!({"job_id": l["job"]["id"], "fencing_token": l["fencing_token"]}))
        .collect();
    let body = json!({"worker_id": "pool-1", "leases": items, "tenant": "*"});
    let (s, a) = c
        .call(
            Some(ROOT),
            Method::POST,
            "/v1/leases/heartbeat",
            Some(body),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{a}");
    for (item, result) in items.iter().zip(a["leases"].as_array().unwrap()) {
        assert_eq!(result["job_id"], item["job_id"], "in request order: {a}");
        assert_eq!(result["status"], "ok", "{a}");
    }

    // Without `*`, the coordinator's own key acts for `default`: another tenant's lease is
    // not found there.
    let body = json!({"outcomes": [{"job_id": items[0]["job_id"],
        "fencing_token": items[0]["fencing_token"], "outcome": "complete", "result": {}}]});
    let (s, a) = c
        .call(
            Some(ROOT),
            Method::POST,
            "/v1/leases/outcomes",
            Some(body),
            &[],
        )
        .await;
    assert_eq!(
        (s, a["results"][0]["status"].clone()),
        (200, json!("not_found")),
        "{a}"
    );

    let outcomes: Vec<Value> = items
        .iter()
        .map(|i| {
            json!({"job_id": i["job_id"], "fencing_token": i["fencing_token"],
                        "outcome": "complete", "result": {"by": "pool"}})
        })
        .collect();
    let body = json!({"outcomes": outcomes, "tenant": "*"});
    let (s, a) = c
        .call(
            Some(ROOT),
            Method::POST,
            "/v1/leases/outcomes",
            Some(body),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{a}");
    for (item, result) in items.iter().zip(a["results"].as_array().unwrap()) {
        assert_eq!(result["job_id"], item["job_id"], "{a}");
        assert_eq!(
            (&result["status"], &result["state"]),
            (&json!("ok"), &json!("succeeded"))
        );
    }
    // Each job is its own tenant's, and only its own tenant sees it.
    for lease in leases {
        let id = lease["job"]["id"].as_str().unwrap();
        let (own, other) = match lease["job"]["tenant"].as_str().unwrap() {
            "alpha" => (&alpha, &beta),
            _ => (&beta, &alpha),
        };
        let path = format!("/v1/jobs/{id}");
        let (s, job) = c.call(Some(own), Method::GET, &path, None, &[]).await;
        assert_eq!(
            (s, job["state"].clone()),
            (200, json!("succeeded")),
            "{job}"
        );
        assert_eq!(
            c.call(Some(other), Method::GET, &path, None, &[]).await.0,
            404
        );
    }
}

async fn a_pool_respects_each_tenants_limits_and_wakes_on_any_tenants_job(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, alpha) = c.key("alpha", &["jobs:write", "orch:quota"]).await;
    let (_, beta) = c.key("beta", &["jobs:write"]).await;
    let limit = json!({"concurrency": 1, "reason": "one at a time", "ticket": "OPS-1"});
    let (s, a) = c
        .call(Some(&alpha), Method::PUT, "/v1/limits/*", Some(limit), &[])
        .await;
    assert_eq!(s, 200, "{a}");
    enqueue(&c, &alpha, 5).await;
    enqueue(&c, &beta, 5).await;
    let answer = pool_claim(&c, &["alpha", "beta"], json!({}), 6).await;
    let got = per_tenant(&answer);
    assert_eq!(
        (got.get("alpha"), got.get("beta")),
        (Some(&1), Some(&5)),
        "{answer}"
    );
    assert_eq!(
        answer["throttled"]["limits"],
        json!(["alpha/*"]),
        "{answer}"
    );

    // A long poll of the pool, all of it leased or held: it wakes for a job of either tenant.
    let (_, gamma) = c.key("gamma", &["jobs:write"]).await;
    let waiting = {
        let body = json!({"worker_id": "pool-1", "queues": ["shared"], "max_jobs": 1,
                          "wait_ms": 10_000, "tenants": ["alpha", "gamma"]});
        let http = c.http.clone();
        let url = format!("{}/v1/leases", c.served.url);
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let r = http
                .post(url)
                .bearer_auth(ROOT)
                .json(&body)
                .send()
                .await
                .unwrap();
            (started.elapsed(), r.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    enqueue(&c, &gamma, 1).await;
    let (took, answer) = waiting.await.unwrap();
    assert_eq!(answer["leases"][0]["job"]["tenant"], "gamma", "{answer}");
    assert!(
        took < Duration::from_secs(5),
        "woken, not timed out: {took:?}"
    );
}

async fn only_the_coordinators_own_key_runs_a_pool(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, alpha) = c.key("alpha", &["worker", "jobs:write"]).await;
    let claim = |extra: Value| {
        let mut body = json!({"worker_id": "w", "queues": ["shared"]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (
            Some(alpha.as_str()),
            claim(json!({"tenants": ["alpha", "beta"]})),
            403,
            "tenants",
        ),
        (Some(ROOT), claim(json!({"tenants": []})), 422, "tenants"),
        (
            Some(ROOT),
            claim(json!({"tenants": ["a b"]})),
            422,
            "tenants",
        ),
        (
            Some(ROOT),
            claim(json!({"tenants": ["a"], "tenant": "default"})),
            422,
            "tenants",
        ),
        (
            Some(ROOT),
            claim(json!({"tenants": ["a"], "tenant_weights": {"b": 2}})),
            422,
            "tenant_weights",
        ),
        (
            Some(ROOT),
            claim(json!({"tenants": ["a"], "tenant_weights": {"a": 0}})),
            422,
            "tenant_weights",
        ),
        (
            Some(ROOT),
            claim(json!({"tenant_weights": {"a": 2}})),
            422,
            "tenant_weights",
        ),
    ];
    for (key, body, status, field) in cases {
        let (s, a) = c
            .call(key, Method::POST, "/v1/leases", Some(body.clone()), &[])
            .await;
        assert_eq!(
            (s, a["error"]["details"]["field"].clone()),
            (status, json!(field)),
            "{body}: {a}"
        );
    }
    // A tenant's key cannot report for each job's tenant either.
    let body = json!({"worker_id": "w", "leases": [], "tenant": "*"});
    let (s, a) = c
        .call(
            Some(&alpha),
            Method::POST,
            "/v1/leases/heartbeat",
            Some(body),
            &[],
        )
        .await;
    assert_eq!(s, 403, "{a}");
    let body = json!({"outcomes": [], "tenant": "*"});
    let (s, a) = c
        .call(
            Some(&alpha),
            Method::POST,
            "/v1/leases/outcomes",
            Some(body),
            &[],
        )
        .await;
    assert_eq!(s, 403, "{a}");
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON frame, skipping pings.
async fn recv(ws: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).unwrap(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("no frame: {other:?}"),
        }
    }
}

async fn a_pool_session_takes_both_tenants_work_over_a_websocket(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, alpha) = c.key("alpha", &["jobs:write"]).await;
    let (_, beta) = c.key("beta", &["jobs:write"]).await;
    enqueue(&c, &alpha, 3).await;
    enqueue(&c, &beta, 3).await;

    let url = c.served.url.replace("http://", "ws://") + "/v1/workers/connect";
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {ROOT}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let hello = json!({"type": "hello", "worker_id": "pool-ws", "queues": ["shared"],
                       "lease_ttl_ms": 60_000, "tenants": ["alpha", "beta"],
                       "tenant_weights": {"alpha": 2}});
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    assert_eq!(recv(&mut ws).await["type"], "welcome");
    ws.send(Message::Text(
        json!({"type": "credit", "n": 3}).to_string().into(),
    ))
    .await
    .unwrap();
    let mut leases = Vec::new();
    while leases.len() < 3 {
        let frame = recv(&mut ws).await;
        assert_eq!(frame["type"], "leases", "{frame}");
        leases.extend(frame["leases"].as_array().unwrap().clone());
    }
    let got = per_tenant(&json!({"leases": leases}));
    assert_eq!(
        (got.get("alpha"), got.get("beta")),
        (Some(&2), Some(&1)),
        "{got:?}"
    );

    let outcomes: Vec<Value> = leases
        .iter()
        .map(|l| {
            json!({"job_id": l["job"]["id"], "fencing_token": l["fencing_token"],
                        "outcome": "complete", "result": {}})
        })
        .collect();
    let frame = json!({"type": "outcomes", "seq": 7, "outcomes": outcomes});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
    let ack = recv(&mut ws).await;
    assert_eq!(
        (ack["type"].clone(), ack["seq"].clone()),
        (json!("outcomes_ack"), json!(7)),
        "{ack}"
    );
    for result in ack["results"].as_array().unwrap() {
        assert_eq!(result["status"], "ok", "{ack}");
    }
}

crate::on_both_backends!(
    a_flood_does_not_starve_a_trickle_and_weights_share_the_pool,
    a_pools_heartbeats_and_outcomes_act_for_each_jobs_tenant,
    a_pool_respects_each_tenants_limits_and_wakes_on_any_tenants_job,
    only_the_coordinators_own_key_runs_a_pool,
    a_pool_session_takes_both_tenants_work_over_a_websocket,
);
