//! Rate and concurrency limits, on both stores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::keyed::{Coordinator, ROOT};

/// Why every limit here is set.
fn why(mut body: Value) -> Value {
    body["reason"] = json!("protect the vendor API");
    body["ticket"] = json!("OPS-7");
    body
}

async fn put_limit(c: &Coordinator, key: &str, body: Value) -> Value {
    let (status, answer) = c
        .call(
            Some(ROOT),
            Method::PUT,
            &format!("/v1/limits/{key}"),
            Some(why(body)),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn enqueue(c: &Coordinator, job: Value) -> String {
    let (status, body) = c
        .call(Some(ROOT), Method::POST, "/v1/jobs", Some(job), &[])
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn claim(c: &Coordinator, queues: &[&str], wait_ms: u64) -> Value {
    // Hour-long leases: moving the clock to refill a bucket does not expire them.
    let body = json!({"worker_id": "w", "queues": queues, "max_jobs": 10, "wait_ms": wait_ms,
                      "lease_ttl_ms": 3_600_000});
    let (status, answer) = c
        .call(Some(ROOT), Method::POST, "/v1/leases", Some(body), &[])
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn leased_ids(answer: &Value) -> Vec<String> {
    answer["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["job"]["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn state_of(c: &Coordinator, id: &str) -> String {
    let (_, job) = c
        .call(
            Some(ROOT),
            Method::GET,
            &format!("/v1/jobs/{id}"),
            None,
            &[],
        )
        .await;
    job["state"].as_str().unwrap().to_owned()
}

async fn complete(c: &Coordinator, lease: &Value) {
    let id = lease["job"]["id"].as_str().unwrap();
    let body = json!({"fencing_token": lease["fencing_token"], "result": {}});
    let path = format!("/v1/jobs/{id}/complete");
    let (status, answer) = c
        .call(Some(ROOT), Method::POST, &path, Some(body), &[])
        .await;
    assert_eq!(status, 200, "{answer}");
}

async fn a_rate_limit_grants_its_burst_then_a_token_at_a_time(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    // One lease per 100 s, two at once after a quiet spell.
    let limit = put_limit(&c, "queue:mail", json!({"rate": 0.01, "burst": 2})).await;
    assert_eq!(limit["burst"], 2);
    let mut mail = Vec::new();
    for n in 0..5 {
        mail.push(
            enqueue(
                &c,
                json!({"queue": "mail", "kind": "send", "payload": {"n": n}}),
            )
            .await,
        );
    }
    let other = enqueue(&c, json!({"queue": "other", "kind": "send", "payload": {}})).await;

    let answer = claim(&c, &["mail", "other"], 0).await;
    let got = leased_ids(&answer);
    assert_eq!(
        got.len(),
        3,
        "the burst of mail and the other queue's job: {answer}"
    );
    assert!(got.contains(&other) && got.contains(&mail[0]) && got.contains(&mail[1]));
    assert_eq!(answer["throttled"]["limits"], json!(["queue:mail"]));
    let wait = answer["throttled"]["retry_after_ms"].as_u64().unwrap();
    assert!(
        (199_000..=200_000).contains(&wait),
        "the claim asked for 10: its batch (the burst, 2 tokens) in 200 s: {wait}"
    );
    for id in &mail[2..] {
        assert_eq!(state_of(&c, id).await, "queued", "held back, still queued");
    }

    // Nothing more until the next token.
    c.clock.advance_ms(50_000);
    assert!(leased_ids(&claim(&c, &["mail"], 0).await).is_empty());
    c.clock.advance_ms(50_000);
    assert_eq!(
        leased_ids(&claim(&c, &["mail"], 0).await),
        [mail[2].clone()]
    );
    let (_, shown) = c
        .call(Some(ROOT), Method::GET, "/v1/limits/queue:mail", None, &[])
        .await;
    let tokens = shown["buckets"][0]["tokens"].as_f64().unwrap();
    assert!(tokens < 0.01, "{shown}");
    // An idle bucket fills up to its burst, no further.
    c.clock.advance_ms(1_000_000);
    assert_eq!(leased_ids(&claim(&c, &["mail"], 0).await).len(), 2);
}

async fn a_concurrency_limit_counts_leases_until_they_end(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    put_limit(&c, "host:*", json!({"concurrency": 1})).await;
    let job = |host: &str| json!({"queue": "q", "kind": "fetch", "payload": {}, "limit_keys": [format!("host:{host}")]});
    let a1 = enqueue(&c, job("a.io")).await;
    let a2 = enqueue(&c, job("a.io")).await;
    let b1 = enqueue(&c, job("b.io")).await;
    let free = enqueue(&c, json!({"queue": "q", "kind": "fetch", "payload": {}})).await;

    let answer = claim(&c, &["q"], 0).await;
    let first = leased_ids(&answer);
    assert_eq!(
        first,
        [a1.clone(), b1.clone(), free.clone()],
        "one per host: {answer}"
    );
    assert_eq!(answer["throttled"]["limits"], json!(["host:*"]));
    assert!(
        answer["throttled"].get("retry_after_ms").is_none(),
        "{answer}"
    );
    assert_eq!(
        answer["leases"][0]["job"]["limit_keys"],
        json!(["host:a.io"])
    );
    let (_, shown) = c
        .call(Some(ROOT), Method::GET, "/v1/limits", None, &[])
        .await;
    assert_eq!(
        shown["limits"][0]["buckets"],
        json!([{"bucket": "host:a.io", "leased": 1}, {"bucket": "host:b.io", "leased": 1}])
    );
    assert!(
        leased_ids(&claim(&c, &["q"], 0).await).is_empty(),
        "a.io is busy"
    );

    // The slot frees when the lease ends.
    complete(&c, &answer["leases"][0]).await;
    assert_eq!(
        leased_ids(&claim(&c, &["q"], 0).await),
        std::slice::from_ref(&a2)
    );

    // An expired lease holds its slot until a claim takes it over (the job may still run).
    c.clock.advance_ms(3_601_000);
    let retaken = claim(&c, &["q"], 0).await;
    let mut ids = leased_ids(&retaken);
    ids.sort();
    let mut expected = vec![a2.clone(), b1.clone(), free.clone()];
    expected.sort();
    assert_eq!(
        ids, expected,
        "the expired leases taken over, one per host: {retaken}"
    );
}

async fn a_long_poll_held_by_a_limit_wakes_when_its_slot_frees(store: Arc<dyn Store>) {
    let c = Arc::new(Coordinator::start(store, Some(ROOT)).await);
    put_limit(&c, "kind:render", json!({"concurrency": 1})).await;
    enqueue(&c, json!({"queue": "q", "kind": "render", "payload": {}})).await;
    let second = enqueue(&c, json!({"queue": "q", "kind": "render", "payload": {}})).await;
    let first = claim(&c, &["q"], 0).await;
    assert_eq!(leased_ids(&first).len(), 1);
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            (claim(&c, &["q"], 20_000).await, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    complete(&c, &first["leases"][0]).await;
    let (answer, waited) = waiter.await.unwrap();
    assert_eq!(leased_ids(&answer), [second], "{answer}");
    assert!(
        waited < Duration::from_secs(10),
        "woken by the outcome: {waited:?}"
    );
}

async fn limits_refuse_bad_input_and_name_the_field(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let put = |key: &'static str, body: Value| {
        let c = &c;
        async move {
            c.call(
                Some(ROOT),
                Method::PUT,
                &format!("/v1/limits/{key}"),
                Some(body),
                &[],
            )
            .await
        }
    };
    let field = |answer: &Value| answer["error"]["details"]["field"].clone();
    let (s, a) = put("queue:q", json!({"rate": 1.0, "ticket": "T"})).await;
    assert_eq!((s, field(&a)), (422, json!("reason")), "{a}");
    let (s, a) = put("queue:q", why(json!({"rate": 0.0}))).await;
    assert_eq!((s, field(&a)), (422, json!("rate")), "{a}");
    let (s, a) = put("queue:q", why(json!({}))).await;
    assert_eq!((s, field(&a)), (422, json!("rate")), "{a}");
    let (s, a) = put("queue:q", why(json!({"burst": 5, "concurrency": 2}))).await;
    assert_eq!((s, field(&a)), (422, json!("burst")), "{a}");
    let (s, a) = put("queue:q", why(json!({"concurency": 2}))).await;
    assert_eq!(
        (s, field(&a)),
        (422, json!("concurency")),
        "a typo is refused: {a}"
    );
    let (s, a) = put("Host:x", why(json!({"rate": 1.0}))).await;
    assert_eq!((s, field(&a)), (422, json!("key")), "{a}");
    let (s, a) = put("queue:q", why(json!({"concurrency": -1}))).await;
    assert!(s == 422 || s == 400, "{s} {a}");

    let (s, a) = c
        .call(
            Some(ROOT),
            Method::POST,
            "/v1/jobs",
            Some(json!({"queue": "q", "kind": "k", "payload": {}, "limit_keys": ["queue:q"]})),
            &[],
        )
        .await;
    assert_eq!((s, field(&a)), (422, json!("limit_keys[0]")), "{a}");

    let (s, a) = c
        .call(
            Some(ROOT),
            Method::DELETE,
            "/v1/limits/queue:q?reason=r&ticket=t",
            None,
            &[],
        )
        .await;
    assert_eq!(
        (s, a["error"]["code"].clone()),
        (404, json!("not_found")),
        "{a}"
    );
    put_limit(&c, "queue:q", json!({"rate": 5.0})).await;
    let (s, a) = c
        .call(
            Some(ROOT),
            Method::DELETE,
            "/v1/limits/queue:q?reason=r",
            None,
            &[],
        )
        .await;
    assert_eq!((s, field(&a)), (422, json!("ticket")), "{a}");
    let (s, a) = c
        .call(
            Some(ROOT),
            Method::DELETE,
            "/v1/limits/queue:q?reason=r&ticket=t&force=1",
            None,
            &[],
        )
        .await;
    assert_eq!((s, field(&a)), (422, json!("force")), "{a}");
    let (s, _) = c
        .call(
            Some(ROOT),
            Method::DELETE,
            "/v1/limits/queue:q?reason=r&ticket=t",
            None,
            &[],
        )
        .await;
    assert_eq!(s, 204);
    // Gone: claims are not gated any more.
    let (_, list) = c
        .call(Some(ROOT), Method::GET, "/v1/limits", None, &[])
        .await;
    assert_eq!(list, json!({"limits": []}));
}

async fn limits_belong_to_their_tenant_and_need_orch_quota(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, reader) = c.key("alpha", &["jobs:read", "jobs:write", "worker"]).await;
    let (_, operator) = c.key("alpha", &["orch:quota"]).await;
    let (_, beta) = c.key("beta", &["jobs:read", "jobs:write", "worker"]).await;
    let body = why(json!({"concurrency": 1}));
    let (s, a) = c
        .call(
            Some(&reader),
            Method::PUT,
            "/v1/limits/queue:q",
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!(
        (s, a["error"]["code"].clone()),
        (403, json!("forbidden")),
        "{a}"
    );
    let (s, a) = c
        .call(
            Some(&operator),
            Method::PUT,
            "/v1/limits/queue:q",
            Some(body),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{a}");
    let (_, admin) = c.key("alpha", &["admin"]).await;
    let (_, audit) = c
        .call(Some(&admin), Method::GET, "/v1/audit", None, &[])
        .await;
    let record = audit["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{audit}"))
        .iter()
        .find(|e| e["data"]["action"] == "limits.set")
        .unwrap_or_else(|| panic!("no limits.set record: {audit}"))
        .clone();
    assert_eq!(record["data"]["target"]["key"], "queue:q");
    assert_eq!(record["data"]["ticket"], "OPS-7");

    // Alpha's limit holds alpha's jobs back, not beta's on a queue of the same name.
    for key in [&reader, &beta] {
        for _ in 0..2 {
            let job = json!({"queue": "q", "kind": "k", "payload": {}});
            assert_eq!(
                c.call(Some(key), Method::POST, "/v1/jobs", Some(job), &[])
                    .await
                    .0,
                201
            );
        }
    }
    let claim = json!({"worker_id": "w", "queues": ["q"], "max_jobs": 10});
    let (_, a) = c
        .call(
            Some(&reader),
            Method::POST,
            "/v1/leases",
            Some(claim.clone()),
            &[],
        )
        .await;
    assert_eq!(a["leases"].as_array().unwrap().len(), 1, "{a}");
    let (_, b) = c
        .call(Some(&beta), Method::POST, "/v1/leases", Some(claim), &[])
        .await;
    assert_eq!(b["leases"].as_array().unwrap().len(), 2, "{b}");
    assert!(b.get("throttled").is_none(), "{b}");
    let (_, list) = c
        .call(Some(&beta), Method::GET, "/v1/limits", None, &[])
        .await;
    assert_eq!(
        list,
        json!({"limits": []}),
        "beta sees none of alpha's limits"
    );
    let (s, _) = c
        .call(Some(&beta), Method::GET, "/v1/limits/queue:q", None, &[])
        .await;
    assert_eq!(s, 404);
}

async fn a_quota_max_leased_holds_claims_like_a_concurrency_limit(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (s, a) = c
        .call(
            Some(ROOT),
            Method::PUT,
            "/v1/quota",
            Some(json!({"max_leased": 2, "reason": "a small plan", "ticket": "BILL-1"})),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{a}");
    for _ in 0..3 {
        enqueue(&c, json!({"queue": "q", "kind": "k", "payload": {}})).await;
    }
    let answer = claim(&c, &["q"], 0).await;
    assert_eq!(leased_ids(&answer).len(), 2, "{answer}");
    assert_eq!(answer["throttled"]["limits"], json!(["quota:max_leased"]));
    complete(&c, &answer["leases"][0]).await;
    assert_eq!(
        leased_ids(&claim(&c, &["q"], 0).await).len(),
        1,
        "a slot freed"
    );
}

/// One retention sweep with the coordinator's own key: how many bucket states it pruned.
async fn sweep_buckets(c: &Coordinator) -> u64 {
    let (status, report) = c
        .call(Some(ROOT), Method::POST, "/v1/retention/sweep", None, &[])
        .await;
    assert_eq!(status, 200, "{report}");
    report["limit_buckets_pruned"].as_u64().unwrap()
}

async fn a_sweep_prunes_the_state_of_buckets_at_rest(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    put_limit(&c, "host:*", json!({"rate": 1.0, "burst": 2})).await;
    let job = |host: &str| json!({"queue": "q", "kind": "k", "payload": {}, "limit_keys": [format!("host:{host}")]});
    for host in ["a.io", "b.io", "b.io"] {
        enqueue(&c, job(host)).await;
    }
    let first = claim(&c, &["q"], 0).await;
    assert_eq!(leased_ids(&first).len(), 3, "{first}");
    for lease in first["leases"].as_array().unwrap() {
        complete(&c, lease).await;
    }
    assert_eq!(sweep_buckets(&c).await, 0, "drawn from just now: kept");

    // Two hours on, both buckets are full again: their rows say nothing a missing row does not.
    c.clock.advance_ms(7_200_000);
    enqueue(&c, job("c.io")).await;
    assert_eq!(leased_ids(&claim(&c, &["q"], 0).await).len(), 1);
    assert_eq!(
        sweep_buckets(&c).await,
        2,
        "a.io and b.io; c.io was drawn from just now"
    );
    let shown = put_limit(&c, "host:*", json!({"rate": 1.0, "burst": 2})).await;
    let buckets: Vec<&str> = shown["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bucket"].as_str().unwrap())
        .collect();
    assert_eq!(buckets, ["host:c.io"], "{shown}");
    // A pruned bucket starts full: b.io grants its burst of 2, then holds.
    for _ in 0..3 {
        enqueue(&c, job("b.io")).await;
    }
    let again = claim(&c, &["q"], 0).await;
    assert_eq!(leased_ids(&again).len(), 2, "{again}");
    assert_eq!(again["throttled"]["limits"], json!(["host:*"]), "{again}");
}

async fn a_tenant_has_at_most_a_hundred_limits(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    for n in 0..100 {
        put_limit(&c, &format!("host:h{n}.io"), json!({"concurrency": 5})).await;
    }
    let (status, answer) = c
        .call(
            Some(ROOT),
            Method::PUT,
            "/v1/limits/host:h100.io",
            Some(why(json!({"concurrency": 5}))),
            &[],
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_state", "{answer}");
    assert_eq!(answer["error"]["details"]["max"], 100, "{answer}");
    // Changing one of them is still fine; so is adding one once another is gone.
    put_limit(&c, "host:h7.io", json!({"concurrency": 6})).await;
    let (status, _) = c
        .call(
            Some(ROOT),
            Method::DELETE,
            "/v1/limits/host:h0.io?reason=tidy&ticket=OPS-9",
            None,
            &[],
        )
        .await;
    assert_eq!(status, 204);
    put_limit(&c, "host:h100.io", json!({"concurrency": 5})).await;
}

on_both_backends!(
    a_rate_limit_grants_its_burst_then_a_token_at_a_time,
    a_concurrency_limit_counts_leases_until_they_end,
    a_long_poll_held_by_a_limit_wakes_when_its_slot_frees,
    limits_refuse_bad_input_and_name_the_field,
    limits_belong_to_their_tenant_and_need_orch_quota,
    a_quota_max_leased_holds_claims_like_a_concurrency_limit,
    a_tenant_has_at_most_a_hundred_limits,
    a_sweep_prunes_the_state_of_buckets_at_rest,
);
