//! Tenant quotas over a real socket on SQLite and PostgreSQL: an enqueue (one job, a batch, a
//! run) past `max_queued` is 429 `quota_exceeded` with `Retry-After` and stores nothing; replays
//! are never refused; changing a quota needs `orch:quota`, a reason and a ticket, and is
//! audited; one tenant's quota is invisible to another. [`exactness`]: concurrent enqueuers —
//! two replicas on one PostgreSQL schema included — never store past the quota.

mod exactness;

use std::sync::Arc;

use leasehold_coordinator::store::{EventFilter, JobFilter, Store};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::keyed::{Coordinator, ROOT};

/// Every scope a tenant's operator needs here.
const OPS: &[&str] = &[
    "jobs:read",
    "jobs:write",
    "runs",
    "worker",
    "admin",
    "orch:quota",
];

/// How many jobs and events about jobs and runs `tenant` has stored (audit records of quota
/// changes aside).
async fn stored(store: &dyn Store, tenant: &str) -> (usize, usize) {
    let jobs = store
        .list_jobs(&JobFilter {
            tenant: tenant.into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let events = store
        .list_events(&EventFilter {
            tenant: Some(tenant.into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let events = events.iter().filter(|e| e.kind != "audit").count();
    (jobs.len(), events)
}

fn job(n: u32) -> Value {
    json!({"queue": "q", "kind": "k", "payload": {"n": n}})
}

async fn put_quota(c: &Coordinator, key: &str, limits: Value) -> (u16, Value) {
    let mut body = json!({"reason": "noisy neighbour", "ticket": "OPS-1"});
    for (k, v) in limits.as_object().unwrap() {
        body[k] = v.clone();
    }
    c.call(Some(key), Method::PUT, "/v1/quota", Some(body), &[])
        .await
}

/// Asserts a `quota_exceeded` refusal with its numbers and `Retry-After`.
#[track_caller]
fn refused(
    (status, headers, body): &(u16, reqwest::header::HeaderMap, Value),
    limit: u64,
    waiting: u64,
    adding: u64,
) {
    assert_eq!(*status, 429, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    let details = &body["error"]["details"];
    assert_eq!(details["quota"], "max_queued", "{body}");
    assert_eq!(
        (&details["limit"], &details["waiting"], &details["adding"]),
        (&json!(limit), &json!(waiting), &json!(adding)),
        "{body}"
    );
    assert_eq!(headers.get("retry-after").unwrap(), "5");
}

async fn an_enqueue_past_the_quota_is_refused_whole_with_nothing_stored(store: Arc<dyn Store>) {
    let c = Coordinator::start(store.clone(), Some(ROOT)).await;
    let (_, alpha) = c.key("alpha", OPS).await;
    let (status, quota) = put_quota(&c, &alpha, json!({"max_queued": 3})).await;
    assert_eq!(status, 200, "{quota}");
    assert_eq!(
        (&quota["max_queued"], &quota["max_leased"]),
        (&json!(3), &Value::Null)
    );
    for n in 0..2 {
        let (status, body) = c
            .call(Some(&alpha), Method::POST, "/v1/jobs", Some(job(n)), &[])
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let before = stored(&*store, "alpha").await;

    // A batch that does not fit is refused whole: not even its first job is stored.
    let batch = json!({"jobs": [job(10), job(11)]});
    let answer = c
        .call_full(Some(&alpha), Method::POST, "/v1/jobs", Some(batch), &[])
        .await;
    refused(&answer, 3, 2, 2);
    assert_eq!(answer.2["error"]["details"]["tenant"], "alpha");
    // So is a run whose jobs do not fit (a blocked child counts like a queued job).
    let run = json!({"run_token": "r1", "jobs": [
        {"key": "a", "kind": "k", "queue": "q"},
        {"key": "b", "kind": "k", "queue": "q", "depends_on": ["a"]}]});
    let answer = c
        .call_full(
            Some(&alpha),
            Method::POST,
            "/v1/runs",
            Some(run.clone()),
            &[],
        )
        .await;
    refused(&answer, 3, 2, 2);
    assert_eq!(stored(&*store, "alpha").await, before, "nothing stored");

    // The last slot is taken; the next job is refused.
    let (status, _) = c
        .call(
            Some(&alpha),
            Method::POST,
            "/v1/jobs",
            Some(json!({"jobs": [job(3)]})),
            &[],
        )
        .await;
    assert_eq!(status, 201);
    let full = stored(&*store, "alpha").await;
    let answer = c
        .call_full(Some(&alpha), Method::POST, "/v1/jobs", Some(job(4)), &[])
        .await;
    refused(&answer, 3, 3, 1);
    assert_eq!(stored(&*store, "alpha").await, full, "nothing stored");

    // A job scheduled for later counts; a leased one does not: a claim frees a slot.
    let claim = json!({"worker_id": "w", "queues": ["q"], "max_jobs": 1, "wait_ms": 0});
    let (status, leased) = c
        .call(Some(&alpha), Method::POST, "/v1/leases", Some(claim), &[])
        .await;
    assert_eq!(
        (status, leased["leases"].as_array().unwrap().len()),
        (200, 1)
    );
    let later = json!({"queue": "q", "kind": "k", "run_at": "2999-01-01T00:00:00Z"});
    let (status, _) = c
        .call(Some(&alpha), Method::POST, "/v1/jobs", Some(later), &[])
        .await;
    assert_eq!(status, 201);
    let answer = c
        .call_full(Some(&alpha), Method::POST, "/v1/jobs", Some(job(5)), &[])
        .await;
    refused(&answer, 3, 3, 1);

    let (status, usage) = c
        .call(Some(&alpha), Method::GET, "/v1/quota", None, &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(usage["tenant"], "alpha");
    assert_eq!(usage["quota"]["max_queued"], 3);
    assert_eq!(
        usage["usage"],
        json!({"queued": 3, "blocked": 0, "leased": 1})
    );

    // Raised, the run fits: its blocked child counts.
    put_quota(&c, &alpha, json!({"max_queued": 5})).await;
    let (status, body) = c
        .call(Some(&alpha), Method::POST, "/v1/runs", Some(run), &[])
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, usage) = c
        .call(Some(&alpha), Method::GET, "/v1/quota", None, &[])
        .await;
    assert_eq!(
        usage["usage"],
        json!({"queued": 4, "blocked": 1, "leased": 1})
    );
}

async fn replays_are_never_refused(store: Arc<dyn Store>) {
    let c = Coordinator::start(store.clone(), Some(ROOT)).await;
    let (_, alpha) = c.key("alpha", OPS).await;
    put_quota(&c, &alpha, json!({"max_queued": 2})).await;
    let keyed = |key: &str| json!({"queue": "q", "kind": "k", "idempotency_key": key});
    let (status, first) = c
        .call(
            Some(&alpha),
            Method::POST,
            "/v1/jobs",
            Some(keyed("a")),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{first}");
    // Two jobs with one new key in a batch store one: it fits.
    let twice = json!({"jobs": [keyed("b"), keyed("b")]});
    let (status, body) = c
        .call(Some(&alpha), Method::POST, "/v1/jobs", Some(twice), &[])
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["jobs"][1]["replayed"], true);
    let full = stored(&*store, "alpha").await;

    // At the quota, then below zero room: a replay stores nothing and is answered as ever.
    for limit in [2, 0] {
        put_quota(&c, &alpha, json!({"max_queued": limit})).await;
        let (status, headers, replay) = c
            .call_full(
                Some(&alpha),
                Method::POST,
                "/v1/jobs",
                Some(keyed("a")),
                &[],
            )
            .await;
        assert_eq!(status, 200, "{replay}");
        assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
        assert_eq!(replay["id"], first["id"]);
        let header = [("idempotency-key", "b")];
        let body = json!({"queue": "q", "kind": "k"});
        let (status, _) = c
            .call(Some(&alpha), Method::POST, "/v1/jobs", Some(body), &header)
            .await;
        assert_eq!(status, 200, "the header's key replays too");
        let batch = json!({"jobs": [keyed("a"), keyed("b")]});
        let (status, body) = c
            .call(Some(&alpha), Method::POST, "/v1/jobs", Some(batch), &[])
            .await;
        assert_eq!(status, 200, "{body}");
        // One new job beside the replays is counted, and refuses the batch.
        let mixed = json!({"jobs": [keyed("a"), keyed("c")]});
        let answer = c
            .call_full(Some(&alpha), Method::POST, "/v1/jobs", Some(mixed), &[])
            .await;
        refused(&answer, limit, 2, 1);
    }
    assert_eq!(stored(&*store, "alpha").await, full, "nothing stored");
}

async fn changing_a_quota_needs_its_scope_a_reason_and_a_ticket_and_is_audited(
    store: Arc<dyn Store>,
) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, reader) = c.key("alpha", &["jobs:read", "jobs:write", "admin"]).await;
    let (ops_id, ops) = c.key("alpha", &["orch:quota"]).await;
    let (_, auditor) = c.key("alpha", &["admin"]).await;
    let body = json!({"max_queued": 5, "max_leased": 2, "reason": "r", "ticket": "T-1"});

    // The scope: `orch:quota` to change, `jobs:read` to read.
    for method in [Method::PUT, Method::DELETE] {
        let path = "/v1/quota?reason=r&ticket=t";
        let (status, refusal) = c
            .call(Some(&reader), method, path, Some(body.clone()), &[])
            .await;
        assert_eq!(status, 403, "{refusal}");
        assert_eq!(
            refusal["error"]["details"]["needed_scopes"],
            json!(["orch:quota"])
        );
    }
    let (status, _) = c
        .call(Some(&ops), Method::GET, "/v1/quota", None, &[])
        .await;
    assert_eq!(status, 403, "reading needs jobs:read");
    let (status, none) = c
        .call(Some(&reader), Method::GET, "/v1/quota", None, &[])
        .await;
    assert_eq!((status, &none["quota"]), (200, &Value::Null));

    // The justification, named when missing or blank.
    for (missing, blank) in [("reason", json!(null)), ("ticket", json!("  "))] {
        let mut body = body.clone();
        body[missing] = blank;
        let (status, refusal) = c
            .call(Some(&ops), Method::PUT, "/v1/quota", Some(body), &[])
            .await;
        assert_eq!(status, 422, "{refusal}");
        assert_eq!(refusal["error"]["details"]["field"], missing);
    }
    for (path, missing) in [
        ("/v1/quota", "reason"),
        ("/v1/quota?reason=why", "ticket"),
        ("/v1/quota?reason=why&ticket=T&queue=q", "queue"),
    ] {
        let (status, refusal) = c.call(Some(&ops), Method::DELETE, path, None, &[]).await;
        assert_eq!(status, 422, "{path}: {refusal}");
        assert_eq!(refusal["error"]["details"]["field"], missing);
    }

    // Set, replaced, removed: each recorded with who, why, and what it was before.
    let (status, _) = c
        .call(
            Some(&ops),
            Method::PUT,
            "/v1/quota",
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let lower = json!({"max_queued": 1, "reason": "r2", "ticket": "T-2"});
    let (status, set) = c
        .call(Some(&ops), Method::PUT, "/v1/quota", Some(lower), &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (&set["max_queued"], &set["max_leased"]),
        (&json!(1), &Value::Null)
    );
    let path = "/v1/quota?reason=back%20to%20normal&ticket=T-3";
    let (status, _) = c.call(Some(&ops), Method::DELETE, path, None, &[]).await;
    assert_eq!(status, 204);
    let (status, gone) = c.call(Some(&ops), Method::DELETE, path, None, &[]).await;
    assert_eq!((status, &gone["error"]["code"]), (404, &json!("not_found")));

    let (status, trail) = c
        .call(Some(&auditor), Method::GET, "/v1/audit", None, &[])
        .await;
    assert_eq!(status, 200, "{trail}");
    let records: Vec<&Value> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["data"])
        .filter(|d| d["action"].as_str().unwrap().starts_with("quotas."))
        .collect();
    let actor = json!({"kind": "key", "key_id": ops_id, "key_name": "alpha test"});
    assert_eq!(
        records,
        [
            &json!({"action": "quotas.set", "actor": actor, "reason": "r", "ticket": "T-1",
                    "target": {"max_queued": 5, "max_leased": 2, "previous": null}}),
            &json!({"action": "quotas.set", "actor": actor, "reason": "r2", "ticket": "T-2",
                    "target": {"max_queued": 1, "max_leased": null,
                               "previous": {"max_queued": 5, "max_leased": 2}}}),
            &json!({"action": "quotas.delete", "actor": actor, "reason": "back to normal",
                    "ticket": "T-3", "target": {"removed": {"max_queued": 1, "max_leased": null}}}),
        ]
    );
}

async fn bad_quota_bodies_are_refused_in_the_envelope(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, ops) = c.key("alpha", OPS).await;
    let why = |extra: Value| {
        let mut body = json!({"reason": "r", "ticket": "t"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (body, field) in [
        (why(json!({"max_queued": -1})), "max_queued"),
        (why(json!({"max_leased": "5"})), "max_leased"),
        (why(json!({"max_queued": 1.5})), "max_queued"),
        (why(json!({"max_queued": 1_000_000_001u64})), "max_queued"),
        (why(json!({"max_quued": 5})), "max_quued"),
        (why(json!({})), "max_queued"),
        (
            why(json!({"max_queued": null, "max_leased": null})),
            "max_queued",
        ),
        (json!("five"), "body"),
    ] {
        let (status, refusal) = c
            .call(
                Some(&ops),
                Method::PUT,
                "/v1/quota",
                Some(body.clone()),
                &[],
            )
            .await;
        assert_eq!(status, 422, "{body}: {refusal}");
        assert_eq!(refusal["error"]["code"], "validation_failed");
        assert_eq!(
            refusal["error"]["details"]["field"], field,
            "{body}: {refusal}"
        );
    }
    let (_, typo) = c
        .call(
            Some(&ops),
            Method::PUT,
            "/v1/quota",
            Some(why(json!({"max_quued": 5}))),
            &[],
        )
        .await;
    let message = typo["error"]["message"].as_str().unwrap();
    assert!(message.contains("did you mean `max_queued`?"), "{message}");
    let not_json = c
        .http
        .put(format!("{}/v1/quota", c.served.url))
        .bearer_auth(&ops)
        .header("content-type", "application/json")
        .body("{max_queued: 5")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let body: Value = not_json.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    let (_, none) = c
        .call(Some(&ops), Method::GET, "/v1/quota", None, &[])
        .await;
    assert_eq!(none["quota"], Value::Null, "nothing was stored");
}

async fn one_tenants_quota_is_invisible_to_another(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, alpha) = c.key("alpha", OPS).await;
    let (_, beta) = c.key("beta", OPS).await;
    put_quota(&c, &alpha, json!({"max_queued": 1})).await;
    c.call(Some(&alpha), Method::POST, "/v1/jobs", Some(job(1)), &[])
        .await;

    // Beta sees no quota of its own and enqueues past alpha's limit.
    let (_, seen) = c
        .call(Some(&beta), Method::GET, "/v1/quota", None, &[])
        .await;
    assert_eq!(
        seen,
        json!({"tenant": "beta", "quota": null, "usage": {"queued": 0, "blocked": 0, "leased": 0}})
    );
    for n in 0..3 {
        let (status, _) = c
            .call(Some(&beta), Method::POST, "/v1/jobs", Some(job(n)), &[])
            .await;
        assert_eq!(status, 201);
    }
    // Naming alpha is refused; beta's own quota and its removal leave alpha's alone.
    let header = [("leasehold-tenant", "alpha")];
    let (status, _) = c
        .call(Some(&beta), Method::GET, "/v1/quota", None, &header)
        .await;
    assert_eq!(status, 403);
    let body = json!({"max_queued": 10, "reason": "r", "ticket": "t"});
    let (status, _) = c
        .call(Some(&beta), Method::PUT, "/v1/quota", Some(body), &header)
        .await;
    assert_eq!(status, 403);
    put_quota(&c, &beta, json!({"max_queued": 100})).await;
    let (status, _) = c
        .call(
            Some(&beta),
            Method::DELETE,
            "/v1/quota?reason=r&ticket=t",
            None,
            &[],
        )
        .await;
    assert_eq!(status, 204);
    let (_, mine) = c
        .call(Some(&alpha), Method::GET, "/v1/quota", None, &[])
        .await;
    assert_eq!(mine["quota"]["max_queued"], 1);
    assert_eq!(mine["usage"]["queued"], 1);
    let (status, _) = c
        .call(Some(&alpha), Method::POST, "/v1/jobs", Some(job(2)), &[])
        .await;
    assert_eq!(status, 429, "alpha's quota still holds");
    // Each trail holds its own tenant's changes only.
    for (key, tenant) in [(&alpha, "alpha"), (&beta, "beta")] {
        let (_, trail) = c.call(Some(key), Method::GET, "/v1/audit", None, &[]).await;
        let actions: Vec<(&Value, &Value)> = trail["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (&e["tenant"], &e["data"]["action"]))
            .filter(|(_, a)| a.as_str().unwrap().starts_with("quotas."))
            .collect();
        let expected: &[&str] = if tenant == "alpha" {
            &["quotas.set"]
        } else {
            &["quotas.set", "quotas.delete"]
        };
        let expected: Vec<(Value, Value)> =
            expected.iter().map(|a| (json!(tenant), json!(a))).collect();
        let expected: Vec<(&Value, &Value)> = expected.iter().map(|(t, a)| (t, a)).collect();
        assert_eq!(actions, expected, "{trail}");
    }
}

crate::on_both_backends!(
    an_enqueue_past_the_quota_is_refused_whole_with_nothing_stored,
    replays_are_never_refused,
    changing_a_quota_needs_its_scope_a_reason_and_a_ticket_and_is_audited,
    bad_quota_bodies_are_refused_in_the_envelope,
    one_tenants_quota_is_invisible_to_another,
);
