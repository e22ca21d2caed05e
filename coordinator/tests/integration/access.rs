//! API key, CORS and rate limiting over a real socket.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::time::Duration;

use leasehold_coordinator::http::access::{Access, AccessConfig};
use serde_json::{Value, json};

#[tokio::test]
async fn api_key_guards_everything_but_health() {
    let (store, _g) = common::sqlite_store().await;
    let served = common::serve_with(store, |s| {
        s.access = Access::new(AccessConfig::default().with_api_key("s3cret-key"));
    })
    .await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", served.url);
    for open in ["/health", "/ready", "/metrics"] {
        assert_eq!(
            http.get(url(open)).send().await.unwrap().status(),
            200,
            "{open}"
        );
    }
    let r = http.get(url("/v1/queues")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers().get("www-authenticate").unwrap(), "Bearer");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(!body.to_string().contains("s3cret"));
    let wrong = http
        .get(url("/v1/queues"))
        .bearer_auth("s3cret-kez")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        http.get(url("/v1/queues"))
            .bearer_auth("s3cret-key")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(url("/v1/queues"))
            .header("x-api-key", "s3cret-key")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(url("/orchestrator/runs"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // The query parameter works for event streams only (EventSource cannot set headers).
    assert_eq!(
        http.get(url("/v1/queues?api_key=s3cret-key"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let sse = http
        .get(url("/v1/events?api_key=s3cret-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert_eq!(
        http.get(url("/v1/events")).send().await.unwrap().status(),
        401
    );
    // Only the event streams: `/runs/events` is not `/runs/{runId}/events`.
    for not_a_stream in [
        "/runs/events?api_key=s3cret-key",
        "/runs//events?api_key=s3cret-key",
    ] {
        assert_eq!(
            http.get(url(not_a_stream)).send().await.unwrap().status(),
            401,
            "{not_a_stream}"
        );
    }
    // The scheme is case-insensitive; anything else in its place is no key at all.
    for (auth, status) in [
        ("BEARER s3cret-key", 200),
        ("bearer s3cret-key", 200),
        ("Bearer  s3cret-key", 200),
        ("Basic s3cret-key", 401),
        ("Bearers3cret-key", 401),
    ] {
        assert_eq!(
            http.get(url("/v1/queues"))
                .header("authorization", auth)
                .send()
                .await
                .unwrap()
                .status(),
            status,
            "{auth}"
        );
    }
}

#[tokio::test]
async fn cors_preflight_and_rate_limit() {
    let (store, _g) = common::sqlite_store().await;
    let served = common::serve_with(store, |s| {
        let mut config = AccessConfig::default();
        config.cors_origins = vec!["https://console.example".into()];
        config.rate_limit = Some((Duration::from_secs(60), 5));
        s.access = Access::new(config);
    })
    .await;
    let http = reqwest::Client::new();
    let pre = http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/jobs", served.url))
        .header("origin", "https://console.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "{}", pre.status());
    assert_eq!(
        pre.headers().get("access-control-allow-origin").unwrap(),
        "https://console.example"
    );
    let other = http
        .get(format!("{}/health", served.url))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let r = http
            .post(format!("{}/v1/jobs", served.url))
            .json(&json!({"kind": "k"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let retry: u64 = r
                .headers()
                .get("retry-after")
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry));
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    // The preflight counted (the GET of /health did not): four posts fit the budget of five.
    assert_eq!(statuses, vec![201, 201, 201, 201, 429, 429, 429]);
    // Health stays reachable for probes.
    assert_eq!(
        http.get(format!("{}/health", served.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
