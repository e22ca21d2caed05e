//! `jobs`, `queues`, the tenant and key from the environment, and the exit codes.
#![allow(clippy::unwrap_used)]

use super::*;

#[tokio::test]
async fn jobs_list_and_get_as_tables_and_json() {
    let server = Server::start().await;
    let a = server.enqueue("emails", "send_welcome", None).await;
    let b = server.enqueue("emails", "send_receipt", None).await;
    let c = server.enqueue("reports", "build", None).await;

    let run = server.cli(&["jobs", "list"]).await;
    run.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "QUEUE", "KIND", "STATE", "ATTEMPTS", "PRIORITY", "CREATED"
        ]
    );
    // Newest first.
    assert!(lines[1].starts_with(&id_of(&c)), "{}", run.stdout);
    assert!(lines[3].starts_with(&id_of(&a)), "{}", run.stdout);
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(row[1..6], ["emails", "send_receipt", "queued", "0/25", "0"]);

    // Filters, and --json both after and before the subcommand.
    let run = server
        .cli(&["jobs", "list", "--queue", "emails", "--json"])
        .await;
    let listed = run.ok().json();
    let ids: Vec<String> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, [id_of(&b), id_of(&a)]);
    assert!(listed["next_cursor"].is_null());
    let run = server
        .cli(&[
            "jobs", "--json", "list", "--kind", "build", "--state", "queued",
        ])
        .await;
    assert_eq!(run.ok().json()["jobs"][0]["id"], c["id"]);

    // One page at a time, or every page with --all.
    let run = server.cli(&["jobs", "list", "--limit", "1"]).await;
    assert_eq!(run.ok().stdout.lines().count(), 2);
    assert!(
        run.stderr.contains("--all") && run.stderr.contains("--cursor"),
        "{run:#?}"
    );
    let run = server
        .cli(&["jobs", "list", "--limit", "1", "--all", "--json"])
        .await;
    assert_eq!(run.ok().json()["jobs"].as_array().unwrap().len(), 3);

    // `get`: key/value lines, or the job exactly as the API returns it.
    let run = server.cli(&["jobs", "get", &id_of(&a)]).await;
    run.ok();
    assert!(run.stdout.starts_with("id:"), "{}", run.stdout);
    for needle in [
        id_of(&a).as_str(),
        "state:",
        "queued",
        "send_welcome",
        "0/25",
        r#"{"n":1}"#,
    ] {
        assert!(run.stdout.contains(needle), "{needle} in {}", run.stdout);
    }
    let run = server.cli(&["jobs", "get", &id_of(&a), "--json"]).await;
    assert_eq!(
        run.ok().json(),
        server.get(&format!("/v1/jobs/{}", id_of(&a))).await
    );
}

#[tokio::test]
async fn cancel_and_retry_change_the_job() {
    let server = Server::start().await;
    let job = server.enqueue("work", "k", None).await;
    let id = id_of(&job);

    let run = server
        .cli(&["jobs", "cancel", &id, "--reason", "operator request"])
        .await;
    assert!(run.ok().stdout.contains("cancelled"), "{run:#?}");
    let seen = server.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(seen["state"], "cancelled");
    assert_eq!(seen["cancel_reason"], "operator request");
    // Cancelling twice is not an error.
    server.cli(&["jobs", "cancel", &id]).await.ok();

    let run = server.cli(&["jobs", "retry", &id, "--json"]).await;
    assert_eq!(run.ok().json()["state"], "queued");
    assert_eq!(
        server.get(&format!("/v1/jobs/{id}")).await["state"],
        "queued"
    );

    // A queued job cannot be retried: the server's envelope, exit 1.
    let run = server.cli(&["jobs", "retry", &id]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.starts_with("error: invalid_state: ") && run.stderr.contains("(request "),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn queues_list_pause_and_resume() {
    let server = Server::start().await;
    server.enqueue("emails", "k", None).await;
    server.enqueue("emails", "k", None).await;
    server.enqueue("reports", "k", None).await;

    let run = server.cli(&["queues", "list"]).await;
    let lines: Vec<Vec<&str>> = run
        .ok()
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec![
                "QUEUE",
                "PAUSED",
                "BLOCKED",
                "QUEUED",
                "LEASED",
                "SUCCEEDED",
                "DEAD",
                "CANCELLED",
                "TIMEOUT_MS"
            ],
            vec!["emails", "no", "0", "2", "0", "0", "0", "0", "-"],
            vec!["reports", "no", "0", "1", "0", "0", "0", "0", "-"],
        ]
    );

    let run = server.cli(&["queues", "pause", "emails"]).await;
    assert!(run.ok().stdout.contains("paused"), "{run:#?}");
    let queues = server.get("/v1/queues").await;
    assert_eq!(queues["queues"][0]["name"], "emails");
    assert_eq!(queues["queues"][0]["paused"], true);
    let run = server.cli(&["queues", "list", "--json"]).await;
    assert_eq!(run.ok().json(), queues);

    let run = server.cli(&["queues", "resume", "emails", "--json"]).await;
    assert_eq!(run.ok().json()["paused"], false);
    assert_eq!(server.get("/v1/queues").await["queues"][0]["paused"], false);
}

#[tokio::test]
async fn queue_settings_are_set_and_cleared_never_by_omission() {
    let server = Server::start().await;
    server.enqueue("emails", "k", None).await;

    let run = server
        .cli(&[
            "queues",
            "settings",
            "emails",
            "--default-timeout-ms",
            "30000",
        ])
        .await;
    let out = run.ok().stdout.clone();
    assert!(out.contains("at most 30000 ms"), "{out}");
    assert!(out.contains("30000"), "{out}");
    assert_eq!(
        server.get("/v1/queues").await["queues"][0]["default_timeout_ms"],
        30000
    );

    // A bare `settings NAME` would clear every setting: refused as a usage error, nothing sent.
    let bare = server.cli(&["queues", "settings", "emails"]).await;
    assert_eq!(bare.code, 2, "{bare:#?}");
    assert_eq!(
        server.get("/v1/queues").await["queues"][0]["default_timeout_ms"],
        30000
    );
    // Out of range: the coordinator's 422 names the field.
    let low = server
        .cli(&["queues", "settings", "emails", "--default-timeout-ms", "5"])
        .await;
    assert_ne!(low.code, 0, "{low:#?}");
    assert!(low.stderr.contains("default_timeout_ms"), "{low:#?}");

    let run = server
        .cli(&[
            "queues",
            "settings",
            "emails",
            "--no-default-timeout",
            "--json",
        ])
        .await;
    assert_eq!(run.ok().json()["default_timeout_ms"], Value::Null);
    assert_eq!(
        server.get("/v1/queues").await["queues"][0]["default_timeout_ms"],
        Value::Null
    );
}

#[tokio::test]
async fn the_tenant_comes_from_the_environment() {
    let server = Server::start().await;
    server.enqueue("q", "default-job", None).await;
    let theirs = server.enqueue("q", "acme-job", Some("acme")).await;
    let run = cli(
        &server.url,
        &["jobs", "list", "--json"],
        &[("LEASEHOLD_TENANT", "acme")],
    )
    .await;
    let jobs = run.ok().json()["jobs"].clone();
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["id"], theirs["id"]);
    assert_eq!(jobs[0]["tenant"], "acme");
}

#[tokio::test]
async fn exit_codes_name_what_went_wrong() {
    let server = Server::start().await;

    // 1: the server's envelope, code and request id printed.
    let missing = uuid::Uuid::now_v7().to_string();
    let run = server.cli(&["jobs", "get", &missing]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.starts_with("error: not_found: ") && run.stderr.contains(&missing),
        "{}",
        run.stderr
    );
    let request_id = run
        .stderr
        .split("(request ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(request_id).unwrap().get_version_num(),
        4
    );
    let run = server.cli(&["queues", "pause", "no spaces"]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("validation_failed"), "{}", run.stderr);

    // 3: nothing listens there; the URL tried and the cause are printed.
    let dead = format!("http://127.0.0.1:{}", free_port().unwrap());
    let run = cli(&dead, &["jobs", "list"], &[]).await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(
        run.stderr
            .contains(&format!("cannot connect to {dead}/v1/jobs"))
            && run.stderr.contains("refused"),
        "{}",
        run.stderr
    );

    // 2: usage and local problems, before any request.
    let dir = temp_dir("cli-files");
    let not_json = dir.join("dag.json");
    std::fs::write(&not_json, "{ nope").unwrap();
    let not_a_run = dir.join("run.json");
    std::fs::write(&not_a_run, r#"{"jobs": [{"key": "a"}]}"#).unwrap();
    let array = dir.join("array.json");
    std::fs::write(&array, "[1]").unwrap();
    let missing_file = dir.join("missing.json");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "start", missing_file.to_str().unwrap()],
            "cannot read",
        ),
        (
            vec!["run", "plan", not_json.to_str().unwrap()],
            "is not valid JSON",
        ),
        (vec!["run", "start", not_a_run.to_str().unwrap()], "jobs[0]"),
        (
            vec!["run", "start", array.to_str().unwrap()],
            "must hold a JSON object",
        ),
        (
            vec![
                "ledger",
                "export",
                "--from",
                "yesterday",
                "--to",
                "2026-01-01T00:00:00Z",
                "-o",
                "x",
            ],
            "RFC 3339",
        ),
        (
            vec![
                "ledger",
                "export",
                "--from",
                "2026-01-02T00:00:00Z",
                "--to",
                "2026-01-01T00:00:00Z",
                "-o",
                "x",
            ],
            "must be before",
        ),
        (vec!["jobs", "get", "not-a-uuid"], "invalid value"),
        (vec!["jobs", "list", "--state", "sleeping"], "invalid value"),
        (vec!["jobs", "list", "--url", "localhost:7070"], "http://"),
    ];
    for (args, needle) in cases {
        let run = server.cli(&args).await;
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_api_key_is_sent_but_never_shown() {
    // A one-shot fake coordinator that records the request head and answers 401.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0);
            head.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"error":{"code":"unauthorized","message":"a valid API key is required","request_id":"r-1"}}"#;
        let answer = format!(
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8(head).unwrap().to_lowercase()
    });
    let run = cli(
        &url,
        &["queues", "list"],
        &[
            ("ORCHESTRATOR_API_KEY", "s3cret-key"),
            ("LEASEHOLD_TENANT", "acme"),
        ],
    )
    .await;
    let head = seen.await.unwrap();
    assert!(head.contains("authorization: bearer s3cret-key"), "{head}");
    assert!(head.contains("leasehold-tenant: acme"), "{head}");
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(
        run.stderr.trim(),
        "error: unauthorized: a valid API key is required (request r-1)"
    );
    assert!(!run.stderr.contains("s3cret") && !run.stdout.contains("s3cret"));
}

#[tokio::test]
async fn workers_lists_who_claimed() {
    let server = Server::start().await;
    server.enqueue("emails", "k", None).await;
    let claim = json!({"worker_id": "mailer-1", "queues": ["emails"]});
    let response = server
        .http
        .post(server.path("/v1/leases"))
        .json(&claim)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Sightings are written on their own task: ask until it shows.
    let mut tries = 0;
    let run = loop {
        let run = server.cli(&["workers"]).await;
        if run.stdout.contains("mailer-1") || tries == 100 {
            break run;
        }
        tries += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let lines: Vec<Vec<&str>> = run
        .ok()
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0][..5],
        ["WORKER", "STATE", "TRANSPORT", "QUEUES", "LEASES"]
    );
    assert_eq!(
        lines[1][..5],
        ["mailer-1", "connected", "http", "emails", "1"],
        "{}",
        run.stdout
    );
    let run = server.cli(&["workers", "--json", "--since", "10m"]).await;
    assert_eq!(run.ok().json()["workers"][0]["leases"], 1);
    let run = server.cli(&["workers", "--since", "soon"]).await;
    assert_eq!(run.code, 2, "{run:#?}");
}
