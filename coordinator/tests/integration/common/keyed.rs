//! A coordinator with the single key `ROOT` on, over a real socket, and the calls the tenancy
//! suites make with keys of several tenants.

use std::sync::Arc;

use leasehold_coordinator::AppState;
use leasehold_coordinator::clock::OffsetClock;
use leasehold_coordinator::http::access::{Access, AccessConfig};
use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Served, serve_with};

/// The coordinator's `ORCHESTRATOR_API_KEY` in these suites.
pub const ROOT: &str = "root-key-for-tests-0123456789";

/// A served coordinator with the single key `ROOT` (or keyless) and a clock tests can move.
pub struct Coordinator {
    pub served: Served,
    pub clock: OffsetClock,
    pub http: reqwest::Client,
}

impl Coordinator {
    /// Serves `store`, with `root` as `ORCHESTRATOR_API_KEY` when given.
    pub async fn start(store: Arc<dyn Store>, root: Option<&str>) -> Self {
        Self::start_with(store, root, |_| {}).await
    }

    /// [`Coordinator::start`], letting `configure` adjust the state last.
    pub async fn start_with(
        store: Arc<dyn Store>,
        root: Option<&str>,
        configure: impl FnOnce(&mut AppState),
    ) -> Self {
        let clock = OffsetClock::default();
        let moved = clock.clone();
        let root = root.map(str::to_owned);
        let served = serve_with(store, move |s| {
            s.clock = Arc::new(moved);
            if let Some(root) = root {
                s.access = Access::new(AccessConfig::default().with_api_key(&root));
            }
            configure(s);
        })
        .await;
        Self {
            served,
            clock,
            http: reqwest::Client::new(),
        }
    }

    /// One JSON call with `key` as the bearer token; the status and the decoded body (`Null`
    /// when it is not JSON).
    pub async fn call(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let (status, _, body) = self.call_full(key, method, path, body, headers).await;
        (status, body)
    }

    /// [`Coordinator::call`], with the answer's headers too.
    pub async fn call_full(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.served.url));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let answer_headers = r.headers().clone();
        let text = r.text().await.unwrap();
        (
            status,
            answer_headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    /// Creates a key with `ROOT`; returns (id, token).
    pub async fn key(&self, tenant: &str, scopes: &[&str]) -> (String, String) {
        let (status, body) = self
            .call(
                Some(ROOT),
                Method::POST,
                "/v1/keys",
                Some(json!({"tenant": tenant, "scopes": scopes, "name": format!("{tenant} test")})),
                &[],
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["key"]["id"].as_str().unwrap().to_owned(),
            body["token"].as_str().unwrap().to_owned(),
        )
    }

    /// Enqueues `job` with `key`: the stored job (201 asserted).
    pub async fn enqueue(&self, key: &str, job: Value) -> Value {
        let (status, body) = self
            .call(Some(key), Method::POST, "/v1/jobs", Some(job), &[])
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Enqueues `job` with `key` and leases it at once (from its queue, where it must be the
    /// only ready job): the lease (`job`, `fencing_token`, …).
    pub async fn enqueue_and_lease(&self, key: &str, job: Value) -> Value {
        let queue = job["queue"].clone();
        let body = self.enqueue(key, job).await;
        let claim = json!({"worker_id": "w", "queues": [queue], "max_jobs": 1, "wait_ms": 0});
        let (status, leased) = self
            .call(Some(key), Method::POST, "/v1/leases", Some(claim), &[])
            .await;
        assert_eq!(status, 200, "{leased}");
        assert_eq!(leased["leases"][0]["job"]["id"], body["id"], "{leased}");
        leased["leases"][0].clone()
    }

    /// `PUT /v1/artifacts/{digest}` of `bytes` with `key`.
    pub async fn put_artifact(&self, key: &str, digest: &str, bytes: &[u8]) -> (u16, Value) {
        let r = self
            .http
            .put(format!("{}/v1/artifacts/{digest}", self.served.url))
            .bearer_auth(key)
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /v1/artifacts/{digest}` with `key`: the status and the raw body.
    pub async fn get_artifact(&self, key: &str, digest: &str) -> (u16, Vec<u8>) {
        let r = self
            .http
            .get(format!("{}/v1/artifacts/{digest}", self.served.url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.bytes().await.unwrap().to_vec())
    }
}
