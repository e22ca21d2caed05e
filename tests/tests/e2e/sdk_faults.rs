//! Faults around the Rust SDK with real processes and sockets: a worker process killed with
//! SIGKILL or frozen with SIGSTOP while holding leases, and the coordinator killed and
//! restarted mid-run. The worker processes are `tests/src/bin/sdk_worker.rs`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use leasehold::proto::JobState;
use leasehold::{
    CancelReason, Client, JobContext, JobSpec, NotSentReason, OutcomeAck, SessionConfig, Transport,
    Worker, WorkerSession,
};
use leasehold_testkit::Coordinator;
use leasehold_testkit::sdk::{
    RunningWorker, WorkerProcess, all_jobs, init_tracing, wait_for_state,
};
use serde_json::json;
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(30);
const TTL_MS: u64 = 1000;

fn worker_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sdk_worker"))
}

fn spawn_process(
    url: &str,
    queue: &str,
    id: &str,
    transport: &str,
    concurrency: usize,
    job_ms: u64,
) -> Result<WorkerProcess> {
    WorkerProcess::spawn(
        worker_bin(),
        &[
            ("LH_URL", url.to_owned()),
            ("LH_QUEUE", queue.to_owned()),
            ("LH_WORKER_ID", id.to_owned()),
            ("LH_TRANSPORT", transport.to_owned()),
            ("LH_CONCURRENCY", concurrency.to_string()),
            ("LH_TTL_MS", TTL_MS.to_string()),
            ("LH_JOB_MS", job_ms.to_string()),
        ],
    )
}

/// An in-process worker whose results name it.
fn survivor(url: &str, queue: &str, name: &'static str) -> Result<RunningWorker> {
    Ok(RunningWorker::start(
        Worker::builder(url)
            .queues([queue])
            .worker_id(name)
            .lease_ttl(Duration::from_millis(TTL_MS))
            .handler("work", move |_ctx: JobContext| async move {
                Ok(json!({ "worker": name }))
            })
            .build()?,
    ))
}

async fn kill9_worker_holding_leases(transport: &str) -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let queue = format!("k9-{transport}");
    let jobs = client
        .enqueue_many((0..5).map(|i| JobSpec::new("work", json!({ "i": i })).queue(&queue)))
        .await?;
    // The doomed worker takes all five and sits on them.
    let mut doomed = spawn_process(&coord.url, &queue, "doomed", transport, 5, 600_000)?;
    for j in &jobs {
        let id = j.job.id.to_string();
        doomed
            .expect_line("the doomed worker to start every job", PATIENCE, |l| {
                l.starts_with("start ") && l.contains(&id)
            })
            .await?;
    }
    doomed.kill9().await?;
    let started = tokio::time::Instant::now();
    let running = survivor(&coord.url, &queue, "survivor")?;
    wait_for_state(&client, &queue, JobState::Succeeded, 5, PATIENCE).await?;
    let waited = started.elapsed();
    for job in all_jobs(&client, &queue).await? {
        assert_eq!(job.state, JobState::Succeeded);
        assert_eq!(job.result, Some(json!({ "worker": "survivor" })));
        assert_eq!(
            job.attempt, 2,
            "one attempt died with the process, one succeeded"
        );
        assert_eq!(job.worker_id.as_deref(), Some("survivor"));
    }
    // Nothing can be picked up before the dead worker's leases expire.
    assert!(waited < Duration::from_secs(10), "took {waited:?}");
    running.stop().await
}

#[tokio::test]
async fn kill9_of_a_websocket_worker_hands_its_jobs_to_another_after_the_ttl() -> Result<()> {
    kill9_worker_holding_leases("ws").await
}

#[tokio::test]
async fn kill9_of_a_long_polling_worker_hands_its_jobs_to_another_after_the_ttl() -> Result<()> {
    kill9_worker_holding_leases("http").await
}

#[tokio::test]
async fn a_frozen_worker_does_not_report_after_its_lease_is_gone() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let queue = "frozen";
    let job = client
        .enqueue(JobSpec::new("work", json!({})).queue(queue))
        .await?;
    let id = job.job.id.to_string();
    let mut frozen = spawn_process(&coord.url, queue, "frozen", "ws", 1, 1500)?;
    frozen
        .expect_line("the job to start", PATIENCE, |l| {
            l.starts_with("start ") && l.contains(&id)
        })
        .await?;
    frozen.signal("STOP")?;
    let running = survivor(&coord.url, queue, "survivor")?;
    let done = client.wait(job.job.id, PATIENCE).await?;
    assert_eq!(done.result, Some(json!({ "worker": "survivor" })));
    frozen.signal("CONT")?;
    // Resumed past its deadline (monotonic clock), the frozen worker drops its outcome.
    let ack = frozen
        .expect_line("the frozen worker's verdict", PATIENCE, |l| {
            l.starts_with("ack ") && l.contains(&id)
        })
        .await?;
    assert!(
        ack.contains(&format!(
            "{:?}",
            OutcomeAck::NotSent(NotSentReason::LeaseExpired)
        )) || ack.contains("Rejected"),
        "{ack}"
    );
    let after = client.get(job.job.id).await?;
    assert_eq!(after.result, Some(json!({ "worker": "survivor" })));
    assert_eq!(after.attempt, 2);
    assert_eq!(after.state, JobState::Succeeded);
    frozen.signal("TERM")?;
    frozen.wait(PATIENCE).await?;
    running.stop().await
}

#[tokio::test]
async fn an_unreachable_coordinator_past_the_deadline_cancels_the_handler() -> Result<()> {
    init_tracing();
    let mut coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let job = client
        .enqueue(JobSpec::new("work", json!({})).queue("gone"))
        .await?;
    let mut cfg = SessionConfig::new(&coord.url, ["gone"]);
    cfg.lease_ttl = Duration::from_millis(TTL_MS);
    let session = WorkerSession::start(cfg)?;
    let leased = session.next_job(Some(PATIENCE)).await?.unwrap();
    assert_eq!(leased.id(), job.job.id);
    coord.kill();
    let t0 = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), leased.cancelled()).await?;
    let after = t0.elapsed();
    assert_eq!(leased.cancel_reason(), Some(CancelReason::LeaseExpired));
    assert!(
        after <= Duration::from_millis(TTL_MS + 200),
        "cancelled after {after:?}"
    );
    let ack = leased.complete(json!("too late")).wait().await;
    assert_eq!(ack, OutcomeAck::NotSent(NotSentReason::LeaseExpired));
    // Closed before the restart: left running, this session (nobody takes its jobs any more)
    // could claim the expired job again first and keep it leased by heartbeats, starving the
    // survivor (seen once in a full run).
    session.shutdown(Duration::from_secs(1)).await;
    coord.start().await?;
    let running = survivor(&coord.url, "gone", "survivor")?;
    let done = client.wait(job.job.id, PATIENCE).await?;
    assert_eq!(done.result, Some(json!({ "worker": "survivor" })));
    running.stop().await
}

/// Pull-mode workers (the engine the Python and Go SDKs drive) counting how each outcome was
/// received, per job.
type Acks = Arc<Mutex<HashMap<Uuid, Vec<OutcomeAck>>>>;

fn pull_worker(
    url: &str,
    queue: &str,
    transport: Transport,
    acks: Acks,
) -> Result<Arc<WorkerSession>> {
    let mut cfg = SessionConfig::new(url, [queue]);
    cfg.lease_ttl = Duration::from_millis(TTL_MS);
    cfg.concurrency = 50;
    cfg.transport = transport;
    cfg.poll_wait = Duration::from_secs(2);
    let session = Arc::new(WorkerSession::start(cfg)?);
    let s = session.clone();
    tokio::spawn(async move {
        loop {
            let job = match s.next_job(None).await {
                Ok(Some(job)) => job,
                Ok(None) => continue,
                Err(_) => return,
            };
            let acks = acks.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let id = job.id();
                let ack = job.complete(json!(null)).wait().await;
                acks.lock().unwrap().entry(id).or_default().push(ack);
            });
        }
    });
    Ok(session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reconnect_and_finish_everything_after_a_coordinator_restart() -> Result<()> {
    init_tracing();
    let mut coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let queue = "restart";
    let n = 3000;
    client
        .enqueue_many((0..n).map(|i| JobSpec::new("work", json!({ "i": i })).queue(queue)))
        .await?;
    let acks: Acks = Arc::default();
    let ws = pull_worker(&coord.url, queue, Transport::WebSocket, acks.clone())?;
    let http = pull_worker(&coord.url, queue, Transport::Http, acks.clone())?;
    wait_for_state(&client, queue, JobState::Succeeded, 500, PATIENCE).await?;
    coord.kill();
    coord.start().await?;
    wait_for_state(
        &client,
        queue,
        JobState::Succeeded,
        n,
        Duration::from_secs(90),
    )
    .await?;
    let jobs = all_jobs(&client, queue).await?;
    assert_eq!(jobs.len(), n as usize);
    assert!(jobs.iter().all(|j| j.state == JobState::Succeeded));
    let count_recorded = |acks: &[OutcomeAck]| {
        acks.iter()
            .filter(|a| matches!(a, OutcomeAck::Recorded { .. }))
            .count()
    };
    // Scoped: the guard must not be held across an await below.
    let total: usize = {
        let acks = acks.lock().unwrap();
        for job in &jobs {
            let recorded = acks.get(&job.id).map_or(0, |a| count_recorded(a));
            assert!(recorded <= 1, "job {} recorded {recorded} times", job.id);
        }
        acks.values().map(|a| count_recorded(a)).sum()
    };
    eprintln!(
        "[sdk_faults] restart: {total} outcomes acknowledged as recorded for {n} jobs \
         (the rest were recorded but their answer was lost with the coordinator, or re-run)"
    );
    // Both workers are still connected and working after the restart.
    let probe = client
        .enqueue_many((0..20).map(|i| JobSpec::new("work", json!({ "probe": i })).queue(queue)))
        .await?;
    for p in probe {
        client.wait(p.job.id, PATIENCE).await?;
    }
    ws.shutdown(Duration::from_secs(2)).await;
    http.shutdown(Duration::from_secs(2)).await;
    Ok(())
}
