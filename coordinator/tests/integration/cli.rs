//! The operator CLI (`leasehold jobs|queues|run|events|ledger …`) against a real coordinator:
//! the same binary started with `serve` on a temp SQLite directory, driven as a subprocess.
//! Checks stdout (tables and `--json`), stderr messages, exit codes, and effects over HTTP.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use leasehold_testkit::{Coordinator, free_port};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold");

/// A `leasehold serve` on a fresh SQLite directory (the testkit's process harness, the one
/// every suite uses), with the helpers these tests share.
struct Server {
    coord: Coordinator,
    url: String,
    http: reqwest::Client,
}

impl Server {
    async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    async fn start_with_env(env: &[(&str, &str)]) -> Self {
        let coord = Coordinator::spawn_with_env(None, env).await.unwrap();
        Self {
            url: coord.url.clone(),
            coord,
            http: reqwest::Client::new(),
        }
    }

    /// Kills the process (connections drop at once) and starts it again on the same port
    /// and database.
    async fn restart(&mut self) {
        self.coord.kill();
        self.coord.start().await.unwrap();
    }

    fn path(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    async fn enqueue(&self, queue: &str, kind: &str, tenant: Option<&str>) -> Value {
        let mut request = self
            .http
            .post(self.path("/v1/jobs"))
            .json(&json!({"queue": queue, "kind": kind, "payload": {"n": 1}}));
        if let Some(t) = tenant {
            request = request.header("leasehold-tenant", t);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.http.get(self.path(path)).send().await.unwrap();
        assert!(response.status().is_success(), "GET {path}");
        response.json().await.unwrap()
    }

    /// Runs `leasehold <args>` against this server.
    async fn cli(&self, args: &[&str]) -> Run {
        cli(&self.url, args, &[]).await
    }
}

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "leasehold-{label}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}


/// What a CLI invocation produced.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    #[track_caller]
    fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "{self:#?}");
        self
    }
}

/// `leasehold --url <url> <args>` with a clean environment plus `env`.
async fn cli(url: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let output: Output = tokio::process::Command::new(BIN)
        .args(args)
        .env("LEASEHOLD_URL", url)
        .env_remove("LEASEHOLD_API_KEY")
        .env_remove("ORCHESTRATOR_API_KEY")
        .env_remove("LEASEHOLD_TENANT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn id_of(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

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
                "CANCELLED"
            ],
            vec!["emails", "no", "0", "2", "0", "0", "0", "0"],
            vec!["reports", "no", "0", "1", "0", "0", "0", "0"],
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

/// A scripted stand-in for the coordinator, for what a real one never does (a corrupt export, a
/// dropped stream): answers the n-th connection with `answers[n]` (raw HTTP) and closes it;
/// later connections are held open unanswered. Records each request head, lower-cased.
struct Fake {
    url: String,
    heads: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Fake {
    async fn start(answers: Vec<Vec<u8>>) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, heads) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            for answer in answers.into_iter().map(Some).chain(std::iter::repeat(None)) {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).to_lowercase());
                match answer {
                    Some(answer) => {
                        let _ = socket.write_all(&answer).await;
                        let _ = socket.shutdown().await;
                    }
                    None => held.push(socket),
                }
            }
        });
        Self { url, heads }
    }
}

/// A `200` whose body is `body`, closed after it (no length: the close ends it).
fn streamed(content_type: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n{body}")
        .into_bytes()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn event_json(id: i64, kind: &str) -> String {
    json!({"id": id, "type": kind, "job_id": null, "run_id": null, "tenant": "default",
        "queue": "q", "project": null, "job_kind": "k", "worker_id": null,
        "correlation_id": null, "at": "2026-11-22T10:00:00Z", "data": {}})
    .to_string()
}

#[tokio::test]
async fn ledger_exports_that_do_not_verify_fail_with_exit_4() {
    let events = format!(
        "{}\n{}\n",
        event_json(1, "enqueued"),
        event_json(2, "leased")
    );
    let manifest = |count: u64, sha: &str| {
        json!({"type": "manifest", "count": count, "first_id": 1, "last_id": 2,
            "from": "2026-11-22T00:00:00Z", "to": "2026-11-23T00:00:00Z", "sha256": sha})
        .to_string()
    };
    let good_sha = format!("sha256:{}", sha256_hex(events.as_bytes()));
    let bodies = [
        // Good: the only one that ends in a renamed, verified file.
        format!("{events}{}\n", manifest(2, &good_sha)),
        // Wrong count.
        format!("{events}{}\n", manifest(3, &good_sha)),
        // Wrong digest.
        format!(
            "{events}{}\n",
            manifest(2, &format!("sha256:{}", "0".repeat(64)))
        ),
        // Cut short: no manifest line.
        events.clone(),
    ];
    let fake = Fake::start(
        bodies
            .iter()
            .map(|b| streamed("application/x-ndjson", b))
            .collect(),
    )
    .await;
    let dir = temp_dir("cli-ledger");
    let args = |file: &str| -> Vec<String> {
        [
            "ledger",
            "export",
            "--from",
            "2026-11-22T00:00:00Z",
            "--to",
            "2026-11-23T00:00:00+00:00",
            "-o",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([dir.join(file).display().to_string()])
        .collect()
    };
    let run = |file: &'static str| {
        let url = fake.url.clone();
        let args = args(file);
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&url, &refs, &[]).await
        }
    };

    let ok = run("good.ndjson").await;
    ok.ok();
    assert!(ok.stdout.contains("exported 2 events"), "{ok:#?}");
    assert!(ok.stdout.contains(&good_sha), "{ok:#?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("good.ndjson")).unwrap(),
        bodies[0]
    );
    assert!(!dir.join("good.ndjson.part").exists());

    for (file, needle) in [
        ("count.ndjson", "counts 3 events but 2 arrived"),
        ("digest.ndjson", "hash to"),
        ("short.ndjson", "not a manifest"),
    ] {
        let run = run(file).await;
        assert_eq!(run.code, 4, "{file}: {run:#?}");
        assert!(run.stderr.contains(needle), "{file}: {}", run.stderr);
        assert!(!dir.join(file).exists(), "{file} must not look verified");
        assert!(dir.join(format!("{file}.part")).exists());
    }
    let mut fake = fake;
    let head = fake.heads.recv().await.unwrap();
    assert!(
        head.starts_with(
            "get /v1/ledger/export?from=2026-11-22t00%3a00%3a00z&to=2026-11-23t00%3a00%3a00z "
        ),
        "{head}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn event_streams_resume_with_last_event_id_after_a_drop() {
    let sse = |ids: &[i64]| {
        let mut body = String::from(": keep-alive\n\n");
        for id in ids {
            body.push_str(&format!(
                "id: {id}\nevent: enqueued\ndata: {}\n\n",
                event_json(*id, "enqueued")
            ));
        }
        streamed("text/event-stream", &body)
    };
    // The first connection delivers 1 and 2 and drops; the second delivers 3 and drops; the
    // third hangs on (no answer) until the CLI is stopped.
    let fake = Fake::start(vec![sse(&[1, 2]), sse(&[3])]).await;
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "events", "tail", "--json", "--queue", "q", "--after", "0", "--url", &fake.url,
        ])
        .env_remove("LEASEHOLD_API_KEY")
        .env_remove("ORCHESTRATOR_API_KEY")
        .env_remove("LEASEHOLD_TENANT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = {
        use tokio::io::AsyncBufReadExt;
        tokio::io::BufReader::new(child.stdout.take().unwrap()).lines()
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("an event line in time")
            .unwrap()
            .unwrap();
        let event: Value = serde_json::from_str(&line).unwrap();
        ids.push(event["id"].as_i64().unwrap());
    }
    assert_eq!(ids, [1, 2, 3]);
    let mut fake = fake;
    let first = fake.heads.recv().await.unwrap();
    assert!(
        first.starts_with("get /v1/events?queue=q&after=0 "),
        "{first}"
    );
    assert!(!first.contains("last-event-id"), "{first}");
    let second = fake.heads.recv().await.unwrap();
    assert!(second.contains("last-event-id: 2\r\n"), "{second}");
    assert!(
        !second.contains("after="),
        "a stale ?after= must not compete: {second}"
    );
    let third = tokio::time::timeout(Duration::from_secs(20), fake.heads.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(third.contains("last-event-id: 3\r\n"), "{third}");

    // Ctrl-C ends the tail with 130.
    interrupt(&child);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130));
    let mut stderr = String::new();
    {
        use tokio::io::AsyncReadExt;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
    }
    assert!(stderr.contains("reconnecting after event 2"), "{stderr}");
}

/// Sends SIGINT, as Ctrl-C in a terminal would.
fn interrupt(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
}

// ---- Runs, the event feed and the ledger, against the real coordinator. ----

const DAG: &str = r#"{"name": "nightly", "jobs": [
  {"key": "load", "kind": "load", "queue": "etl", "depends_on": ["transform"]},
  {"key": "extract", "kind": "extract", "queue": "etl"},
  {"key": "transform", "kind": "transform", "queue": "etl", "depends_on": ["extract"]},
  {"key": "report", "kind": "report", "queue": "reports"}
]}"#;

impl Server {
    /// Claims every ready job of `queue` as a worker and completes it; returns the kinds done.
    async fn work(&self, queue: &str) -> Vec<String> {
        let claim: Value = self
            .http
            .post(self.path("/v1/leases"))
            .json(&json!({"worker_id": "cli-test", "queues": [queue], "max_jobs": 10, "lease_ttl_ms": 30000}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut done = Vec::new();
        for lease in claim["leases"].as_array().unwrap() {
            let id = lease["job"]["id"].as_str().unwrap();
            let r = self
                .http
                .post(self.path(&format!("/v1/jobs/{id}/complete")))
                .json(&json!({"fencing_token": lease["fencing_token"], "result": {}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            done.push(lease["job"]["kind"].as_str().unwrap().to_owned());
        }
        done
    }

    /// Every event of the ledger (via the export), manifest line dropped.
    async fn ledger(&self) -> Vec<Value> {
        let text = self
            .http
            .get(self.path("/v1/ledger/export"))
            .query(&[
                ("from", "2000-01-01T00:00:00Z"),
                ("to", "2100-01-01T00:00:00Z"),
            ])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.pop().unwrap()["type"], "manifest");
        events
    }
}

/// A CLI process whose stdout is read line by line as it runs.
struct Live {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Live {
    fn spawn(url: &str, args: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(BIN)
            .args(args)
            .env("LEASEHOLD_URL", url)
            .env_remove("LEASEHOLD_API_KEY")
            .env_remove("ORCHESTRATOR_API_KEY")
            .env_remove("LEASEHOLD_TENANT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    /// The next stdout line, or `None` at the end of output.
    async fn line(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
            .await
            .expect("output in time")
            .unwrap()
    }

    /// Reads JSON lines until one has `type == kind`; returns all read.
    async fn until(&mut self, kind: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .line()
                .await
                .unwrap_or_else(|| panic!("ended before {kind}: {seen:#?}"));
            let event: Value = serde_json::from_str(&line).unwrap();
            let done = event["type"] == kind;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }

    /// Waits for the exit; returns the code and the whole stderr.
    async fn finish(mut self) -> (Option<i32>, String) {
        use tokio::io::AsyncReadExt;
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("exit in time")
            .unwrap();
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        (status.code(), stderr)
    }
}

#[tokio::test]
async fn runs_plan_start_get_and_cancel() {
    let server = Server::start().await;
    let dir = temp_dir("cli-runs");
    let dag = dir.join("dag.json");
    std::fs::write(&dag, DAG).unwrap();
    let dag = dag.to_str().unwrap();
    let cycle = dir.join("cycle.json");
    std::fs::write(
        &cycle,
        r#"{"jobs": [{"key": "a", "kind": "k", "depends_on": ["b"]}, {"key": "b", "kind": "k", "depends_on": ["a"]}]}"#,
    )
    .unwrap();

    // Plan: parents first, nothing created.
    let run = server.cli(&["run", "plan", dag]).await;
    let rows: Vec<Vec<&str>> = run
        .ok()
        .stdout
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["#", "KEY", "KIND", "QUEUE", "DEPENDS", "ON"],
            vec!["1", "extract", "extract", "etl", "-"],
            vec!["2", "transform", "transform", "etl", "extract"],
            vec!["3", "load", "load", "etl", "transform"],
            vec!["4", "report", "report", "reports", "-"],
        ]
    );
    let run = server.cli(&["run", "plan", dag, "--json"]).await;
    assert_eq!(
        run.ok().json()["order"],
        json!(["extract", "transform", "load", "report"])
    );
    assert!(
        server.get("/v1/jobs").await["jobs"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let run = server.cli(&["run", "plan", cycle.to_str().unwrap()]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.starts_with("error: validation_failed: ")
            && run.stderr.contains("cycle through: a, b"),
        "{}",
        run.stderr
    );

    // Start, idempotent by token.
    let run = server
        .cli(&["run", "start", dag, "--token", "nightly-1"])
        .await;
    let line = run.ok().stdout.trim().to_owned();
    let id = line
        .strip_prefix("run ")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(line, format!("run {id} started: pending (4 jobs)"));
    assert!(run.stderr.contains(&format!("leasehold run stream {id}")));
    let run = server
        .cli(&["run", "start", dag, "--token", "nightly-1"])
        .await;
    assert_eq!(
        run.ok().stdout.trim(),
        format!("run {id} already submitted with token nightly-1: pending (4 jobs)")
    );
    let run = server
        .cli(&["run", "start", dag, "--token", "nightly-1", "--json"])
        .await;
    assert_eq!(run.ok().json()["id"], id.as_str());

    // Get: the status block and one row per job.
    let run = server.cli(&["run", "get", &id]).await;
    run.ok();
    assert!(
        run.stdout.starts_with(&format!(
            "run:            {id}\nstatus:         pending\nname:           nightly\ntoken:          nightly-1\ncorrelation id: {id}\n"
        )),
        "{}",
        run.stdout
    );
    let states: Vec<(String, String)> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("KEY"))
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[0].to_owned(), cells[4].to_owned())
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("extract", "queued"),
        ("transform", "blocked"),
        ("load", "blocked"),
        ("report", "queued"),
    ]
    .iter()
    .map(|(k, s)| ((*k).to_owned(), (*s).to_owned()))
    .collect();
    assert_eq!(states, expected);
    let run = server.cli(&["run", "get", &id, "--json"]).await;
    assert_eq!(run.ok().json(), server.get(&format!("/v1/runs/{id}")).await);

    // Cancel cascades and is idempotent.
    let run = server.cli(&["run", "cancel", &id]).await;
    assert_eq!(run.ok().stdout.trim(), format!("run {id} is cancelled"));
    let seen = server.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(seen["status"], "cancelled");
    assert!(
        seen["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["state"] == "cancelled"),
        "{seen:#}"
    );
    let run = server.cli(&["run", "cancel", &id, "--json"]).await;
    assert_eq!(run.ok().json()["status"], "cancelled");

    let missing = uuid::Uuid::now_v7().to_string();
    for args in [
        ["run", "get", &missing],
        ["run", "cancel", &missing],
        ["run", "stream", &missing],
    ] {
        let run = server.cli(&args).await;
        assert_eq!(run.code, 1, "{args:?}: {run:#?}");
        assert!(
            run.stderr.starts_with("error: not_found: "),
            "{}",
            run.stderr
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn run_stream_follows_a_run_to_its_end_across_a_coordinator_restart() {
    let mut server = Server::start().await;
    let dag = json!({"jobs": [
        {"key": "a", "kind": "first", "queue": "s"},
        {"key": "b", "kind": "second", "queue": "s", "depends_on": ["a"]},
    ]});
    let run: Value = server
        .http
        .post(server.path("/v1/runs"))
        .json(&dag)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = run["id"].as_str().unwrap().to_owned();

    let mut live = Live::spawn(&server.url, &["run", "stream", &id, "--json"]);
    let mut seen = live.until("enqueued").await;
    assert_eq!(seen[0]["type"], "run_created");
    assert_eq!(server.work("s").await, ["first"]);
    seen.extend(live.until("unblocked").await);

    // The coordinator goes away mid-stream and comes back; the stream resumes where it was.
    server.restart().await;
    assert_eq!(server.work("s").await, ["second"]);
    loop {
        let more = live.until("run_status").await;
        let done = more.last().unwrap()["data"]["status"] == "succeeded";
        seen.extend(more);
        if done {
            break;
        }
    }
    assert_eq!(seen.last().unwrap()["data"]["status"], "succeeded");
    assert_eq!(
        live.line().await,
        None,
        "the stream ends after the terminal status"
    );
    let (code, stderr) = live.finish().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("reconnecting after event"), "{stderr}");

    // Exactly the run's events, each once, in ledger order.
    let ids: Vec<i64> = seen.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = server
        .ledger()
        .await
        .iter()
        .filter(|e| e["run_id"] == id.as_str())
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, expected);

    // Streaming a finished run replays it and stops at once; human lines by default.
    let run = server.cli(&["run", "stream", &id]).await;
    run.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), expected.len() + 1, "{}", run.stdout);
    assert!(
        lines[0].contains(&format!("#{}  run_created", expected[0])),
        "{}",
        lines[0]
    );
    assert!(
        lines.iter().any(|l| l.contains("succeeded")
            && l.contains("kind=second")
            && l.contains("worker=cli-test")),
        "{}",
        run.stdout
    );
    assert_eq!(*lines.last().unwrap(), format!("run {id} ended: succeeded"));
}

#[tokio::test]
async fn events_tail_filters_and_stops_on_ctrl_c() {
    let server = Server::start().await;
    let a = server.enqueue("t1", "k1", None).await;
    server.enqueue("t2", "k2", None).await;
    let c = server.enqueue("t1", "k3", None).await;

    // Replay from the start, then live: only queue t1.
    let mut live = Live::spawn(&server.url, &["events", "tail", "--queue", "t1", "--json"]);
    let first: Value = serde_json::from_str(&live.line().await.unwrap()).unwrap();
    let second: Value = serde_json::from_str(&live.line().await.unwrap()).unwrap();
    assert_eq!(
        (first["type"].as_str(), first["job_id"].as_str()),
        (Some("enqueued"), a["id"].as_str())
    );
    assert_eq!(second["job_id"], c["id"]);
    let d = server.enqueue("t1", "k4", None).await;
    let third: Value = serde_json::from_str(&live.line().await.unwrap()).unwrap();
    assert_eq!(third["job_id"], d["id"]);
    interrupt(&live.child);
    let (code, stderr) = live.finish().await;
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        !stderr.contains("error"),
        "Ctrl-C is not an error: {stderr}"
    );

    // Human lines, type filter and --after.
    let after = first["id"].as_i64().unwrap().to_string();
    let mut live = Live::spawn(
        &server.url,
        &["events", "tail", "--type", "enqueued", "--after", &after],
    );
    let line = live.line().await.unwrap();
    assert!(
        line.contains("  enqueued job=") && line.contains("queue=t2 kind=k2"),
        "{line}"
    );
    interrupt(&live.child);
    assert_eq!(live.finish().await.0, Some(130));
}

#[tokio::test]
async fn ledger_export_writes_a_verified_file() {
    let server = Server::start().await;
    server.enqueue("l", "k", None).await;
    server.enqueue("l", "k", None).await;
    let dir = temp_dir("cli-export");
    let file = dir.join("ledger.ndjson");
    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::hours(1)).to_rfc3339();
    let to = (now + chrono::Duration::hours(1)).to_rfc3339();
    let args = [
        "ledger",
        "export",
        "--from",
        &from,
        "--to",
        &to,
        "-o",
        file.to_str().unwrap(),
    ];
    let run = server.cli(&args).await;
    assert!(
        run.ok().stdout.starts_with("exported 2 events, ids 1..=2 "),
        "{run:#?}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let (events, manifest) = text.trim_end().rsplit_once('\n').unwrap();
    let manifest: Value = serde_json::from_str(manifest).unwrap();
    assert_eq!(manifest["count"], 2);
    assert_eq!(
        manifest["sha256"],
        format!("sha256:{}", sha256_hex(format!("{events}\n").as_bytes()))
    );
    assert!(run.stdout.contains(manifest["sha256"].as_str().unwrap()));
    // No terminal on stderr: no progress bar in the output.
    assert!(!run.stderr.contains('\r'), "{:?}", run.stderr);

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let run = server.cli(&json_args).await;
    assert_eq!(run.ok().json(), manifest);

    // An empty window still ends in a manifest.
    let run = server
        .cli(&[
            "ledger",
            "export",
            "--from",
            "2001-01-01T00:00:00Z",
            "--to",
            "2001-01-02T00:00:00Z",
            "-o",
            file.to_str().unwrap(),
            "--json",
        ])
        .await;
    assert_eq!(run.ok().json()["count"], 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_api_key_opens_a_protected_coordinator() {
    let server = Server::start_with_env(&[("ORCHESTRATOR_API_KEY", "k-123")]).await;
    let run = server.cli(&["queues", "list"]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.starts_with("error: unauthorized: "),
        "{}",
        run.stderr
    );
    for var in ["LEASEHOLD_API_KEY", "ORCHESTRATOR_API_KEY"] {
        let run = cli(
            &server.url,
            &["queues", "list", "--json"],
            &[(var, "k-123")],
        )
        .await;
        assert_eq!(run.ok().json(), json!({"queues": []}));
    }
    let run = cli(
        &server.url,
        &["jobs", "list"],
        &[("LEASEHOLD_API_KEY", "not-k-999")],
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with("error: unauthorized: "),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-k-999"), "{}", run.stderr);
}
