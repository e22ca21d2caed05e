//! A circuit breaker's whole cycle over real HTTP, on both stores: failures open it (an
//! incident, the bucket's jobs held), the cooldown passes, one probe goes out, its success
//! closes it (another incident) and the held jobs flow again. Other buckets are untouched.

use std::sync::Arc;

use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};

use super::{call, refused};
use crate::common::keyed::{Coordinator, ROOT};

async fn claim(c: &Coordinator) -> Value {
    let body =
        json!({"worker_id": "w", "queues": ["q"], "max_jobs": 10, "lease_ttl_ms": 3_600_000});
    call(c, Method::POST, "/v1/leases", Some(body)).await
}

fn hosts(answer: &Value) -> Vec<String> {
    answer["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["job"]["limit_keys"][0].as_str().unwrap().to_owned())
        .collect()
}

async fn fail(c: &Coordinator, lease: &Value) {
    let id = lease["job"]["id"].as_str().unwrap();
    let body = json!({"fencing_token": lease["fencing_token"],
                      "error": {"class": "http_503", "message": "upstream down", "retryable": true}});
    call(c, Method::POST, &format!("/v1/jobs/{id}/fail"), Some(body)).await;
}

async fn complete(c: &Coordinator, lease: &Value) {
    let id = lease["job"]["id"].as_str().unwrap();
    let body = json!({"fencing_token": lease["fencing_token"], "result": {}});
    call(
        c,
        Method::POST,
        &format!("/v1/jobs/{id}/complete"),
        Some(body),
    )
    .await;
}

async fn incidents(c: &Coordinator) -> Vec<(String, String)> {
    call(c, Method::GET, "/v1/incidents", None).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "breaker");
            (
                e["data"]["bucket"].as_str().unwrap().to_owned(),
                e["data"]["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `leasehold_breakers_open{limit="host:*"}` on `/metrics` (scraped without a key).
async fn breakers_open(c: &Coordinator) -> String {
    let text = c
        .http
        .get(format!("{}/metrics", c.served.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("leasehold_breakers_open{limit=\"host:*\"} "))
        .unwrap_or("absent")
        .to_owned()
}

async fn a_breaker_opens_probes_and_closes(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let limit = json!({"breaker": {"failures": 2, "cooldown_ms": 10_000},
                       "reason": "stop hammering a host that is down", "ticket": "OPS-3"});
    let shown = call(&c, Method::PUT, "/v1/limits/host:*", Some(limit)).await;
    assert_eq!(
        shown["breaker"],
        json!({"failures": 2, "cooldown_ms": 10_000})
    );
    // Retried at once after a failure: only the breaker holds them back.
    let job = |host: &str| {
        json!({"queue": "q", "kind": "fetch", "payload": {}, "limit_keys": [format!("host:{host}")],
               "backoff": {"initial_ms": 1, "multiplier": 1.0, "max_delay_ms": 1}})
    };
    for host in ["a.io", "a.io", "a.io", "b.io"] {
        call(&c, Method::POST, "/v1/jobs", Some(job(host))).await;
    }
    let first = claim(&c).await;
    assert_eq!(
        hosts(&first),
        ["host:a.io", "host:a.io", "host:a.io", "host:b.io"]
    );
    let leases = first["leases"].as_array().unwrap().clone();

    // Two failures in a row on a.io open its breaker.
    fail(&c, &leases[0]).await;
    assert!(incidents(&c).await.is_empty(), "one failure is not enough");
    assert_eq!(breakers_open(&c).await, "0");
    fail(&c, &leases[1]).await;
    assert_eq!(breakers_open(&c).await, "1", "a.io's breaker is open");
    assert_eq!(
        incidents(&c).await,
        [("host:a.io".to_owned(), "open".to_owned())]
    );
    let shown = call(&c, Method::GET, "/v1/limits/host:*", None).await;
    assert_eq!(shown["buckets"][0]["bucket"], "host:a.io");
    assert_eq!(shown["buckets"][0]["breaker"]["state"], "open");
    assert_eq!(shown["buckets"][0]["breaker"]["failures"], 2);

    // While open, a.io's jobs wait; b.io's flow.
    c.clock.advance_ms(5);
    call(&c, Method::POST, "/v1/jobs", Some(job("b.io"))).await;
    let held = claim(&c).await;
    assert_eq!(hosts(&held), ["host:b.io"], "{held}");
    assert_eq!(held["throttled"]["limits"], json!(["host:*"]));
    let wait = held["throttled"]["retry_after_ms"].as_u64().unwrap();
    assert!(
        (9_000..=10_000).contains(&wait),
        "until the cooldown ends: {wait}"
    );

    // After the cooldown: one probe, and no other a.io job while it is out.
    c.clock.advance_ms(10_000);
    let probe = claim(&c).await;
    assert_eq!(hosts(&probe), ["host:a.io"], "one probe: {probe}");
    assert_eq!(
        call(&c, Method::GET, "/v1/limits/host:*", None).await["buckets"][0]["breaker"]["state"],
        "half_open"
    );
    assert!(hosts(&claim(&c).await).is_empty(), "the probe is out");
    assert_eq!(breakers_open(&c).await, "1", "half-open counts");
    // Its success closes the breaker: the last held job flows.
    complete(&c, &probe["leases"][0]).await;
    assert_eq!(
        incidents(&c).await,
        [
            ("host:a.io".to_owned(), "open".to_owned()),
            ("host:a.io".to_owned(), "closed".to_owned())
        ]
    );
    assert_eq!(breakers_open(&c).await, "0", "closed again");
    assert_eq!(hosts(&claim(&c).await), ["host:a.io"]);
    // The jobs leased before it opened were never touched by it.
    complete(&c, &leases[2]).await;
    complete(&c, &leases[3]).await;
}

async fn bad_breakers_are_named(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    for (breaker, field) in [
        (json!({"failures": 0}), "breaker.failures"),
        (
            json!({"failures": 3, "cooldown_ms": 10}),
            "breaker.cooldown_ms",
        ),
        (json!({"failures": 3, "classes": [""]}), "breaker.classes"),
        (
            json!({"failures": 3, "cooldwn_ms": 1000}),
            "breaker.cooldwn_ms",
        ),
    ] {
        let body = json!({"breaker": breaker, "reason": "r", "ticket": "t"});
        refused(&c, "host:*", body, field).await;
    }
}

crate::on_both_backends!(a_breaker_opens_probes_and_closes, bad_breakers_are_named);
