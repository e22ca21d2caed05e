//! Job statistics over a real socket on SQLite and PostgreSQL: the ledger rolled up per minute
//! (`GET /v1/stats`), failed attempts by class (`GET /v1/failures` and the metric
//! `leasehold_job_failures_total`), objectives and burn rates (`GET`/`PUT`/`DELETE /v1/slo`):
//! counted once, per tenant, bad inputs named.

use std::sync::Arc;

use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::keyed::{Coordinator, ROOT};

/// Leases one job of `queue` (enqueued just now) and reports `outcome` for it.
async fn run_one(c: &Coordinator, key: &str, queue: &str, outcome: Value, wait_ms: i64) -> Value {
    let (s, job) = c
        .call(
            Some(key),
            Method::POST,
            "/v1/jobs",
            Some(json!({"queue": queue, "kind": "k", "max_attempts": 3})),
            &[],
        )
        .await;
    assert_eq!(s, 201, "{job}");
    // The job waits this long before a worker picks it up.
    c.clock.advance_ms(wait_ms);
    let claim = json!({"worker_id": "w", "queues": [queue], "max_jobs": 1});
    let (s, claimed) = c
        .call(Some(key), Method::POST, "/v1/leases", Some(claim), &[])
        .await;
    assert_eq!(s, 200, "{claimed}");
    let lease = &claimed["leases"][0];
    let id = lease["job"]["id"].as_str().unwrap();
    let (route, mut body) = match outcome["error"].is_object() {
        true => ("fail", json!({"error": outcome["error"]})),
        false => ("complete", json!({"result": {}})),
    };
    body["fencing_token"] = lease["fencing_token"].clone();
    let (s, done) = c
        .call(
            Some(key),
            Method::POST,
            &format!("/v1/jobs/{id}/{route}"),
            Some(body),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{done}");
    done
}

/// Enqueues one job of `queue` and cancels it before any worker leases it.
async fn cancel_one(c: &Coordinator, key: &str, queue: &str) {
    let job = c.enqueue(key, json!({"queue": queue, "kind": "k"})).await;
    let path = format!("/v1/jobs/{}/cancel", job["id"].as_str().unwrap());
    let (s, cancelled) = c.call(Some(key), Method::POST, &path, None, &[]).await;
    assert_eq!(s, 200, "{cancelled}");
}

async fn get(c: &Coordinator, key: &str, path: &str) -> Value {
    let (s, a) = c.call(Some(key), Method::GET, path, None, &[]).await;
    assert_eq!(s, 200, "{path}: {a}");
    a
}

fn error(class: &str, retryable: bool) -> Value {
    json!({"error": {"class": class, "message": "m", "retryable": retryable}})
}

async fn the_ledger_is_rolled_up_per_minute_queue_and_class(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, alpha) = c
        .key("alpha", &["jobs:read", "jobs:write", "worker", "admin"])
        .await;
    let (_, beta) = c.key("beta", &["jobs:read", "jobs:write", "worker"]).await;
    for _ in 0..3 {
        run_one(&c, &alpha, "mail", json!({}), 0).await;
    }
    // A slow pickup: leased 5 s after it was due.
    run_one(&c, &alpha, "mail", json!({}), 5000).await;
    let retried = run_one(&c, &alpha, "mail", error("smtp_timeout", true), 0).await;
    assert_eq!(retried["state"], "queued");
    let died = run_one(&c, &alpha, "mail", error("bad_address", false), 0).await;
    assert_eq!(died["state"], "dead");
    run_one(&c, &alpha, "billing", error("bad_address", false), 0).await;
    cancel_one(&c, &alpha, "mail").await;
    run_one(&c, &beta, "mail", error("beta_only", false), 0).await;
    // A queue whose minute saw no lease at all: its pickup counts are zero, not missing.
    cancel_one(&c, &alpha, "unwanted").await;

    // Read twice: a range is counted once.
    get(&c, &alpha, "/v1/stats").await;
    let stats = get(&c, &alpha, "/v1/stats?since=1h").await;
    assert_eq!(stats["bucket_secs"], 60);
    let mut totals = std::collections::BTreeMap::<String, [u64; 5]>::new();
    for p in stats["points"].as_array().unwrap() {
        let t = totals
            .entry(p["queue"].as_str().unwrap().to_owned())
            .or_default();
        for (i, field) in ["leased", "succeeded", "failed", "dead", "cancelled"]
            .iter()
            .enumerate()
        {
            t[i] += p[field].as_u64().unwrap();
        }
    }
    assert_eq!(totals["mail"], [6, 4, 2, 1, 1], "{stats}");
    assert_eq!(totals["billing"], [1, 0, 1, 1, 0], "{stats}");
    assert_eq!(totals["unwanted"], [0, 0, 0, 0, 1], "{stats}");
    let only = get(&c, &alpha, "/v1/stats?queue=billing").await;
    assert!(
        only["points"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["queue"] == "billing")
    );

    let failures = get(&c, &alpha, "/v1/failures").await;
    let classes: Vec<(String, String, u64)> = failures["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["queue"].as_str().unwrap().to_owned(),
                f["class"].as_str().unwrap().to_owned(),
                f["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(classes.len(), 3, "{failures}");
    for expected in [
        ("mail", "smtp_timeout"),
        ("mail", "bad_address"),
        ("billing", "bad_address"),
    ] {
        assert!(
            classes
                .iter()
                .any(|(q, c, n)| (q.as_str(), c.as_str()) == expected && *n == 1),
            "{expected:?} in {classes:?}"
        );
    }
    let beta_view = get(&c, &beta, "/v1/failures").await;
    assert_eq!(beta_view["classes"].as_array().unwrap().len(), 1);
    assert_eq!(beta_view["classes"][0]["class"], "beta_only");

    let metrics = reqwest::get(format!("{}/metrics", c.served.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("leasehold_job_failures_total")
                && l.contains("class=\"smtp_timeout\"")
                && l.contains("queue=\"mail\"")),
        "{metrics}"
    );

    // Objectives: the defaults, then the queue's own.
    let slo = get(&c, &alpha, "/v1/slo").await;
    let mail = slo["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "mail")
        .unwrap()
        .clone();
    assert_eq!(mail["configured"], false);
    assert_eq!(
        mail["objective"],
        json!({"success_ratio": 0.99, "pickup_ms": 1000, "pickup_ratio": 0.99})
    );
    assert_eq!(
        (
            mail["success"]["good"].clone(),
            mail["success"]["total"].clone()
        ),
        (json!(4), json!(5))
    );
    assert_eq!(
        (
            mail["pickup"]["good"].clone(),
            mail["pickup"]["total"].clone()
        ),
        (json!(5), json!(6))
    );
    let burn = mail["success"]["burn_rate"].as_f64().unwrap();
    assert!((burn - 0.2 / 0.01).abs() < 1e-6, "{burn}");
    let objective = json!({"success_ratio": 0.75, "pickup_ms": 10000, "pickup_ratio": 0.9});
    let (s, a) = c
        .call(
            Some(&alpha),
            Method::PUT,
            "/v1/slo/mail",
            Some(objective.clone()),
            &[],
        )
        .await;
    assert_eq!((s, &a), (200, &objective));
    let mail = get(&c, &alpha, "/v1/slo/mail?window=2h").await;
    assert_eq!(mail["configured"], true);
    assert_eq!(mail["pickup"]["good"], 6, "within 10 s: {mail}");
    let burn = mail["success"]["burn_rate"].as_f64().unwrap();
    assert!((burn - 0.2 / 0.25).abs() < 1e-6, "{burn}");
    // An idle queue answers the objective that would apply.
    let idle = get(&c, &alpha, "/v1/slo/idle").await;
    assert_eq!(
        (idle["configured"].clone(), idle["success"]["total"].clone()),
        (json!(false), json!(0))
    );

    for (path, body, field) in [
        (
            "/v1/slo/mail",
            json!({"success_ratio": 1.5, "pickup_ms": 1000, "pickup_ratio": 0.9}),
            "success_ratio",
        ),
        (
            "/v1/slo/mail",
            json!({"success_ratio": 0.9, "pickup_ms": 999, "pickup_ratio": 0.9}),
            "pickup_ms",
        ),
        (
            "/v1/slo/mail",
            json!({"success_ratio": 0.9, "pickup_ms": 1000, "pickup_ratio": 0.9, "pickup": 1}),
            "pickup",
        ),
        ("/v1/slo/bad%20name", objective.clone(), "queue"),
    ] {
        let (s, a) = c
            .call(Some(&alpha), Method::PUT, path, Some(body.clone()), &[])
            .await;
        assert_eq!(s, 422, "{body}: {a}");
        assert!(a["error"].to_string().contains(field), "{body}: {a}");
    }
    for query in [
        "/v1/stats?since=9d",
        "/v1/stats?since=soon",
        "/v1/failures?limit=0",
        "/v1/slo?window=10d",
        "/v1/slo?window=2026-01-01T00:00:00Z",
        "/v1/stats?queues=mail",
    ] {
        let (s, a) = c.call(Some(&alpha), Method::GET, query, None, &[]).await;
        assert_eq!(s, 422, "{query}: {a}");
    }
    let (s, _) = c
        .call(
            Some(&beta),
            Method::PUT,
            "/v1/slo/mail",
            Some(objective.clone()),
            &[],
        )
        .await;
    assert_eq!(s, 403, "setting objectives needs admin");
    let (s, _) = c
        .call(Some(&alpha), Method::DELETE, "/v1/slo/mail", None, &[])
        .await;
    assert_eq!(s, 204);
    let (s, a) = c
        .call(Some(&alpha), Method::DELETE, "/v1/slo/mail", None, &[])
        .await;
    assert_eq!(s, 404, "{a}");
    // Beta's objectives and counts are its own.
    let beta_mail = get(&c, &beta, "/v1/slo/mail").await;
    assert_eq!(beta_mail["success"]["total"], 1);
}

crate::on_both_backends!(the_ledger_is_rolled_up_per_minute_queue_and_class);
