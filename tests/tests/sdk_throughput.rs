//! 10,000 no-op jobs through the Rust SDK's `Worker`, over the WebSocket and over HTTP
//! long-poll, on SQLite (and PostgreSQL when `LEASEHOLD_TEST_DATABASE_URL` is set): none lost,
//! none run twice. Prints jobs/s (`cargo test -p leasehold-testkit --test sdk_throughput --
//! --nocapture` shows them).
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

async fn no_op_jobs(database_url: Option<&str>, transport: Transport, label: &str) -> Result<()> {
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
            .lease_ttl(Duration::from_millis(1000))
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
