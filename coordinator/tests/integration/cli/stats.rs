//! `leasehold stats`, `leasehold failures` and `leasehold slo` against a real coordinator.

use serde_json::{Value, json};

use super::Server;

/// Enqueues a job on `queue`, leases it and reports `outcome` (`complete`, or a failure of
/// `class` not to be retried).
async fn one(server: &Server, queue: &str, class: Option<&str>) {
    let job: Value = server
        .http
        .post(server.path("/v1/jobs"))
        .json(&json!({"queue": queue, "kind": "k"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(job["id"].is_string(), "{job}");
    let leased: Value = server
        .http
        .post(server.path("/v1/leases"))
        .json(&json!({"worker_id": "w", "queues": [queue], "max_jobs": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lease = &leased["leases"][0];
    let id = lease["job"]["id"].as_str().unwrap();
    let (route, body) = match class {
        Some(class) => (
            "fail",
            json!({"fencing_token": lease["fencing_token"],
                   "error": {"class": class, "message": "m", "retryable": false}}),
        ),
        None => (
            "complete",
            json!({"fencing_token": lease["fencing_token"], "result": {}}),
        ),
    };
    let done = server
        .http
        .post(server.path(&format!("/v1/jobs/{id}/{route}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
}

#[tokio::test]
async fn stats_failures_and_objectives_from_the_command_line() {
    let server = Server::start().await;
    one(&server, "mail", None).await;
    one(&server, "mail", None).await;
    one(&server, "mail", Some("bounced")).await;

    let run = server.cli(&["stats"]).await;
    run.ok();
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("mail"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells, ["mail", "3", "2", "1", "1", "0"], "{}", run.stdout);
    let json = server.cli(&["stats", "--by-minute", "--json"]).await;
    json.ok();
    assert_eq!(json.json()["points"][0]["succeeded"], 2);

    let run = server.cli(&["failures", "--since", "1h"]).await;
    run.ok();
    assert!(run.stdout.contains("bounced"), "{}", run.stdout);

    let run = server
        .cli(&["slo", "set", "mail", "--success", "0.5"])
        .await;
    run.ok();
    assert_eq!(run.stdout.trim(), "mail: 50% ok; 99% within 1000 ms");
    let run = server.cli(&["slo", "list", "--json"]).await;
    run.ok();
    let mail = &run.json()["queues"][0];
    assert_eq!(
        (mail["queue"].clone(), mail["configured"].clone()),
        (json!("mail"), json!(true))
    );
    assert_eq!(mail["success"]["good"], 2);
    let table = server.cli(&["slo", "list"]).await;
    table.ok();
    assert!(
        table.stdout.contains("66.67% of 3 (burn 0.67x)"),
        "{}",
        table.stdout
    );
    let bad = server
        .cli(&["slo", "set", "mail", "--pickup-ms", "999"])
        .await;
    assert_eq!(bad.code, 1, "{bad:#?}");
    assert!(bad.stderr.contains("pickup_ms"), "{}", bad.stderr);
    server.cli(&["slo", "delete", "mail"]).await.ok();
    let again = server.cli(&["slo", "delete", "mail"]).await;
    assert_eq!(again.code, 1, "{again:#?}");
    let bad = server.cli(&["stats", "--since", "9d"]).await;
    assert_eq!(bad.code, 1, "{bad:#?}");
}
