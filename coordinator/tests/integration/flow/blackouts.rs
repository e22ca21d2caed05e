//! A blackout window over real HTTP, on both stores: inside it nothing the limit covers is
//! leased (the jobs wait, other queues flow), the claim says when it ends, and crossing its end
//! lets the jobs through.

use std::sync::Arc;

use chrono::{Duration, Utc};
use leasehold_coordinator::clock::Clock;
use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};

use super::{call, refused};
use crate::common::keyed::{Coordinator, ROOT};

async fn claim(c: &Coordinator) -> Value {
    let body = json!({"worker_id": "w", "queues": ["reports", "other"], "max_jobs": 10,
                      "lease_ttl_ms": 3_600_000});
    call(c, Method::POST, "/v1/leases", Some(body)).await
}

fn queues(answer: &Value) -> Vec<String> {
    answer["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["job"]["queue"].as_str().unwrap().to_owned())
        .collect()
}

async fn nothing_is_leased_inside_a_blackout_and_all_of_it_after(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let now = c.clock.now();
    let ends = now + Duration::minutes(10);
    let off_day = (now + Duration::days(3))
        .format("%a")
        .to_string()
        .to_lowercase();
    let limit = json!({
        "blackouts": [
            {"from": now - Duration::hours(1), "to": ends},
            // Recurring, on a day that is neither today nor yesterday anywhere: off now.
            {"start": "22:00", "end": "06:00", "days": [off_day], "tz": "Europe/Paris"}
        ],
        "reason": "month-end freeze of the reporting database", "ticket": "CHG-12"});
    let shown = call(&c, Method::PUT, "/v1/limits/queue:reports", Some(limit)).await;
    assert_eq!(shown["blackouts"].as_array().unwrap().len(), 2);
    let until: chrono::DateTime<Utc> =
        serde_json::from_value(shown["blackout_until"].clone()).unwrap();
    assert!((until - ends).num_milliseconds().abs() < 5, "{shown}");

    for q in ["reports", "reports", "other"] {
        call(
            &c,
            Method::POST,
            "/v1/jobs",
            Some(json!({"queue": q, "kind": "k", "payload": {}})),
        )
        .await;
    }
    let inside = claim(&c).await;
    assert_eq!(queues(&inside), ["other"], "{inside}");
    assert_eq!(inside["throttled"]["limits"], json!(["queue:reports"]));
    let wait = inside["throttled"]["retry_after_ms"].as_u64().unwrap();
    assert!(
        (590_000..=600_000).contains(&wait),
        "until the window ends: {wait}"
    );

    c.clock.advance_ms(9 * 60_000);
    assert!(queues(&claim(&c).await).is_empty(), "still inside");
    c.clock.advance_ms(60_000);
    let after = claim(&c).await;
    assert_eq!(queues(&after), ["reports", "reports"], "{after}");
    assert!(after.get("throttled").is_none());
}

async fn bad_windows_are_named(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    for (window, field) in [
        (json!({"from": "2026-12-24T00:00:00Z"}), "blackouts[0].to"),
        (
            json!({"from": "2026-12-24T00:00:00Z", "to": "2026-12-23T00:00:00Z"}),
            "blackouts[0].to",
        ),
        (json!({"start": "22:00", "end": "6pm"}), "blackouts[0].end"),
        (
            json!({"start": "22:00", "end": "06:00", "tz": "Europe/Pari"}),
            "blackouts[0].tz",
        ),
        (
            json!({"start": "22:00", "end": "06:00", "dayz": ["sat"]}),
            "blackouts[0].dayz",
        ),
    ] {
        let body = json!({"blackouts": [window], "reason": "r", "ticket": "t"});
        refused(&c, "queue:q", body, field).await;
    }
}

crate::on_both_backends!(
    nothing_is_leased_inside_a_blackout_and_all_of_it_after,
    bad_windows_are_named
);
