//! Leasing over a real SQLite store, where the order of steps inside one process matters and a
//! test over HTTP could not choose it.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use chrono::Utc;
use leasehold_proto::JobState;
use serde_json::json;
use uuid::Uuid;

use crate::http::AppState;
use crate::store::{NewJobRow, SqliteStore, SqliteSync, Store};

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A long poll parks; an enqueue hands its job to it (leased in the enqueue's transaction); the
/// request is cancelled before it looks (its future dropped unpolled, as when the client hangs
/// up). The lease is released at once (`released`, reason `undelivered`), not left leased until
/// its TTL runs out.
#[tokio::test]
async fn a_lease_handed_to_a_long_poll_cancelled_before_it_looked_is_released() {
    let dir = TempDir(std::env::temp_dir().join(format!("leasehold-leasing-{}", Uuid::now_v7())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.0.join("db"), SqliteSync::Normal)
            .await
            .unwrap(),
    );
    let (state, _shutdown) = AppState::new(store.clone(), dir.0.clone());
    let leasing = state.leasing();
    let params = super::claim_params(
        "default".into(),
        "w".into(),
        None,
        vec!["q".into()],
        1,
        600_000,
    )
    .unwrap();
    // Polled by hand, so that nothing polls it once the lease is delivered.
    let mut claim = Box::pin(leasing.claim_or_wait(&params, Duration::from_secs(60)));
    let mut cx = Context::from_waker(Waker::noop());
    let parked = async {
        while leasing.handoffs.parked() == 0 {
            assert!(matches!(claim.as_mut().poll(&mut cx), Poll::Pending));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), parked)
        .await
        .expect("the long poll parks");
    let row = NewJobRow::sample("default", "q");
    let id = row.id;
    leasing.enqueue(Utc::now(), vec![row]).await.unwrap();
    let handed = store.get_job("default", id).await.unwrap().unwrap();
    assert_eq!(
        handed.state,
        JobState::Leased,
        "handed off to the parked claimer"
    );
    drop(claim);
    let released = async {
        loop {
            let job = store.get_job("default", id).await.unwrap().unwrap();
            if job.state == JobState::Queued {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let job = tokio::time::timeout(Duration::from_secs(10), released)
        .await
        .expect("released well before the lease's 10 minutes");
    assert_eq!(job.attempt, 0, "an undelivered attempt does not count");
    let events = store.events_after(0, 100).await.unwrap();
    let kinds: Vec<(&str, &serde_json::Value)> = events
        .iter()
        .filter(|e| e.job_id == Some(id))
        .map(|e| (e.kind.as_str(), &e.data["reason"]))
        .collect();
    assert_eq!(
        kinds,
        [
            ("enqueued", &serde_json::Value::Null),
            ("leased", &serde_json::Value::Null),
            ("released", &json!("undelivered"))
        ]
    );
}
