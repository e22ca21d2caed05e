//! Direct hand-off (`leasehold_coordinator::handoff`): a job enqueued while a claimer is parked
//! in a long poll is leased to it in the enqueue's transaction. The store writes what an
//! enqueue and a claim would have written; over a real socket, the parked claimer gets the job,
//! and jobs that are not ready, paused or replayed are not handed off. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::events::event_types;
use common::rows::{claim_params, complete, new_job};
use leasehold_coordinator::handoff::Handoffs;
use leasehold_coordinator::store::Store;
use leasehold_coordinator::store::{PauseQueue, SetQueueSettings};
use serde_json::{Value, json};

/// `v` as JSON without the fields that differ between two otherwise identical jobs.
fn json<T: serde::Serialize>(v: &T) -> Value {
    let mut v = serde_json::to_value(v).unwrap();
    let strip = |obj: &mut serde_json::Map<String, Value>| {
        for field in ["id", "queue", "idempotency_key"] {
            obj.remove(field);
        }
    };
    let obj = v.as_object_mut().unwrap();
    strip(obj);
    if let Some(job) = obj.get_mut("job").and_then(Value::as_object_mut) {
        strip(job);
    }
    v
}

/// Microsecond precision, as both databases store times.
fn now_micros() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

/// A job with every optional field set, as the API would store it.
fn full_job(queue: &str, key: &str, now: DateTime<Utc>) -> leasehold_coordinator::store::NewJobRow {
    let mut row = new_job(queue, "k", now);
    row.idempotency_key = Some(key.into());
    row.correlation_id = Some("corr-1".into());
    row.project = Some("proj".into());
    row.priority = 7;
    row.max_attempts = 5;
    row.run_at = now - chrono::Duration::milliseconds(1500);
    row.backoff = Some(leasehold_proto::BackoffHint {
        initial_ms: 250,
        multiplier: 1.5,
        max_delay_ms: 60_000,
    });
    row
}

async fn hand_off_writes_what_enqueue_then_claim_write(store: Arc<dyn Store>) {
    // Without a timeout; with the job's own (shorter than the lease: the lease ends at the
    // deadline); with its queue's default; with both (the job's own wins).
    for (n, own, default) in [
        (0, None, None),
        (1, Some(10_000), None),
        (2, None, Some(5_000)),
        (3, Some(10_000), Some(5_000)),
    ] {
        let (a, b) = (format!("a{n}"), format!("b{n}"));
        compare_hand_off(&store, (&a, &b), own, default).await;
    }
}

/// Enqueues then claims one job in queue `a`, hands one off in queue `b` (each with
/// `timeout_ms` `own`, both queues with `default_timeout_ms` `default`), and checks that both
/// ways wrote the same.
async fn compare_hand_off(
    store: &Arc<dyn Store>,
    (a, b): (&str, &str),
    own: Option<u64>,
    default: Option<u64>,
) {
    let now = now_micros();
    let settings = leasehold_proto::QueueSettings {
        default_timeout_ms: default,
    };
    for queue in [a, b] {
        store
            .set_queue_settings(SetQueueSettings {
                now,
                tenant: "default".into(),
                queue: queue.to_owned(),
                settings: settings.clone(),
            })
            .await
            .unwrap();
    }
    let job = |queue: &str, key: &str| {
        let mut row = full_job(queue, key, now);
        row.timeout_ms = own;
        row
    };
    // The two-transaction way, in queue `a`.
    let enqueued_a = store
        .enqueue(now, vec![job(a, "key-a")])
        .await
        .unwrap()
        .remove(0)
        .job;
    let lease_a = store
        .claim(now, &claim_params(a, 1, 30_000))
        .await
        .unwrap()
        .leases
        .remove(0);
    // The hand-off, in queue `b`.
    let (enqueued_b, lease_b) = store
        .enqueue_leased(now, job(b, "key-b"), &claim_params(b, 1, 30_000))
        .await
        .unwrap()
        .expect("handed off");
    assert_eq!(json(&enqueued_b), json(&enqueued_a), "the enqueue's answer");
    assert_eq!(enqueued_b.state, leasehold_proto::JobState::Queued);
    assert_eq!(json(&lease_b), json(&lease_a), "the lease");
    assert_eq!(lease_b.fencing_token, 1);
    assert_eq!(lease_b.timeout_ms, own.or(default), "the attempt's timeout");
    let ends = lease_b.timeout_ms.map_or(30_000, |ms| ms.min(30_000));
    assert_eq!(
        lease_b.lease_ttl_ms, ends,
        "the lease ends at the deadline at the latest"
    );
    let stored_a = store
        .get_job("default", lease_a.job.id)
        .await
        .unwrap()
        .unwrap();
    let stored_b = store
        .get_job("default", lease_b.job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(json(&stored_b), json(&stored_a), "the stored row");
    assert_eq!(
        event_types(store, lease_b.job.id).await,
        event_types(store, lease_a.job.id).await
    );
    assert_eq!(
        event_types(store, lease_b.job.id).await,
        ["enqueued", "leased"]
    );
    let events = store.events_after(0, 1000).await.unwrap();
    let of = |id| -> Vec<(Option<String>, Value)> {
        events
            .iter()
            .filter(|e| e.job_id == Some(id))
            .map(|e| (e.worker_id.clone(), e.data.clone()))
            .collect()
    };
    assert_eq!(
        of(lease_b.job.id),
        of(lease_a.job.id),
        "event workers and data"
    );
    // The handed-off lease is a lease like any other.
    let done = store
        .finish(now, "default", vec![complete(lease_b.job.id, 1)])
        .await
        .unwrap();
    assert!(matches!(
        &done[0],
        leasehold_coordinator::store::Finished::Ok(job) if job.state == leasehold_proto::JobState::Succeeded
    ));
}

async fn hand_off_writes_nothing_when_it_cannot(store: Arc<dyn Store>) {
    let now = now_micros();
    let claim = claim_params("p", 1, 30_000);
    // A paused queue: nothing written.
    store
        .set_queue_paused(PauseQueue {
            now,
            tenant: "default".into(),
            queue: "p".into(),
            paused: true,
        })
        .await
        .unwrap();
    let job = new_job("p", "k", now);
    let id = job.id;
    assert!(
        store
            .enqueue_leased(now, job, &claim)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get_job("default", id).await.unwrap().is_none());
    assert!(event_types(&store, id).await.is_empty());
    store
        .set_queue_paused(PauseQueue {
            now,
            tenant: "default".into(),
            queue: "p".into(),
            paused: false,
        })
        .await
        .unwrap();
    // An idempotency key that exists: nothing written, the first job untouched.
    let mut first = new_job("p", "k", now);
    first.idempotency_key = Some("key-1".into());
    let first_id = store.enqueue(now, vec![first]).await.unwrap()[0].job.id;
    let mut again = new_job("p", "k", now);
    again.idempotency_key = Some("key-1".into());
    let again_id = again.id;
    assert!(
        store
            .enqueue_leased(now, again, &claim)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get_job("default", again_id).await.unwrap().is_none());
    let stored = store.get_job("default", first_id).await.unwrap().unwrap();
    assert_eq!(stored.state, leasehold_proto::JobState::Queued);
    assert_eq!(event_types(&store, first_id).await, ["enqueued"]);
}

/// A hand-off whose statement fails (here: a job id that exists) writes nothing and leaves the
/// store usable: on SQLite the transaction its text opened is rolled back.
async fn a_failed_hand_off_leaves_the_store_usable(store: Arc<dyn Store>) {
    let now = now_micros();
    let first = new_job("f", "k", now);
    let id = first.id;
    store.enqueue(now, vec![first.clone()]).await.unwrap();
    let err = store
        .enqueue_leased(now, first, &claim_params("f", 1, 30_000))
        .await
        .expect_err("a duplicate id is refused");
    assert!(!err.to_string().is_empty());
    assert_eq!(event_types(&store, id).await, ["enqueued"]);
    assert_eq!(
        store.get_job("default", id).await.unwrap().unwrap().state,
        leasehold_proto::JobState::Queued
    );
    // The writer is not left inside a transaction: the next writes commit.
    let (job, lease) = store
        .enqueue_leased(now, new_job("f", "k", now), &claim_params("f", 1, 30_000))
        .await
        .unwrap()
        .expect("handed off");
    assert_eq!(lease.job.id, job.id);
    let next = store
        .enqueue(now, vec![new_job("f", "k", now)])
        .await
        .unwrap();
    assert!(
        store
            .get_job("default", next[0].job.id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(event_types(&store, job.id).await, ["enqueued", "leased"]);
}

struct Client {
    http: reqwest::Client,
    url: String,
    handoffs: Handoffs,
    _served: common::Served,
}

impl Client {
    async fn new(store: Arc<dyn Store>) -> Self {
        let mut handoffs = Handoffs::new();
        let served = common::serve_with(store, |s| handoffs = s.handoffs.clone()).await;
        Self {
            http: reqwest::Client::new(),
            url: served.url.clone(),
            handoffs,
            _served: served,
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.url)).send().await;
        r.unwrap().json().await.unwrap()
    }

    /// A long poll on `queue` (20 s) on its own task: its answer.
    fn long_poll(&self, queue: &str) -> tokio::task::JoinHandle<Value> {
        let (http, url) = (self.http.clone(), format!("{}/v1/leases", self.url));
        let body = json!({"worker_id": "w-parked", "queues": [queue], "wait_ms": 20_000,
                          "lease_ttl_ms": 30_000});
        tokio::spawn(async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json().await.unwrap()
        })
    }

    /// Waits until `n` claimers are parked.
    async fn parked(&self, n: usize) {
        for _ in 0..1000 {
            if self.handoffs.parked() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{} claimers parked, expected {n}", self.handoffs.parked());
    }
}

async fn parked_claimer_gets_the_job_from_its_enqueue(store: Arc<dyn Store>) {
    let c = Client::new(store).await;
    let poll = c.long_poll("h");
    c.parked(1).await;
    let (status, job) = c.post("/v1/jobs", json!({"queue": "h", "kind": "k"})).await;
    assert_eq!(status, 201);
    assert_eq!(job["state"], "queued", "the job as enqueued");
    assert_eq!(job["attempt"], 0);
    let answer = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the parked claimer answered")
        .unwrap();
    let leases = answer["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["job"]["id"], job["id"]);
    assert_eq!(leases[0]["fencing_token"], 1);
    assert_eq!(leases[0]["job"]["worker_id"], "w-parked");
    assert_eq!(c.handoffs.parked(), 0);
    let id = job["id"].as_str().unwrap();
    assert_eq!(c.get(&format!("/v1/jobs/{id}")).await["state"], "leased");
    let (status, done) = c
        .post(
            &format!("/v1/jobs/{id}/complete"),
            json!({"fencing_token": 1, "result": {"ok": true}}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "succeeded");
    let metrics = c
        .http
        .get(format!("{}/metrics", c.url))
        .send()
        .await
        .unwrap();
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("leasehold_handoffs_total")
    );
}

async fn scheduled_and_paused_jobs_are_not_handed_off(store: Arc<dyn Store>) {
    let c = Client::new(store).await;
    let poll = c.long_poll("p");
    c.parked(1).await;
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, scheduled) = c
        .post(
            "/v1/jobs",
            json!({"queue": "p", "kind": "k", "run_at": later}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(scheduled["state"], "queued");
    let (status, _) = c.post("/v1/queues/p/pause", json!({})).await;
    assert_eq!(status, 200);
    let (status, ready) = c.post("/v1/jobs", json!({"queue": "p", "kind": "k"})).await;
    assert_eq!(status, 201);
    // Taken and given back: the claimer queried again, found the queue paused and parked again.
    c.parked(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !poll.is_finished(),
        "nothing was leased from a paused queue"
    );
    let id = ready["id"].as_str().unwrap();
    assert_eq!(c.get(&format!("/v1/jobs/{id}")).await["state"], "queued");
    // Resumed: the claimer gets the ready job, not the scheduled one.
    let (status, _) = c.post("/v1/queues/p/resume", json!({})).await;
    assert_eq!(status, 200);
    let answer = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("woken by the resume")
        .unwrap();
    assert_eq!(answer["leases"][0]["job"]["id"], ready["id"]);
    let sid = scheduled["id"].as_str().unwrap();
    assert_eq!(c.get(&format!("/v1/jobs/{sid}")).await["state"], "queued");
}

async fn a_replayed_key_leaves_the_claimer_to_claim(store: Arc<dyn Store>) {
    let c = Client::new(store).await;
    let first = c
        .post(
            "/v1/jobs",
            json!({"queue": "r", "kind": "k", "idempotency_key": "once"}),
        )
        .await
        .1;
    // The claimer takes the queued job at once; park a second one for the replay.
    let (status, claimed) = c
        .post(
            "/v1/leases",
            json!({"worker_id": "w", "queues": ["r"], "wait_ms": 0}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(claimed["leases"][0]["job"]["id"], first["id"]);
    let poll = c.long_poll("r");
    c.parked(1).await;
    let (status, replay) = c
        .post(
            "/v1/jobs",
            json!({"queue": "r", "kind": "k", "idempotency_key": "once"}),
        )
        .await;
    assert_eq!(status, 200, "a replay");
    assert_eq!(replay["id"], first["id"]);
    assert_eq!(replay["state"], "leased", "the stored job, untouched");
    c.parked(1).await;
    assert!(!poll.is_finished(), "nothing new to lease");
    poll.abort();
}

async fn a_claimer_that_hung_up_is_not_handed_jobs(store: Arc<dyn Store>) {
    let c = Client::new(store).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let gone = impatient
        .post(format!("{}/v1/leases", c.url))
        .json(&json!({"worker_id": "w", "queues": ["g"], "wait_ms": 20_000}))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    c.parked(0).await;
    let (status, job) = c.post("/v1/jobs", json!({"queue": "g", "kind": "k"})).await;
    assert_eq!(status, 201);
    let id = job["id"].as_str().unwrap();
    assert_eq!(c.get(&format!("/v1/jobs/{id}")).await["state"], "queued");
}

async fn a_worker_session_with_credit_gets_the_job_from_its_enqueue(store: Arc<dyn Store>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let c = Client::new(store).await;
    let ws_url = format!("{}/v1/workers/connect", c.url.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let next = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str::<Value>(&t).unwrap(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no frame: {other:?}"),
        }
    };
    for frame in [
        json!({"type": "hello", "worker_id": "ws-parked", "queues": ["s"], "lease_ttl_ms": 30000}),
        json!({"type": "credit", "n": 1}),
    ] {
        ws.send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }
    assert_eq!(next(&mut ws).await["type"], "welcome");
    c.parked(1).await;
    let (status, job) = c.post("/v1/jobs", json!({"queue": "s", "kind": "k"})).await;
    assert_eq!(status, 201);
    let pushed = next(&mut ws).await;
    assert_eq!(pushed["type"], "leases", "{pushed}");
    assert_eq!(pushed["leases"][0]["job"]["id"], job["id"]);
    assert_eq!(pushed["leases"][0]["job"]["worker_id"], "ws-parked");
    // Its one credit spent, the session is no longer parked: the next job waits in the queue.
    c.parked(0).await;
    let (_, second) = c.post("/v1/jobs", json!({"queue": "s", "kind": "k"})).await;
    let sid = second["id"].as_str().unwrap();
    assert_eq!(c.get(&format!("/v1/jobs/{sid}")).await["state"], "queued");
    let done = json!({"type": "outcomes", "seq": 1, "outcomes": [
        {"job_id": job["id"], "fencing_token": 1, "outcome": "complete", "result": null}]});
    ws.send(Message::Text(done.to_string().into()))
        .await
        .unwrap();
    let ack = next(&mut ws).await;
    assert_eq!(ack["type"], "outcomes_ack", "{ack}");
    assert_eq!(ack["results"][0]["state"], "succeeded", "{ack}");
}

on_both_backends!(
    a_failed_hand_off_leaves_the_store_usable,
    a_worker_session_with_credit_gets_the_job_from_its_enqueue,
    hand_off_writes_what_enqueue_then_claim_write,
    hand_off_writes_nothing_when_it_cannot,
    parked_claimer_gets_the_job_from_its_enqueue,
    scheduled_and_paused_jobs_are_not_handed_off,
    a_replayed_key_leaves_the_claimer_to_claim,
    a_claimer_that_hung_up_is_not_handed_jobs,
);
