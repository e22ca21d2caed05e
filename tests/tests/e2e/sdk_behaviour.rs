//! The Rust SDK against a real coordinator process over real sockets: each behaviour of the
//! worker protocol, on the WebSocket transport and on the HTTP long-poll fallback.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use leasehold::proto::JobState;
use leasehold::{
    CancelReason, Client, HandlerError, JobContext, JobSpec, NotSentReason, OutcomeAck,
    SessionConfig, Transport, Worker, WorkerSession,
};
use leasehold_testkit::Coordinator;
use leasehold_testkit::sdk::{
    RunningWorker, eventually, init_tracing, proxy_without_websocket, wait_for_state,
};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

const PATIENCE: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_millis(1000);

fn worker(url: &str, queue: &str, transport: Transport) -> leasehold::WorkerBuilder {
    Worker::builder(url)
        .queues([queue])
        .concurrency(8)
        .lease_ttl(TTL)
        .transport(transport)
        .poll_wait(Duration::from_secs(2))
        .app_version("sdk-tests/1")
}

async fn completes_jobs(transport: Transport) -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let jobs = client
        .enqueue_many((0..20).map(|i| JobSpec::new("double", json!({ "n": i })).queue("math")))
        .await?;
    let running = RunningWorker::start(
        worker(&coord.url, "math", transport)
            .handler("double", |ctx: JobContext| async move {
                let n = ctx.payload()["n"].as_i64().unwrap_or(0);
                Ok(json!({ "double": n * 2, "key": ctx.idempotency_key() }))
            })
            .build()?,
    );
    for (i, j) in jobs.iter().enumerate() {
        let done = client.wait(j.job.id, PATIENCE).await?;
        assert_eq!(done.state, JobState::Succeeded);
        let result = done.result.unwrap();
        assert_eq!(result["double"], json!(i as i64 * 2));
        // Client enqueues always carry a key; handlers see it.
        assert_eq!(result["key"], json!(j.job.idempotency_key.clone().unwrap()));
        let version = done.worker_version.unwrap();
        assert!(
            version.starts_with("leasehold-rust/") && version.ends_with(" sdk-tests/1"),
            "{version}"
        );
    }
    running.stop().await
}

#[tokio::test]
async fn completes_jobs_over_websocket() -> Result<()> {
    completes_jobs(Transport::WebSocket).await
}

#[tokio::test]
async fn completes_jobs_over_http_long_poll() -> Result<()> {
    completes_jobs(Transport::Http).await
}

/// `Transport::Auto` against a server that refuses the WebSocket upgrade: the worker falls
/// back to HTTP long-polling and gets the work done.
#[tokio::test]
async fn auto_transport_falls_back_to_long_poll_when_the_upgrade_is_refused() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let target = coord.url.trim_start_matches("http://").to_owned();
    let (proxy_url, refused) = proxy_without_websocket(&target).await?;
    let client = Client::new(&coord.url)?;
    let running = RunningWorker::start(
        worker(&proxy_url, "fallback", Transport::Auto)
            .handler("echo", |ctx: JobContext| async move {
                Ok(ctx.payload().clone())
            })
            .build()?,
    );
    let jobs = client
        .enqueue_many((0..10).map(|i| JobSpec::new("echo", json!(i)).queue("fallback")))
        .await?;
    for (i, j) in jobs.iter().enumerate() {
        let done = client.wait(j.job.id, PATIENCE).await?;
        assert_eq!(done.result, Some(json!(i)));
    }
    // The only way in was HTTP: the socket was tried and refused.
    assert!(refused.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    running.stop().await
}

#[tokio::test]
async fn cancellation_reaches_a_running_handler() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let seen: Arc<Mutex<Option<CancelReason>>> = Arc::default();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let seen2 = seen.clone();
    let running = RunningWorker::start(
        worker(&coord.url, "cancel", Transport::Auto)
            .handler("wait", move |ctx: JobContext| {
                let seen = seen2.clone();
                let started = started_tx.clone();
                async move {
                    let _ = started.send(ctx.id());
                    ctx.cancelled().await;
                    *seen.lock().unwrap() = ctx.cancel_reason();
                    Err::<Value, _>(HandlerError::cancelled("stopped as asked"))
                }
            })
            .build()?,
    );
    let job = client
        .enqueue(JobSpec::new("wait", json!({})).queue("cancel"))
        .await?;
    let started = tokio::time::timeout(PATIENCE, started_rx.recv()).await?;
    assert_eq!(started, Some(job.job.id));
    client.cancel(job.job.id, Some("test")).await?;
    let done = client.wait(job.job.id, PATIENCE).await?;
    assert_eq!(done.state, JobState::Cancelled);
    assert_eq!(*seen.lock().unwrap(), Some(CancelReason::CancelRequested));
    running.stop().await
}

/// Through `LeasedJob::settle`: a handler that panics, or ignores its cancellation past the
/// grace, while its job is cancel-requested ends the job `cancelled` at its first attempt (not
/// retried, and not left to expire).
#[tokio::test]
async fn a_cancel_requested_job_ends_cancelled_however_its_handler_stops() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let running = RunningWorker::start(
        worker(&coord.url, "settle", Transport::Auto)
            .cancel_grace(Duration::from_millis(200))
            .handler("panics", {
                let started = started_tx.clone();
                move |ctx: JobContext| {
                    let started = started.clone();
                    async move {
                        let _ = started.send(ctx.id());
                        ctx.cancelled().await;
                        panic!("stopping badly");
                        #[allow(unreachable_code)]
                        Ok::<Value, HandlerError>(json!(null))
                    }
                }
            })
            .handler("ignores", move |ctx: JobContext| {
                let started = started_tx.clone();
                async move {
                    let _ = started.send(ctx.id());
                    // Never looks at its cancellation.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<Value, HandlerError>(json!(null))
                }
            })
            .build()?,
    );
    for kind in ["panics", "ignores"] {
        let job = client
            .enqueue(
                JobSpec::new(kind, json!({}))
                    .queue("settle")
                    .max_attempts(5),
            )
            .await?;
        let started = tokio::time::timeout(PATIENCE, started_rx.recv()).await?;
        assert_eq!(started, Some(job.job.id), "{kind}");
        client.cancel(job.job.id, Some("test")).await?;
        let done = client.wait(job.job.id, PATIENCE).await?;
        assert_eq!(done.state, JobState::Cancelled, "{kind}: {done:?}");
        assert_eq!(done.attempt, 1, "{kind}: not retried");
    }
    running.stop().await
}

#[tokio::test]
async fn checkpoint_survives_into_the_next_attempt() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let running = RunningWorker::start(
        worker(&coord.url, "cp", Transport::Auto)
            .handler("resume", |ctx: JobContext| async move {
                if ctx.attempt() == 1 {
                    assert_eq!(ctx.last_checkpoint(), None);
                    ctx.checkpoint(json!({ "done": 1 }));
                    ctx.checkpoint(json!({ "done": 2 })); // latest wins
                    assert_eq!(ctx.last_checkpoint(), Some(json!({ "done": 2 })));
                    // Fails at once: the checkpoint must still reach the coordinator first.
                    return Err(HandlerError::retry_after("crash", Duration::ZERO));
                }
                Ok(json!({ "resumed_from": ctx.last_checkpoint(), "attempt": ctx.attempt() }))
            })
            .build()?,
    );
    let job = client
        .enqueue(
            JobSpec::new("resume", json!({}))
                .queue("cp")
                .max_attempts(3),
        )
        .await?;
    let done = client.wait(job.job.id, PATIENCE).await?;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(
        done.result,
        Some(json!({ "resumed_from": { "done": 2 }, "attempt": 2 }))
    );
    running.stop().await
}

#[tokio::test]
async fn retries_follow_the_policy_and_fatal_errors_do_not_retry() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let starts: Arc<Mutex<HashMap<String, Vec<tokio::time::Instant>>>> = Arc::default();
    let starts2 = starts.clone();
    let running = RunningWorker::start(
        worker(&coord.url, "retry", Transport::Auto)
            .handler("flaky", move |ctx: JobContext| {
                let starts = starts2.clone();
                async move {
                    let name = ctx.payload()["name"].as_str().unwrap_or("").to_owned();
                    starts
                        .lock()
                        .unwrap()
                        .entry(name.clone())
                        .or_default()
                        .push(tokio::time::Instant::now());
                    match name.as_str() {
                        "fatal" => Err(HandlerError::fatal("bad input").with_class("bad_input")),
                        _ if ctx.attempt() < 3 => {
                            // Any std error converts into a retryable failure.
                            let n: i32 = "not a number".parse()?;
                            Ok(json!(n))
                        }
                        _ => Ok(json!({ "attempt": ctx.attempt() })),
                    }
                }
            })
            .build()?,
    );
    let flaky = client
        .enqueue(
            JobSpec::new("flaky", json!({ "name": "flaky" }))
                .queue("retry")
                .max_attempts(5)
                .backoff(Duration::from_millis(300), 2.0, Duration::from_millis(600)),
        )
        .await?;
    let fatal = client
        .enqueue(JobSpec::new("flaky", json!({ "name": "fatal" })).queue("retry"))
        .await?;
    let done = client.wait(flaky.job.id, PATIENCE).await?;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.attempt, 3);
    assert_eq!(done.result, Some(json!({ "attempt": 3 })));
    let last_error = done.last_error.unwrap();
    assert_eq!(last_error["class"], "ParseIntError");
    assert_eq!(last_error["retryable"], true);
    let gaps: Vec<Duration> = {
        let starts = starts.lock().unwrap();
        let s = &starts["flaky"];
        s.windows(2).map(|w| w[1] - w[0]).collect()
    };
    // Full jitter: each delay lies within [0, ceiling] (300 ms, then 600 ms), plus pickup time.
    assert_eq!(gaps.len(), 2);
    assert!(gaps[0] < Duration::from_millis(300 + 1500), "{gaps:?}");
    assert!(gaps[1] < Duration::from_millis(600 + 1500), "{gaps:?}");

    let dead = client.wait(fatal.job.id, PATIENCE).await?;
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.attempt, 1);
    assert_eq!(dead.last_error.unwrap()["class"], "bad_input");
    running.stop().await
}

#[tokio::test]
async fn a_panicking_handler_is_a_retryable_failure() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let running = RunningWorker::start(
        worker(&coord.url, "panic", Transport::Auto)
            .retry_policy(leasehold::RetryPolicy {
                initial: Duration::from_millis(10),
                ..Default::default()
            })
            .handler("boom", |ctx: JobContext| async move {
                if ctx.attempt() == 1 {
                    panic!("kaboom on attempt 1");
                }
                Ok(json!("survived"))
            })
            .build()?,
    );
    let job = client
        .enqueue(JobSpec::new("boom", json!({})).queue("panic"))
        .await?;
    let done = client.wait(job.job.id, PATIENCE).await?;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.attempt, 2);
    let err = done.last_error.unwrap();
    assert_eq!(err["class"], "panic");
    assert_eq!(err["message"], "kaboom on attempt 1");
    running.stop().await
}

#[tokio::test]
async fn an_unknown_kind_fails_fatally() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let running = RunningWorker::start(
        worker(&coord.url, "mixed", Transport::Auto)
            .handler("known", |_ctx: JobContext| async move { Ok(json!(null)) })
            .build()?,
    );
    let job = client
        .enqueue(JobSpec::new("unknown", json!({})).queue("mixed"))
        .await?;
    let done = client.wait(job.job.id, PATIENCE).await?;
    assert_eq!(done.state, JobState::Dead);
    assert_eq!(done.attempt, 1);
    let err = done.last_error.unwrap();
    assert_eq!(err["class"], "unknown_kind");
    assert!(err["message"].as_str().unwrap().contains("\"unknown\""));
    running.stop().await
}

/// Someone else ends the job under our fencing token (as a zombie-fencing stand-in): the next
/// heartbeat answers `lost`, the handler's cancellation fires, and its outcome is never sent.
#[tokio::test]
async fn a_lost_lease_cancels_the_handler_and_drops_its_outcome() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let mut cfg = SessionConfig::new(&coord.url, ["lost"]);
    cfg.lease_ttl = TTL;
    let session = WorkerSession::start(cfg)?;
    let job = client
        .enqueue(JobSpec::new("x", json!({})).queue("lost"))
        .await?;
    let leased = session.next_job(Some(PATIENCE)).await?.unwrap();
    assert_eq!(leased.id(), job.job.id);
    // Complete it behind the worker's back with its own token.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/jobs/{}/complete", coord.url, job.job.id))
        .json(&json!({ "fencing_token": leased.fencing_token(), "result": "imposter" }))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    tokio::time::timeout(PATIENCE, leased.cancelled()).await?;
    assert_eq!(leased.cancel_reason(), Some(CancelReason::LeaseLost));
    let ack = leased.complete(json!("late")).wait().await;
    assert_eq!(ack, OutcomeAck::NotSent(NotSentReason::LeaseLost));
    assert_eq!(
        client.get(job.job.id).await?.result,
        Some(json!("imposter"))
    );
    session.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

#[tokio::test]
async fn artifacts_are_hashed_streamed_and_listed_in_the_manifest() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let big2 = big.clone();
    let running = RunningWorker::start(
        worker(&coord.url, "art", Transport::Auto)
            .handler("make", move |ctx: JobContext| {
                let big = big2.clone();
                async move {
                    assert!(ctx.put_artifact("../escape", &mut &b"x"[..]).await.is_err());
                    let a = ctx
                        .put_artifact("out/z-big.bin", &mut big.as_slice())
                        .await?;
                    ctx.put_artifact_bytes("out/a.txt", "text/plain", &b"hello"[..])
                        .await?;
                    Ok(json!({ "big": a.digest }))
                }
            })
            .build()?,
    );
    let job = client
        .enqueue(JobSpec::new("make", json!({})).queue("art"))
        .await?;
    let done = client.wait(job.job.id, PATIENCE).await?;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.last_error);
    let names: Vec<&str> = done.artifacts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["out/a.txt", "out/z-big.bin"]);
    let big_entry = &done.artifacts[1];
    assert_eq!(big_entry.digest, leasehold::artifact::digest_bytes(&big));
    assert_eq!(big_entry.size, big.len() as u64);
    assert_eq!(done.artifacts[0].media_type, "text/plain");
    let mut downloaded = Vec::new();
    let size = client
        .download_artifact(&big_entry.digest, &mut downloaded)
        .await?;
    assert_eq!(size, big.len() as u64);
    assert_eq!(downloaded, big);
    running.stop().await
}

#[tokio::test]
async fn enqueue_with_a_deterministic_key_makes_one_job() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let spec = || {
        JobSpec::new("report", json!({ "b": 2, "a": 1 }))
            .queue("idem")
            .deterministic_key()
    };
    let first = client.enqueue(spec()).await?;
    let second = client.enqueue(spec()).await?;
    assert!(!first.replayed);
    assert!(second.replayed);
    assert_eq!(first.job.id, second.job.id);
    assert_eq!(
        first.job.idempotency_key.as_deref(),
        Some(
            leasehold::idempotency::key_for("idem", "report", &json!({ "a": 1, "b": 2 }))?.as_str()
        )
    );
    // Without a key, each call is its own job.
    let a = client
        .enqueue(JobSpec::new("report", json!({})).queue("idem"))
        .await?;
    let b = client
        .enqueue(JobSpec::new("report", json!({})).queue("idem"))
        .await?;
    assert_ne!(a.job.id, b.job.id);
    Ok(())
}

#[tokio::test]
async fn shutdown_releases_unfinished_jobs_without_spending_an_attempt() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let running = RunningWorker::start(
        worker(&coord.url, "drain", Transport::Auto)
            .drain_timeout(Duration::from_millis(200))
            .handler("slow", move |_ctx: JobContext| {
                let started = started_tx.clone();
                async move {
                    let _ = started.send(());
                    // Ignores cancellation on purpose.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(json!(null))
                }
            })
            .build()?,
    );
    let job = client
        .enqueue(JobSpec::new("slow", json!({})).queue("drain"))
        .await?;
    tokio::time::timeout(PATIENCE, started_rx.recv()).await?;
    running.stop().await?;
    let after = client.get(job.job.id).await?;
    assert_eq!(after.state, JobState::Queued);
    assert_eq!(after.attempt, 0, "a release gives the attempt back");
    Ok(())
}

#[tokio::test]
async fn progress_is_reported_with_heartbeats() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let running = RunningWorker::start(
        worker(&coord.url, "prog", Transport::Auto)
            .handler("long", move |ctx: JobContext| {
                let mut go = go_rx.clone();
                async move {
                    ctx.progress(json!({ "pct": 10 }));
                    ctx.progress(json!({ "pct": 50 }));
                    let _ = go.wait_for(|g| *g).await;
                    Ok(json!(null))
                }
            })
            .build()?,
    );
    let job = client
        .enqueue(JobSpec::new("long", json!({})).queue("prog"))
        .await?;
    let seen = eventually("progress 50", PATIENCE, || async {
        let j = client.get(job.job.id).await?;
        Ok((j.progress == Some(json!({ "pct": 50 }))).then_some(j))
    })
    .await?;
    // Heartbeats kept the 1 s lease alive meanwhile.
    assert_eq!(seen.state, JobState::Leased);
    assert_eq!(seen.attempt, 1);
    go_tx.send_replace(true);
    let done = client.wait(job.job.id, PATIENCE).await?;
    assert_eq!(done.attempt, 1);
    running.stop().await
}

#[tokio::test]
async fn put_artifact_streams_a_reader() -> Result<()> {
    // A reader that yields its bytes in small pieces still hashes to the plain digest.
    let data = vec![42u8; 70_000];
    let mut reader = tokio::io::BufReader::with_capacity(1000, data.as_slice());
    let staged = leasehold::artifact::stage(&mut reader, &std::env::temp_dir()).await?;
    assert_eq!(staged.digest, leasehold::artifact::digest_bytes(&data));
    let mut back = Vec::new();
    tokio::fs::File::open(staged.path())
        .await?
        .read_to_end(&mut back)
        .await?;
    assert_eq!(back, data);
    Ok(())
}

#[tokio::test]
async fn a_worker_with_a_bad_queue_fails_to_build_or_start() -> Result<()> {
    let built = Worker::builder("http://127.0.0.1:1")
        .queues(["bad queue"])
        .handler("k", |_ctx: JobContext| async move { Ok(json!(null)) })
        .build()?;
    let err = built.run(std::future::pending()).await.unwrap_err();
    assert!(matches!(err, leasehold::Error::InvalidArgument(_)), "{err}");
    assert!(
        Worker::builder("not a url")
            .queues(["q"])
            .handler("k", |_ctx: JobContext| async move { Ok(json!(null)) })
            .build()
            .is_err()
    );
    let _ = wait_for_state; // used by other suites
    Ok(())
}

#[tokio::test]
async fn runs_are_submitted_idempotently_and_cancelled() -> Result<()> {
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let run: leasehold::proto::NewRun = serde_json::from_value(json!({"jobs": [
        {"key": "fetch", "kind": "fetch", "queue": "runs"},
        {"key": "parse", "kind": "parse", "queue": "runs", "depends_on": ["fetch"]}]}))?;
    let first = client.submit_run(&run).await?;
    assert_eq!(first.status, leasehold::proto::RunStatus::Pending);
    assert_eq!(
        first.jobs.iter().map(|j| j.state).collect::<Vec<_>>(),
        vec![JobState::Queued, JobState::Blocked]
    );
    assert!(
        first.run_token.is_some(),
        "a token is generated so retries are idempotent"
    );
    let mut again = run.clone();
    again.run_token = first.run_token.clone();
    assert_eq!(client.submit_run(&again).await?.id, first.id);
    let cancelled = client.cancel_run(first.id).await?;
    assert_eq!(cancelled.status, leasehold::proto::RunStatus::Cancelled);
    assert_eq!(
        client.get_run(first.id).await?.status,
        leasehold::proto::RunStatus::Cancelled
    );
    Ok(())
}

/// A result over the coordinator's size limit is refused (413); the SDK reports a
/// non-retryable `result_too_large` failure in its place, so the job ends `dead` on its first
/// attempt with that cause instead of expiring and running `max_attempts` times. The other
/// outcomes completed at the same moment (most likely in one batch with it) are recorded.
async fn oversized_result_ends_the_job_with_its_cause(
    transport: Transport,
    env: &[(&str, &str)],
    big_bytes: usize,
    coordinator_said: &str,
) -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn_with_env(None, env).await?;
    let client = Client::new(&coord.url)?;
    let queue = "refused";
    let mut cfg = SessionConfig::new(&coord.url, [queue]);
    cfg.lease_ttl = TTL;
    cfg.concurrency = 8;
    cfg.transport = transport;
    let session = WorkerSession::start(cfg)?;
    let jobs = client
        .enqueue_many((0..5).map(|i| {
            JobSpec::new(if i == 2 { "big" } else { "small" }, json!(i))
                .queue(queue)
                .max_attempts(5)
        }))
        .await?;
    let mut leased = Vec::new();
    while leased.len() < jobs.len() {
        leased.push(session.next_job(Some(PATIENCE)).await?.unwrap());
    }
    // Ended back to back: the outcomes queued behind the first travel together.
    let receipts: Vec<_> = leased
        .into_iter()
        .map(|job| {
            let id = job.id();
            let result = if job.kind() == "big" {
                json!({ "blob": "x".repeat(big_bytes) })
            } else {
                json!("fine")
            };
            (id, job.complete(result))
        })
        .collect();
    for (id, receipt) in receipts {
        let ack = tokio::time::timeout(PATIENCE, receipt.wait()).await?;
        if id == jobs[2].job.id {
            let OutcomeAck::RecordedAsFailure {
                class,
                message,
                state,
            } = ack
            else {
                panic!("expected RecordedAsFailure, got {ack:?}");
            };
            assert_eq!(class, "result_too_large");
            assert!(message.contains("too large"), "{message}");
            assert_eq!(state, Some(JobState::Dead));
        } else {
            assert_eq!(
                ack,
                OutcomeAck::Recorded {
                    state: Some(JobState::Succeeded)
                }
            );
        }
    }
    let big = client.wait(jobs[2].job.id, PATIENCE).await?;
    assert_eq!(big.state, JobState::Dead);
    assert_eq!(big.attempt, 1);
    assert_eq!(big.result, None);
    let err = big.last_error.unwrap();
    assert_eq!(err["class"], "result_too_large", "{err}");
    assert_eq!(err["retryable"], false, "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{} bytes", big_bytes + 11)),
        "{message}"
    );
    assert!(message.contains(coordinator_said), "{message}");
    for j in jobs.iter().filter(|j| j.job.kind == "small") {
        assert_eq!(client.get(j.job.id).await?.state, JobState::Succeeded);
    }
    session.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

/// Over the request body limit (`--max-body-bytes`): over the socket the message is too big
/// for it, so the outcome goes over HTTP, which answers 413.
#[tokio::test]
async fn a_result_over_the_body_limit_ends_the_job_dead_over_websocket() -> Result<()> {
    let env = [("LEASEHOLD_MAX_BODY_BYTES", "65536")];
    oversized_result_ends_the_job_with_its_cause(
        Transport::WebSocket,
        &env,
        100_000,
        "413 payload_too_large: request body is over the size limit",
    )
    .await
}

#[tokio::test]
async fn a_result_over_the_body_limit_ends_the_job_dead_over_http() -> Result<()> {
    let env = [("LEASEHOLD_MAX_BODY_BYTES", "65536")];
    oversized_result_ends_the_job_with_its_cause(
        Transport::Http,
        &env,
        100_000,
        "413 payload_too_large: request body is over the size limit",
    )
    .await
}

/// Within the body limit but over the 1 MiB limit of a result: the socket answers with an
/// error frame (413) naming the limit.
#[tokio::test]
async fn a_result_over_the_result_limit_ends_the_job_dead_naming_the_limit() -> Result<()> {
    oversized_result_ends_the_job_with_its_cause(
        Transport::WebSocket,
        &[],
        1_100_000,
        "result is 1100011 bytes; the limit is 1048576",
    )
    .await
}

/// `Client::wait` giving up says what it saw: the job's state at the deadline, distinct from
/// the coordinator not answering.
#[tokio::test]
async fn wait_timeout_names_the_state_at_the_deadline() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let job = client
        .enqueue(JobSpec::new("nobody", json!({})).queue("unserved"))
        .await?;
    let err = client
        .wait(job.job.id, Duration::from_millis(300))
        .await
        .unwrap_err();
    let leasehold::Error::WaitTimeout {
        job_id,
        state,
        attempt,
        max_attempts,
        waited,
    } = &err
    else {
        panic!("expected WaitTimeout, got {err:?}");
    };
    assert_eq!(*job_id, job.job.id);
    assert_eq!(*state, JobState::Queued);
    assert_eq!((*attempt, *max_attempts), (0, job.job.max_attempts));
    assert_eq!(*waited, Duration::from_millis(300));
    assert_eq!(
        err.to_string(),
        format!(
            "job {} still queued after 300ms (attempt 0 of {})",
            job.job.id, job.job.max_attempts
        )
    );
    Ok(())
}

/// `put_artifact_file` on a missing file names the path.
#[tokio::test]
async fn put_artifact_file_on_a_missing_file_names_the_path() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let mut cfg = SessionConfig::new(&coord.url, ["missing"]);
    cfg.lease_ttl = TTL;
    let session = WorkerSession::start(cfg)?;
    client
        .enqueue(JobSpec::new("x", json!({})).queue("missing"))
        .await?;
    let leased = session.next_job(Some(PATIENCE)).await?.unwrap();
    let path = std::env::temp_dir().join(format!("leasehold-no-such-{}.bin", leased.id()));
    let err = leased
        .put_artifact_file("out.bin", "application/octet-stream", &path)
        .await
        .unwrap_err();
    let leasehold::Error::File {
        path: named,
        source,
    } = &err
    else {
        panic!("expected Error::File, got {err:?}");
    };
    assert_eq!(named, &path);
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    drop(leased);
    session.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
