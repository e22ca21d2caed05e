//! The engine's scenarios, deterministic: a [`WorkerSession`] on a [`fake::FakeLink`] with
//! Tokio's clock paused, so every instant asserted below is exact — heartbeats at a third of
//! the TTL, local cancellation before the coordinator's deadline, backpressure from outcomes
//! not yet acknowledged, the drain, a duplicate lease, run-time limits, and how each handler
//! ending is settled.

mod fake;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use leasehold_proto::{HeartbeatStatus, OutcomeKind, OutcomeReport};
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use crate::ending::Ending;
use crate::error::HandlerError;
use crate::job::{CancelReason, LeasedJob, NotSentReason, OutcomeAck};
use crate::retry::RetryPolicy;
use crate::session::{SessionConfig, WorkerSession};
use crate::transport::http::HttpApi;
use fake::{Beats, FakeLink, lease};

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const TTL: Duration = secs(30);

fn session(link: &Arc<FakeLink>, concurrency: usize) -> WorkerSession {
    adaptive_session(link, concurrency, None)
}

fn adaptive_session(
    link: &Arc<FakeLink>,
    concurrency: usize,
    adaptive: Option<crate::AdaptiveConcurrency>,
) -> WorkerSession {
    session_with(link, concurrency, |cfg| cfg.adaptive_concurrency = adaptive)
}

fn session_with(
    link: &Arc<FakeLink>,
    concurrency: usize,
    adjust: impl FnOnce(&mut SessionConfig),
) -> WorkerSession {
    let mut cfg = SessionConfig::new("http://127.0.0.1:9", ["q"]);
    cfg.concurrency = concurrency;
    adjust(&mut cfg);
    cfg.lease_ttl = TTL;
    cfg.worker_id = "w".into();
    cfg.rng_seed = Some(7);
    let http = HttpApi::new(
        &cfg.url,
        None,
        None,
        cfg.request_timeout,
        RetryPolicy::transport(),
    )
    .expect("http");
    let handle = tokio::runtime::Handle::current();
    WorkerSession::start_on(&handle, cfg, Arc::new(http), link.clone())
}

async fn next(session: &WorkerSession) -> LeasedJob {
    session
        .next_job(Some(secs(1)))
        .await
        .expect("session open")
        .expect("a job")
}

/// An outcome in a few words: `complete`, `release`, or `fail:<class>:<retryable>`.
fn shape(report: &OutcomeReport) -> String {
    match &report.outcome {
        OutcomeKind::Complete { .. } => "complete".into(),
        OutcomeKind::Release => "release".into(),
        OutcomeKind::Fail { error, .. } => format!("fail:{}:{}", error.class, error.retryable),
    }
}

#[tokio::test(start_paused = true)]
async fn one_heartbeat_per_third_of_the_ttl_carries_every_held_lease() {
    let link = FakeLink::new();
    let s = session(&link, 4);
    let (a, b) = (lease(TTL, None), lease(TTL, None));
    link.push(vec![a.clone(), b.clone()]).await;
    let job = next(&s).await;
    let _other = next(&s).await;
    tokio::time::sleep(secs(12)).await;
    job.checkpoint(json!({"page": 3}));
    tokio::time::sleep(secs(49)).await;

    let beats = link.beats();
    let at: Vec<Duration> = beats.iter().map(|b| b.at).collect();
    assert_eq!(at, [10, 20, 30, 40, 50, 60].map(secs));
    let mut both = vec![a.job.id, b.job.id];
    both.sort();
    for beat in &beats {
        let mut ids: Vec<Uuid> = beat.items.iter().map(|i| i.job_id).collect();
        ids.sort();
        assert_eq!(ids, both, "one request carries every lease");
    }
    // The checkpoint rides the next beat only: once acknowledged it is not sent again.
    let carrying: Vec<Duration> = beats
        .iter()
        .filter(|b| b.items.iter().any(|i| i.checkpoint.is_some()))
        .map(|b| b.at)
        .collect();
    assert_eq!(carrying, [secs(20)]);
    assert_eq!(job.cancel_reason(), None, "extended leases stay alive");
}

#[tokio::test(start_paused = true)]
async fn a_new_connection_beats_at_once_then_keeps_the_period() {
    let link = FakeLink::new();
    let s = session(&link, 1);
    link.push(vec![lease(TTL, None)]).await;
    let _job = next(&s).await;
    tokio::time::sleep(secs(15)).await;
    link.reconnect();
    tokio::time::sleep(secs(16)).await;
    let at: Vec<Duration> = link.beats().iter().map(|b| b.at).collect();
    assert_eq!(at, [10, 15, 25].map(secs));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_coordinator_cancels_the_handler_before_the_lease_deadline() {
    let link = FakeLink::new();
    let s = session(&link, 1);
    link.answer_beats(Beats::Unreachable);
    let start = Instant::now();
    link.push(vec![lease(TTL, None)]).await;
    let job = next(&s).await;
    job.cancelled().await;
    // A tenth of the TTL before the coordinator's own deadline, on the monotonic clock.
    assert_eq!(start.elapsed(), secs(27));
    assert_eq!(job.cancel_reason(), Some(CancelReason::LeaseExpired));
    let ack = job.complete(json!(1)).wait().await;
    assert_eq!(ack, OutcomeAck::NotSent(NotSentReason::LeaseExpired));
    assert!(
        link.reports().is_empty(),
        "nothing is sent for a lost lease"
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_counts_from_the_last_extension_that_was_answered() {
    let link = FakeLink::new();
    let s = session(&link, 1);
    let start = Instant::now();
    link.push(vec![lease(TTL, None)]).await;
    let job = next(&s).await;
    tokio::time::sleep(secs(25)).await;
    link.answer_beats(Beats::Unreachable);
    job.cancelled().await;
    // Extended by the beat sent at 20 s: its TTL counts from when the request left.
    assert_eq!(start.elapsed(), secs(50));
    assert_eq!(job.cancel_reason(), Some(CancelReason::LeaseExpired));
}

#[tokio::test(start_paused = true)]
async fn a_lease_the_coordinator_says_is_lost_cancels_its_handler_and_sends_nothing() {
    let link = FakeLink::new();
    let s = session(&link, 2);
    let (lost, kept) = (lease(TTL, None), lease(TTL, None));
    link.answer_beats(Beats::Answer(HashMap::from([(
        lost.job.id,
        HeartbeatStatus::Lost,
    )])));
    let start = Instant::now();
    link.push(vec![lost.clone(), kept.clone()]).await;
    let (first, second) = (next(&s).await, next(&s).await);
    let (lost_job, kept_job) = if first.id() == lost.job.id {
        (first, second)
    } else {
        (second, first)
    };
    lost_job.cancelled().await;
    assert_eq!(start.elapsed(), secs(10));
    assert_eq!(lost_job.cancel_reason(), Some(CancelReason::LeaseLost));
    assert_eq!(kept_job.cancel_reason(), None);
    let ack = lost_job.complete(json!(1)).wait().await;
    assert_eq!(ack, OutcomeAck::NotSent(NotSentReason::LeaseLost));
    let ack = kept_job.complete(json!(2)).wait().await;
    assert_eq!(ack, OutcomeAck::Recorded { state: None });
    let sent: Vec<Uuid> = link.reports().iter().map(|r| r.job_id).collect();
    assert_eq!(sent, [kept.job.id]);
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_session_takes_fewer_leases_after_a_throttle_and_more_as_jobs_succeed() {
    let link = FakeLink::new();
    let s = adaptive_session(&link, 8, Some(crate::AdaptiveConcurrency::new(2)));
    let intake = link.intake().await;
    link.push((0..8).map(|_| lease(TTL, None)).collect()).await;
    let mut jobs = Vec::new();
    for _ in 0..8 {
        jobs.push(next(&s).await);
    }
    assert_eq!((s.concurrency_limit(), intake.free_slots()), (8, 0));
    let throttled = jobs.pop().expect("a job");
    drop(throttled.fail(HandlerError::throttled("429", secs(1))));
    // Halved: with 7 still running, no slot is free until fewer than 4 run.
    assert_eq!((s.concurrency_limit(), intake.free_slots()), (4, 0));
    for job in jobs.drain(..4) {
        drop(job.complete(json!(null)));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    // One more per `limit` successes: 4 successes at a limit of 4 make it 5; 3 still run.
    assert_eq!((s.concurrency_limit(), intake.free_slots()), (5, 2));
    // 5 more successes at 5 make it 6.
    for job in jobs.drain(..) {
        drop(job.complete(json!(null)));
    }
    link.push((0..2).map(|_| lease(TTL, None)).collect()).await;
    for _ in 0..2 {
        drop(next(&s).await.complete(json!(null)));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!((s.concurrency_limit(), intake.free_slots()), (6, 6));
}

/// Takes `n` leases, lets them run `each`, completes them and lets the outcomes go.
async fn work(link: &FakeLink, s: &WorkerSession, n: usize, each: Duration) {
    link.push((0..n).map(|_| lease(TTL, None)).collect()).await;
    let mut jobs = Vec::new();
    for _ in 0..n {
        jobs.push(next(s).await);
    }
    tokio::time::sleep(each).await;
    for job in jobs {
        drop(job.complete(json!(null)));
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn prefetch_holds_fifty_ms_of_work_ahead_only_while_jobs_are_short() {
    let link = FakeLink::new();
    let s = session_with(&link, 8, |cfg| cfg.prefetch = true);
    let intake = link.intake().await;
    // Nothing known of the jobs yet: no more than the slots.
    assert_eq!(intake.free_slots(), 8);
    work(&link, &s, 8, Duration::from_millis(10)).await;
    // Jobs of 10 ms: 50 ms of the slots' work would be 40 leases; at most three times the
    // slots may wait for a slot.
    assert_eq!(intake.free_slots(), 8 + 24);
    // Jobs of a second pull the average past 100 ms: back to the slots.
    work(&link, &s, 10, secs(1)).await;
    assert_eq!(intake.free_slots(), 8);

    // Jobs of 40 ms: the slots get through 10 in 50 ms.
    let link = FakeLink::new();
    let s = session_with(&link, 8, |cfg| cfg.prefetch = true);
    let intake = link.intake().await;
    work(&link, &s, 8, Duration::from_millis(40)).await;
    assert_eq!(intake.free_slots(), 8 + 10);

    // A lease's wait for a slot is not run time: 16 leases of 25-ms jobs arrive together, the
    // second half starts when the first ends. (From their arrival, the second half took 50 ms,
    // which would have made the average 31 ms and held 12 ahead, not 16.)
    let link = FakeLink::new();
    let s = session_with(&link, 8, |cfg| cfg.prefetch = true);
    let intake = link.intake().await;
    link.push((0..16).map(|_| lease(TTL, None)).collect()).await;
    for _ in 0..2 {
        let mut jobs = Vec::new();
        for _ in 0..8 {
            jobs.push(next(&s).await);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        for job in jobs {
            drop(job.complete(json!(null)));
        }
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(intake.free_slots(), 8 + 16);

    // Off (the session's default), short jobs change nothing.
    let link = FakeLink::new();
    let s = session(&link, 8);
    let intake = link.intake().await;
    work(&link, &s, 8, Duration::from_millis(10)).await;
    assert_eq!(intake.free_slots(), 8);
}

#[tokio::test(start_paused = true)]
async fn unacknowledged_outcomes_beyond_the_concurrency_hold_back_new_leases() {
    let link = FakeLink::new();
    let s = session(&link, 2);
    let intake = link.intake().await;
    link.answer_outcomes(false);
    let finish_two = async || {
        link.push(vec![lease(TTL, None), lease(TTL, None)]).await;
        for _ in 0..2 {
            drop(next(&s).await.complete(json!(null)));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    finish_two().await;
    // As many unacknowledged outcomes as slots: no backpressure yet.
    assert_eq!(link.reports().len(), 2);
    assert_eq!(intake.free_slots(), 2);
    finish_two().await;
    // Four outcomes wait for the coordinator, two beyond the concurrency: no slot is free,
    // and one request is in flight at a time (the rest wait, to go as one batch).
    assert_eq!(s.active(), 0);
    assert_eq!(intake.free_slots(), 0);
    assert_eq!(*intake.taken().borrow(), 2);
    assert_eq!(link.sent().len(), 1);

    link.answer_outcomes(true);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(intake.free_slots(), 2);
    let sizes: Vec<usize> = link.sent().iter().map(|b| b.reports.len()).collect();
    assert_eq!(sizes, [2, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_drain_gives_back_queued_leases_at_once_and_running_ones_after_the_grace() {
    let link = FakeLink::new();
    let s = session(&link, 3);
    let start = Instant::now();
    let leases = vec![lease(TTL, None), lease(TTL, None), lease(TTL, None)];
    link.push(leases).await;
    let running = next(&s).await;

    s.drain();
    // A lease crossing the drain on the wire is given back unrun too.
    let late = lease(TTL, None);
    link.push(vec![late.clone()]).await;
    assert!(matches!(
        s.next_job(Some(secs(1))).await,
        Err(crate::Error::SessionClosed)
    ));

    let released = s.shutdown(secs(5)).await;
    assert_eq!(released, 1, "only the running job waited for the grace");
    assert_eq!(running.cancel_reason(), Some(CancelReason::Shutdown));
    let batches: Vec<(Duration, Vec<String>)> = link
        .sent()
        .iter()
        .map(|b| (b.at, b.reports.iter().map(shape).collect()))
        .collect();
    assert_eq!(batches.last().map(|b| b.0), Some(secs(5)));
    let released_at_once: usize = batches
        .iter()
        .filter(|b| b.0 < secs(5))
        .map(|b| b.1.len())
        .sum();
    assert_eq!(released_at_once, 3, "two queued leases and the late one");
    assert!(batches.iter().all(|b| b.1.iter().all(|o| o == "release")));
    assert_eq!(
        start.elapsed(),
        secs(5),
        "the shutdown took the grace, no more"
    );
    // The handler's late outcome is dropped: its lease was given back.
    let ack = running.complete(json!(1)).wait().await;
    assert_eq!(ack, OutcomeAck::NotSent(NotSentReason::Released));
}

#[tokio::test(start_paused = true)]
async fn a_lease_delivered_twice_runs_once() {
    let link = FakeLink::new();
    let s = session(&link, 4);
    let twice = lease(TTL, None);
    link.push(vec![twice.clone()]).await;
    link.push(vec![twice.clone()]).await;
    let job = next(&s).await;
    assert!(s.next_job(Some(secs(1))).await.expect("open").is_none());
    assert_eq!(s.active(), 1, "the copy takes no slot");
    let ack = job.complete(json!("once")).wait().await;
    assert_eq!(ack, OutcomeAck::Recorded { state: None });
    assert_eq!(link.reports().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_handler_past_its_run_time_is_cancelled_then_reported_as_timed_out() {
    let link = FakeLink::new();
    let s = session(&link, 1);
    let start = Instant::now();
    link.push(vec![lease(TTL, Some(secs(10)))]).await;
    let job = next(&s).await;
    job.cancelled().await;
    // Cancelled a tenth early, reported a fifth early: both before the coordinator's deadline.
    assert_eq!(start.elapsed(), secs(7));
    assert_eq!(job.cancel_reason(), Some(CancelReason::TimedOut));
    tokio::time::sleep(secs(2)).await;
    let sent = link.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].at, secs(8));
    assert_eq!(shape(&sent[0].reports[0]), "fail:timeout:true");
    let ack = job.complete(json!("too late")).wait().await;
    assert_eq!(ack, OutcomeAck::NotSent(NotSentReason::TimedOut));
}

/// An ending, and the outcome it settles as without and with an operator's cancel request.
type Row = (&'static str, fn() -> Ending, &'static str, &'static str);

#[tokio::test(start_paused = true)]
async fn each_ending_settles_as_the_table_says() {
    let endings: [Row; 5] = [
        (
            "returned",
            || Ending::Returned(json!(1)),
            "complete",
            "complete",
        ),
        (
            "failed",
            || Ending::Failed(HandlerError::fatal("bad input").with_class("bad_input")),
            "fail:bad_input:false",
            "fail:cancelled:false",
        ),
        (
            "panicked",
            || Ending::Panicked("boom".into()),
            "fail:panic:true",
            "fail:cancelled:false",
        ),
        (
            "stopped",
            || Ending::Stopped,
            "release",
            "fail:cancelled:false",
        ),
        (
            "abandoned",
            || Ending::Abandoned,
            "release",
            "fail:cancelled:false",
        ),
    ];
    let link = FakeLink::new();
    let s = session(&link, 10);
    let plain: Vec<_> = endings.iter().map(|_| lease(TTL, None)).collect();
    let cancelled: Vec<_> = endings.iter().map(|_| lease(TTL, None)).collect();
    link.answer_beats(Beats::Answer(
        cancelled
            .iter()
            .map(|l| (l.job.id, HeartbeatStatus::CancelRequested))
            .collect(),
    ));
    link.push(plain.iter().chain(&cancelled).cloned().collect())
        .await;
    let mut jobs: HashMap<Uuid, LeasedJob> = HashMap::new();
    for _ in 0..10 {
        let job = next(&s).await;
        jobs.insert(job.id(), job);
    }
    // The first heartbeat brings the operator's cancel requests.
    tokio::time::sleep(secs(11)).await;
    for (i, (name, ending, _, _)) in endings.iter().enumerate() {
        for (l, requested) in [(&plain[i], false), (&cancelled[i], true)] {
            let job = jobs.remove(&l.job.id).expect("leased");
            let expected = requested.then_some(CancelReason::CancelRequested);
            assert_eq!(job.cancel_reason(), expected, "{name}");
            let ack = job.settle(ending()).wait().await;
            assert!(
                matches!(ack, OutcomeAck::Recorded { .. }),
                "{name}: {ack:?}"
            );
        }
    }
    let sent: HashMap<Uuid, String> = link
        .reports()
        .iter()
        .map(|r| (r.job_id, shape(r)))
        .collect();
    for (i, (name, _, otherwise, when_cancelled)) in endings.iter().enumerate() {
        assert_eq!(sent[&plain[i].job.id], *otherwise, "{name}");
        assert_eq!(
            sent[&cancelled[i].job.id], *when_cancelled,
            "{name}, cancel requested"
        );
    }
}
