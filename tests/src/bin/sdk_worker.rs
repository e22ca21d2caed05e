//! A worker process for the SDK fault suites: it pulls jobs from a `leasehold::WorkerSession`
//! (the same engine the Python and Go SDKs drive) and reports on stdout what happens, one line
//! per event, so a test can kill, freeze and resume it at the right moment:
//!
//! ```text
//! ready <worker_id>
//! start <job_id> <attempt>
//! ack <job_id> <outcome ack>
//! ```
//!
//! Settings (environment): `LH_URL`, `LH_QUEUE`, `LH_WORKER_ID`, `LH_CONCURRENCY` (4),
//! `LH_TTL_MS` (1000), `LH_TRANSPORT` (`auto`|`ws`|`http`), `LH_JOB_MS` (how long each job
//! takes, 0). Each job completes with `{"worker": <worker_id>}`. SIGTERM drains (5 s grace).

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use leasehold::{CancelReason, SessionConfig, Transport, WorkerSession};
use serde_json::json;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let url = env("LH_URL").context("LH_URL is required")?;
    let queue = env("LH_QUEUE").unwrap_or_else(|| "default".into());
    let mut cfg = SessionConfig::new(url, [queue]);
    if let Some(id) = env("LH_WORKER_ID") {
        cfg.worker_id = id;
    }
    cfg.concurrency = env("LH_CONCURRENCY").map_or(Ok(4), |v| v.parse())?;
    cfg.lease_ttl = Duration::from_millis(env("LH_TTL_MS").map_or(Ok(1000), |v| v.parse())?);
    cfg.transport = match env("LH_TRANSPORT").as_deref() {
        Some("ws") => Transport::WebSocket,
        Some("http") => Transport::Http,
        _ => Transport::Auto,
    };
    let job_ms: u64 = env("LH_JOB_MS").map_or(Ok(0), |v| v.parse())?;
    let session = std::sync::Arc::new(WorkerSession::start(cfg)?);
    let worker_id = session.worker_id().to_owned();
    say(&format!("ready {worker_id}"));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let job = tokio::select! {
            _ = term.recv() => break,
            next = session.next_job(None) => match next? {
                Some(job) => job,
                None => continue,
            },
        };
        say(&format!("start {} {}", job.id(), job.attempt()));
        let worker_id = worker_id.clone();
        tokio::spawn(async move {
            let id = job.id();
            let cancelled = tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(job_ms)) => false,
                () = job.cancelled() => true,
            };
            let receipt = if cancelled && job.cancel_reason() == Some(CancelReason::CancelRequested)
            {
                job.report_cancelled()
            } else if cancelled {
                say(&format!("cancelled {id} {:?}", job.cancel_reason()));
                job.release()
            } else {
                job.complete(json!({ "worker": worker_id }))
            };
            say(&format!("ack {id} {:?}", receipt.wait().await));
        });
    }
    let released = session.shutdown(Duration::from_secs(5)).await;
    say(&format!("stopped released={released}"));
    Ok(())
}
