//! Bounded storage against a real coordinator over HTTP on both stores: which finished jobs a
//! sweep removes and which it keeps (`jobs`), artifact blobs collected only when nothing names
//! them (`blobs`), the ledger archived into a verifiable chain before it is trimmed (`ledger`).
//! Time moves through the injected clock; sweeps are triggered with `POST /v1/retention/sweep`.

mod blobs;
mod jobs;
mod ledger;

use std::sync::Arc;

use leasehold_coordinator::clock::OffsetClock;
use leasehold_coordinator::retention::{Retention, RetentionConfig};
use leasehold_coordinator::store::Store;
use serde_json::{Value, json};

use crate::common;

pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const DAY_MS: i64 = 24 * HOUR_MS;

/// One coordinator on a real socket, its clock and its data directory.
pub(crate) struct Coord {
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) clock: OffsetClock,
    pub(crate) archive_dir: std::path::PathBuf,
    _served: common::Served,
}

/// An answer: status and JSON body (null when empty).
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

impl Coord {
    /// A coordinator over `store` with the default retention, changed by `configure`.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        clock: OffsetClock,
        configure: impl FnOnce(&mut RetentionConfig),
    ) -> Self {
        Self::start_scheduled(store, clock, configure, None).await
    }

    /// [`Coord::start`], also sweeping on its own every `every` when given (as `serve` does
    /// every `--retention-interval`).
    pub(crate) async fn start_scheduled(
        store: Arc<dyn Store>,
        clock: OffsetClock,
        configure: impl FnOnce(&mut RetentionConfig),
        every: Option<std::time::Duration>,
    ) -> Self {
        let mut archive_dir = std::path::PathBuf::new();
        let served = common::serve_with(store, |state| {
            state.clock = Arc::new(clock.clone());
            let mut config = RetentionConfig::defaults(&state.data_dir);
            configure(&mut config);
            archive_dir = config.archive_dir.clone();
            state.retention = Arc::new(Retention::new(config));
            if let Some(every) = every {
                leasehold_coordinator::retention::spawn(state.sweeper(), every);
            }
        })
        .await;
        Self {
            url: served.url.clone(),
            http: reqwest::Client::new(),
            clock,
            archive_dir,
            _served: served,
        }
    }

    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call_as(method, path, body, None).await
    }

    pub(crate) async fn call_as(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        tenant: Option<&str>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            req = req.json(&body);
        }
        if let Some(t) = tenant {
            req = req.header("leasehold-tenant", t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer { status, body }
    }

    /// Runs a sweep now; its report.
    pub(crate) async fn sweep(&self) -> Value {
        let r = self.call("POST", "/v1/retention/sweep", None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    pub(crate) async fn enqueue(&self, queue: &str, tenant: Option<&str>) -> String {
        let r = self
            .call_as(
                "POST",
                "/v1/jobs",
                Some(json!({"queue": queue, "kind": "k", "payload": {}})),
                tenant,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Claims the one queued job of `queue`: its id and token.
    pub(crate) async fn claim(&self, queue: &str, tenant: Option<&str>) -> (String, i64) {
        let r = self
            .call_as(
                "POST",
                "/v1/leases",
                Some(json!({"worker_id": "w", "queues": [queue], "max_jobs": 1, "lease_ttl_ms": 60_000})),
                tenant,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let lease = &r.body["leases"][0];
        (
            lease["job"]["id"].as_str().expect("a lease").to_owned(),
            lease["fencing_token"].as_i64().unwrap(),
        )
    }

    /// Enqueues, claims and completes a job (with `artifacts`); its id.
    pub(crate) async fn succeeded(
        &self,
        queue: &str,
        tenant: Option<&str>,
        artifacts: Value,
    ) -> String {
        self.enqueue(queue, tenant).await;
        let (id, token) = self.claim(queue, tenant).await;
        let r = self
            .call_as(
                "POST",
                &format!("/v1/jobs/{id}/complete"),
                Some(json!({"fencing_token": token, "result": {}, "artifacts": artifacts})),
                tenant,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        id
    }

    /// Enqueues, claims and fails a job for good; its id.
    pub(crate) async fn dead(&self, queue: &str) -> String {
        self.enqueue(queue, None).await;
        let (id, token) = self.claim(queue, None).await;
        let r = self
            .call(
                "POST",
                &format!("/v1/jobs/{id}/fail"),
                Some(
                    json!({"fencing_token": token, "error": {"message": "no", "retryable": false}}),
                ),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["state"], "dead", "{}", r.body);
        id
    }

    /// The HTTP status of `GET /v1/jobs/{id}` (as `tenant`).
    pub(crate) async fn job_status(&self, id: &str, tenant: Option<&str>) -> u16 {
        self.call_as("GET", &format!("/v1/jobs/{id}"), None, tenant)
            .await
            .status
    }

    /// Uploads `bytes`; the status (201 stored, 200 already stored) and the artifact entry a
    /// completion names it with.
    pub(crate) async fn upload(&self, bytes: &[u8]) -> (u16, Value) {
        use sha2::Digest;
        let digest = format!(
            "sha256:{}",
            leasehold_coordinator::http::artifacts::hex(&sha2::Sha256::digest(bytes))
        );
        let r = self
            .http
            .put(format!("{}/v1/artifacts/{digest}", self.url))
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(status == 200 || status == 201, "upload: {status}");
        let name = format!("{}.bin", &digest[7..15]);
        let artifact = json!({"name": name, "digest": digest, "size": bytes.len(),
                              "media_type": "application/octet-stream"});
        (status, artifact)
    }

    /// The HTTP status of downloading the blob `artifact` names.
    pub(crate) async fn blob_status(&self, artifact: &Value) -> u16 {
        let digest = artifact["digest"].as_str().unwrap();
        self.http
            .get(format!("{}/v1/artifacts/{digest}", self.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The value of one series on `/metrics` (0 when absent).
    pub(crate) async fn metric(&self, series: &str) -> f64 {
        let text = self.call("GET", "/metrics", None).await.body;
        let text = text.as_str().unwrap_or_default().to_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

/// Two stores on one fresh database — two replicas on PostgreSQL, the same store twice on
/// SQLite (one process owns the file) — for `test`; `None` when PostgreSQL is not configured.
pub(crate) async fn two_replicas(
    postgres: bool,
    test: &str,
) -> Option<(Arc<dyn Store>, Arc<dyn Store>, Option<common::DirGuard>)> {
    if postgres {
        let (a, pg) = common::pg_store(test).await?;
        let b =
            leasehold_coordinator::store::PostgresStore::connect_with(pg.connect_options().clone())
                .await
                .unwrap();
        Some((a, Arc::new(b), None))
    } else {
        let (a, guard) = common::sqlite_store().await;
        Some((a.clone(), a, Some(guard)))
    }
}
