//! API keys bound to a tenant and scopes, over a real socket on SQLite and PostgreSQL: the key
//! decides the tenant (a request naming another is refused, never obeyed), scopes decide the
//! routes, keys are listed without secrets, revoked and expire, and a coordinator with keys
//! never falls back to keyless.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common::keyed::{Coordinator, ROOT};

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const WORKER: &[&str] = &["worker", "jobs:write", "jobs:read"];

async fn a_key_leases_only_its_own_tenants_jobs(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, alpha) = c.key("alpha", WORKER).await;
    let (_, beta) = c.key("beta", WORKER).await;
    let job = json!({"queue": "q", "kind": "k", "payload": {"secret": "alpha's"}});
    let (status, enqueued) = c
        .call(
            Some(&alpha),
            Method::POST,
            "/v1/jobs",
            Some(job.clone()),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{enqueued}");
    assert_eq!(enqueued["tenant"], "alpha", "the key decided the tenant");
    let id = enqueued["id"].as_str().unwrap().to_owned();

    let claim = |tenant: Option<&str>| {
        let mut body = json!({"worker_id": "w", "queues": ["q"], "max_jobs": 5, "wait_ms": 0});
        if let Some(t) = tenant {
            body["tenant"] = json!(t);
        }
        body
    };
    // Naming alpha with beta's key, in the body or the header: refused, never obeyed.
    let (status, refused) = c
        .call(
            Some(&beta),
            Method::POST,
            "/v1/leases",
            Some(claim(Some("alpha"))),
            &[],
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "forbidden");
    let (status, _) = c
        .call(
            Some(&beta),
            Method::POST,
            "/v1/leases",
            Some(claim(None)),
            &[("leasehold-tenant", "alpha")],
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = c
        .call(
            Some(&beta),
            Method::POST,
            "/v1/jobs",
            Some(job.clone()),
            &[("leasehold-tenant", "alpha")],
        )
        .await;
    assert_eq!(status, 403, "nor may it enqueue for alpha");
    // Beta's own claim sees nothing of alpha's; alpha's job is not even there for beta.
    let (status, leased) = c
        .call(
            Some(&beta),
            Method::POST,
            "/v1/leases",
            Some(claim(None)),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(leased["leases"], json!([]));
    let (status, _) = c
        .call(
            Some(&beta),
            Method::GET,
            &format!("/v1/jobs/{id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 404);
    // Alpha's key leases it, naming its own tenant or not.
    let (status, leased) = c
        .call(
            Some(&alpha),
            Method::POST,
            "/v1/leases",
            Some(claim(Some("alpha"))),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(leased["leases"][0]["job"]["id"], json!(id));
    assert_eq!(leased["leases"][0]["job"]["payload"]["secret"], "alpha's");

    // The single key acts for tenant `default` only.
    let (status, _) = c
        .call(
            Some(ROOT),
            Method::GET,
            "/v1/jobs",
            None,
            &[("leasehold-tenant", "alpha")],
        )
        .await;
    assert_eq!(status, 403);

    // A worker's hello naming another tenant ends its session with the same refusal.
    let ws_url = format!(
        "{}/v1/workers/connect",
        c.served.url.replacen("http", "ws", 1)
    );
    let mut request = ws_url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {beta}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let hello = json!({"type": "hello", "worker_id": "w", "queues": ["q"], "lease_ttl_ms": 30000, "tenant": "alpha"});
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let frame: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["error"]["code"], "forbidden", "{frame}");
}

async fn scopes_decide_what_a_key_may_do(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, reader) = c.key("alpha", &["jobs:read"]).await;
    let job = json!({"queue": "q", "kind": "k", "payload": {}});
    let (status, body) = c
        .call(Some(&reader), Method::POST, "/v1/jobs", Some(job), &[])
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["details"]["needed_scopes"],
        json!(["jobs:write"])
    );
    assert_eq!(
        c.call(Some(&reader), Method::GET, "/v1/jobs", None, &[])
            .await
            .0,
        200
    );
    assert_eq!(
        c.call(Some(&reader), Method::GET, "/v1/queues", None, &[])
            .await
            .0,
        200
    );
    let claim = json!({"worker_id": "w", "queues": ["q"], "wait_ms": 0});
    assert_eq!(
        c.call(Some(&reader), Method::POST, "/v1/leases", Some(claim), &[])
            .await
            .0,
        403
    );
    for (method, path) in [
        (Method::GET, "/v1/keys"),
        (Method::POST, "/v1/queues/q/pause"),
        (Method::GET, "/v1/events"),
        (Method::GET, "/v1/runs/01a24724-f8e3-71dc-9c76-7ff2dfe84e02"),
        (Method::GET, "/orchestrator/runs"),
    ] {
        let (status, _) = c.call(Some(&reader), method.clone(), path, None, &[]).await;
        assert_eq!(status, 403, "{method} {path}");
    }
    // Any key reads the API's description.
    assert_eq!(
        c.call(
            Some(&reader),
            Method::GET,
            "/.well-known/openapi",
            None,
            &[]
        )
        .await
        .0,
        200
    );
}

async fn keys_are_listed_without_secrets_then_revoked_or_expired(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (alpha_id, alpha) = c.key("alpha", &["admin", "jobs:read"]).await;
    let (beta_id, beta) = c.key("beta", &["jobs:read"]).await;

    // Alpha's admin lists alpha's keys only; no token, no digest.
    let (status, list) = c
        .call(Some(&alpha), Method::GET, "/v1/keys", None, &[])
        .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [alpha_id.as_str()]);
    let text = list.to_string();
    assert!(
        !text.contains(&alpha[20..]),
        "the token's secret is never listed"
    );
    assert!(!text.contains("sha256"));
    // The root key sees every tenant's, or one tenant's.
    let (_, all) = c.call(Some(ROOT), Method::GET, "/v1/keys", None, &[]).await;
    assert_eq!(all["keys"].as_array().unwrap().len(), 2);
    let (_, only) = c
        .call(Some(ROOT), Method::GET, "/v1/keys?tenant=beta", None, &[])
        .await;
    assert_eq!(only["keys"][0]["id"], json!(beta_id));
    // Alpha's admin cannot see or revoke beta's keys: 403 for naming beta, 404 for its id.
    assert_eq!(
        c.call(Some(&alpha), Method::GET, "/v1/keys?tenant=beta", None, &[])
            .await
            .0,
        403
    );
    let (status, _) = c
        .call(
            Some(&alpha),
            Method::DELETE,
            &format!("/v1/keys/{beta_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        c.call(Some(&beta), Method::GET, "/v1/jobs", None, &[])
            .await
            .0,
        200
    );

    // Last use is recorded, coalesced: it shows once the cache is reloaded.
    tokio::time::sleep(leasehold_coordinator::keys::REFRESH + Duration::from_millis(200)).await;
    assert_eq!(
        c.call(Some(&beta), Method::GET, "/v1/jobs", None, &[])
            .await
            .0,
        200
    );
    let (_, only) = c
        .call(Some(ROOT), Method::GET, "/v1/keys?tenant=beta", None, &[])
        .await;
    assert!(only["keys"][0]["last_used_at"].is_string(), "{only}");

    // Revoked: refused at once, saying so; revoking again answers the same time.
    let (status, revoked) = c
        .call(
            Some(ROOT),
            Method::DELETE,
            &format!("/v1/keys/{beta_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert!(revoked["revoked_at"].is_string());
    let (status, body) = c
        .call(Some(&beta), Method::GET, "/v1/jobs", None, &[])
        .await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
    let (_, again) = c
        .call(
            Some(ROOT),
            Method::DELETE,
            &format!("/v1/keys/{beta_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(again["revoked_at"], revoked["revoked_at"]);

    // Expiry follows the coordinator's clock.
    let soon = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, created) = c
        .call(
            Some(ROOT),
            Method::POST,
            "/v1/keys",
            Some(json!({"tenant": "gamma", "scopes": ["jobs:read"], "expires_at": soon})),
            &[],
        )
        .await;
    assert_eq!(status, 201);
    let gamma = created["token"].as_str().unwrap().to_owned();
    assert_eq!(
        c.call(Some(&gamma), Method::GET, "/v1/jobs", None, &[])
            .await
            .0,
        200
    );
    c.clock.advance_ms(3_600_001);
    let (status, body) = c
        .call(Some(&gamma), Method::GET, "/v1/jobs", None, &[])
        .await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    // A made-up token of the right shape (one digit off) is refused like a wrong key.
    let forged = format!(
        "{}{}",
        &alpha[..alpha.len() - 1],
        if alpha.ends_with('0') { '1' } else { '0' }
    );
    assert_eq!(
        c.call(Some(&forged), Method::GET, "/v1/jobs", None, &[])
            .await
            .0,
        401
    );
}

async fn bad_key_requests_are_refused_naming_the_field(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let (_, alpha_admin) = c.key("alpha", &["admin"]).await;
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    for (key, body, status, field) in [
        (ROOT, json!({"scopes": []}), 422, "scopes"),
        (ROOT, json!({"scopes": ["jobs:raed"]}), 422, "scopes"),
        (
            ROOT,
            json!({"scopes": ["worker"], "expires_at": past}),
            422,
            "expires_at",
        ),
        (
            ROOT,
            json!({"scopes": ["worker"], "tenant": "Not A Name!"}),
            422,
            "tenant",
        ),
        (
            ROOT,
            json!({"scopes": ["worker"], "name": "x".repeat(201)}),
            422,
            "name",
        ),
        (
            ROOT,
            json!({"scopes": ["worker"], "scope": "admin"}),
            422,
            "scope",
        ),
        (
            alpha_admin.as_str(),
            json!({"scopes": ["worker"], "tenant": "beta"}),
            403,
            "tenant",
        ),
    ] {
        let (got, answer) = c
            .call(Some(key), Method::POST, "/v1/keys", Some(body.clone()), &[])
            .await;
        assert_eq!(got, status, "{body} → {answer}");
        assert_eq!(
            answer["error"]["details"]["field"], field,
            "{body} → {answer}"
        );
    }
    let (_, unknown) = c
        .call(
            Some(ROOT),
            Method::POST,
            "/v1/keys",
            Some(json!({"scopes": ["jobs:raed"]})),
            &[],
        )
        .await;
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("jobs:raed")
    );
    // Alpha's admin creates alpha's keys (its tenant by default).
    let (status, created) = c
        .call(
            Some(&alpha_admin),
            Method::POST,
            "/v1/keys",
            Some(json!({"scopes": ["worker"]})),
            &[],
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["key"]["tenant"], "alpha");
    assert_eq!(
        c.call(
            Some(ROOT),
            Method::DELETE,
            "/v1/keys/k_000000000000",
            None,
            &[]
        )
        .await
        .0,
        404
    );
}

async fn once_a_key_exists_a_keyless_coordinator_needs_keys(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, None).await;
    assert_eq!(
        c.call(None, Method::GET, "/v1/queues", None, &[]).await.0,
        200
    );
    let (status, created) = c
        .call(
            None,
            Method::POST,
            "/v1/keys",
            Some(json!({"tenant": "alpha", "scopes": ["admin", "jobs:read"]})),
            &[],
        )
        .await;
    assert_eq!(status, 201);
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["key"]["id"].as_str().unwrap().to_owned();
    let (status, body) = c.call(None, Method::GET, "/v1/queues", None, &[]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        c.call(Some(&token), Method::GET, "/v1/queues", None, &[])
            .await
            .0,
        200
    );
    // Revoking the last key does not open the coordinator again.
    let (status, _) = c
        .call(
            Some(&token),
            Method::DELETE,
            &format!("/v1/keys/{id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        c.call(None, Method::GET, "/v1/queues", None, &[]).await.0,
        401
    );
    assert_eq!(
        c.call(Some(&token), Method::GET, "/v1/queues", None, &[])
            .await
            .0,
        401
    );
}

/// `GET /v1/whoami` answers the caller as its key makes it, to any valid key, and nothing to
/// a caller without one.
async fn whoami_names_the_tenant_and_scopes_of_the_key(store: Arc<dyn Store>) {
    let keyless = Coordinator::start(store.clone(), None).await;
    let (s, me) = keyless
        .call(
            None,
            Method::GET,
            "/v1/whoami",
            None,
            &[("leasehold-tenant", "acme")],
        )
        .await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(
        (me["tenant"].clone(), me["principal"].clone()),
        (json!("acme"), json!("keyless"))
    );
    assert_eq!(me["scopes"].as_array().unwrap().len(), 8);
    drop(keyless);

    let c = Coordinator::start(store, Some(ROOT)).await;
    let (s, me) = c
        .call(Some(ROOT), Method::GET, "/v1/whoami", None, &[])
        .await;
    assert_eq!(
        (s, me["tenant"].clone(), me["principal"].clone()),
        (200, json!("default"), json!("root"))
    );
    assert!(me.get("key_id").is_none());
    // A key with a scope that reads nothing else may still ask who it is.
    let (id, token) = c.key("alpha", &["worker"]).await;
    let (s, me) = c
        .call(Some(&token), Method::GET, "/v1/whoami", None, &[])
        .await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(
        me,
        json!({"tenant": "alpha", "principal": "key", "key_id": id,
               "key_name": me["key_name"], "scopes": ["worker"]})
    );
    assert!(!me.to_string().contains(&token), "never the token");
    let (s, _) = c.call(None, Method::GET, "/v1/whoami", None, &[]).await;
    assert_eq!(s, 401);
    let (s, _) = c
        .call(
            Some("lhk_nope_0000000000000000"),
            Method::GET,
            "/v1/whoami",
            None,
            &[],
        )
        .await;
    assert_eq!(s, 401);
}

crate::on_both_backends!(
    whoami_names_the_tenant_and_scopes_of_the_key,
    a_key_leases_only_its_own_tenants_jobs,
    scopes_decide_what_a_key_may_do,
    keys_are_listed_without_secrets_then_revoked_or_expired,
    bad_key_requests_are_refused_naming_the_field,
    once_a_key_exists_a_keyless_coordinator_needs_keys,
);
