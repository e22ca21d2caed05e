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
