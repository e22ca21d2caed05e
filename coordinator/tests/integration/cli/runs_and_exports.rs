//! Runs, the event feed and the ledger export against the real coordinator.
#![allow(clippy::unwrap_used)]

use super::*;

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

    // List: one row, its jobs counted by state; filters and bad flags.
    let run = server.cli(&["run", "list"]).await;
    let out = &run.ok().stdout;
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].starts_with("ID") && rows[0].contains("STATUS"),
        "{out}"
    );
    assert!(
        rows[1].starts_with(&id)
            && rows[1].contains("pending")
            && rows[1].contains("2 blocked, 2 queued"),
        "{out}"
    );
    let run = server
        .cli(&[
            "run", "list", "--since", "1h", "--status", "pending", "--json",
        ])
        .await;
    assert_eq!(run.ok().json()["runs"][0]["id"], id.as_str());
    let run = server.cli(&["run", "list", "--status", "succeeded"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stderr.trim(), "no runs match");
    let run = server.cli(&["run", "list", "--since", "yesterday"]).await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("--since"), "{}", run.stderr);

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
    let server =
        Server::start_with_env(&[("ORCHESTRATOR_API_KEY", "k-123-0123456789abcdef")]).await;
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
            &[(var, "k-123-0123456789abcdef")],
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
