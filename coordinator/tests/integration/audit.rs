//! Audited operator actions over a real socket on SQLite and PostgreSQL: a replay of dead jobs
//! needs `orch:backfill`, a reason and a ticket, and is recorded with who asked; key, queue and
//! retention changes are recorded too; each tenant sees only its own audit trail.

use std::sync::Arc;

use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::keyed::{Coordinator, ROOT};

/// Enqueues `n` jobs on `queue` with `key` and fails each for good: `n` dead jobs.
async fn dead_jobs(c: &Coordinator, key: &str, queue: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let job = json!({"queue": queue, "kind": "k", "payload": {}, "max_attempts": 1});
        let lease = c.enqueue_and_lease(key, job).await;
        let id = lease["job"]["id"].as_str().unwrap().to_owned();
        let (status, failed) = c
            .call(
                Some(key),
                Method::POST,
                &format!("/v1/jobs/{id}/fail"),
                Some(json!({"fencing_token": lease["fencing_token"],
                            "error": {"class": "E", "message": "m", "retryable": false}})),
                &[],
            )
            .await;
        assert_eq!(
            (status, &failed["state"]),
            (200, &json!("dead")),
            "{failed}"
        );
        ids.push(id);
    }
    ids
}

async fn state_of(c: &Coordinator, key: &str, id: &str) -> Value {
    let (_, job) = c
        .call(Some(key), Method::GET, &format!("/v1/jobs/{id}"), None, &[])
        .await;
    job["state"].clone()
}

async fn audit_trail(c: &Coordinator, key: &str) -> Vec<Value> {
    let (status, list) = c.call(Some(key), Method::GET, "/v1/audit", None, &[]).await;
    assert_eq!(status, 200, "{list}");
    list["events"].as_array().unwrap().clone()
}

async fn replays_need_the_backfill_scope_a_reason_and_a_ticket(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let all = &[
        "worker",
        "jobs:write",
        "jobs:read",
        "admin",
        "orch:backfill",
    ];
    let (ops_id, ops) = c.key("alpha", all).await;
    let (_, worker) = c
        .key("alpha", &["worker", "jobs:write", "jobs:read", "admin"])
        .await;
    let ids = dead_jobs(&c, &ops, "imports", 3).await;
    let replay = |extra: Value| {
        let mut body =
            json!({"queue": "imports", "reason": "vendor outage is over", "ticket": "INC-7"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };

    let (status, refused) = c
        .call(
            Some(&worker),
            Method::POST,
            "/v1/replays",
            Some(replay(json!({}))),
            &[],
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(
        refused["error"]["details"]["needed_scopes"],
        json!(["orch:backfill"])
    );
    for missing in ["reason", "ticket"] {
        let mut body = replay(json!({}));
        body.as_object_mut().unwrap().remove(missing);
        let (status, refused) = c
            .call(Some(&ops), Method::POST, "/v1/replays", Some(body), &[])
            .await;
        assert_eq!(status, 422, "{refused}");
        assert_eq!(refused["error"]["details"]["field"], missing);
    }
    let (status, refused) = c
        .call(
            Some(&ops),
            Method::POST,
            "/v1/replays",
            Some(replay(json!({"state": "succeeded"}))),
            &[],
        )
        .await;
    assert_eq!(
        (status, &refused["error"]["details"]["field"]),
        (422, &json!("state"))
    );
    let (status, refused) = c
        .call(
            Some(&ops),
            Method::POST,
            "/v1/replays",
            Some(replay(json!({"queues": ["typo"]}))),
            &[],
        )
        .await;
    assert_eq!(status, 422, "a typo never widens the filter: {refused}");

    // A dry run counts and names, changes and records nothing.
    let (status, dry) = c
        .call(
            Some(&ops),
            Method::POST,
            "/v1/replays",
            Some(replay(json!({"dry_run": true}))),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (dry["matched"].clone(), dry["replayed"].clone()),
        (json!(3), json!(0))
    );
    assert_eq!(state_of(&c, &ops, &ids[0]).await, "dead");
    assert!(
        audit_trail(&c, &ops)
            .await
            .iter()
            .all(|e| e["data"]["action"] != "jobs.replay")
    );

    let (status, done) = c
        .call(
            Some(&ops),
            Method::POST,
            "/v1/replays",
            Some(replay(json!({"limit": 2}))),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (done["matched"].clone(), done["replayed"].clone()),
        (json!(2), json!(2))
    );
    // Newest first: the oldest dead job is left.
    assert_eq!(state_of(&c, &ops, &ids[2]).await, "queued");
    assert_eq!(state_of(&c, &ops, &ids[0]).await, "dead");
    let trail = audit_trail(&c, &ops).await;
    let record = trail
        .iter()
        .find(|e| e["data"]["action"] == "jobs.replay")
        .expect("the replay is audited");
    assert_eq!(record["id"], done["audit_event_id"]);
    assert_eq!(record["type"], "audit");
    assert_eq!(record["tenant"], "alpha");
    assert_eq!(
        record["data"]["actor"],
        json!({"kind": "key", "key_id": ops_id, "key_name": "alpha test"})
    );
    assert_eq!(record["data"]["reason"], "vendor outage is over");
    assert_eq!(record["data"]["ticket"], "INC-7");
    assert_eq!(record["data"]["target"]["replayed"], 2);
    assert!(!record.to_string().contains(&ops), "never the token");
}

async fn operator_changes_are_audited_per_tenant(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (alpha_id, alpha) = c.key("alpha", &["admin"]).await;
    let (_, beta) = c.key("beta", &["admin"]).await;
    let (status, _) = c
        .call(
            Some(&alpha),
            Method::POST,
            "/v1/queues/mail/pause",
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = c
        .call(
            Some(&alpha),
            Method::PUT,
            "/v1/retention/queues/mail",
            Some(json!({"succeeded": "1h"})),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (other, _) = c.key("alpha", &["jobs:read"]).await;
    let (status, _) = c
        .call(
            Some(ROOT),
            Method::DELETE,
            &format!("/v1/keys/{other}"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);

    let trail = audit_trail(&c, &alpha).await;
    let actions: Vec<&str> = trail
        .iter()
        .map(|e| e["data"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "keys.create",
            "queues.pause",
            "retention.set",
            "keys.create",
            "keys.revoke"
        ],
        "{trail:?}"
    );
    // Keys are created by the coordinator's own key; the pause by alpha's admin key.
    assert_eq!(trail[0]["data"]["actor"], json!({"kind": "root"}));
    assert_eq!(trail[0]["data"]["target"]["key_id"], json!(alpha_id));
    assert_eq!(trail[1]["data"]["actor"]["key_id"], json!(alpha_id));
    assert_eq!(trail[1]["data"]["target"], json!({"queue": "mail"}));
    assert!(trail.iter().all(|e| e["tenant"] == "alpha"));
    // Beta's trail has its own key's creation only.
    let theirs = audit_trail(&c, &beta).await;
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["tenant"], "beta");
    // Paging, and bad parameters named.
    let (_, page) = c
        .call(Some(&alpha), Method::GET, "/v1/audit?limit=2", None, &[])
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let next = page["next_after"].as_i64().unwrap();
    let (_, rest) = c
        .call(
            Some(&alpha),
            Method::GET,
            &format!("/v1/audit?after={next}"),
            None,
            &[],
        )
        .await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 3);
    for bad in ["limit=0", "from=yesterday", "actor=me"] {
        let (status, _) = c
            .call(
                Some(&alpha),
                Method::GET,
                &format!("/v1/audit?{bad}"),
                None,
                &[],
            )
            .await;
        assert_eq!(status, 422, "{bad}");
    }
}

crate::on_both_backends!(
    replays_need_the_backfill_scope_a_reason_and_a_ticket,
    operator_changes_are_audited_per_tenant,
);
