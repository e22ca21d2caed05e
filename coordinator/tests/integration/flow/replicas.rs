//! Two coordinators on one PostgreSQL share one budget: claimers on both, under contention,
//! never lease more than a rate limit's burst plus its rate over the time, nor hold more leases
//! than a concurrency limit allows. (`SKIP LOCKED` alone would let each replica spend the whole
//! budget: the claim locks the tenant's limits first.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use leasehold_coordinator::store::{PostgresStore, READY_CHANNEL, Store};
use reqwest::Method;
use serde_json::json;

use crate::common::keyed::{Coordinator, ROOT};

/// The URL of a fresh PostgreSQL schema for `test`, or `None` without PostgreSQL.
async fn fresh_url(test: &str) -> Option<String> {
    let base = leasehold_testkit::postgres_url(test)?;
    Some(
        leasehold_testkit::fresh_schema(&base)
            .await
            .expect("schema"),
    )
}

/// Two served coordinators over one fresh PostgreSQL schema, or `None` without PostgreSQL.
async fn two_replicas(test: &str) -> Option<(Arc<Coordinator>, Arc<Coordinator>)> {
    let url = fresh_url(test).await?;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.expect("connect"));
        replicas.push(Arc::new(Coordinator::start(store, Some(ROOT)).await));
    }
    let b = replicas.pop()?;
    let a = replicas.pop()?;
    Some((a, b))
}

/// A served coordinator over `pg` that hears the other replicas' notifications (`LISTEN`), with
/// its slot poll set to `slot_poll` when given.
async fn listening(pg: PostgresStore, slot_poll: Option<Duration>) -> Arc<Coordinator> {
    let store: Arc<dyn Store> = Arc::new(pg.clone());
    Arc::new(
        Coordinator::start_with(store, Some(ROOT), move |s| {
            if let Some(poll) = slot_poll {
                s.slot_poll = poll;
            }
            leasehold_coordinator::notify::spawn_pg_listener(
                &pg,
                s.ready.clone(),
                s.shutdown.clone(),
            );
        })
        .await,
    )
}

async fn setup(c: &Coordinator, key: &str, limit: serde_json::Value, jobs: usize) {
    let mut body = limit;
    body["reason"] = json!("shared vendor budget");
    body["ticket"] = json!("OPS-9");
    let (s, a) = c
        .call(
            Some(ROOT),
            Method::PUT,
            &format!("/v1/limits/{key}"),
            Some(body),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{a}");
    let batch: Vec<_> = (0..jobs)
        .map(|n| json!({"queue": "vendor", "kind": "call", "payload": {"n": n}}))
        .collect();
    let (s, a) = c
        .call(
            Some(ROOT),
            Method::POST,
            "/v1/jobs",
            Some(json!({"jobs": batch})),
            &[],
        )
        .await;
    assert_eq!(s, 201, "{a}");
}

/// Claims in a loop on `c` until `until`; the number of leases granted.
async fn claim_until(c: Arc<Coordinator>, worker: String, until: Instant) -> usize {
    let mut granted = 0;
    while Instant::now() < until {
        let body =
            json!({"worker_id": worker, "queues": ["vendor"], "max_jobs": 10, "wait_ms": 200});
        let (s, a) = c
            .call(Some(ROOT), Method::POST, "/v1/leases", Some(body), &[])
            .await;
        assert_eq!(s, 200, "{a}");
        granted += a["leases"].as_array().map_or(0, Vec::len);
    }
    granted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_overspend_a_shared_rate_limit() {
    let Some((a, b)) = two_replicas("flow::replicas::rate").await else {
        return;
    };
    let (rate, burst) = (20.0, 5.0);
    setup(
        &a,
        "queue:vendor",
        json!({"rate": rate, "burst": burst as u32}),
        400,
    )
    .await;
    let started = Instant::now();
    let until = started + Duration::from_secs(3);
    let mut claimers = Vec::new();
    for (i, c) in [&a, &b, &a, &b].into_iter().enumerate() {
        claimers.push(tokio::spawn(claim_until(c.clone(), format!("w{i}"), until)));
    }
    let mut granted = 0;
    for claimer in claimers {
        granted += claimer.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let budget = burst + rate * secs;
    eprintln!(
        "two replicas, 4 claimers, rate {rate}/s burst {burst}: {granted} leases in {secs:.2} s \
         (budget {budget:.1}, {:.1}/s achieved)",
        granted as f64 / secs
    );
    assert!(
        granted as f64 <= budget + 1.0,
        "{granted} leases over a budget of {budget:.1}"
    );
    assert!(
        granted as f64 >= 0.8 * rate * secs,
        "the budget is used, not starved: {granted} in {secs:.2} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_exceed_a_shared_concurrency_limit() {
    let Some((a, b)) = two_replicas("flow::replicas::concurrency").await else {
        return;
    };
    setup(&a, "*", json!({"concurrency": 3}), 50).await;
    // Nobody completes: the slots stay taken however hard both replicas are asked.
    let until = Instant::now() + Duration::from_secs(1);
    let mut claimers = Vec::new();
    for (i, c) in [&a, &b, &a, &b].into_iter().enumerate() {
        claimers.push(tokio::spawn(claim_until(c.clone(), format!("w{i}"), until)));
    }
    let mut granted = 0;
    for claimer in claimers {
        granted += claimer.await.unwrap();
    }
    assert_eq!(granted, 3, "exactly the limit across both replicas");
    let (_, shown) = b
        .call(Some(ROOT), Method::GET, "/v1/limits/*", None, &[])
        .await;
    assert_eq!(
        shown["buckets"],
        json!([{"bucket": "*", "leased": 3}]),
        "{shown}"
    );
}

/// A claimer parked on one replica, held back by a concurrency limit, is woken when a lease
/// ends on the other: the outcome's notification crosses, not the slot poll (set here far
/// beyond the long poll, so only the notification can wake it in time).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_freed_on_one_replica_wakes_a_claimer_waiting_on_the_other() {
    let Some(url) = fresh_url("flow::replicas::slot_wake").await else {
        return;
    };
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let pg = PostgresStore::connect(&url).await.expect("connect");
        replicas.push(listening(pg, Some(Duration::from_secs(120))).await);
    }
    let (a, b) = (replicas[0].clone(), replicas[1].clone());
    setup(&a, "*", json!({"concurrency": 1}), 2).await;
    let claim = |c: Arc<Coordinator>, wait_ms: u64| async move {
        let body = json!({"worker_id": "w", "queues": ["vendor"], "wait_ms": wait_ms});
        let (s, answer) = c
            .call(Some(ROOT), Method::POST, "/v1/leases", Some(body), &[])
            .await;
        assert_eq!(s, 200, "{answer}");
        answer
    };
    let first = claim(a.clone(), 0).await;
    let lease = first["leases"][0].clone();
    assert!(lease.is_object(), "{first}");
    // B's long poll is held back by the limit, and parks.
    let waiter = tokio::spawn(claim(b.clone(), 20_000));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let done = json!({"fencing_token": lease["fencing_token"], "result": {}});
    let path = format!("/v1/jobs/{}/complete", lease["job"]["id"].as_str().unwrap());
    let (s, answer) = a
        .call(Some(ROOT), Method::POST, &path, Some(done), &[])
        .await;
    assert_eq!(s, 200, "{answer}");
    let answer = waiter.await.unwrap();
    assert_eq!(
        answer["leases"].as_array().map_or(0, Vec::len),
        1,
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken by the notification, not by the end of the long poll: {:?}",
        started.elapsed()
    );
}

/// Single-job enqueues of one queue close together are announced at most once per window
/// (docs/postgres-hot-path.md §11), and none is left unannounced: the first enqueue announces
/// its queue at once, the second (within the window) when the window ends, and a claimer parked
/// on the other replica gets each job long before its long poll would have ended. (Other tests
/// share the database and its channel: only this replica's announcements are counted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_left_unannounced_is_announced_when_its_window_ends() {
    let Some(url) = fresh_url("flow::replicas::announce").await else {
        return;
    };
    let window = Duration::from_secs(2);
    let mut stores = Vec::new();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let pg = PostgresStore::connect(&url)
            .await
            .expect("connect")
            .with_announce_window(window);
        stores.push(pg.clone());
        replicas.push(listening(pg, None).await);
    }
    let (a, b) = (replicas[0].clone(), replicas[1].clone());
    // When each of A's announcements arrives.
    let mut listener = sqlx::postgres::PgListener::connect(&url)
        .await
        .expect("listen");
    listener.listen(READY_CHANNEL).await.expect("listen");
    let from_a = stores[0].clone();
    let heard = Arc::new(std::sync::Mutex::new(Vec::<(String, Instant)>::new()));
    let log = heard.clone();
    tokio::spawn(async move {
        while let Ok(n) = listener.recv().await {
            if from_a.is_own_wakeup(n.payload()) {
                log.lock()
                    .unwrap()
                    .push((n.payload().to_owned(), Instant::now()));
            }
        }
    });
    let park = |c: Arc<Coordinator>| {
        tokio::spawn(async move {
            let body = json!({"worker_id": "w", "queues": ["burst"], "wait_ms": 20_000});
            let started = Instant::now();
            let (s, answer) = c
                .call(Some(ROOT), Method::POST, "/v1/leases", Some(body), &[])
                .await;
            assert_eq!(s, 200, "{answer}");
            let n = answer["leases"].as_array().map_or(0, Vec::len);
            assert_eq!(n, 1, "{answer}");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "woken by an announcement, not by the end of the long poll: {:?}",
                started.elapsed()
            );
        })
    };
    let enqueue = |n: u32| {
        let a = a.clone();
        async move {
            let body = json!({"queue": "burst", "kind": "k", "payload": {"n": n}});
            let (s, job) = a
                .call(Some(ROOT), Method::POST, "/v1/jobs", Some(body), &[])
                .await;
            assert_eq!(s, 201, "{job}");
        }
    };
    let waiter = park(b.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_first = Instant::now();
    enqueue(1).await;
    waiter.await.unwrap();
    let waiter = park(b.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    enqueue(2).await;
    assert!(
        before_first.elapsed() < window,
        "too slow to test the window"
    );
    waiter.await.unwrap();
    tokio::time::sleep_until((before_first + window * 2).into()).await;
    let heard = heard.lock().unwrap().clone();
    let at: Vec<Duration> = heard.iter().map(|(_, t)| *t - before_first).collect();
    assert_eq!(heard.len(), 2, "one announcement per window: {heard:?}");
    assert!(
        heard.iter().all(|(p, _)| p.contains("/burst@")),
        "{heard:?}"
    );
    assert!(at[0] < window / 2, "the first at once: {at:?}");
    assert!(
        at[1] >= window - Duration::from_millis(50),
        "the second when the window ended: {at:?}"
    );
}

/// Without `LISTEN` (a database or pooler that has none), a claimer parked on one replica still
/// gets a job enqueued through the other within the wake-up poll (`--wake-poll-ms`), long
/// before its long poll ends; and without the poll it waits the long poll out, which is what
/// the poll is for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_listen_a_parked_claimer_polls_for_the_other_replicas_jobs() {
    let Some(url) = fresh_url("flow::replicas::no_listen").await else {
        return;
    };
    let replica = |poll: Option<Duration>| {
        let url = url.clone();
        async move {
            let pg = PostgresStore::connect(&url).await.expect("connect");
            let store: Arc<dyn Store> = Arc::new(pg);
            // No spawn_pg_listener: the other replica's notifications are never heard.
            Arc::new(Coordinator::start_with(store, Some(ROOT), move |s| s.wake_poll = poll).await)
        }
    };
    let a = replica(None).await;
    let polling = replica(Some(Duration::from_millis(200))).await;
    let deaf = replica(None).await;
    let claim = |c: Arc<Coordinator>, queue: &'static str| async move {
        let body = json!({"worker_id": "w", "queues": [queue], "wait_ms": 6_000});
        let started = Instant::now();
        let (s, answer) = c
            .call(Some(ROOT), Method::POST, "/v1/leases", Some(body), &[])
            .await;
        assert_eq!(s, 200, "{answer}");
        (
            answer["leases"].as_array().map_or(0, Vec::len),
            started.elapsed(),
        )
    };
    let polled = tokio::spawn(claim(polling.clone(), "polled"));
    let waited = tokio::spawn(claim(deaf.clone(), "waited"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for queue in ["polled", "waited"] {
        a.enqueue(ROOT, json!({"queue": queue, "kind": "k"})).await;
    }
    let (n, took) = polled.await.unwrap();
    assert_eq!(n, 1);
    assert!(took < Duration::from_secs(3), "the poll found it: {took:?}");
    let (n, took) = waited.await.unwrap();
    assert!(
        n == 0 || took >= Duration::from_secs(5),
        "without LISTEN or a poll, only the end of the long poll looks again ({n} after {took:?})"
    );
}
