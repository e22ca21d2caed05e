//! `leasehold quota show|set|delete`, and the coordinator's `--max-queued-jobs` set through its
//! variable.

use serde_json::{Value, json};

use super::Server;

#[tokio::test]
async fn set_show_and_delete_a_quota_then_read_them_in_the_audit_trail() {
    let server = Server::start().await;
    let run = server.cli(&["quota", "show"]).await;
    run.ok();
    assert!(
        run.stdout
            .starts_with("tenant default has no quota (no limits)\n"),
        "{}",
        run.stdout
    );

    // Every limit and the justification are named; a bare `set` is a usage error.
    let bare = server
        .cli(&["quota", "set", "--reason", "r", "--ticket", "t"])
        .await;
    assert_eq!(bare.code, 2, "{bare:#?}");
    let missing = server.cli(&["quota", "set", "--max-queued", "2"]).await;
    assert_eq!(missing.code, 2, "{missing:#?}");
    assert!(missing.stderr.contains("--reason"), "{}", missing.stderr);

    let set = [
        "quota",
        "set",
        "--max-queued",
        "2",
        "--reason",
        "tenant floods the queue",
        "--ticket",
        "OPS-7",
    ];
    let run = server.cli(&set).await;
    run.ok();
    assert_eq!(
        run.stdout.trim(),
        "quota set: max_queued 2, max_leased none"
    );
    server.enqueue("q", "k", None).await;
    server.enqueue("q", "k", None).await;
    let over = server
        .http
        .post(server.path("/v1/jobs"))
        .json(&json!({"queue": "q", "kind": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 429);
    assert_eq!(over.headers()["retry-after"], "5");

    let shown = server.cli(&["quota", "show", "--json"]).await;
    shown.ok();
    let shown = shown.json();
    assert_eq!(shown["quota"]["max_queued"], 2);
    assert_eq!(shown["quota"]["max_leased"], Value::Null);
    assert_eq!(
        shown["usage"],
        json!({"queued": 2, "blocked": 0, "leased": 0})
    );
    let table = server.cli(&["quota", "show"]).await;
    table.ok();
    assert!(
        table
            .stdout
            .contains("max_queued  2      2    queued 2 + blocked 0"),
        "{}",
        table.stdout
    );

    let delete = [
        "quota",
        "delete",
        "--reason",
        "back to normal",
        "--ticket",
        "OPS-8",
    ];
    let run = server.cli(&delete).await;
    run.ok();
    assert_eq!(run.stdout.trim(), "quota removed: no limits");
    let again = server.cli(&delete).await;
    assert_eq!(again.code, 1, "{again:#?}");
    assert!(again.stderr.contains("not_found"), "{}", again.stderr);

    let trail = server.cli(&["audit", "--json"]).await;
    trail.ok();
    let actions: Vec<Value> = trail.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!([e["data"]["action"], e["data"]["ticket"]]))
        .collect();
    assert_eq!(
        actions,
        [
            json!(["quotas.set", "OPS-7"]),
            json!(["quotas.delete", "OPS-8"])
        ]
    );
}

#[tokio::test]
async fn the_coordinator_sheds_enqueues_past_its_mark() {
    let server = Server::start_with_env(&[("LEASEHOLD_MAX_QUEUED_JOBS", "2")]).await;
    // The count is at most a second old: enqueue until shedding starts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let shed = loop {
        let answer = server
            .http
            .post(server.path("/v1/jobs"))
            .json(&json!({"queue": "q", "kind": "k"}))
            .send()
            .await
            .unwrap();
        if answer.status() == 429 {
            break answer;
        }
        assert_eq!(answer.status(), 201);
        assert!(std::time::Instant::now() < deadline, "never shed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: Value = shed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(body["error"]["details"]["mark"], 2);
}
