//! Secrets never reach the coordinator's logs or error messages: a real `leasehold serve` with
//! JSON logs at `debug` (every request logged), used with keys (a bearer token, `?api_key=` on
//! an event stream, a wrong key), payloads, results and checkpoints holding secret fields, and a
//! bad request about a secret field; then its log is searched for every secret.

use std::time::Duration;

use leasehold_testkit::Coordinator;
use serde_json::{Value, json};

const ROOT: &str = "root-key-redaction-0123456789";
const SECRETS: [&str; 6] = [
    "pw-hunter2-0001",
    "pin-4242-0002",
    "ak-nested-0003",
    "tok-result-0004",
    "sec-checkpoint-0005",
    "WRONG-KEY-0006",
];

#[tokio::test]
async fn secrets_stay_out_of_logs_and_error_messages() {
    let mut coord = Coordinator::spawn_with_env(
        None,
        &[
            ("ORCHESTRATOR_API_KEY", ROOT),
            ("LEASEHOLD_LOG_FORMAT", "json"),
            ("LEASEHOLD_LOG", "debug,sqlx=debug"),
            (
                "LEASEHOLD_REDACT_FIELDS",
                "password,secret,token,api_key,authorization,pin",
            ),
        ],
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", coord.url);
    let call = |method: reqwest::Method, path: &str, key: &str, body: Option<Value>| {
        let mut r = http.request(method, url(path)).bearer_auth(key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, created) = call(
        reqwest::Method::POST,
        "/v1/keys",
        ROOT,
        Some(json!({"tenant": "alpha", "scopes": ["worker", "jobs:write", "jobs:read", "events"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();

    let payload =
        json!({"password": SECRETS[0], "card_pin": SECRETS[1], "nested": {"api_key": SECRETS[2]}});
    let (status, job) = call(
        reqwest::Method::POST,
        "/v1/jobs",
        &token,
        Some(json!({"queue": "q", "kind": "k", "payload": payload})),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let (_, leased) = call(
        reqwest::Method::POST,
        "/v1/leases",
        &token,
        Some(json!({"worker_id": "w", "queues": ["q"], "max_jobs": 1})),
    )
    .await;
    let lease = &leased["leases"][0];
    let id = lease["job"]["id"].as_str().unwrap();
    let (status, _) = call(
        reqwest::Method::POST,
        "/v1/leases/heartbeat",
        &token,
        Some(json!({"worker_id": "w", "leases": [{"job_id": id, "fencing_token": lease["fencing_token"],
                    "checkpoint": {"secret": SECRETS[4]}}]})),
    )
    .await;
    assert_eq!(status, 200);
    // A bad completion whose error is about a secret field: its value is not echoed.
    let (status, refused) = call(
        reqwest::Method::POST,
        &format!("/v1/jobs/{id}/complete"),
        &token,
        Some(json!({"fencing_token": lease["fencing_token"], "result": {"token": SECRETS[3]},
                    "artifacts": [{"name": "a", "digest": "sha256:00", "size": 1, "media_type": "x/y", "token": SECRETS[3]}]})),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert!(!refused.to_string().contains(SECRETS[3]), "{refused}");
    let (status, done) = call(
        reqwest::Method::POST,
        &format!("/v1/jobs/{id}/complete"),
        &token,
        Some(json!({"fencing_token": lease["fencing_token"], "result": {"token": SECRETS[3]}})),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    // The stored data is the caller's, unredacted.
    assert_eq!(done["payload"]["password"], SECRETS[0]);
    // A key in the query of an event stream, and a wrong key.
    let mut stream = http
        .get(url(&format!("/v1/events?after=0&api_key={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let _ = tokio::time::timeout(Duration::from_millis(300), stream.chunk()).await;
    drop(stream);
    let (status, _) = call(reqwest::Method::GET, "/v1/jobs", SECRETS[5], None).await;
    assert_eq!(status, 401);

    coord.terminate().unwrap();
    let log = coord.log();
    // The log is real and detailed: every request, as JSON lines.
    assert!(log.lines().count() > 10, "{log}");
    assert!(
        log.lines()
            .all(|l| l.trim().is_empty() || l.starts_with('{')),
        "{log}"
    );
    assert!(
        log.contains("/v1/events") && log.contains("/v1/leases/heartbeat"),
        "{log}"
    );
    for secret in SECRETS
        .iter()
        .copied()
        .chain([token.as_str(), ROOT, "api_key="])
    {
        assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
    }
}
