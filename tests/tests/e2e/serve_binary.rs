//! The real `leasehold` binary on its default embedded SQLite: the README walkthrough over a
//! socket, and a graceful SIGTERM while a long-poll is waiting.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use leasehold_testkit::Coordinator;
use serde_json::{Value, json};

#[tokio::test]
async fn walkthrough_over_a_real_socket() {
    let coord = Coordinator::spawn(None).await.unwrap();
    let http = reqwest::Client::new();
    let job: Value = http
        .post(format!("{}/v1/jobs", coord.url))
        .json(&json!({"queue": "emails", "kind": "send_welcome", "payload": {"to": "ada@example.com"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap();
    let claim: Value = http
        .post(format!("{}/v1/leases", coord.url))
        .json(&json!({"worker_id": "w1", "queues": ["emails"], "lease_ttl_ms": 30000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = &claim["leases"][0]["fencing_token"];
    let done = http
        .post(format!("{}/v1/jobs/{id}/complete", coord.url))
        .json(&json!({"fencing_token": token, "result": {"delivered": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let got: Value = http
        .get(format!("{}/v1/jobs/{id}", coord.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["state"], "succeeded");
    assert_eq!(got["result"]["delivered"], true);
}

#[tokio::test]
async fn sigterm_ends_long_polls_and_exits_cleanly() {
    let mut coord = Coordinator::spawn(None).await.unwrap();
    let url = coord.url.clone();
    let poll = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/v1/leases"))
            .json(&json!({"worker_id": "w", "queues": ["idle"], "wait_ms": 60000}))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || coord.terminate().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
    // The waiting claimer got an answer (an empty claim), not a reset connection.
    assert_eq!(poll.await.unwrap().unwrap(), 200);
}

/// Clients that hang up in the middle of writes (timeouts shorter than the request) must never
/// leave a transaction open: afterwards the store still takes writes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_mid_request_never_wedge_the_store() {
    let coord = Coordinator::spawn(None).await.unwrap();
    let http = reqwest::Client::new();
    let jobs: Vec<serde_json::Value> = (0..1000)
        .map(|i| json!({"queue": "cut", "kind": "k", "payload": {"i": i}}))
        .collect();
    for _ in 0..3 {
        http.post(format!("{}/v1/jobs", coord.url))
            .json(&json!({"jobs": jobs}))
            .send()
            .await
            .unwrap();
    }
    let mut cut = Vec::new();
    for i in 0..60u64 {
        let (url, timeout) = (
            coord.url.clone(),
            Duration::from_micros(200 + (i * 97) % 3000),
        );
        cut.push(tokio::spawn(async move {
            let impatient = reqwest::Client::builder().timeout(timeout).build().unwrap();
            let _ = impatient
                .post(format!("{url}/v1/leases"))
                .json(&json!({"worker_id": format!("cut-{i}"), "queues": ["cut"], "max_jobs": 200}))
                .send()
                .await;
            let _ = impatient
                .post(format!("{url}/v1/jobs"))
                .json(&json!({"jobs": [{"queue": "cut", "kind": "k"}]}))
                .send()
                .await;
        }));
    }
    for t in cut {
        t.await.unwrap();
    }
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = patient
        .post(format!("{}/v1/jobs", coord.url))
        .json(&json!({"queue": "after", "kind": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "the store still takes writes");
    let claim: Value = patient
        .post(format!("{}/v1/leases", coord.url))
        .json(&json!({"worker_id": "w", "queues": ["after"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(claim["leases"].as_array().unwrap().len(), 1);
}
