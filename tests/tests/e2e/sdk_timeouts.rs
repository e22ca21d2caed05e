//! Execution timeouts through the Rust SDK against a real coordinator process: the handler's
//! cancellation fires before the job's timeout runs out (reason `TimedOut`), and the worker
//! itself reports a retryable failure of class `timeout` before the coordinator's deadline —
//! whatever the handler then does, and never a success.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use leasehold::proto::{Job, JobState};
use leasehold::{
    CancelReason, Client, HandlerError, JobContext, JobSpec, NotSentReason, OutcomeAck,
    SessionConfig, Transport, Worker, WorkerSession,
};
use leasehold_testkit::Coordinator;
use leasehold_testkit::sdk::{RunningWorker, eventually, init_tracing};
use serde_json::{Value, json};
use tokio::time::Instant;

const PATIENCE: Duration = Duration::from_secs(30);

/// What a handler saw when its cancellation fired: its attempt, the reason, and how long after
/// it started.
type Cancelled = (u32, Option<CancelReason>, Duration);

/// The job once its latest attempt ended with a `timeout` failure in `state`.
async fn timed_out(client: &Client, id: uuid::Uuid, state: JobState) -> Result<Job> {
    eventually(
        &format!("job {id} {state} after a timeout"),
        PATIENCE,
        || async {
            let job = client.get(id).await?;
            let timed_out = job
                .last_error
                .as_ref()
                .is_some_and(|e| e["class"] == "timeout");
            Ok((job.state == state && timed_out).then_some(job))
        },
    )
    .await
}

/// The failure was the worker's report (the coordinator words its own differently), so it
/// reached the coordinator before the deadline.
fn reported_by_the_worker(job: &Job) {
    let error = job.last_error.as_ref().unwrap();
    assert_eq!(error["retryable"], true, "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("run time exceeded: the handler"),
        "{message}"
    );
}

/// A handler that honours cancellation but would sleep past its timeout: each attempt is
/// cancelled with `TimedOut` shortly before the timeout, failed with class `timeout` by the
/// worker, retried after its backoff, then `dead` once attempts are spent.
async fn a_sleeping_handler_is_cancelled_and_fails_with_class_timeout(
    transport: Transport,
) -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let seen: Arc<Mutex<Vec<Cancelled>>> = Arc::default();
    let seen2 = seen.clone();
    let running = RunningWorker::start(
        Worker::builder(&coord.url)
            .queues(["slow"])
            .lease_ttl(Duration::from_secs(30))
            .transport(transport)
            .poll_wait(Duration::from_secs(2))
            .handler("sleep", move |ctx: JobContext| {
                let seen = seen2.clone();
                async move {
                    let started = Instant::now();
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(60)) => Ok(json!("slept")),
                        () = ctx.cancelled() => {
                            seen.lock().unwrap().push((ctx.attempt(), ctx.cancel_reason(), started.elapsed()));
                            Err::<Value, _>(HandlerError::retry("stopped as asked"))
                        }
                    }
                }
            })
            .build()?,
    );
    let job = client
        .enqueue(
            JobSpec::new("sleep", json!({}))
                .queue("slow")
                .timeout(Duration::from_secs(2))
                .max_attempts(2)
                .backoff(Duration::from_millis(100), 1.0, Duration::from_millis(100)),
        )
        .await?;
    assert_eq!(job.job.timeout_ms, Some(2000));
    let dead = timed_out(&client, job.job.id, JobState::Dead).await?;
    assert_eq!(dead.attempt, 2);
    reported_by_the_worker(&dead);
    // The first attempt's failure, from the ledger: the worker's too, then retried.
    let ledger = reqwest::get(format!(
        "{}/v1/ledger/export?from=2000-01-01T00:00:00Z&to=2999-01-01T00:00:00Z",
        coord.url
    ))
    .await?
    .text()
    .await?;
    let retries: Vec<Value> = ledger
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "retry_scheduled" && e["job_id"] == json!(job.job.id))
        .collect();
    assert_eq!(retries.len(), 1, "{ledger}");
    let error = &retries[0]["data"]["error"];
    assert_eq!(error["class"], "timeout", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("run time exceeded: the handler"),
        "{error}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (i, (attempt, reason, elapsed)) in seen.into_iter().enumerate() {
        assert_eq!(attempt, i as u32 + 1);
        assert_eq!(reason, Some(CancelReason::TimedOut));
        // Cancelled 1.4 s after the lease arrived (2 s − 0.4 s margin − 0.2 s grace).
        assert!(
            elapsed >= Duration::from_millis(1300) && elapsed < Duration::from_secs(2),
            "attempt {attempt} cancelled after {elapsed:?}"
        );
    }
    running.stop().await
}

#[tokio::test]
async fn a_sleeping_handler_times_out_over_websocket() -> Result<()> {
    a_sleeping_handler_is_cancelled_and_fails_with_class_timeout(Transport::WebSocket).await
}

#[tokio::test]
async fn a_sleeping_handler_times_out_over_http_long_poll() -> Result<()> {
    a_sleeping_handler_is_cancelled_and_fails_with_class_timeout(Transport::Http).await
}

/// A job nobody ends: the worker reports the `timeout` failure on its own; the handler's late
/// completion is never sent.
#[tokio::test]
async fn a_handler_that_never_ends_is_reported_timed_out_and_its_late_success_dropped() -> Result<()>
{
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let session = WorkerSession::start(SessionConfig::new(&coord.url, ["hang"]))?;
    let job = client
        .enqueue(
            JobSpec::new("x", json!({}))
                .queue("hang")
                .timeout(Duration::from_secs(1)),
        )
        .await?;
    let leased = session.next_job(Some(PATIENCE)).await?.unwrap();
    assert_eq!(leased.timeout(), Some(Duration::from_secs(1)));
    // The retry's jittered delay may be a few milliseconds: paused, the queue keeps the job
    // `queued` for the checks below instead of leasing its second attempt to this session.
    let paused = reqwest::Client::new()
        .post(format!("{}/v1/queues/hang/pause", coord.url))
        .send()
        .await?;
    assert_eq!(paused.status(), 200);
    tokio::time::timeout(PATIENCE, leased.cancelled()).await?;
    assert_eq!(leased.cancel_reason(), Some(CancelReason::TimedOut));
    let failed = timed_out(&client, job.job.id, JobState::Queued).await?;
    reported_by_the_worker(&failed);
    assert_eq!(failed.attempt, 1);
    let ack = leased.complete(json!("too late")).wait().await;
    assert_eq!(ack, OutcomeAck::NotSent(NotSentReason::TimedOut));
    let after = client.get(job.job.id).await?;
    assert_eq!(after.result, None);
    assert_eq!(after.last_error, failed.last_error);
    session.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

/// A handler that ends during its grace, with a success: the worker reports the `timeout`
/// failure in its place (after the checkpoint the handler left, which the next attempt reads).
#[tokio::test]
async fn an_ending_after_the_cancellation_becomes_the_timeout_failure() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let session = WorkerSession::start(SessionConfig::new(&coord.url, ["grace"]))?;
    let job = client
        .enqueue(
            JobSpec::new("x", json!({}))
                .queue("grace")
                .timeout(Duration::from_secs(3)),
        )
        .await?;
    let leased = session.next_job(Some(PATIENCE)).await?.unwrap();
    tokio::time::timeout(PATIENCE, leased.cancelled()).await?;
    assert_eq!(leased.cancel_reason(), Some(CancelReason::TimedOut));
    leased.checkpoint(json!({"page": 7}));
    // 0.3 s of grace before the worker reports on its own: plenty to end it now.
    let ack = leased.complete(json!("done anyway")).wait().await;
    let OutcomeAck::RecordedAsFailure { class, state, .. } = ack else {
        panic!("expected the timeout failure in the completion's place, got {ack:?}");
    };
    assert_eq!((class.as_str(), state), ("timeout", Some(JobState::Queued)));
    let after = client.get(job.job.id).await?;
    assert_eq!(after.state, JobState::Queued);
    assert_eq!(after.result, None);
    assert_eq!(after.checkpoint, Some(json!({"page": 7})));
    reported_by_the_worker(&after);
    session.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
