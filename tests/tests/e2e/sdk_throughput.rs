//! 10,000 no-op jobs through the Rust SDK's `Worker`, over the WebSocket and over HTTP
//! long-poll, on SQLite (and PostgreSQL when `LEASEHOLD_TEST_DATABASE_URL` is set): none lost,
//! none run twice. Prints jobs/s (`cargo test -p leasehold-testkit --test e2e sdk_throughput::
//! -- --nocapture` shows them).
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use leasehold::proto::JobState;
use leasehold::{Client, JobContext, JobSpec, Transport, Worker};
use leasehold_testkit::sdk::{RunningWorker, all_jobs, init_tracing, wait_for_state};
use leasehold_testkit::{Coordinator, fresh_schema, postgres_url};
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

const JOBS: usize = 10_000;

/// The measurements in this file run one at a time: on two cores, parallel runs would measure
/// each other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn no_op_jobs(database_url: Option<&str>, transport: Transport, label: &str) -> Result<()> {
    let _serial = SERIAL.lock().await;
    init_tracing();
    let coord = Coordinator::spawn(database_url).await?;
    let client = Client::new(&coord.url)?;
    let queue = "noop";
    client
        .enqueue_many((0..JOBS).map(|i| JobSpec::new("noop", json!({ "i": i })).queue(queue)))
        .await?;
    let runs: Arc<Mutex<HashMap<Uuid, u32>>> = Arc::default();
    let runs2 = runs.clone();
    let started = Instant::now();
    let running = RunningWorker::start(
        Worker::builder(&coord.url)
            .queues([queue])
            .concurrency(200)
            // Not the 1 s minimum: a debug coordinator on PostgreSQL may take longer than half
            // a second to answer a 400-lease heartbeat under this load, and an expired lease
            // re-runs its job (correct, but this test demands exactly one run per job).
            .lease_ttl(Duration::from_secs(5))
            .transport(transport)
            .handler("noop", move |ctx: JobContext| {
                let runs = runs2.clone();
                async move {
                    *runs.lock().unwrap().entry(ctx.id()).or_default() += 1;
                    Ok(json!(null))
                }
            })
            .build()?,
    );
    wait_for_state(
        &client,
        queue,
        JobState::Succeeded,
        JOBS as i64,
        Duration::from_secs(120),
    )
    .await?;
    let elapsed = started.elapsed();
    running.stop().await?;
    let rate = JOBS as f64 / elapsed.as_secs_f64();
    eprintln!("[sdk_throughput] {label}: {JOBS} no-op jobs in {elapsed:.2?} = {rate:.0} jobs/s");

    let jobs = all_jobs(&client, queue).await?;
    assert_eq!(jobs.len(), JOBS);
    let runs = runs.lock().unwrap();
    for job in &jobs {
        assert_eq!(job.state, JobState::Succeeded, "job {} lost", job.id);
        assert_eq!(
            job.attempt, 1,
            "job {} took {} attempts",
            job.id, job.attempt
        );
        assert_eq!(
            runs.get(&job.id),
            Some(&1),
            "job {} ran {:?} times",
            job.id,
            runs.get(&job.id)
        );
    }
    assert_eq!(runs.len(), JOBS);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_no_op_jobs_over_websocket_sqlite() -> Result<()> {
    no_op_jobs(None, Transport::WebSocket, "websocket/sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_no_op_jobs_over_http_sqlite() -> Result<()> {
    no_op_jobs(None, Transport::Http, "http/sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_no_op_jobs_over_websocket_postgres() -> Result<()> {
    let Some(base) = postgres_url("ten_thousand_no_op_jobs_over_websocket_postgres") else {
        return Ok(());
    };
    let url = fresh_schema(&base).await?;
    no_op_jobs(Some(&url), Transport::WebSocket, "websocket/postgres").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_no_op_jobs_over_http_postgres() -> Result<()> {
    let Some(base) = postgres_url("ten_thousand_no_op_jobs_over_http_postgres") else {
        return Ok(());
    };
    let url = fresh_schema(&base).await?;
    no_op_jobs(Some(&url), Transport::Http, "http/postgres").await
}

/// Enqueue → handler start at a steady 100 jobs/s for 5 s, one enqueue call per job; prints
/// p50/p99 (coordinator `created_at` to handler start, one host, one wall clock).
async fn pickup_latency(transport: Transport, label: &str) -> Result<()> {
    let _serial = SERIAL.lock().await;
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let queue = "latency";
    let lat: Arc<Mutex<Vec<f64>>> = Arc::default();
    let lat2 = lat.clone();
    let running = RunningWorker::start(
        Worker::builder(&coord.url)
            .queues([queue])
            .concurrency(50)
            .lease_ttl(Duration::from_millis(1000))
            .transport(transport)
            .handler("noop", move |ctx: JobContext| {
                let lat = lat2.clone();
                async move {
                    let ms = (chrono::Utc::now() - ctx.job().created_at).num_microseconds();
                    lat.lock().unwrap().push(ms.unwrap_or(0) as f64 / 1000.0);
                    Ok(json!(null))
                }
            })
            .build()?,
    );
    // Let the worker connect before the clock starts.
    let warm = client
        .enqueue(JobSpec::new("noop", json!({})).queue(queue))
        .await?;
    client.wait(warm.job.id, Duration::from_secs(30)).await?;
    lat.lock().unwrap().clear();
    let n = 500;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sends = Vec::with_capacity(n);
    for i in 0..n {
        tick.tick().await;
        let client = client.clone();
        sends.push(tokio::spawn(async move {
            client
                .enqueue(JobSpec::new("noop", json!({ "i": i })).queue(queue))
                .await
        }));
    }
    for s in sends {
        s.await??;
    }
    wait_for_state(
        &client,
        queue,
        JobState::Succeeded,
        n as i64 + 1,
        Duration::from_secs(60),
    )
    .await?;
    running.stop().await?;
    let mut v = lat.lock().unwrap().clone();
    assert_eq!(v.len(), n);
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    eprintln!(
        "[sdk_throughput] pickup latency {label} at 100 jobs/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    // A measurement, not a pass/fail bound: debug builds on a shared CI machine vary too much.
    assert!(v.iter().all(|ms| *ms >= 0.0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pickup_latency_at_100_jobs_per_second_websocket() -> Result<()> {
    pickup_latency(Transport::WebSocket, "websocket/sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pickup_latency_at_100_jobs_per_second_http() -> Result<()> {
    pickup_latency(Transport::Http, "http/sqlite").await
}
