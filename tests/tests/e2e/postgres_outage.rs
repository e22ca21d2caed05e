//! PostgreSQL stopped under a running coordinator, or refusing its connections: requests answer
//! 503 `unavailable` in the error envelope; once PostgreSQL is back the same process answers 200
//! again, no restart.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use leasehold_testkit::{Coordinator, PrivatePostgres, postgres_url};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_is_503_and_recovers_without_restart() {
    // Runs its own server (stopping the shared one would disturb other suites), but only where
    // the PostgreSQL suites run at all.
    if postgres_url("postgres_outage::recovers").is_none() {
        return;
    }
    let pg = PrivatePostgres::start_new().unwrap();
    let coord = Coordinator::spawn(Some(&pg.url())).await.unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let enqueue = || {
        http.post(format!("{}/v1/jobs", coord.url))
            .json(&json!({"queue": "q", "kind": "k"}))
            .send()
    };
    let first: Value = enqueue().await.unwrap().json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_owned();

    pg.stop().unwrap();
    for path in ["/ready", "/v1/queues", "/orchestrator/runs"] {
        let r = http
            .get(format!("{}{path}", coord.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unavailable", "{path}: {body}");
        assert!(
            !body.to_string().contains("postgres@"),
            "no connection details leak: {body}"
        );
    }
    let r = enqueue().await.unwrap();
    assert_eq!(r.status(), 503);
    let record = http
        .post(format!("{}/orchestrator/runs", coord.url))
        .json(&json!({"started_at": "2026-04-25T14:00:00+00:00", "completed_at": "2026-04-25T14:02:45+00:00", "status": "completed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        record.status(),
        503,
        "scheduler records answer 503 while PostgreSQL is down"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unavailable"
    );
    // Liveness stays green: the process is fine, its database is not.
    assert_eq!(
        http.get(format!("{}/health", coord.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    pg.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .get(format!("{}/ready", coord.url))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "coordinator did not recover: {}",
            coord.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(enqueue().await.unwrap().status(), 201);
    let got = http
        .get(format!("{}/v1/jobs/{id}", coord.url))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200, "data from before the outage is intact");
}

/// A running PostgreSQL that refuses new connections (the database closed to connections, its
/// sessions ended): every route and `/ready` answer 503 as when it is stopped, never 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_refusing_connections_is_503() {
    if postgres_url("postgres_outage::refusing").is_none() {
        return;
    }
    let pg = PrivatePostgres::start_new().unwrap();
    let coord = Coordinator::spawn(Some(&pg.url())).await.unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // Closed first, in its own transaction (sent together, the ALTER would commit only after
    // the terminations, and the pool could reconnect meanwhile); then the sessions are ended,
    // waiting until each is gone (a pooled connection must not outlive the call).
    pg.sql(
        "postgres",
        "ALTER DATABASE leasehold ALLOW_CONNECTIONS false",
    )
    .unwrap();
    pg.sql(
        "postgres",
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = 'leasehold'",
    )
    .unwrap();
    let record = json!({"started_at": "2026-04-25T14:00:00+00:00", "completed_at": "2026-04-25T14:02:45+00:00", "status": "completed"});
    for (method, path, body) in [
        ("GET", "/ready", None),
        ("GET", "/orchestrator/runs", None),
        ("POST", "/orchestrator/runs", Some(record)),
        ("POST", "/v1/jobs", Some(json!({"kind": "k"}))),
        ("GET", "/v1/queues", None),
        // The streams answer before they start, the worker session before its upgrade.
        ("GET", "/v1/events", None),
        (
            "GET",
            "/v1/ledger/export?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z",
            None,
        ),
        ("GET", "/v1/workers/connect", None),
    ] {
        let mut req = http.request(method.parse().unwrap(), format!("{}{path}", coord.url));
        if path == "/v1/workers/connect" {
            req = req
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 503, "{method} {path}: {body}\n{}", coord.log());
        assert_eq!(
            body["error"]["code"], "unavailable",
            "{method} {path}: {body}"
        );
    }
    // One WARN for the episode, not one per refused request, and no ERROR.
    let log = coord.log();
    assert_eq!(
        log.matches("database unavailable: answering 503").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
    pg.sql(
        "postgres",
        "ALTER DATABASE leasehold ALLOW_CONNECTIONS true",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{}/ready", coord.url))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "no recovery: {}", coord.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
