//! What a real coordinator never does, from a scripted stand-in: corrupt exports and dropped
//! event streams.
#![allow(clippy::unwrap_used)]

use super::*;

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
