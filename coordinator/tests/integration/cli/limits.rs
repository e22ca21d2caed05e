//! `leasehold limits`: set a limit with a rate, a breaker and a blackout, see it as a table and
//! as JSON, see it hold a job back, remove it; bad flags are usage errors.

use serde_json::json;

use super::Server;

#[tokio::test]
async fn set_list_show_and_delete_a_limit() {
    let server = Server::start().await;
    let set = server
        .cli(&[
            "limits",
            "set",
            "queue:mail",
            "--rate",
            "0.01",
            "--burst",
            "1",
            "--breaker-failures",
            "3",
            "--breaker-class",
            "http_503",
            "--blackout",
            r#"{"from":"2099-12-24T00:00:00Z","to":"2099-12-27T00:00:00Z"}"#,
            "--reason",
            "vendor allows little",
            "--ticket",
            "OPS-2",
        ])
        .await;
    set.ok();
    assert!(
        set.stdout.contains("queue:mail") && set.stdout.contains("0.01/s"),
        "{}",
        set.stdout
    );

    for _ in 0..2 {
        let job = server
            .http
            .post(server.path("/v1/jobs"))
            .json(&json!({"queue": "mail", "kind": "send", "payload": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(job.status(), 201);
    }
    let leased: serde_json::Value = server
        .http
        .post(server.path("/v1/leases"))
        .json(&json!({"worker_id": "w", "queues": ["mail"], "max_jobs": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(leased["leases"].as_array().unwrap().len(), 1, "{leased}");

    let listed = server.cli(&["limits", "list", "--json"]).await;
    listed.ok();
    let limit = &listed.json()["limits"][0];
    assert_eq!(limit["key"], "queue:mail");
    assert_eq!(limit["breaker"]["classes"], json!(["http_503"]));
    assert_eq!(limit["blackouts"][0]["from"], "2099-12-24T00:00:00Z");
    let shown = server.cli(&["limits", "show", "queue:mail"]).await;
    shown.ok();
    assert!(
        shown.stdout.contains("BUCKET") && shown.stdout.contains("TOKENS"),
        "{}",
        shown.stdout
    );
    let incidents = server.cli(&["limits", "incidents"]).await;
    incidents.ok();

    let bad = server
        .cli(&[
            "limits",
            "set",
            "queue:mail",
            "--blackout",
            "tonight",
            "--reason",
            "r",
            "--ticket",
            "t",
        ])
        .await;
    assert_eq!(bad.code, 2, "{bad:#?}");
    let refused = server
        .cli(&[
            "limits",
            "set",
            "queue:mail",
            "--rate",
            "0",
            "--reason",
            "r",
            "--ticket",
            "t",
        ])
        .await;
    assert_ne!(refused.code, 0, "{refused:#?}");
    assert!(refused.stderr.contains("rate"), "{}", refused.stderr);

    let deleted = server
        .cli(&[
            "limits",
            "delete",
            "queue:mail",
            "--reason",
            "done",
            "--ticket",
            "OPS-3",
        ])
        .await;
    deleted.ok();
    let gone = server.cli(&["limits", "show", "queue:mail"]).await;
    assert_ne!(gone.code, 0, "{gone:#?}");
}
