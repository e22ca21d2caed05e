//! A coordinator on a real socket whose clock a test moves, with a small JSON client: for
//! behaviours that depend on time passing (lease expiry, timeouts) over real HTTP.

use std::sync::Arc;

use leasehold_coordinator::clock::OffsetClock;
use leasehold_coordinator::store::Store;
use serde_json::{Value, json};

/// A coordinator on a real socket whose clock the test moves.
pub struct Coordinator {
    pub served: super::Served,
    clock: OffsetClock,
    http: reqwest::Client,
}

impl Coordinator {
    pub async fn start(store: Arc<dyn Store>) -> Self {
        let clock = OffsetClock::default();
        let moved = clock.clone();
        let served = super::serve_with(store, move |state| state.clock = Arc::new(moved)).await;
        Self {
            served,
            clock,
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.served.url);
        let mut req = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(method, path, Some(body)).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        answer
    }

    pub async fn enqueue(&self, job: Value) -> Value {
        self.ok("POST", "/v1/jobs", job).await
    }

    pub async fn job(&self, id: &str) -> Value {
        let (status, job) = self.call("GET", &format!("/v1/jobs/{id}"), None).await;
        assert_eq!(status, 200, "{job}");
        job
    }

    /// Claims from `queue` with a 30 s lease.
    pub async fn claim(&self, queue: &str) -> Vec<Value> {
        let body =
            json!({"worker_id": "w1", "queues": [queue], "max_jobs": 10, "lease_ttl_ms": 30_000});
        let answer = self.ok("POST", "/v1/leases", body).await;
        answer["leases"].as_array().unwrap().clone()
    }

    pub async fn heartbeat(&self, lease: &Value) -> Value {
        let body = json!({"worker_id": "w1", "leases": [
            {"job_id": lease["job"]["id"], "fencing_token": lease["fencing_token"]}]});
        let answer = self.ok("POST", "/v1/leases/heartbeat", body).await;
        answer["leases"][0].clone()
    }

    /// The events of job `id`: `(type, data)`, oldest first.
    pub async fn event_types(&self, id: &str) -> Vec<(String, Value)> {
        self.ledger()
            .await
            .into_iter()
            .filter(|e| e["job_id"] == id)
            .map(|e| (e["type"].as_str().unwrap().to_owned(), e["data"].clone()))
            .collect()
    }

    /// Every event so far, from the ledger export.
    pub async fn ledger(&self) -> Vec<Value> {
        let from = "2000-01-01T00:00:00Z";
        let to = "2999-01-01T00:00:00Z";
        let url = format!("{}/v1/ledger/export?from={from}&to={to}", self.served.url);
        let text = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["type"] != "manifest")
            .collect()
    }

    pub fn advance_ms(&self, ms: i64) {
        self.clock.advance_ms(ms);
    }
}
