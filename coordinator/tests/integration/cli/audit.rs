//! `leasehold jobs replay` and `leasehold audit`.

use serde_json::json;

use super::Server;

#[tokio::test]
async fn replay_by_filter_then_read_the_audit_trail() {
    let server = Server::start().await;
    // One dead job: enqueued with a single attempt, leased, failed for good.
    let job = server
        .http
        .post(server.path("/v1/jobs"))
        .json(&json!({"queue": "imports", "kind": "k", "payload": {}, "max_attempts": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(job.status(), 201);
    let leased: serde_json::Value = server
        .http
        .post(server.path("/v1/leases"))
        .json(&json!({"worker_id": "w", "queues": ["imports"], "max_jobs": 1, "wait_ms": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lease = &leased["leases"][0];
    let id = lease["job"]["id"].as_str().unwrap();
    let failed = server
        .http
        .post(server.path(&format!("/v1/jobs/{id}/fail")))
        .json(&json!({"fencing_token": lease["fencing_token"],
                      "error": {"class": "E", "message": "m", "retryable": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 200);

    let base = [
        "jobs",
        "replay",
        "--queue",
        "imports",
        "--reason",
        "vendor back",
        "--ticket",
        "INC-9",
    ];
    let missing = server.cli(&base[..6]).await;
    assert_eq!(missing.code, 2, "{missing:#?}");
    assert!(missing.stderr.contains("--ticket"), "{}", missing.stderr);

    let mut dry = base.to_vec();
    dry.push("--dry-run");
    let run = server.cli(&dry).await;
    run.ok();
    assert_eq!(
        run.stdout.trim(),
        "dry run: 1 job(s) would be replayed; nothing changed"
    );
    assert_eq!(server.get(&format!("/v1/jobs/{id}")).await["state"], "dead");

    let run = server.cli(&base).await;
    run.ok();
    assert!(
        run.stdout
            .starts_with("1 of 1 matched job(s) replayed (audit event "),
        "{}",
        run.stdout
    );
    assert_eq!(
        server.get(&format!("/v1/jobs/{id}")).await["state"],
        "queued"
    );

    let listed = server.cli(&["audit", "--json"]).await;
    listed.ok();
    let events = listed.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let data = &events[0]["data"];
    assert_eq!(data["action"], "jobs.replay");
    assert_eq!(data["actor"], json!({"kind": "keyless"}));
    assert_eq!(
        (&data["reason"], &data["ticket"]),
        (&json!("vendor back"), &json!("INC-9"))
    );
    let table = server.cli(&["audit", "--since", "1h"]).await;
    table.ok();
    assert!(
        table.stdout.contains("jobs.replay") && table.stdout.contains("INC-9"),
        "{}",
        table.stdout
    );
    let bad = server.cli(&["audit", "--since", "yesterday"]).await;
    assert_eq!(bad.code, 2, "{bad:#?}");
}

#[tokio::test]
async fn jobs_found_by_correlation_id_are_cancelled_in_bulk() {
    let server = Server::start().await;
    let mut ids = Vec::new();
    for corr in ["order-1", "order-1", "order-2"] {
        let job: serde_json::Value = server
            .http
            .post(server.path("/v1/jobs"))
            .json(&json!({"queue": "mail", "kind": "send", "correlation_id": corr}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    let listed = server
        .cli(&[
            "jobs",
            "list",
            "--correlation-id",
            "order-1",
            "--since",
            "1h",
            "--json",
        ])
        .await;
    listed.ok();
    assert_eq!(listed.json()["jobs"].as_array().unwrap().len(), 2);

    let base = [
        "jobs",
        "bulk-cancel",
        "--correlation-id",
        "order-1",
        "--reason",
        "customer withdrew",
        "--ticket",
        "SUP-3",
    ];
    let mut dry = base.to_vec();
    dry.push("--dry-run");
    let run = server.cli(&dry).await;
    run.ok();
    assert_eq!(
        run.stdout.trim(),
        "dry run: 2 job(s) would be cancelled; nothing changed"
    );
    let run = server.cli(&base).await;
    run.ok();
    assert!(
        run.stdout
            .starts_with("2 of 2 matched job(s) cancelled or asked to stop (audit event "),
        "{}",
        run.stdout
    );
    for (id, state) in ids.iter().zip(["cancelled", "cancelled", "queued"]) {
        assert_eq!(server.get(&format!("/v1/jobs/{id}")).await["state"], state);
    }
    let bad = server
        .cli(&[
            "jobs",
            "bulk-cancel",
            "--state",
            "dead",
            "--reason",
            "r",
            "--ticket",
            "t",
        ])
        .await;
    assert_eq!(bad.code, 2, "{bad:#?}");
}
