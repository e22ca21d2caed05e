//! The Rust worker's prefetch against a real coordinator: once its jobs have been quick it
//! holds three times its concurrency beyond the running jobs (its most; so that a slot that
//! frees starts the next job without a claim's round trip), never runs more than its
//! concurrency at once, takes them in claims of at most its concurrency each, and holds nothing
//! extra when prefetch is off; on both transports.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use leasehold::proto::JobState;
use leasehold::{Client, HandlerError, JobContext, JobSpec, Transport, Worker};
use leasehold_testkit::Coordinator;
use leasehold_testkit::sdk::{
    RunningWorker, all_jobs, depth, eventually, init_tracing, wait_for_state,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const PATIENCE: Duration = Duration::from_secs(30);
const CONCURRENCY: usize = 8;
/// More than the worker may hold (`4 × CONCURRENCY`), so that the cap shows.
const HELD: usize = 40;

/// What the worker did with the held jobs.
struct Held {
    /// Handlers running while the gate was shut.
    ran: usize,
    /// Jobs the coordinator counted as leased then.
    leased: i64,
    /// The most held jobs one claim took: a claim's jobs share its `started_at`.
    largest_claim: usize,
}

/// Works 8 quick jobs, then `HELD` jobs whose handlers wait for a gate; with every slot busy
/// and every earlier outcome recorded, counts what the worker holds, then opens the gate and
/// checks that every job succeeds.
async fn leases_while_the_slots_are_busy(transport: Transport, prefetch: bool) -> Result<Held> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let queue = "prefetch";
    let running = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (r, g) = (running.clone(), gate.clone());
    let worker = Worker::builder(&coord.url)
        .queues([queue])
        .concurrency(CONCURRENCY)
        .prefetch(prefetch)
        .transport(transport)
        .poll_wait(Duration::from_secs(2))
        .handler("quick", |_ctx: JobContext| async move {
            Ok::<_, HandlerError>(Value::Null)
        })
        .handler("held", move |_ctx: JobContext| {
            let (r, g) = (r.clone(), g.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                let permit = g.acquire().await;
                drop(permit);
                r.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, HandlerError>(Value::Null)
            }
        })
        .build()?;
    let worker = RunningWorker::start(worker);
    let quick = (0..CONCURRENCY).map(|i| JobSpec::new("quick", json!(i)).queue(queue));
    client.enqueue_many(quick).await?;
    wait_for_state(
        &client,
        queue,
        JobState::Succeeded,
        CONCURRENCY as i64,
        PATIENCE,
    )
    .await?;
    let held = (0..HELD).map(|i| JobSpec::new("held", json!(i)).queue(queue));
    client.enqueue_many(held).await?;
    eventually("every slot busy", PATIENCE, || {
        let running = running.load(Ordering::SeqCst);
        async move { Ok((running == CONCURRENCY).then_some(())) }
    })
    .await?;
    // Let the worker take whatever it will take beyond its slots.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let leased = depth(&client, queue).await?[&JobState::Leased];
    let ran = running.load(Ordering::SeqCst);
    gate.add_permits(HELD);
    let all = (CONCURRENCY + HELD) as i64;
    wait_for_state(&client, queue, JobState::Succeeded, all, PATIENCE).await?;
    worker.stop().await?;
    let held: Vec<_> = all_jobs(&client, queue)
        .await?
        .into_iter()
        .filter(|job| job.kind == "held")
        .collect();
    assert_eq!(held.len(), HELD);
    let mut claims: HashMap<_, usize> = HashMap::new();
    for job in &held {
        *claims.entry(job.started_at).or_default() += 1;
    }
    Ok(Held {
        ran,
        leased,
        largest_claim: claims.into_values().max().unwrap_or(0),
    })
}

#[tokio::test]
async fn prefetch_holds_three_times_the_concurrency_ahead_of_quick_jobs() -> Result<()> {
    for transport in [Transport::WebSocket, Transport::Http] {
        let held = leases_while_the_slots_are_busy(transport, true).await?;
        assert_eq!(held.ran, CONCURRENCY, "{transport:?}");
        assert_eq!(held.leased, (4 * CONCURRENCY) as i64, "{transport:?}");
        // Four slots' worth held, in claims of at most one slots' worth (`claim_most`).
        assert!(
            held.largest_claim <= CONCURRENCY,
            "{transport:?}: {}",
            held.largest_claim
        );
    }
    Ok(())
}

#[tokio::test]
async fn without_prefetch_no_more_leases_than_the_concurrency() -> Result<()> {
    for transport in [Transport::WebSocket, Transport::Http] {
        let held = leases_while_the_slots_are_busy(transport, false).await?;
        assert_eq!(held.ran, CONCURRENCY, "{transport:?}");
        assert_eq!(held.leased, CONCURRENCY as i64, "{transport:?}");
    }
    Ok(())
}
