//! Finding jobs and acting on what was found, over a real socket on SQLite and PostgreSQL:
//! `GET /v1/jobs` by run, correlation id and enqueue time (an RFC 3339 time or a span back from
//! now); `POST /v1/cancellations` by the same filter, with a dry run first, a reason and a
//! ticket, audited; `POST /v1/replays` by run. Bad filters are named, a typo never widens what
//! is taken, and another tenant's jobs are never found nor touched.

use std::sync::Arc;

use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::keyed::{Coordinator, ROOT};

async fn enqueue(c: &Coordinator, key: &str, job: Value) -> String {
    let (s, a) = c
        .call(Some(key), Method::POST, "/v1/jobs", Some(job), &[])
        .await;
    assert_eq!(s, 201, "{a}");
    a["id"].as_str().unwrap().to_owned()
}

async fn submit_run(c: &Coordinator, key: &str) -> (String, Vec<String>) {
    let body = json!({"name": "etl", "jobs": [
        {"key": "extract", "kind": "k", "queue": "etl"},
        {"key": "load", "kind": "k", "queue": "etl", "depends_on": ["extract"]},
    ]});
    let (s, run) = c
        .call(Some(key), Method::POST, "/v1/runs", Some(body), &[])
        .await;
    assert_eq!(s, 201, "{run}");
    let jobs = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_owned())
        .collect();
    (run["id"].as_str().unwrap().to_owned(), jobs)
}

/// The ids `GET /v1/jobs?<query>` answers, newest first.
async fn found(c: &Coordinator, key: &str, query: &str) -> Vec<String> {
    let (s, a) = c
        .call(
            Some(key),
            Method::GET,
            &format!("/v1/jobs?{query}"),
            None,
            &[],
        )
        .await;
    assert_eq!(s, 200, "{query}: {a}");
    a["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn state_of(c: &Coordinator, key: &str, id: &str) -> Value {
    let (_, job) = c
        .call(Some(key), Method::GET, &format!("/v1/jobs/{id}"), None, &[])
        .await;
    job["state"].clone()
}

async fn jobs_are_found_by_run_correlation_id_and_time(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, alpha) = c.key("alpha", &["jobs:read", "jobs:write", "runs"]).await;
    let (_, beta) = c.key("beta", &["jobs:read", "jobs:write", "runs"]).await;
    let early = enqueue(
        &c,
        &alpha,
        json!({"queue": "mail", "kind": "send", "correlation_id": "order-1"}),
    )
    .await;
    c.clock.advance_ms(2 * 3600 * 1000);
    let (run, run_jobs) = submit_run(&c, &alpha).await;
    let late = enqueue(
        &c,
        &alpha,
        json!({"queue": "mail", "kind": "send", "correlation_id": "order-2"}),
    )
    .await;
    // Beta's job with the same correlation id and beta's own run.
    enqueue(
        &c,
        &beta,
        json!({"queue": "mail", "kind": "send", "correlation_id": "order-1"}),
    )
    .await;
    let (beta_run, _) = submit_run(&c, &beta).await;

    let mut of_run = found(&c, &alpha, &format!("run_id={run}")).await;
    of_run.sort();
    let mut expected = run_jobs.clone();
    expected.sort();
    assert_eq!(of_run, expected);
    assert_eq!(
        found(&c, &alpha, "correlation_id=order-1").await,
        vec![early.clone()]
    );
    // A span back from the (moved) clock, and the same bound as an RFC 3339 time.
    let recent = found(&c, &alpha, "since=1h").await;
    assert_eq!(recent.len(), 3, "the run's two jobs and the late one");
    assert!(!recent.contains(&early));
    assert_eq!(found(&c, &alpha, "until=1h").await, vec![early.clone()]);
    let cut = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let q = format!("until={}", cut.replace('+', "%2B"));
    assert_eq!(found(&c, &alpha, &q).await, vec![early.clone()]);
    // Filters combine.
    assert_eq!(
        found(&c, &alpha, "since=1h&queue=mail&correlation_id=order-2").await,
        vec![late]
    );
    // Another tenant's run and correlation id find nothing of theirs.
    assert!(
        found(&c, &alpha, &format!("run_id={beta_run}"))
            .await
            .is_empty()
    );
    assert_eq!(found(&c, &beta, "correlation_id=order-1").await.len(), 1);
    assert!(
        !found(&c, &beta, "correlation_id=order-1")
            .await
            .contains(&early)
    );

    for (query, field) in [
        ("run_id=not-a-uuid", "run_id"),
        ("since=yesterday", "since"),
        ("until=5w", "until"),
        ("since=99999d", "since"),
        ("run=abc", "run"),
        ("correlation_id=", "correlation_id"),
    ] {
        let (s, a) = c
            .call(
                Some(&alpha),
                Method::GET,
                &format!("/v1/jobs?{query}"),
                None,
                &[],
            )
            .await;
        assert_eq!(s, 422, "{query}: {a}");
        assert_eq!(a["error"]["details"]["field"], field, "{query}: {a}");
    }
}

async fn jobs_are_cancelled_by_filter_after_a_dry_run(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, ops) = c
        .key(
            "alpha",
            &["jobs:read", "jobs:write", "runs", "worker", "admin"],
        )
        .await;
    let (_, reader) = c.key("alpha", &["jobs:read"]).await;
    let (_, beta) = c.key("beta", &["jobs:read", "jobs:write"]).await;
    // A leased job of the filter is asked to stop; the others are cancelled at once.
    let lease = c
        .enqueue_and_lease(&ops, json!({"queue": "etl", "kind": "k"}))
        .await;
    let leased = lease["job"]["id"].as_str().unwrap().to_owned();
    let (run, run_jobs) = submit_run(&c, &ops).await;
    let other = enqueue(&c, &ops, json!({"queue": "mail", "kind": "send"})).await;
    let beta_job = enqueue(&c, &beta, json!({"queue": "etl", "kind": "k"})).await;
    let body = |extra: Value| {
        let mut b = json!({"queue": "etl", "reason": "bad deploy", "ticket": "INC-9"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let post = |key: String, b: Value| {
        let c = &c;
        async move {
            c.call(Some(&key), Method::POST, "/v1/cancellations", Some(b), &[])
                .await
        }
    };

    let (s, a) = post(reader.clone(), body(json!({}))).await;
    assert_eq!(s, 403, "{a}");
    for missing in ["reason", "ticket"] {
        let mut b = body(json!({}));
        b.as_object_mut().unwrap().remove(missing);
        let (s, a) = post(ops.clone(), b).await;
        assert_eq!((s, &a["error"]["details"]["field"]), (422, &json!(missing)));
    }
    for (extra, field) in [
        (json!({"state": "dead"}), "state"),
        (json!({"queues": ["etl"]}), "queues"),
        (json!({"since": "later"}), "since"),
        (json!({"limit": 0}), "limit"),
    ] {
        let (s, a) = post(ops.clone(), body(extra.clone())).await;
        assert_eq!(s, 422, "{extra}: {a}");
        assert!(
            a["error"]["details"]["field"]
                .as_str()
                .unwrap_or_default()
                .contains(field)
                || a["error"]["message"].as_str().unwrap().contains(field),
            "{extra}: {a}"
        );
    }

    // A dry run names the run's two jobs (one queued, one blocked) and the leased one, and
    // changes nothing.
    let (s, dry) = post(ops.clone(), body(json!({"dry_run": true}))).await;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(
        (dry["matched"].clone(), dry["cancelled"].clone()),
        (json!(3), json!(0))
    );
    let mut named: Vec<String> = dry["job_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    named.sort();
    let mut expected = run_jobs.clone();
    expected.push(leased.clone());
    expected.sort();
    assert_eq!(named, expected);
    assert_eq!(state_of(&c, &ops, &run_jobs[0]).await, "queued");
    // A state narrows it.
    let (_, only) = post(
        ops.clone(),
        body(json!({"dry_run": true, "state": "blocked"})),
    )
    .await;
    assert_eq!(only["job_ids"], json!([run_jobs[1]]));
    assert!(dry.get("audit_event_id").is_none());

    let (s, done) = post(ops.clone(), body(json!({}))).await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(
        (done["matched"].clone(), done["cancelled"].clone()),
        (json!(3), json!(3))
    );
    for id in &run_jobs {
        assert_eq!(state_of(&c, &ops, id).await, "cancelled");
    }
    let (_, job) = c
        .call(
            Some(&ops),
            Method::GET,
            &format!("/v1/jobs/{leased}"),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (job["state"].clone(), job["cancel_requested"].clone()),
        (json!("leased"), json!(true))
    );
    assert_eq!(job["cancel_reason"], "bad deploy");
    assert_eq!(state_of(&c, &ops, &other).await, "queued", "another queue");
    assert_eq!(
        state_of(&c, &beta, &beta_job).await,
        "queued",
        "another tenant"
    );
    let (_, trail) = c
        .call(Some(&ops), Method::GET, "/v1/audit", None, &[])
        .await;
    let record = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["action"] == "jobs.cancel")
        .expect("the cancellation is audited")
        .clone();
    assert_eq!(record["id"], done["audit_event_id"]);
    assert_eq!(record["data"]["ticket"], "INC-9");
    assert_eq!(record["data"]["target"]["cancelled"], 3);

    // Again: nothing is left to cancel but the leased job, already asked.
    let (_, again) = post(ops.clone(), body(json!({"run_id": run}))).await;
    assert_eq!(
        (again["matched"].clone(), again["cancelled"].clone()),
        (json!(0), json!(0))
    );
}

async fn dead_jobs_of_one_run_are_replayed(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, ops) = c
        .key(
            "alpha",
            &["jobs:read", "jobs:write", "runs", "worker", "orch:backfill"],
        )
        .await;
    let mut dead = Vec::new();
    for corr in ["a", "b"] {
        let job =
            json!({"queue": "imports", "kind": "k", "max_attempts": 1, "correlation_id": corr});
        let lease = c.enqueue_and_lease(&ops, job).await;
        let id = lease["job"]["id"].as_str().unwrap().to_owned();
        let (s, a) = c
            .call(
                Some(&ops),
                Method::POST,
                &format!("/v1/jobs/{id}/fail"),
                Some(json!({"fencing_token": lease["fencing_token"],
                            "error": {"class": "E", "message": "m", "retryable": false}})),
                &[],
            )
            .await;
        assert_eq!((s, &a["state"]), (200, &json!("dead")), "{a}");
        dead.push(id);
    }
    let (s, done) = c
        .call(
            Some(&ops),
            Method::POST,
            "/v1/replays",
            Some(json!({"correlation_id": "b", "since": "1h", "reason": "fixed", "ticket": "T-1"})),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(
        (done["matched"].clone(), done["replayed"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(state_of(&c, &ops, &dead[1]).await, "queued");
    assert_eq!(state_of(&c, &ops, &dead[0]).await, "dead");
}

crate::on_both_backends!(
    jobs_are_found_by_run_correlation_id_and_time,
    jobs_are_cancelled_by_filter_after_a_dry_run,
    dead_jobs_of_one_run_are_replayed
);
