//! Which finished jobs a sweep removes: exactly those past their window, runs whole, overrides
//! winning over defaults, one sweep at a time across replicas.

use std::sync::Arc;

use leasehold_coordinator::clock::OffsetClock;
use leasehold_coordinator::store::Store;
use serde_json::json;

use super::{Coord, DAY_MS, HOUR_MS, two_replicas};

async fn removes_exactly_the_finished_jobs_past_their_window(store: Arc<dyn Store>) {
    // Defaults: succeeded 24h, dead and cancelled 7d.
    let c = Coord::start(store, OffsetClock::default(), |_| {}).await;
    let jobs_before = c.metric("leasehold_retention_jobs_removed_total").await;
    let ok_before = c
        .metric("leasehold_retention_sweeps_total{result=\"ok\"}")
        .await;
    let done = c.succeeded("r", None, json!([])).await;
    let dead = c.dead("r").await;
    let cancelled = c.enqueue("r", None).await;
    let r = c
        .call(
            "POST",
            &format!("/v1/jobs/{cancelled}/cancel"),
            Some(json!({"reason": "no"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (leased, _) = {
        c.enqueue("r", None).await;
        c.claim("r", None).await
    };
    let queued = c.enqueue("r", None).await;
    let later = c.enqueue("r-later", None).await;

    // Nothing is past a window yet.
    let report = c.sweep().await;
    assert_eq!(report["swept"], true);
    assert_eq!(report["jobs_removed"], 0, "{report}");

    c.clock.advance_ms(25 * HOUR_MS);
    let (later_id, token) = c.claim("r-later", None).await;
    assert_eq!(later_id, later);
    c.call(
        "POST",
        &format!("/v1/jobs/{later}/complete"),
        Some(json!({"fencing_token": token})),
    )
    .await;
    let report = c.sweep().await;
    assert_eq!(report["jobs_removed"], 1, "{report}");
    assert_eq!(c.job_status(&done, None).await, 404);
    for kept in [&dead, &cancelled, &leased, &queued, &later] {
        assert_eq!(c.job_status(kept, None).await, 200, "{kept} was removed");
    }

    c.clock.advance_ms(7 * DAY_MS);
    let report = c.sweep().await;
    assert_eq!(report["jobs_removed"], 3, "{report}");
    for gone in [&dead, &cancelled, &later] {
        assert_eq!(c.job_status(gone, None).await, 404, "{gone} was kept");
    }
    // Live jobs stay however old they are.
    for kept in [&leased, &queued] {
        assert_eq!(c.job_status(kept, None).await, 200, "{kept} was removed");
    }
    // Sweeping again finds nothing more.
    assert_eq!(c.sweep().await["jobs_removed"], 0);

    // The sweep is visible in metrics (other tests sweep too, so at least ours).
    assert!(c.metric("leasehold_retention_jobs_removed_total").await >= jobs_before + 4.0);
    assert!(
        c.metric("leasehold_retention_sweeps_total{result=\"ok\"}")
            .await
            >= ok_before + 4.0
    );
    assert!(
        c.metric("leasehold_retention_last_sweep_timestamp_seconds")
            .await
            > 0.0
    );
}

async fn an_override_wins_over_the_default(store: Arc<dyn Store>) {
    let c = Coord::start(store, OffsetClock::default(), |_| {}).await;
    // Tenant "acme": succeeded kept 1h everywhere, except queue "keep" (kept forever).
    let r = c
        .call_as(
            "PUT",
            "/v1/retention/tenant",
            Some(json!({"succeeded": "60m"})),
            Some("acme"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["succeeded"], "1h",
        "stored in its canonical spelling"
    );
    let r = c
        .call_as(
            "PUT",
            "/v1/retention/queues/keep",
            Some(json!({"succeeded": "off"})),
            Some("acme"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c
        .call_as("GET", "/v1/retention/queues/keep", None, Some("acme"))
        .await;
    assert_eq!(
        r.body,
        json!({"queue": "keep", "succeeded": "off", "succeeded_from": "queue",
               "failed": "7d", "failed_from": "default"})
    );
    let r = c
        .call_as("GET", "/v1/retention/queues/other", None, Some("acme"))
        .await;
    assert_eq!(r.body["succeeded"], "1h");
    assert_eq!(r.body["succeeded_from"], "tenant");
    let settings = c.call_as("GET", "/v1/retention", None, Some("acme")).await;
    assert_eq!(settings.body["defaults"]["succeeded"], "1d");
    assert_eq!(settings.body["tenant"]["succeeded"], "1h");
    assert_eq!(settings.body["queues"][0]["queue"], "keep");
    // Another tenant sees none of it.
    let other = c.call("GET", "/v1/retention", None).await;
    assert_eq!(other.body["tenant"], json!(null));
    assert_eq!(other.body["queues"], json!([]));

    let short = c.succeeded("q", Some("acme"), json!([])).await;
    let kept = c.succeeded("keep", Some("acme"), json!([])).await;
    let default = c.succeeded("q", None, json!([])).await;

    c.clock.advance_ms(2 * HOUR_MS);
    assert_eq!(c.sweep().await["jobs_removed"], 1);
    assert_eq!(c.job_status(&short, Some("acme")).await, 404);
    assert_eq!(c.job_status(&kept, Some("acme")).await, 200);
    assert_eq!(c.job_status(&default, None).await, 200);

    c.clock.advance_ms(400 * DAY_MS);
    assert_eq!(c.sweep().await["jobs_removed"], 1);
    assert_eq!(c.job_status(&default, None).await, 404);
    assert_eq!(c.job_status(&kept, Some("acme")).await, 200);

    // Removing the queue's override hands it back to the tenant's 1h.
    let r = c
        .call_as("DELETE", "/v1/retention/queues/keep", None, Some("acme"))
        .await;
    assert_eq!(r.status, 204);
    let r = c
        .call_as("DELETE", "/v1/retention/queues/keep", None, Some("acme"))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(c.sweep().await["jobs_removed"], 1);
    assert_eq!(c.job_status(&kept, Some("acme")).await, 404);
    let r = c
        .call_as("DELETE", "/v1/retention/tenant", None, Some("acme"))
        .await;
    assert_eq!(r.status, 204);
}

async fn bad_policies_are_refused_naming_the_field(store: Arc<dyn Store>) {
    let c = Coord::start(store, OffsetClock::default(), |_| {}).await;
    for (path, body, field) in [
        (
            "/v1/retention/tenant",
            json!({"succeeded": "7 days"}),
            "succeeded",
        ),
        ("/v1/retention/tenant", json!({"failed": "0s"}), "failed"),
        ("/v1/retention/tenant", json!({}), "succeeded"),
        ("/v1/retention/tenant", json!({"kept": "1d"}), "kept"),
        (
            "/v1/retention/queues/q",
            json!({"succeeded": 3600}),
            "succeeded",
        ),
        (
            "/v1/retention/queues/-bad",
            json!({"failed": "1d"}),
            "queue",
        ),
    ] {
        let r = c.call("PUT", path, Some(body.clone())).await;
        assert_eq!(r.status, 422, "{path} {body}: {}", r.body);
        assert_eq!(
            r.body["error"]["details"]["field"], field,
            "{path} {body}: {}",
            r.body
        );
    }
    let settings = c.call("GET", "/v1/retention", None).await.body;
    assert_eq!(settings["tenant"], json!(null), "nothing was stored");
    assert_eq!(settings["queues"], json!([]));
}

async fn runs_go_whole_once_every_job_is_past_its_window(store: Arc<dyn Store>) {
    let c = Coord::start(store, OffsetClock::default(), |_| {}).await;
    let r = c
        .call(
            "POST",
            "/v1/runs",
            Some(json!({"jobs": [{"key": "a", "kind": "k", "queue": "dag"},
                                 {"key": "b", "kind": "k", "queue": "dag", "depends_on": ["a"]}]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let run = r.body["id"].as_str().unwrap().to_owned();
    let (a, token) = c.claim("dag", None).await;
    c.call(
        "POST",
        &format!("/v1/jobs/{a}/complete"),
        Some(json!({"fencing_token": token})),
    )
    .await;
    // `a` is long past its window, but its run is still in progress: nothing goes.
    c.clock.advance_ms(30 * HOUR_MS);
    assert_eq!(c.sweep().await["jobs_removed"], 0);
    assert_eq!(c.job_status(&a, None).await, 200);

    let (b, token) = c.claim("dag", None).await;
    c.call(
        "POST",
        &format!("/v1/jobs/{b}/complete"),
        Some(json!({"fencing_token": token})),
    )
    .await;
    // Finished, but `b` is inside its window: the run stays whole.
    c.clock.advance_ms(HOUR_MS);
    assert_eq!(c.sweep().await["jobs_removed"], 0);
    assert_eq!(
        c.call("GET", &format!("/v1/runs/{run}"), None).await.status,
        200
    );

    c.clock.advance_ms(24 * HOUR_MS);
    let report = c.sweep().await;
    assert_eq!(report["runs_removed"], 1, "{report}");
    assert_eq!(report["jobs_removed"], 2, "{report}");
    assert_eq!(
        c.call("GET", &format!("/v1/runs/{run}"), None).await.status,
        404
    );
    assert_eq!(c.job_status(&a, None).await, 404);
    assert_eq!(c.job_status(&b, None).await, 404);

    // A failed run retried after its window is live again and kept.
    let r = c
        .call(
            "POST",
            "/v1/runs",
            Some(json!({"jobs": [{"key": "x", "kind": "k", "queue": "dag2"}]})),
        )
        .await;
    let run = r.body["id"].as_str().unwrap().to_owned();
    let (x, token) = c.claim("dag2", None).await;
    c.call(
        "POST",
        &format!("/v1/jobs/{x}/fail"),
        Some(json!({"fencing_token": token, "error": {"retryable": false}})),
    )
    .await;
    c.clock.advance_ms(8 * DAY_MS);
    let r = c.call("POST", &format!("/v1/jobs/{x}/retry"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(c.sweep().await["jobs_removed"], 0);
    assert_eq!(
        c.call("GET", &format!("/v1/runs/{run}"), None).await.status,
        200
    );
}

/// The coordinator sweeps on its own schedule: no trigger needed.
async fn the_scheduled_sweep_removes_expired_jobs_by_itself(store: Arc<dyn Store>) {
    let every = std::time::Duration::from_millis(20);
    let c = Coord::start_scheduled(store, OffsetClock::default(), |_| {}, Some(every)).await;
    let done = c.succeeded("sched", None, json!([])).await;
    c.clock.advance_ms(2 * DAY_MS);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while c.job_status(&done, None).await != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scheduled sweep removed the job"
        );
        tokio::time::sleep(every).await;
    }
}

on_both_backends!(
    the_scheduled_sweep_removes_expired_jobs_by_itself,
    removes_exactly_the_finished_jobs_past_their_window,
    an_override_wins_over_the_default,
    bad_policies_are_refused_naming_the_field,
    runs_go_whole_once_every_job_is_past_its_window,
);

/// Two replicas sweeping at once: every expired job removed exactly once, nothing else.
async fn concurrent_sweeps_remove_each_job_once(postgres: bool, test: &str) {
    let Some((a, b, _guard)) = two_replicas(postgres, test).await else {
        return;
    };
    let clock = OffsetClock::default();
    let one = Coord::start(a.clone(), clock.clone(), |c| c.batch = 2).await;
    let two = Coord::start(b, clock.clone(), |c| c.batch = 2).await;
    if postgres {
        // While one replica holds the sweep lock, the other skips its turn.
        let lock = a.retention().try_lock_sweep().await.unwrap().unwrap();
        let skipped = two.sweep().await;
        assert_eq!(skipped["swept"], false, "{skipped}");
        lock.release().await;
        assert_eq!(two.sweep().await["swept"], true);
    }
    let mut expired = Vec::new();
    for _ in 0..5 {
        expired.push(one.succeeded("both", None, json!([])).await);
    }
    clock.advance_ms(2 * DAY_MS);
    let kept = two.succeeded("both", None, json!([])).await;
    let (r1, r2) = tokio::join!(one.sweep(), two.sweep());
    let removed = r1["jobs_removed"].as_u64().unwrap() + r2["jobs_removed"].as_u64().unwrap();
    assert_eq!(removed, 5, "{r1} {r2}");
    assert!(r1["swept"] == true || r2["swept"] == true, "{r1} {r2}");
    for id in &expired {
        assert_eq!(one.job_status(id, None).await, 404);
    }
    assert_eq!(two.job_status(&kept, None).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_sweeps_remove_each_job_once() {
    concurrent_sweeps_remove_each_job_once(false, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_sweeps_remove_each_job_once() {
    concurrent_sweeps_remove_each_job_once(true, "retention::jobs::postgres_concurrent_sweeps")
        .await;
}
