//! Execution timeouts against a coordinator on a real socket, on SQLite and PostgreSQL: a job's
//! `timeout_ms` (else its queue's `default_timeout_ms`) fixes each attempt's deadline; the lease
//! is never extended past it, a heartbeat or an outcome arriving from then on is refused as a
//! stale token is, and the next claim ends the attempt as a `timeout` failure (retried with
//! backoff, then `dead`) with the same event and run bookkeeping as any failure. The clock is
//! moved, never slept on.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::clocked::Coordinator;
use futures_util::{SinkExt, StreamExt};
use leasehold_coordinator::store::Store;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

fn ms_between(from: &Value, to: &Value) -> i64 {
    (at(to) - at(from)).num_milliseconds()
}

async fn a_heartbeating_worker_is_timed_out_then_retried_then_dead(store: Arc<dyn Store>) {
    let c = Coordinator::start(store).await;
    let backoff = json!({"initial_ms": 1000, "multiplier": 1.0, "max_delay_ms": 1000});
    let job = c
        .enqueue(json!({"queue": "t", "kind": "k", "timeout_ms": 2000, "max_attempts": 2, "backoff": backoff}))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["timeout_ms"], 2000);
    assert_eq!(job["deadline_at"], Value::Null);

    for attempt in 1..=2 {
        let lease = c.claim("t").await.remove(0);
        assert_eq!(lease["attempt"], attempt);
        assert_eq!(lease["timeout_ms"], 2000, "{lease}");
        assert_eq!(
            ms_between(&lease["job"]["started_at"], &lease["deadline_at"]),
            2000
        );
        // A 30 s lease is granted only up to the deadline.
        assert_eq!(lease["expires_at"], lease["deadline_at"], "{lease}");
        assert_eq!(lease["lease_ttl_ms"], 2000);
        // A worker that keeps heartbeating: each beat extends the lease, never past the deadline.
        for _ in 0..3 {
            c.advance_ms(500);
            let beat = c.heartbeat(&lease).await;
            assert_eq!(beat["status"], "ok", "{beat}");
            assert_eq!(beat["expires_at"], lease["deadline_at"]);
        }
        c.advance_ms(500);
        // At the deadline the lease is gone for the worker…
        let beat = c.heartbeat(&lease).await;
        assert_eq!(beat["status"], "lost", "{beat}");
        // …and the next claim ends the attempt as a timeout (and leases nothing: the retry
        // waits for its backoff).
        assert!(c.claim("t").await.is_empty());
        let after = c.job(&id).await;
        assert_eq!(after["last_error"]["class"], "timeout", "{after}");
        assert_eq!(after["last_error"]["retryable"], true);
        assert!(
            after["last_error"]["message"]
                .as_str()
                .unwrap()
                .contains("run time exceeded"),
            "{after}"
        );
        assert_eq!(after["attempt"], attempt);
        assert_eq!(after["deadline_at"], lease["deadline_at"]);
        assert_eq!(after["lease_expires_at"], Value::Null);
        if attempt == 1 {
            assert_eq!(after["state"], "queued", "{after}");
            assert!(at(&after["run_at"]) >= at(&after["updated_at"]), "{after}");
            assert_eq!(after["finished_at"], Value::Null);
            c.advance_ms(1000);
        } else {
            assert_eq!(after["state"], "dead", "{after}");
            assert!(after["finished_at"].is_string());
        }
    }
    let events = c.event_types(&id).await;
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        ["enqueued", "leased", "retry_scheduled", "leased", "dead"]
    );
    for (kind, data) in &events[2..] {
        if kind == "leased" {
            continue;
        }
        assert_eq!(data["reason"], "timeout", "{kind}: {data}");
        assert_eq!(data["error"]["class"], "timeout", "{kind}: {data}");
        assert_eq!(data["from"], "leased");
    }
    assert!(events[2].1["retry_at"].is_string());
    let metrics = reqwest::get(format!("{}/metrics", c.served.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("leasehold_timeouts_total"), "{metrics}");
}

async fn outcomes_after_the_deadline_are_refused_like_a_stale_token(store: Arc<dyn Store>) {
    let c = Coordinator::start(store).await;
    let early = c
        .enqueue(json!({"queue": "late", "kind": "k", "timeout_ms": 5000}))
        .await;
    let late = c
        .enqueue(json!({"queue": "late", "kind": "k", "timeout_ms": 1000}))
        .await;
    let leases = c.claim("late").await;
    let lease_of = |job: &Value| {
        leases
            .iter()
            .find(|l| l["job"]["id"] == job["id"])
            .unwrap()
            .clone()
    };
    let (early, late) = (lease_of(&early), lease_of(&late));
    let late_id = late["job"]["id"].as_str().unwrap().to_owned();
    let token = late["fencing_token"].clone();
    c.advance_ms(1000);
    let before = c.ledger().await.len();
    for (path, body) in [
        ("complete", json!({"fencing_token": token, "result": 1})),
        (
            "fail",
            json!({"fencing_token": token, "error": {"class": "E", "message": "m"}}),
        ),
        ("release", json!({"fencing_token": token})),
    ] {
        let (status, answer) = c
            .call("POST", &format!("/v1/jobs/{late_id}/{path}"), Some(body))
            .await;
        assert_eq!(status, 409, "{path}: {answer}");
        let err = &answer["error"];
        assert_eq!(err["code"], "lease_lost", "{path}: {answer}");
        assert!(
            err["message"].as_str().unwrap().contains("run time"),
            "{path}: {answer}"
        );
        assert_eq!(err["details"]["reason"], "timeout");
        assert_eq!(err["details"]["deadline_at"], late["deadline_at"]);
        assert_eq!(err["details"]["state"], "leased");
    }
    // The batch answers it `lease_lost` (nothing written) and records the other outcome.
    let outcomes = json!({"outcomes": [
        {"job_id": late_id, "fencing_token": token, "outcome": "complete", "result": 1},
        {"job_id": early["job"]["id"], "fencing_token": early["fencing_token"], "outcome": "complete", "result": 2},
    ]});
    let answer = c.ok("POST", "/v1/leases/outcomes", outcomes).await;
    assert_eq!(answer["results"][0]["status"], "lease_lost", "{answer}");
    assert_eq!(answer["results"][1]["status"], "ok", "{answer}");
    assert_eq!(
        c.ledger().await.len(),
        before + 1,
        "only the early completion"
    );
    assert_eq!(c.job(&late_id).await["state"], "leased");
    assert_eq!(
        c.job(early["job"]["id"].as_str().unwrap()).await["state"],
        "succeeded"
    );
    // The claim path then ends it as a timeout, after which a retried late outcome is still
    // refused (it was never recorded).
    assert!(c.claim("late").await.is_empty());
    assert_eq!(c.job(&late_id).await["last_error"]["class"], "timeout");
    let (status, answer) = c
        .call(
            "POST",
            &format!("/v1/jobs/{late_id}/release"),
            Some(json!({"fencing_token": token})),
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (409, &json!("lease_lost")),
        "{answer}"
    );
    let (status, answer) = c
        .call(
            "POST",
            &format!("/v1/jobs/{late_id}/fail"),
            Some(json!({"fencing_token": token, "error": {"class": "timeout", "message": "m"}})),
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (409, &json!("lease_lost")),
        "{answer}"
    );
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn frame(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn the_worker_session_refuses_heartbeats_and_outcomes_past_the_deadline(
    store: Arc<dyn Store>,
) {
    let c = Coordinator::start(store).await;
    let job = c
        .enqueue(json!({"queue": "ws", "kind": "k", "timeout_ms": 1000}))
        .await;
    let url = c.served.url.replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}/v1/workers/connect"))
        .await
        .unwrap();
    send(
        &mut ws,
        json!({"type": "hello", "worker_id": "ws-1", "queues": ["ws"], "lease_ttl_ms": 30000}),
    )
    .await;
    assert_eq!(frame(&mut ws).await["type"], "welcome");
    send(&mut ws, json!({"type": "credit", "n": 1})).await;
    let pushed = frame(&mut ws).await;
    assert_eq!(pushed["type"], "leases", "{pushed}");
    let lease = &pushed["leases"][0];
    assert_eq!(lease["job"]["id"], job["id"]);
    assert_eq!(lease["timeout_ms"], 1000);
    let item = json!({"job_id": job["id"], "fencing_token": lease["fencing_token"]});
    send(
        &mut ws,
        json!({"type": "heartbeat", "seq": 1, "leases": [item]}),
    )
    .await;
    let ack = frame(&mut ws).await;
    assert_eq!(ack["leases"][0]["status"], "ok", "{ack}");
    c.advance_ms(1000);
    send(
        &mut ws,
        json!({"type": "heartbeat", "seq": 2, "leases": [item]}),
    )
    .await;
    let ack = frame(&mut ws).await;
    assert_eq!(
        (ack["seq"].as_u64(), &ack["leases"][0]["status"]),
        (Some(2), &json!("lost")),
        "{ack}"
    );
    let outcome = json!({"job_id": job["id"], "fencing_token": lease["fencing_token"], "outcome": "complete", "result": 1});
    send(
        &mut ws,
        json!({"type": "outcomes", "seq": 3, "outcomes": [outcome]}),
    )
    .await;
    let ack = frame(&mut ws).await;
    assert_eq!(
        (ack["seq"].as_u64(), &ack["results"][0]["status"]),
        (Some(3), &json!("lease_lost")),
        "{ack}"
    );
    assert_eq!(c.job(job["id"].as_str().unwrap()).await["state"], "leased");
}

async fn the_queue_default_applies_and_the_jobs_own_value_wins(store: Arc<dyn Store>) {
    let c = Coordinator::start(store).await;
    let info = c
        .ok(
            "PUT",
            "/v1/queues/d/settings",
            json!({"default_timeout_ms": 5000}),
        )
        .await;
    assert_eq!(
        (&info["name"], &info["default_timeout_ms"]),
        (&json!("d"), &json!(5000)),
        "{info}"
    );
    let (_, list) = c.call("GET", "/v1/queues", None).await;
    assert_eq!(list["queues"][0]["default_timeout_ms"], 5000, "{list}");
    let plain = c.enqueue(json!({"queue": "d", "kind": "k"})).await;
    let own = c
        .enqueue(json!({"queue": "d", "kind": "k", "timeout_ms": 2000}))
        .await;
    assert_eq!(
        plain["timeout_ms"],
        Value::Null,
        "the job's own value: none"
    );
    let leases = c.claim("d").await;
    let timeout_of = |job: &Value| {
        let lease = leases.iter().find(|l| l["job"]["id"] == job["id"]).unwrap();
        assert_eq!(
            ms_between(&lease["job"]["started_at"], &lease["deadline_at"]),
            lease["timeout_ms"].as_i64().unwrap()
        );
        lease["timeout_ms"].clone()
    };
    assert_eq!(timeout_of(&plain), 5000, "the queue's default");
    assert_eq!(timeout_of(&own), 2000, "the job's own value wins");
    // A run's job takes its own value or the default the same way.
    let run = c
        .ok(
            "POST",
            "/v1/runs",
            json!({"jobs": [
            {"key": "a", "kind": "k", "queue": "d"},
            {"key": "b", "kind": "k", "queue": "d", "timeout_ms": 3000}]}),
        )
        .await;
    assert_eq!(run["jobs"].as_array().unwrap().len(), 2);
    let mut run_timeouts: Vec<i64> = c
        .claim("d")
        .await
        .iter()
        .map(|l| l["timeout_ms"].as_i64().unwrap())
        .collect();
    run_timeouts.sort();
    assert_eq!(run_timeouts, [3000, 5000]);
    // Cleared, the default no longer applies; settings of one queue leave others alone.
    let info = c.ok("PUT", "/v1/queues/d/settings", json!({})).await;
    assert_eq!(info["default_timeout_ms"], Value::Null, "{info}");
    c.enqueue(json!({"queue": "d", "kind": "k"})).await;
    c.enqueue(json!({"queue": "other", "kind": "k"})).await;
    for queue in ["d", "other"] {
        let lease = c.claim(queue).await.remove(0);
        assert_eq!(lease["timeout_ms"], Value::Null, "{lease}");
        assert_eq!(lease["deadline_at"], Value::Null, "{lease}");
        assert_eq!(
            ms_between(&lease["job"]["started_at"], &lease["expires_at"]),
            30_000
        );
    }
}

async fn a_lease_whose_worker_vanished_expires_as_before(store: Arc<dyn Store>) {
    let c = Coordinator::start(store).await;
    let job = c
        .enqueue(json!({"queue": "v", "kind": "k", "timeout_ms": 60_000}))
        .await;
    let body = json!({"worker_id": "w1", "queues": ["v"], "lease_ttl_ms": 1000});
    let first = c.ok("POST", "/v1/leases", body.clone()).await["leases"][0].clone();
    assert_eq!(first["expires_at"].as_str().map(|_| ()), Some(()));
    // No heartbeat: the lease expires long before the deadline, and is taken over at once.
    c.advance_ms(1500);
    let second = c.ok("POST", "/v1/leases", body).await["leases"][0].clone();
    assert_eq!(second["attempt"], 2, "{second}");
    assert_eq!(
        second["timeout_ms"], 60_000,
        "a fresh deadline for the new attempt"
    );
    let types: Vec<String> = c
        .event_types(job["id"].as_str().unwrap())
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(types, ["enqueued", "leased", "lease_expired", "leased"]);
}

async fn a_timed_out_job_of_a_run_fails_its_run(store: Arc<dyn Store>) {
    let c = Coordinator::start(store).await;
    let run = c
        .ok(
            "POST",
            "/v1/runs",
            json!({"jobs": [
            {"key": "a", "kind": "k", "queue": "r", "timeout_ms": 1000, "max_attempts": 1},
            {"key": "b", "kind": "k", "queue": "r", "depends_on": ["a"]}]}),
        )
        .await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    let lease = c.claim("r").await.remove(0);
    assert_eq!(lease["timeout_ms"], 1000);
    c.advance_ms(1000);
    assert!(c.claim("r").await.is_empty());
    let (_, run) = c.call("GET", &format!("/v1/runs/{run_id}"), None).await;
    assert_eq!(run["status"], "failed", "{run}");
    let state_of = |key: &str| {
        run["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["key"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(state_of("a")["state"], "dead");
    assert_eq!(state_of("b")["state"], "cancelled");
    assert_eq!(state_of("b")["cancel_reason"], "upstream_failed");
}

async fn a_cancel_requested_job_that_times_out_ends_cancelled(store: Arc<dyn Store>) {
    let c = Coordinator::start(store).await;
    let job = c
        .enqueue(json!({"queue": "c", "kind": "k", "timeout_ms": 1000}))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    c.claim("c").await;
    c.ok(
        "POST",
        &format!("/v1/jobs/{id}/cancel"),
        json!({"reason": "stop"}),
    )
    .await;
    c.advance_ms(1000);
    assert!(c.claim("c").await.is_empty());
    let after = c.job(&id).await;
    assert_eq!(after["state"], "cancelled", "{after}");
    assert_eq!(after["last_error"]["class"], "timeout");
    let (kind, data) = c.event_types(&id).await.pop().unwrap();
    assert_eq!(
        (kind.as_str(), &data["reason"]),
        ("cancelled", &json!("timeout"))
    );
}

async fn bad_timeouts_are_refused_naming_the_field(store: Arc<dyn Store>) {
    let c = Coordinator::start(store).await;
    for bad in [
        json!(0),
        json!(999),
        json!(604_800_001u64),
        json!(-1),
        json!("60s"),
        json!(1.5),
    ] {
        let (status, answer) = c
            .call(
                "POST",
                "/v1/jobs",
                Some(json!({"kind": "k", "timeout_ms": bad})),
            )
            .await;
        assert_eq!(status, 422, "{bad}: {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed");
        assert_eq!(
            answer["error"]["details"]["field"], "timeout_ms",
            "{bad}: {answer}"
        );
        let (status, answer) = c
            .call(
                "POST",
                "/v1/jobs",
                Some(json!({"jobs": [{"kind": "k"}, {"kind": "k", "timeout_ms": bad}]})),
            )
            .await;
        assert_eq!(status, 422, "{bad}: {answer}");
        assert_eq!(
            answer["error"]["details"]["field"], "jobs[1].timeout_ms",
            "{bad}: {answer}"
        );
        let (status, answer) = c
            .call(
                "POST",
                "/v1/runs",
                Some(json!({"jobs": [{"key": "a", "kind": "k", "timeout_ms": bad}]})),
            )
            .await;
        assert_eq!(status, 422, "{bad}: {answer}");
        assert_eq!(
            answer["error"]["details"]["field"], "jobs[0].timeout_ms",
            "{bad}: {answer}"
        );
        let (status, answer) = c
            .call(
                "PUT",
                "/v1/queues/q/settings",
                Some(json!({"default_timeout_ms": bad})),
            )
            .await;
        assert_eq!(status, 422, "{bad}: {answer}");
        assert_eq!(
            answer["error"]["details"]["field"], "default_timeout_ms",
            "{bad}: {answer}"
        );
    }
    let (status, answer) = c
        .call(
            "PUT",
            "/v1/queues/q/settings",
            Some(json!({"default_timeout": 5000})),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["error"]["details"]["field"], "default_timeout",
        "{answer}"
    );
    let (status, answer) = c
        .call("PUT", "/v1/queues/bad%20name/settings", Some(json!({})))
        .await;
    assert_eq!(status, 422, "{answer}");
    // Nothing was stored.
    let (_, jobs) = c.call("GET", "/v1/jobs", None).await;
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");
    let (_, queues) = c.call("GET", "/v1/queues", None).await;
    assert_eq!(queues["queues"], json!([]), "{queues}");
    // The bounds themselves are accepted.
    for ok in [1000u64, 604_800_000] {
        let job = c.enqueue(json!({"kind": "k", "timeout_ms": ok})).await;
        assert_eq!(job["timeout_ms"], ok);
    }
}

async fn a_reused_key_with_another_timeout_replays_the_first_job(store: Arc<dyn Store>) {
    let c = Coordinator::start(store).await;
    let first = c
        .enqueue(json!({"queue": "i", "kind": "k", "idempotency_key": "once", "timeout_ms": 2000}))
        .await;
    let (status, again) = c
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"queue": "i", "kind": "k", "idempotency_key": "once", "timeout_ms": 9000})),
        )
        .await;
    assert_eq!(
        status, 200,
        "the same work: replayed, not a conflict ({again})"
    );
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["timeout_ms"], 2000, "the first job's timeout stays");
}

on_both_backends!(
    a_heartbeating_worker_is_timed_out_then_retried_then_dead,
    outcomes_after_the_deadline_are_refused_like_a_stale_token,
    the_worker_session_refuses_heartbeats_and_outcomes_past_the_deadline,
    the_queue_default_applies_and_the_jobs_own_value_wins,
    a_lease_whose_worker_vanished_expires_as_before,
    a_timed_out_job_of_a_run_fails_its_run,
    a_cancel_requested_job_that_times_out_ends_cancelled,
    bad_timeouts_are_refused_naming_the_field,
    a_reused_key_with_another_timeout_replays_the_first_job,
);
