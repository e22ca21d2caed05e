//! The ledger archive: events past the ledger window leave the database only as chained NDJSON
//! segments whose lines are the export's, id by id; `leasehold ledger verify` checks the chain
//! and finds one altered byte; sweeps run twice, interrupted or at once lose and duplicate
//! nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Duration, SecondsFormat, Utc};
use leasehold_coordinator::clock::OffsetClock;
use leasehold_coordinator::store::Store;
use serde_json::{Value, json};
use sha2::Digest;

use super::{Coord, DAY_MS, two_replicas};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold");

/// A coordinator keeping the ledger one day, four events per segment.
async fn start(store: Arc<dyn Store>, clock: OffsetClock) -> Coord {
    Coord::start(store, clock, |c| {
        c.ledger = "1d".parse().unwrap();
        c.segment_events = 4;
    })
    .await
}

/// Some history: jobs enqueued, leased, finished (about a dozen events).
async fn history(c: &Coord, queue: &str) {
    for _ in 0..3 {
        c.succeeded(queue, None, json!([])).await;
    }
    c.enqueue(queue, None).await;
}

/// The event lines `GET /v1/ledger/export` gives for the last 40 days to 40 days ahead.
async fn export_lines(c: &Coord) -> Vec<String> {
    let now = Utc::now();
    let from = (now - Duration::days(40)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let to = (now + Duration::days(40)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let r = c
        .http
        .get(format!("{}/v1/ledger/export", c.url))
        .query(&[("from", from), ("to", to)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let manifest = lines.pop().unwrap();
    assert!(manifest.contains("\"type\":\"manifest\""), "{manifest}");
    lines
}

/// The segment files in chain order.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "ndjson"));
    files.sort();
    files
}

/// Every event line of every segment, in order (manifest lines left out).
fn archived_lines(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for file in segment_files(dir) {
        let text = std::fs::read_to_string(file).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.pop();
        out.extend(lines);
    }
    out
}

fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        leasehold_coordinator::http::artifacts::hex(&sha2::Sha256::digest(bytes))
    )
}

async fn verify(dir: &Path) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .args(["ledger", "verify", "--archive-dir"])
        .arg(dir)
        .output()
        .await
        .unwrap()
}

async fn old_events_leave_only_as_a_verifiable_chain(store: Arc<dyn Store>) {
    let c = start(store.clone(), OffsetClock::default()).await;
    let archived_before = c.metric("leasehold_ledger_events_archived_total").await;
    history(&c, "l").await;

    // Inside the window: nothing archived. (The sweep asked over HTTP is itself recorded, as
    // an `audit` event: part of the ledger from then on.)
    assert_eq!(c.sweep().await["events_archived"], 0);
    let before = export_lines(&c).await;
    assert!(before.len() > 8, "{}", before.len());
    assert!(before.last().unwrap().contains("\"retention.sweep\""));
    c.clock.advance_ms(2 * DAY_MS);
    history(&c, "l-recent").await;
    let report = c.sweep().await;
    assert_eq!(report["events_archived"], before.len(), "{report}");
    assert_eq!(
        report["segments_written"],
        before.len().div_ceil(4),
        "{report}"
    );

    // The archive holds exactly what the export gave before trimming, id by id, byte by byte.
    assert_eq!(archived_lines(&c.archive_dir), before);
    // And the database no longer does; the recent events stay.
    let left = store.events_after(0, 10_000).await.unwrap();
    let last_archived: Value = serde_json::from_str(before.last().unwrap()).unwrap();
    assert!(
        left.iter()
            .all(|e| e.id > last_archived["id"].as_i64().unwrap())
    );
    assert!(!left.is_empty());

    // The coordinator's record of the chain matches the files.
    let listed = c.call("GET", "/v1/ledger/segments", None).await.body;
    let segments = listed["segments"].as_array().unwrap();
    assert_eq!(segments.len(), segment_files(&c.archive_dir).len());
    let mut prev = Value::Null;
    for (n, s) in segments.iter().enumerate() {
        assert_eq!(s["seq"], n + 1);
        assert_eq!(s["prev"], prev, "segment {}", n + 1);
        let bytes = std::fs::read(c.archive_dir.join(s["file"].as_str().unwrap())).unwrap();
        let manifest_line = bytes[..bytes.len() - 1]
            .rsplit(|&b| b == b'\n')
            .next()
            .unwrap();
        let mut with_newline = manifest_line.to_vec();
        with_newline.push(b'\n');
        assert_eq!(s["manifest_sha256"], sha256(&with_newline));
        prev = s["manifest_sha256"].clone();
    }

    // Again: nothing more to archive, the chain unchanged.
    assert_eq!(c.sweep().await["events_archived"], 0);
    assert_eq!(
        c.call("GET", "/v1/ledger/segments", None).await.body,
        listed
    );
    assert!(
        c.metric("leasehold_ledger_events_archived_total").await
            >= archived_before + before.len() as f64
    );

    // The CLI verifies the chain, and finds one altered byte.
    let ok = verify(&c.archive_dir).await;
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("verified {} segments", segments.len())),
        "{stdout}"
    );
    assert!(stdout.contains(prev.as_str().unwrap()), "{stdout}");
    let first = segment_files(&c.archive_dir)[0].clone();
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&first, &bytes).unwrap();
    let bad = verify(&c.archive_dir).await;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("ledger archive did not verify")
            && stderr.contains(first.file_name().unwrap().to_str().unwrap()),
        "{stderr}"
    );
}

/// A replica that died after writing its segment file and before recording it leaves the file;
/// the next sweep adopts it as is (its bytes are what an independent rendering of the export
/// gives) and carries on from there.
async fn an_interrupted_archive_is_adopted_not_duplicated(store: Arc<dyn Store>) {
    let c = start(store, OffsetClock::default()).await;
    history(&c, "i").await;
    let before = export_lines(&c).await;
    // The file the dead replica wrote: its first three events, in the documented format.
    let ids: Vec<i64> = before
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let mut body = String::new();
    for line in &before[..3] {
        body.push_str(line);
        body.push('\n');
    }
    let first_at = serde_json::from_str::<Value>(&before[0]).unwrap()["at"].clone();
    let manifest = json!({"type": "manifest", "count": 3, "first_id": ids[0], "last_id": ids[2],
        "from": first_at, "to": "2030-01-01T00:00:00Z", "sha256": sha256(body.as_bytes()),
        "seq": 1, "prev": null});
    body.push_str(&format!("{manifest}\n"));
    std::fs::create_dir_all(&c.archive_dir).unwrap();
    let orphan = c
        .archive_dir
        .join(format!("ledger-00000001-{:020}.ndjson", ids[0]));
    std::fs::write(&orphan, &body).unwrap();

    c.clock.advance_ms(2 * DAY_MS);
    let report = c.sweep().await;
    assert_eq!(report["events_archived"], before.len(), "{report}");
    assert_eq!(
        std::fs::read_to_string(&orphan).unwrap(),
        body,
        "adopted as is"
    );
    let segments = c.call("GET", "/v1/ledger/segments", None).await.body;
    assert_eq!(segments["segments"][0]["count"], 3);
    assert_eq!(segments["segments"][1]["first_id"], ids[3]);
    assert_eq!(
        archived_lines(&c.archive_dir),
        before,
        "nothing lost or doubled"
    );
    assert_eq!(verify(&c.archive_dir).await.status.code(), Some(0));
}

on_both_backends!(
    old_events_leave_only_as_a_verifiable_chain,
    an_interrupted_archive_is_adopted_not_duplicated,
);

/// Two replicas (PostgreSQL) or two sweeps of one coordinator (SQLite) archiving at once
/// write one chain holding every event once.
async fn concurrent_archives_write_one_chain(postgres: bool, test: &str) {
    let Some((a, b, _guard)) = two_replicas(postgres, test).await else {
        return;
    };
    let clock = OffsetClock::default();
    let one = start(a, clock.clone()).await;
    // The second replica shares the first's archive directory, as the docs ask.
    let shared = one.archive_dir.clone();
    let two = Coord::start(b, clock.clone(), move |c| {
        c.ledger = "1d".parse().unwrap();
        c.segment_events = 4;
        c.archive_dir = shared;
    })
    .await;
    history(&one, "c").await;
    let before = export_lines(&one).await;
    clock.advance_ms(2 * DAY_MS);
    let (r1, r2) = if postgres {
        tokio::join!(one.sweep(), two.sweep())
    } else {
        tokio::join!(one.sweep(), one.sweep())
    };
    let archived =
        r1["events_archived"].as_u64().unwrap() + r2["events_archived"].as_u64().unwrap();
    assert_eq!(archived, before.len() as u64, "{r1} {r2}");
    assert_eq!(archived_lines(&one.archive_dir), before);
    assert_eq!(verify(&one.archive_dir).await.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_archives_write_one_chain() {
    concurrent_archives_write_one_chain(false, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_archives_write_one_chain() {
    concurrent_archives_write_one_chain(true, "retention::ledger::postgres_concurrent_archives")
        .await;
}
