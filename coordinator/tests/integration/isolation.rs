//! Another tenant's data is invisible, over a real socket on SQLite and PostgreSQL: scheduler
//! records and artifacts answer as if they did not exist, and nothing (not even an upload of the
//! same bytes, or a completion naming them) tells a tenant what another stored.

use std::sync::Arc;

use chrono::{Duration as Span, Utc};
use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::digest_of;
use crate::common::keyed::{Coordinator, ROOT};

async fn scheduler_records_belong_to_their_tenant(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, alpha) = c.key("alpha", &["runs"]).await;
    let (_, beta) = c.key("beta", &["runs"]).await;
    let record = json!({
        "started_at": "2026-12-05T10:00:00Z", "completed_at": "2026-12-05T10:01:00Z",
        "status": "failed", "tables_assessed": 3, "tables_skipped": 0, "tables_healthy": 2,
        "jobs_submitted": 1, "jobs_completed": 0, "jobs_failed": 1, "dry_run": false,
        "error": "alpha's warehouse password expired"
    });
    let (status, body) = c
        .call(
            Some(&alpha),
            Method::POST,
            "/orchestrator/runs",
            Some(record),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, mine) = c
        .call(Some(&alpha), Method::GET, "/orchestrator/runs", None, &[])
        .await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    let (status, theirs) = c
        .call(Some(&beta), Method::GET, "/orchestrator/runs", None, &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        theirs,
        json!([]),
        "beta sees none of alpha's records or their error texts"
    );
    let (_, root) = c
        .call(Some(ROOT), Method::GET, "/orchestrator/runs", None, &[])
        .await;
    assert_eq!(root, json!([]), "the single key is tenant default's");
}

/// Enqueues one job on `queue` with `key`, leases it, and completes it naming `digest`: the
/// completion's status and body.
async fn complete_naming(c: &Coordinator, key: &str, queue: &str, digest: &str) -> (u16, Value) {
    let lease = c
        .enqueue_and_lease(key, json!({"queue": queue, "kind": "k", "payload": {}}))
        .await;
    let id = lease["job"]["id"].as_str().unwrap();
    c.call(
        Some(key),
        Method::POST,
        &format!("/v1/jobs/{id}/complete"),
        Some(json!({
            "fencing_token": lease["fencing_token"],
            "result": {},
            "artifacts": [{"name": "report", "digest": digest, "size": 14, "media_type": "text/plain"}],
        })),
        &[],
    )
    .await
}

async fn artifacts_belong_to_their_tenant(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let scopes = &["worker", "jobs:write", "jobs:read"];
    let (_, alpha) = c.key("alpha", scopes).await;
    let (_, beta) = c.key("beta", scopes).await;
    let bytes = b"alpha's report";
    let digest = digest_of(bytes);
    let never = digest_of(b"bytes nobody stored");

    let (status, body) = c.put_artifact(&alpha, &digest, bytes).await;
    assert_eq!((status, &body["created"]), (201, &json!(true)), "{body}");
    let (status, body) = c.put_artifact(&alpha, &digest, bytes).await;
    assert_eq!((status, &body["created"]), (200, &json!(false)), "{body}");
    assert_eq!(c.get_artifact(&alpha, &digest).await, (200, bytes.to_vec()));

    // For beta, alpha's digest is a digest nobody stored: the same status and the same words.
    let (status, theirs) = c.get_artifact(&beta, &digest).await;
    let (never_status, nobody) = c.get_artifact(&beta, &never).await;
    assert_eq!((status, never_status), (404, 404));
    let text = |b: &[u8], d: &str| {
        let v: Value = serde_json::from_slice(b).unwrap();
        (
            v["error"]["code"].clone(),
            v["error"]["message"]
                .as_str()
                .unwrap()
                .replace(d, "<digest>"),
        )
    };
    assert_eq!(text(&theirs, &digest), text(&nobody, &never));
    // A completion naming it is refused as naming bytes nobody stored.
    let (status, refused) = complete_naming(&c, &beta, "beta-q", &digest).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["details"]["field"], "artifacts[0].digest");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("which is not stored"),
        "{refused}"
    );
    let (_, refused_never) = complete_naming(&c, &beta, "beta-q", &never).await;
    assert_eq!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&digest, "<digest>"),
        refused_never["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&never, "<digest>"),
    );
    // Uploading the same bytes is a new upload for beta, never "already stored".
    let (status, body) = c.put_artifact(&beta, &digest, bytes).await;
    assert_eq!((status, &body["created"]), (201, &json!(true)), "{body}");
    assert_eq!(c.get_artifact(&beta, &digest).await, (200, bytes.to_vec()));
    let (status, done) = complete_naming(&c, &beta, "beta-q", &digest).await;
    assert_eq!(status, 200, "{done}");
    // The single key is tenant default's: it stored nothing.
    assert_eq!(c.get_artifact(ROOT, &digest).await.0, 404);
}

/// The retention sweep forgets the owners of a blob it deleted, except a tenant that uploaded
/// it again after the sweep's cutoff.
async fn collected_blobs_lose_their_owners(store: Arc<dyn Store>) {
    let digest = digest_of(b"old bytes");
    let t0 = Utc::now();
    assert!(store.own_artifact("alpha", &digest, t0).await.unwrap());
    assert!(!store.own_artifact("alpha", &digest, t0).await.unwrap());
    assert!(
        store
            .own_artifact("beta", &digest, t0 + Span::hours(2))
            .await
            .unwrap()
    );
    let forgotten = store
        .forget_artifact_owners(std::slice::from_ref(&digest), t0 + Span::hours(1))
        .await
        .unwrap();
    assert_eq!(forgotten, 1);
    assert!(!store.owns_artifact("alpha", &digest).await.unwrap());
    assert!(store.owns_artifact("beta", &digest).await.unwrap());
    // An older upload never moves the recorded time back.
    assert!(!store.own_artifact("beta", &digest, t0).await.unwrap());
    store
        .forget_artifact_owners(std::slice::from_ref(&digest), t0 + Span::hours(1))
        .await
        .unwrap();
    assert!(store.owns_artifact("beta", &digest).await.unwrap());
}

/// `/metrics` is open: it names no tenant, counts only live jobs, and forgets a queue a while
/// after its last live job.
async fn metrics_name_no_tenant_and_forget_vanished_queues(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, None).await;
    let scrape = || async {
        c.http
            .get(format!("{}/metrics", c.served.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let tenant = [("leasehold-tenant", "tenant-with-a-secret-name")];
    let (status, job) = c
        .call(
            None,
            Method::POST,
            "/v1/jobs",
            Some(json!({"queue": "short-lived", "kind": "k", "payload": {}})),
            &tenant,
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let text = scrape().await;
    assert!(
        text.contains("leasehold_jobs{queue=\"short-lived\",state=\"queued\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("orchestrator_queue_depth{queue=\"short-lived\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("tenant-with-a-secret-name"), "{text}");
    let id = job["id"].as_str().unwrap();
    let (status, _) = c
        .call(
            None,
            Method::POST,
            &format!("/v1/jobs/{id}/cancel"),
            Some(json!({})),
            &tenant,
        )
        .await;
    assert_eq!(status, 200);
    // Drained: zero for a while, so an alert sees the drop...
    let text = scrape().await;
    assert!(
        text.contains("orchestrator_queue_depth{queue=\"short-lived\"} 0\n"),
        "{text}"
    );
    // ...then forgotten.
    c.clock.advance_ms(16 * 60 * 1000);
    let text = scrape().await;
    assert!(!text.contains("short-lived"), "{text}");
    assert!(
        text.contains("# TYPE orchestrator_queue_depth gauge"),
        "{text}"
    );
}

/// What every tenant shares (the ledger archive, a sweep of every tenant) is for the
/// coordinator's own key only.
async fn shared_things_are_for_the_coordinators_own_key(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, admin) = c
        .key("alpha", &["admin", "events", "jobs:read", "jobs:write"])
        .await;
    for (method, path) in [
        (Method::GET, "/v1/ledger/segments"),
        (Method::POST, "/v1/retention/sweep"),
    ] {
        let (status, refused) = c.call(Some(&admin), method.clone(), path, None, &[]).await;
        assert_eq!(status, 403, "{path}: {refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains("ORCHESTRATOR_API_KEY"),
            "{refused}"
        );
        let (status, body) = c.call(Some(ROOT), method, path, None, &[]).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

crate::on_both_backends!(
    shared_things_are_for_the_coordinators_own_key,
    metrics_name_no_tenant_and_forget_vanished_queues,
    scheduler_records_belong_to_their_tenant,
    artifacts_belong_to_their_tenant,
    collected_blobs_lose_their_owners,
);
