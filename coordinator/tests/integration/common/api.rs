//! The v1 API through the real router, in-process (`tower::ServiceExt::oneshot`): a client
//! that checks the envelope and headers of every answer.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use leasehold_coordinator::clock::OffsetClock;
use leasehold_coordinator::store::Store;
use leasehold_coordinator::{AppState, app};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::DirGuard;

/// The router of a fresh coordinator state over `store`, with a clock tests can move; clones
/// share it.
#[derive(Clone)]
pub struct Api {
    pub router: Router,
    pub clock: OffsetClock,
    pub store: Arc<dyn Store>,
    _artifacts: Arc<DirGuard>,
}

/// One answer, its body parsed (a string when it is not JSON, null when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl Api {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let dir = super::temp_dir("artifacts");
        let (mut state, shutdown) = AppState::new(store.clone(), dir.0.clone());
        std::mem::forget(shutdown);
        state.max_artifact_bytes = 1024 * 1024;
        let clock = OffsetClock::default();
        state.clock = Arc::new(clock.clone());
        Self {
            router: app(state),
            clock,
            store,
            _artifacts: Arc::new(dir),
        }
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        assert!(
            headers.contains_key("x-request-id"),
            "{method} {path}: no X-Request-Id"
        );
        assert_eq!(headers.get("leasehold-api-version").unwrap(), "1");
        if !status.is_success() {
            // Every error is the envelope, carrying the same request id as the header.
            let err = &body["error"];
            assert!(
                err["code"].is_string() && err["message"].is_string(),
                "{method} {path}: {body}"
            );
            assert_eq!(
                err["request_id"],
                headers.get("x-request-id").unwrap().to_str().unwrap()
            );
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        self.raw(method, path, bytes, &[("content-type", "application/json")])
            .await
    }

    pub async fn enqueue(&self, queue: &str) -> Value {
        let r = self
            .call(
                "POST",
                "/v1/jobs",
                Some(json!({"queue": queue, "kind": "k", "payload": {"x": 1}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    pub async fn claim(&self, queue: &str, worker: &str, ttl: u64) -> Vec<Value> {
        let r = self
            .call("POST", "/v1/leases", Some(json!({"worker_id": worker, "queues": [queue], "max_jobs": 10, "lease_ttl_ms": ttl})))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["leases"].as_array().unwrap().clone()
    }

    /// Everything the store holds, to prove a rejected request changed nothing.
    pub async fn snapshot(&self) -> (usize, Vec<leasehold_proto::Job>) {
        let events = self.store.events_after(0, 100_000).await.unwrap().len();
        let jobs = self
            .store
            .list_jobs(&leasehold_coordinator::store::JobFilter {
                tenant: "default".into(),
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap();
        (events, jobs)
    }
}
