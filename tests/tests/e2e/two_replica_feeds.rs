//! Two coordinator processes on one PostgreSQL, written to through both at once: the live event
//! feed of each replica equals the ledger, id by id (no replica skips an event that another
//! replica's transaction committed late).
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use futures_util::StreamExt;
use leasehold_testkit::{Coordinator, fresh_schema, postgres_url};
use serde_json::{Value, json};

/// Follows `GET /v1/events` until it has seen `want` ids or `patience` passes.
async fn follow(response: reqwest::Response, want: usize, patience: Duration) -> Vec<i64> {
    let mut stream = response.bytes_stream();
    let (mut buf, mut ids) = (String::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + patience;
    while ids.len() < want {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => buf.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
        while let Some(end) = buf.find('\n') {
            let line: String = buf.drain(..=end).collect();
            if let Some(id) = line.strip_prefix("id:") {
                ids.push(id.trim().parse().unwrap());
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_replicas_feeds_equal_the_ledger() {
    let Some(base) = postgres_url("two_replica_feeds::equal") else {
        return;
    };
    let db = fresh_schema(&base).await.unwrap();
    let a = Coordinator::spawn(Some(&db)).await.unwrap();
    let b = Coordinator::spawn(Some(&db)).await.unwrap();
    let http = reqwest::Client::new();
    let feed_a = http
        .get(format!("{}/v1/events", a.url))
        .send()
        .await
        .unwrap();
    let feed_b = http
        .get(format!("{}/v1/events", b.url))
        .send()
        .await
        .unwrap();

    let writers: Vec<_> = (0..8)
        .map(|w| {
            let url = if w % 2 == 0 { a.url.clone() } else { b.url.clone() };
            let http = http.clone();
            tokio::spawn(async move {
                for i in 0..30 {
                    let queue = format!("q{}", (w + i) % 3);
                    let r = http
                        .post(format!("{url}/v1/jobs"))
                        .json(&json!({"queue": queue, "kind": "k", "payload": {"w": w, "i": i}}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                    let claim: Value = http
                        .post(format!("{url}/v1/leases"))
                        .json(&json!({"worker_id": format!("w{w}"), "queues": [queue], "max_jobs": 2}))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    for lease in claim["leases"].as_array().unwrap() {
                        let id = lease["job"]["id"].as_str().unwrap();
                        let r = http
                            .post(format!("{url}/v1/jobs/{id}/complete"))
                            .json(&json!({"fencing_token": lease["fencing_token"]}))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }

    // The ledger, from the export (its last line is the manifest).
    let export = http
        .get(format!(
            "{}/v1/ledger/export?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
            a.url
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ledger: Vec<i64> = lines[..lines.len() - 1]
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(ledger.len() >= 8 * 30 * 2, "{} events", ledger.len());
    let patience = Duration::from_secs(20);
    let (got_a, got_b) = tokio::join!(
        follow(feed_a, ledger.len(), patience),
        follow(feed_b, ledger.len(), patience)
    );
    assert_eq!(got_a, ledger, "replica A's feed differs from the ledger");
    assert_eq!(got_b, ledger, "replica B's feed differs from the ledger");
}
