//! Two coordinator processes on one PostgreSQL: 8 claimers split across them drain 10,000 jobs.
//! No job is ever held by two claimers at once, none is lost, each completes exactly once; and
//! an enqueue on one replica wakes a claimer long-polling on the other.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leasehold_testkit::{Coordinator, fresh_schema, postgres_url};
use serde_json::{Value, json};

const JOBS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_claimers_on_two_replicas_complete_every_job_once() {
    let Some(base) = postgres_url("two_replicas::eight_claimers") else {
        return;
    };
    let db = fresh_schema(&base).await.unwrap();
    let a = Coordinator::spawn(Some(&db)).await.unwrap();
    let b = Coordinator::spawn(Some(&db)).await.unwrap();
    let http = reqwest::Client::new();
    for chunk in 0..JOBS / 1000 {
        let jobs: Vec<Value> = (0..1000)
            .map(|i| json!({"queue": "bulk", "kind": "noop", "payload": {"n": chunk * 1000 + i}}))
            .collect();
        let target = if chunk % 2 == 0 { &a.url } else { &b.url };
        let r = http
            .post(format!("{target}/v1/jobs"))
            .json(&json!({"jobs": jobs}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    // job id → claimer currently holding it.
    let held: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let completed: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for claimer in 0..8 {
        let url = if claimer % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let (held, completed, http) = (held.clone(), completed.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let r: Value = http
                    .post(format!("{url}/v1/leases"))
                    .json(&json!({"worker_id": format!("c{claimer}"), "queues": ["bulk"], "max_jobs": 50, "lease_ttl_ms": 60000}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let leases = r["leases"].as_array().unwrap().clone();
                if leases.is_empty() {
                    return;
                }
                for lease in &leases {
                    let id = lease["job"]["id"].as_str().unwrap().to_owned();
                    let prev = held.lock().unwrap().insert(id.clone(), claimer);
                    assert!(prev.is_none(), "job {id} leased to {claimer} while held by {prev:?}");
                }
                for lease in leases {
                    let id = lease["job"]["id"].as_str().unwrap().to_owned();
                    let done = http
                        .post(format!("{url}/v1/jobs/{id}/complete"))
                        .json(&json!({"fencing_token": lease["fencing_token"], "result": claimer}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(done.status(), 200, "complete {id}");
                    held.lock().unwrap().remove(&id);
                    completed.lock().unwrap().push(id);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let completed = completed.lock().unwrap().clone();
    assert_eq!(completed.len(), JOBS, "every job completed");
    assert_eq!(
        completed.iter().collect::<HashSet<_>>().len(),
        JOBS,
        "none completed twice"
    );
    let queues: Value = http
        .get(format!("{}/v1/queues", b.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queues["queues"][0]["depth"]["succeeded"], JOBS as u64);
    assert_eq!(queues["queues"][0]["depth"]["queued"], 0);
    assert_eq!(queues["queues"][0]["depth"]["leased"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_on_one_replica_wakes_a_claimer_on_the_other() {
    let Some(base) = postgres_url("two_replicas::cross_replica_wakeup") else {
        return;
    };
    let db = fresh_schema(&base).await.unwrap();
    let a = Coordinator::spawn(Some(&db)).await.unwrap();
    let b = Coordinator::spawn(Some(&db)).await.unwrap();
    let http = reqwest::Client::new();
    let waiter = {
        let (url, http) = (a.url.clone(), http.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let r: Value = http
                .post(format!("{url}/v1/leases"))
                .json(&json!({"worker_id": "w", "queues": ["wake"], "wait_ms": 30000}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = http
        .post(format!("{}/v1/jobs", b.url))
        .json(&json!({"queue": "wake", "kind": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (body, waited) = waiter.await.unwrap();
    assert_eq!(body["leases"].as_array().unwrap().len(), 1, "{body}");
    // Woken by NOTIFY, long before the 30 s long-poll would end.
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

/// How many claimers `url`'s coordinator has parked, from its `/metrics`.
async fn parked(http: &reqwest::Client, url: &str) -> u64 {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("leasehold_parked_claimers "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// A run's child unblocked by an outcome reported to one replica reaches a claimer parked on
/// the other at once (NOTIFY on unblock, as on enqueue), not when its 20 s long poll ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_unblocked_on_one_replica_wakes_a_claimer_on_the_other() {
    let Some(base) = postgres_url("two_replicas::cross_replica_unblock") else {
        return;
    };
    let db = fresh_schema(&base).await.unwrap();
    let a = Coordinator::spawn(Some(&db)).await.unwrap();
    let b = Coordinator::spawn(Some(&db)).await.unwrap();
    let http = reqwest::Client::new();
    let run: Value = http
        .post(format!("{}/v1/runs", a.url))
        .json(&json!({"jobs": [{"key": "a", "kind": "k", "queue": "parents"},
                                {"key": "b", "kind": "k", "queue": "children", "depends_on": ["a"]}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let child = run["jobs"][1]["job_id"].clone();
    let waiter = {
        let (url, http) = (b.url.clone(), http.clone());
        tokio::spawn(async move {
            let r: Value = http
                .post(format!("{url}/v1/leases"))
                .json(&json!({"worker_id": "w", "queues": ["children"], "wait_ms": 20000}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (r, Instant::now())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while parked(&http, &b.url).await < 1 {
        assert!(Instant::now() < deadline, "the claimer on b never parked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let claimed: Value = http
        .post(format!("{}/v1/leases", a.url))
        .json(&json!({"worker_id": "p", "queues": ["parents"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lease = &claimed["leases"][0];
    let r: Value = http
        .post(format!("{}/v1/leases/outcomes", a.url))
        .json(&json!({"outcomes": [{"job_id": lease["job"]["id"], "fencing_token": lease["fencing_token"],
                                    "outcome": "complete", "result": null}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["results"][0]["state"], "succeeded", "{r}");
    let reported = Instant::now();
    let (body, answered) = waiter.await.unwrap();
    assert_eq!(body["leases"][0]["job"]["id"], child, "{body}");
    let waited = answered.saturating_duration_since(reported);
    assert!(waited < Duration::from_secs(2), "the child took {waited:?}");
}
