//! First figures for the coordinator alone (no SDK): claim-after-enqueue wake-up latency and
//! end-to-end no-op throughput over HTTP, on SQLite and PostgreSQL.
//!
//! Run with (release coordinator; PostgreSQL rows need a URL):
//!   cargo build --release -p leasehold-coordinator
//!   LEASEHOLD_BIN=target/release/leasehold cargo run --release -p leasehold-bench --bin probe -- \
//!       --postgres postgres://leasehold:leasehold@127.0.0.1:5432/leasehold_test

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use leasehold_testkit::{Coordinator, fresh_schema};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    /// PostgreSQL URL for the PostgreSQL rows (a fresh schema is created); SQLite always runs.
    #[arg(long, env = "LEASEHOLD_BENCH_DATABASE_URL")]
    postgres: Option<String>,
    /// Wake-up samples.
    #[arg(long, default_value_t = 200)]
    wakeups: usize,
    /// Jobs for the throughput run.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Concurrent claim/complete loops.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Leases per claim (and outcomes per batch).
    #[arg(long, default_value_t = 100)]
    batch: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Enqueue → the long-polling claimer holds the job, `n` times.
async fn wakeups(http: &reqwest::Client, url: &str, n: usize) -> Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let claimer = {
            let (http, url) = (http.clone(), url.to_owned());
            tokio::spawn(async move {
                let r: Value = http
                    .post(format!("{url}/v1/leases"))
                    .json(&json!({"worker_id": "probe", "queues": ["wake"], "wait_ms": 10000}))
                    .send()
                    .await?
                    .json()
                    .await?;
                anyhow::Ok((Instant::now(), r))
            })
        };
        // Let the claimer reach its wait.
        tokio::time::sleep(Duration::from_millis(15)).await;
        let sent = Instant::now();
        http.post(format!("{url}/v1/jobs"))
            .json(&json!({"queue": "wake", "kind": "noop"}))
            .send()
            .await?
            .error_for_status()?;
        let (got, body) = claimer.await??;
        let lease = &body["leases"][0];
        ensure!(lease.is_object(), "claimer woke without a lease: {body}");
        samples.push(got.duration_since(sent));
        http.post(format!(
            "{url}/v1/jobs/{}/complete",
            lease["job"]["id"].as_str().context("id")?
        ))
        .json(&json!({"fencing_token": lease["fencing_token"]}))
        .send()
        .await?
        .error_for_status()?;
    }
    samples.sort();
    Ok(samples)
}

/// Enqueue `jobs` in batches of 1000, then drain with `workers` claim+batch-complete loops.
async fn throughput(http: &reqwest::Client, url: &str, args: &Args) -> Result<(f64, f64)> {
    let started = Instant::now();
    for chunk in (0..args.jobs).collect::<Vec<_>>().chunks(1000) {
        let jobs: Vec<Value> = chunk.iter().map(|i| json!({"queue": "bulk", "kind": "noop", "payload": {"i": i, "pad": "0123456789abcdef0123"}})).collect();
        http.post(format!("{url}/v1/jobs"))
            .json(&json!({"jobs": jobs}))
            .send()
            .await?
            .error_for_status()?;
    }
    let enqueue_rate = args.jobs as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.workers {
        let (http, url, batch) = (http.clone(), url.to_owned(), args.batch);
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            loop {
                let r: Value = http
                    .post(format!("{url}/v1/leases"))
                    .json(&json!({"worker_id": format!("probe-{w}"), "queues": ["bulk"], "max_jobs": batch}))
                    .send()
                    .await?
                    .json()
                    .await?;
                let leases = r["leases"].as_array().cloned().unwrap_or_default();
                if leases.is_empty() {
                    return anyhow::Ok(done);
                }
                let outcomes: Vec<Value> = leases
                    .iter()
                    .map(|l| json!({"job_id": l["job"]["id"], "fencing_token": l["fencing_token"], "outcome": "complete"}))
                    .collect();
                http.post(format!("{url}/v1/leases/outcomes"))
                    .json(&json!({"outcomes": outcomes}))
                    .send()
                    .await?
                    .error_for_status()?;
                done += leases.len();
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    ensure!(total == args.jobs, "completed {total} of {}", args.jobs);
    Ok((enqueue_rate, total as f64 / started.elapsed().as_secs_f64()))
}

async fn run(label: &str, database_url: Option<&str>, args: &Args) -> Result<()> {
    let coord = Coordinator::spawn(database_url).await?;
    let http = reqwest::Client::new();
    let wake = wakeups(&http, &coord.url, args.wakeups).await?;
    let (enqueue_rate, drain_rate) = throughput(&http, &coord.url, args).await?;
    println!(
        "| {label} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} |",
        percentile(&wake, 0.5).as_secs_f64() * 1e3,
        percentile(&wake, 0.99).as_secs_f64() * 1e3,
        wake.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        enqueue_rate,
        drain_rate,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "wake-up: enqueue sent → long-polling claim returned ({} samples); throughput: {} no-op jobs, \
         {} HTTP claim+batch-complete loops of {} (coordinator binary: {})",
        args.wakeups,
        args.jobs,
        args.workers,
        args.batch,
        leasehold_testkit::leasehold_bin()?.display()
    );
    println!(
        "| store | wake p50 ms | wake p99 ms | wake max ms | enqueue jobs/s (batches of 1000) | claim+complete jobs/s |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    run("SQLite (synchronous=NORMAL)", None, &args).await?;
    if let Some(pg) = &args.postgres {
        let db = fresh_schema(pg).await?;
        run("PostgreSQL (synchronous_commit=on)", Some(&db), &args).await?;
    }
    Ok(())
}
