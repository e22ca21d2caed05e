//! Backpressure over a real socket on SQLite and PostgreSQL: with `--max-queued-jobs`, enqueues
//! (one job, a batch, a run; every tenant) are shed with 429 `overloaded` and `Retry-After`
//! while the store holds that many waiting jobs (`queued` or `blocked`), nothing stored; the
//! count is taken at most once a second, so the mark is approximate by that much.

use std::sync::Arc;
use std::time::Duration;

use leasehold_coordinator::admission::Backpressure;
use leasehold_coordinator::store::{JobFilter, Store};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::keyed::Coordinator;

/// A keyless coordinator shedding at `mark`, counting every `refresh`.
async fn shedding_at(store: Arc<dyn Store>, mark: u64, refresh: Duration) -> Coordinator {
    Coordinator::start_with(store, None, move |s| {
        s.backpressure = Arc::new(Backpressure::with_refresh(Some(mark), refresh));
    })
    .await
}

async fn jobs_of(store: &dyn Store, tenant: &str) -> usize {
    let filter = JobFilter {
        tenant: tenant.into(),
        limit: 1000,
        ..Default::default()
    };
    store.list_jobs(&filter).await.unwrap().len()
}

/// `leasehold_enqueues_refused_total{reason="overloaded"}` as `/metrics` shows it now.
async fn shed_so_far(c: &Coordinator) -> u64 {
    let text = c
        .http
        .get(format!("{}/metrics", c.served.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("leasehold_enqueues_refused_total{reason=\"overloaded\"}"))
        .unwrap_or_else(|| panic!("no shed counter in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn job(n: u32) -> Value {
    json!({"queue": "q", "kind": "k", "payload": {"n": n}})
}

#[track_caller]
fn shed((status, headers, body): &(u16, reqwest::header::HeaderMap, Value), waiting: u64) {
    assert_eq!(*status, 429, "{body}");
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert_eq!(
        body["error"]["details"],
        json!({"mark": 3, "waiting": waiting, "retry_after_seconds": 1})
    );
    assert_eq!(headers.get("retry-after").unwrap(), "1");
}

async fn past_the_mark_enqueues_are_shed_with_nothing_stored(store: Arc<dyn Store>) {
    // Counting at every enqueue: the mark is exact here.
    let c = shedding_at(store.clone(), 3, Duration::ZERO).await;
    let shed_before = shed_so_far(&c).await;
    let post = |body: Value, tenant: &'static str| {
        let c = &c;
        async move {
            let header = [("leasehold-tenant", tenant)];
            c.call_full(None, Method::POST, "/v1/jobs", Some(body), &header)
                .await
        }
    };
    // A run of two (a blocked child counts as waiting), then one job: three waiting.
    let run = json!({"jobs": [{"key": "a", "kind": "k", "queue": "q"},
                              {"key": "b", "kind": "k", "queue": "q", "depends_on": ["a"]}]});
    let (status, _) = c
        .call(None, Method::POST, "/v1/runs", Some(run.clone()), &[])
        .await;
    assert_eq!(status, 201);
    assert_eq!(post(job(1), "default").await.0, 201);

    // At the mark: every enqueue is shed, whatever its tenant or shape.
    shed(&post(job(2), "default").await, 3);
    shed(&post(job(3), "beta").await, 3);
    shed(&post(json!({"jobs": [job(4), job(5)]}), "default").await, 3);
    let answer = c
        .call_full(None, Method::POST, "/v1/runs", Some(run), &[])
        .await;
    shed(&answer, 3);
    assert_eq!(jobs_of(&*store, "default").await, 3, "nothing stored");
    assert_eq!(jobs_of(&*store, "beta").await, 0, "nothing stored");
    assert!(shed_so_far(&c).await >= shed_before + 4);

    // A claim takes one below the mark (the blocked child still counts): one more fits.
    let claim = json!({"worker_id": "w", "queues": ["q"], "max_jobs": 1, "wait_ms": 0});
    let (status, _) = c
        .call(None, Method::POST, "/v1/leases", Some(claim), &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(post(job(6), "beta").await.0, 201);
    shed(&post(job(7), "default").await, 3);
}

async fn the_mark_is_counted_at_most_once_a_second(store: Arc<dyn Store>) {
    let c = shedding_at(store.clone(), 1, Duration::from_secs(1)).await;
    // Enqueues within a second of the last count pass on it, so more than the mark may be
    // stored before shedding starts; it starts at the next count.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut admitted = 0;
    let refusal = loop {
        let answer = c
            .call_full(None, Method::POST, "/v1/jobs", Some(job(admitted)), &[])
            .await;
        if answer.0 != 201 {
            break answer;
        }
        admitted += 1;
        assert!(tokio::time::Instant::now() < deadline, "never shed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refusal.0, 429, "{}", refusal.2);
    assert_eq!(refusal.2["error"]["code"], "overloaded");
    assert!(admitted >= 1);
    assert_eq!(jobs_of(&*store, "default").await, admitted as usize);
}

crate::on_both_backends!(
    past_the_mark_enqueues_are_shed_with_nothing_stored,
    the_mark_is_counted_at_most_once_a_second,
);
