//! The quota is exact: concurrent enqueuers on one coordinator, and two replicas on one
//! PostgreSQL schema, store exactly `max_queued` jobs; a tenant with a quota gets no hand-off
//! (its leases go through the claim, where `max_leased` is checked); SQLite's list of limited
//! tenants survives a restart.

use std::sync::Arc;

use leasehold_coordinator::store::{Quota, Store};
use reqwest::Method;
use serde_json::json;

use super::{OPS, job, put_quota, stored};
use crate::common::keyed::{Coordinator, ROOT};
use crate::common::rows::{claim_params, new_job};

async fn a_tenant_with_a_quota_gets_no_hand_off(store: Arc<dyn Store>) {
    // Microseconds: what both databases keep.
    let now =
        chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros()).unwrap();
    let quota = Quota {
        tenant: "default".into(),
        max_queued: None,
        max_leased: Some(1),
        updated_at: now,
    };
    assert_eq!(store.set_quota(&quota).await.unwrap(), None);
    assert_eq!(
        store.quota("default").await.unwrap().unwrap().max_leased,
        Some(1)
    );
    let claim = claim_params("h", 1, 30_000);
    let handed = store
        .enqueue_leased(now, new_job("h", "k", now), &claim)
        .await
        .unwrap();
    assert!(
        handed.is_none(),
        "leased by a claim, where max_leased is checked"
    );
    assert_eq!(stored(&*store, "default").await, (0, 0));
    assert_eq!(store.delete_quota("default").await.unwrap(), Some(quota));
    let handed = store
        .enqueue_leased(now, new_job("h", "k", now), &claim)
        .await
        .unwrap();
    assert!(handed.is_some(), "without a quota the hand-off is back");
}

/// Many enqueuers at once, on one coordinator: exactly the quota is stored.
async fn concurrent_enqueuers_never_pass_the_quota(store: Arc<dyn Store>) {
    let c = Arc::new(Coordinator::start(store.clone(), Some(ROOT)).await);
    let (_, alpha) = c.key("alpha", OPS).await;
    put_quota(&c, &alpha, json!({"max_queued": 5})).await;
    let statuses = race(std::slice::from_ref(&c), &alpha, 20).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        15,
        "{statuses:?}"
    );
    assert_eq!(stored(&*store, "alpha").await.0, 5);
}

/// `n` single enqueues at once, spread over `coordinators`: their statuses.
async fn race(coordinators: &[Arc<Coordinator>], key: &str, n: u32) -> Vec<u16> {
    let start = Arc::new(tokio::sync::Barrier::new(n as usize));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let c = coordinators[i as usize % coordinators.len()].clone();
            let (key, start) = (key.to_owned(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                c.call(Some(&key), Method::POST, "/v1/jobs", Some(job(i)), &[])
                    .await
                    .0
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

crate::on_both_backends!(
    a_tenant_with_a_quota_gets_no_hand_off,
    concurrent_enqueuers_never_pass_the_quota,
);

/// Two coordinators on one PostgreSQL schema (two pools, as two replicas would have) racing for
/// the last slots: the quota row's lock serializes them, exactly `max_queued` jobs are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_pass_the_quota_together() {
    let Some(base) = leasehold_testkit::postgres_url("quotas::two_replicas") else {
        return;
    };
    let url = leasehold_testkit::fresh_schema(&base).await.unwrap();
    let mut replicas = Vec::new();
    let mut stores = Vec::new();
    for _ in 0..2 {
        let pg = leasehold_coordinator::store::PostgresStore::connect(&url)
            .await
            .unwrap();
        let store: Arc<dyn Store> = Arc::new(pg);
        stores.push(store.clone());
        replicas.push(Arc::new(Coordinator::start(store, Some(ROOT)).await));
    }
    // The coordinator's own key acts for tenant `default` on both replicas.
    for round in 0..3 {
        let limit = 5 * (round + 1);
        let (status, _) = put_quota(&replicas[0], ROOT, json!({"max_queued": limit})).await;
        assert_eq!(status, 200);
        let statuses = race(&replicas, ROOT, 20).await;
        let admitted = statuses.iter().filter(|s| **s == 201).count();
        assert_eq!(admitted, 5, "round {round}: {statuses:?}");
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 429),
            "{statuses:?}"
        );
        assert_eq!(stored(&*stores[1], "default").await.0, limit as usize);
    }
}

/// SQLite remembers which tenants have a `max_queued` (so that others skip the check's
/// statement): the memory is read again when the file is opened again.
#[tokio::test]
async fn a_reopened_sqlite_store_still_knows_its_quotas() {
    use leasehold_coordinator::store::{QuotaRecords, SqliteStore, SqliteSync, StoreError};
    let dir = crate::common::temp_dir("quota-reopen");
    let path = dir.0.join("t.db");
    let now =
        chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros()).unwrap();
    let store = SqliteStore::open(&path, SqliteSync::Normal).await.unwrap();
    let quota = Quota {
        tenant: "default".into(),
        max_queued: Some(1),
        max_leased: None,
        updated_at: now,
    };
    store.set_quota(&quota).await.unwrap();
    store
        .enqueue(now, vec![new_job("q", "k", now)])
        .await
        .unwrap();
    drop(store);
    let store = SqliteStore::open(&path, SqliteSync::Normal).await.unwrap();
    let refused = store.enqueue(now, vec![new_job("q", "k", now)]).await;
    assert!(
        matches!(refused, Err(StoreError::QuotaExceeded(ref q)) if q.limit == 1 && q.waiting == 1),
        "{refused:?}"
    );
    // Limited on leases only, the tenant is no longer checked at enqueue.
    let leases_only = Quota {
        max_queued: None,
        max_leased: Some(1),
        ..quota
    };
    store.set_quota(&leases_only).await.unwrap();
    store
        .enqueue(now, vec![new_job("q", "k", now)])
        .await
        .unwrap();
}
