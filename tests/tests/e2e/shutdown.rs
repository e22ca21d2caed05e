//! Shutdown with a deadline: SIGTERM while an SSE client has stopped reading (its socket full)
//! and an upload has stopped sending (its request in flight forever) still ends the process,
//! with exit status 0, once the grace period has passed.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use leasehold_testkit::Coordinator;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const GRACE_MS: u64 = 1500;

/// Bytes the coordinator has queued on the connection whose peer is `client_port`, read from
/// `ss` (the kernel's send queue of that socket).
fn queued_to(server_port: u16, client_port: u16) -> u64 {
    let out = std::process::Command::new("ss")
        .args([
            "-tnH",
            "state",
            "established",
            &format!("( sport = :{server_port} )"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_end().ends_with(&format!(":{client_port}")))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn sigterm_ends_even_with_a_client_that_stopped_reading() {
    let grace = GRACE_MS.to_string();
    let mut coord =
        Coordinator::spawn_with_env(None, &[("LEASEHOLD_SHUTDOWN_GRACE_MS", grace.as_str())])
            .await
            .unwrap();
    let port: u16 = coord.url.rsplit(':').next().unwrap().parse().unwrap();
    // A follower of the live feed that never reads what it is sent.
    let mut stuck = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let client_port = stuck.local_addr().unwrap().port();
    stuck
        .write_all(
            b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();

    // Big events until its socket is full: failures carrying 60 KB messages.
    let http = reqwest::Client::new();
    let message = "x".repeat(60_000);
    let deadline = Instant::now() + Duration::from_secs(60);
    while queued_to(port, client_port) < 1_000_000 {
        assert!(
            Instant::now() < deadline,
            "the stuck client's socket never filled"
        );
        let jobs: Vec<Value> = (0..20)
            .map(|_| json!({"queue": "big", "kind": "k"}))
            .collect();
        let r = http
            .post(format!("{}/v1/jobs", coord.url))
            .json(&json!({"jobs": jobs}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let leases: Value = http
            .post(format!("{}/v1/leases", coord.url))
            .json(&json!({"worker_id": "w", "queues": ["big"], "max_jobs": 20}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for lease in leases["leases"].as_array().unwrap() {
            let id = lease["job"]["id"].as_str().unwrap();
            let r = http
                .post(format!("{}/v1/jobs/{id}/fail", coord.url))
                .json(&json!({"fencing_token": lease["fencing_token"], "error": {"class": "big", "message": message, "retryable": false}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }

    // An upload that stops half-way: its request stays in flight.
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    stalled
        .write_all(
            format!(
                "PUT /v1/artifacts/{digest} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stalled.write_all(&[0_u8; 1000]).await.unwrap();
    // The upload is being received once its temporary file exists.
    let tmp = coord.data_dir().join("artifacts").join("tmp");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&tmp).map_or(0, Iterator::count) == 0 {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    let exit = tokio::task::spawn_blocking(move || {
        let status = coord.terminate();
        (status, coord.log())
    });
    let (status, log) = tokio::time::timeout(Duration::from_secs(30), exit)
        .await
        .expect("the coordinator did not exit within 30 s of SIGTERM")
        .unwrap();
    let status = status.unwrap();
    assert!(status.success(), "exit status {status}\n{log}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(GRACE_MS / 2)
            && took < Duration::from_millis(GRACE_MS + 5000),
        "shutdown took {took:?}\n{log}"
    );
    assert!(
        log.contains("did not finish within the shutdown grace period"),
        "{log}"
    );
    drop((stuck, stalled));
}
