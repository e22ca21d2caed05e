//! The coordinator's HTTP API, one call per method. Transport faults and 429/502/503/504 are
//! retried with [`RetryPolicy::transport`] by [`HttpApi::retrying`]; the worker's hot paths
//! (claim, heartbeat, outcomes) make single attempts and let their loops decide.

use std::future::Future;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use leasehold_proto::{
    ClaimRequest, ClaimResponse, CompleteRequest, ErrorCode, ErrorEnvelope, FailRequest,
    HeartbeatRequest, HeartbeatResponse, Job, OutcomeKind, OutcomeReport, OutcomeResult,
    OutcomeStatus, OutcomesRequest, OutcomesResponse, ReleaseRequest,
};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::retry::{RetryPolicy, SplitMix64};
use crate::util::lock;

/// Header naming the tenant a request acts for.
pub(crate) const TENANT_HEADER: &str = "leasehold-tenant";

/// Default timeout of one request (long-polls add their wait to it).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A decoded answer.
#[derive(Debug)]
pub(crate) struct Answer<T> {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: T,
}

/// The HTTP side of the coordinator's API.
#[derive(Debug)]
pub(crate) struct HttpApi {
    client: reqwest::Client,
    base: String,
    api_key: Option<String>,
    tenant: Option<String>,
    pub(crate) timeout: Duration,
    retry: RetryPolicy,
    rng: Mutex<SplitMix64>,
    /// Whether `POST /v1/leases/outcomes` exists (cleared on a 404/405 from an older
    /// coordinator; outcomes then go one by one to the per-job endpoints).
    outcomes_batch: AtomicBool,
}

impl HttpApi {
    pub(crate) fn new(
        base_url: &str,
        api_key: Option<String>,
        tenant: Option<String>,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self> {
        let base = normalize_base(base_url)?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("leasehold-rust/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            base,
            api_key,
            tenant,
            timeout,
            retry,
            rng: Mutex::new(SplitMix64::from_entropy()),
            outcomes_batch: AtomicBool::new(true),
        })
    }

    /// `http(s)://host:port` without a trailing slash.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    fn builder(&self, method: Method, path: &str, timeout: Duration) -> reqwest::RequestBuilder {
        let mut b = self
            .client
            .request(method, format!("{}{path}", self.base))
            .timeout(timeout);
        if let Some(key) = &self.api_key {
            b = b.bearer_auth(key);
        }
        if let Some(tenant) = &self.tenant {
            b = b.header(TENANT_HEADER, tenant);
        }
        b
    }

    /// One request with a JSON body (or none) and a JSON answer.
    pub(crate) async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&'static str, String)],
        timeout: Duration,
    ) -> Result<Answer<T>> {
        let mut b = self.builder(method, path, timeout);
        if let Some(body) = body {
            b = b.json(body);
        }
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|e| Error::InvalidArgument(format!("header {name}: {e}")))?;
            b = b.header(*name, value);
        }
        let response = b
            .send()
            .await
            .map_err(|e| Error::from_reqwest(e, timeout))?;
        decode(response, timeout).await
    }

    /// Runs `f` until it succeeds, fails with a non-retryable error, or the transport policy
    /// gives up. `Retry-After` lengthens a delay, never shortens it.
    pub(crate) async fn retrying<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 1u32;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(err) if err.is_retryable() => {
                    let delay = self.retry.next_delay(attempt, &mut lock(&self.rng));
                    let Some(delay) = delay else {
                        return Err(err);
                    };
                    let delay = err.retry_after().map_or(delay, |ra| ra.max(delay));
                    tracing::debug!(%what, attempt, ?delay, error = %err, "retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// `POST /v1/leases` (single attempt; `wait_ms` is added to the timeout).
    pub(crate) async fn claim(&self, req: &ClaimRequest) -> Result<ClaimResponse> {
        let timeout = self.timeout + Duration::from_millis(req.wait_ms);
        let answer: Answer<ClaimResponse> = self
            .call(Method::POST, "/v1/leases", Some(req), &[], timeout)
            .await?;
        Ok(answer.body)
    }

    /// `POST /v1/leases/heartbeat` (single attempt).
    pub(crate) async fn heartbeat(
        &self,
        req: &HeartbeatRequest,
        timeout: Duration,
    ) -> Result<HeartbeatResponse> {
        let answer: Answer<HeartbeatResponse> = self
            .call(
                Method::POST,
                "/v1/leases/heartbeat",
                Some(req),
                &[],
                timeout,
            )
            .await?;
        Ok(answer.body)
    }

    /// `POST /v1/leases/outcomes`, or the per-job endpoints on a coordinator without it
    /// (single attempt each).
    pub(crate) async fn outcomes(
        &self,
        req: &OutcomesRequest,
        timeout: Duration,
    ) -> Result<Vec<OutcomeResult>> {
        if self.outcomes_batch.load(Ordering::Relaxed) {
            let answer: Result<Answer<OutcomesResponse>> = self
                .call(Method::POST, "/v1/leases/outcomes", Some(req), &[], timeout)
                .await;
            match answer {
                Ok(a) => return Ok(a.body.results),
                Err(Error::Api {
                    status: 404 | 405, ..
                }) => {
                    tracing::info!(
                        "coordinator has no POST /v1/leases/outcomes; reporting outcomes one by one"
                    );
                    self.outcomes_batch.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let calls = req.outcomes.iter().map(|o| self.one_outcome(o, timeout));
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .collect()
    }

    async fn one_outcome(&self, o: &OutcomeReport, timeout: Duration) -> Result<OutcomeResult> {
        let headers: [(&'static str, String); 0] = [];
        let id = o.job_id;
        let answer: Result<Answer<Job>> = match &o.outcome {
            OutcomeKind::Complete {
                result, artifacts, ..
            } => {
                let body = CompleteRequest {
                    fencing_token: o.fencing_token,
                    result: result.clone(),
                    artifacts: artifacts.clone(),
                };
                let path = format!("/v1/jobs/{id}/complete");
                self.call(Method::POST, &path, Some(&body), &headers, timeout)
                    .await
            }
            OutcomeKind::Fail { error, retry_at } => {
                let body = FailRequest {
                    fencing_token: o.fencing_token,
                    error: error.clone(),
                    retry_at: *retry_at,
                };
                let path = format!("/v1/jobs/{id}/fail");
                self.call(Method::POST, &path, Some(&body), &headers, timeout)
                    .await
            }
            OutcomeKind::Release => {
                let body = ReleaseRequest {
                    fencing_token: o.fencing_token,
                };
                let path = format!("/v1/jobs/{id}/release");
                self.call(Method::POST, &path, Some(&body), &headers, timeout)
                    .await
            }
        };
        match answer {
            Ok(a) => Ok(OutcomeResult {
                job_id: id,
                status: OutcomeStatus::Ok,
                state: Some(a.body.state),
            }),
            Err(Error::Api {
                code: ErrorCode::LeaseLost,
                details,
                ..
            }) => Ok(OutcomeResult {
                job_id: id,
                status: OutcomeStatus::LeaseLost,
                state: details
                    .get("state")
                    .and_then(|s| serde_json::from_value(s.clone()).ok()),
            }),
            Err(Error::Api {
                code: ErrorCode::NotFound,
                ..
            }) => Ok(OutcomeResult {
                job_id: id,
                status: OutcomeStatus::NotFound,
                state: None,
            }),
            Err(e) => Err(e),
        }
    }

    /// `PUT /v1/artifacts/{digest}` streaming the file at `path` (retried on transport faults;
    /// the file is reopened for each attempt).
    pub(crate) async fn put_artifact(&self, digest: &str, path: &Path, size: u64) -> Result<()> {
        let url_path = format!("/v1/artifacts/{digest}");
        // Generous: an upload may be large. 30 s plus one second per MiB.
        let timeout = self.timeout + Duration::from_secs(size / (1024 * 1024));
        self.retrying("artifact upload", || async {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| Error::file(path, e))?;
            let response = self
                .builder(Method::PUT, &url_path, timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, size)
                .body(reqwest::Body::from(file))
                .send()
                .await
                .map_err(|e| Error::from_reqwest(e, timeout))?;
            let _: Answer<serde_json::Value> = decode(response, timeout).await?;
            Ok(())
        })
        .await
    }

    /// `PUT /v1/artifacts/{digest}` with an in-memory body.
    pub(crate) async fn put_artifact_bytes(&self, digest: &str, bytes: bytes::Bytes) -> Result<()> {
        let url_path = format!("/v1/artifacts/{digest}");
        let timeout = self.timeout;
        self.retrying("artifact upload", || async {
            let response = self
                .builder(Method::PUT, &url_path, timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes.clone())
                .send()
                .await
                .map_err(|e| Error::from_reqwest(e, timeout))?;
            let _: Answer<serde_json::Value> = decode(response, timeout).await?;
            Ok(())
        })
        .await
    }

    /// `GET /v1/artifacts/{digest}` as a byte stream.
    pub(crate) async fn get_artifact(&self, digest: &str) -> Result<reqwest::Response> {
        let path = format!("/v1/artifacts/{digest}");
        let timeout = self.timeout;
        self.retrying("artifact download", || async {
            let response = self
                .builder(Method::GET, &path, timeout)
                .send()
                .await
                .map_err(|e| Error::from_reqwest(e, timeout))?;
            if response.status().is_success() {
                Ok(response)
            } else {
                Err(error_from_response(response, timeout).await)
            }
        })
        .await
    }
}

/// Turns a response into its decoded body, or into [`Error::Api`].
async fn decode<T: DeserializeOwned>(
    response: reqwest::Response,
    timeout: Duration,
) -> Result<Answer<T>> {
    let status = response.status();
    if !status.is_success() {
        return Err(error_from_response(response, timeout).await);
    }
    let headers = response.headers().clone();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Error::from_reqwest(e, timeout))?;
    let bytes = if bytes.is_empty() {
        bytes::Bytes::from_static(b"null")
    } else {
        bytes
    };
    let body = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Protocol(format!(
            "cannot decode the coordinator's {status} answer: {e}"
        ))
    })?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn error_from_response(response: reqwest::Response, timeout: Duration) -> Error {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let request_id = response
        .headers()
        .get(leasehold_proto::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Error::from_reqwest(e, timeout),
    };
    let mut err = match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
        Ok(env) => Error::from_body(status, env.error),
        Err(_) => Error::Api {
            status,
            code: code_for_status(status),
            message: String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
            details: serde_json::Value::Null,
            request_id,
            retry_after: None,
        },
    };
    if let Error::Api {
        retry_after: ra, ..
    } = &mut err
    {
        *ra = retry_after;
    }
    err
}

/// The code a bare status (from a proxy, say) stands for.
fn code_for_status(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::InvalidRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::InvalidState,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::ValidationFailed,
        429 => ErrorCode::RateLimited,
        502..=504 => ErrorCode::Unavailable,
        _ => ErrorCode::Unknown,
    }
}

/// Checks and trims a base URL: `http://` or `https://`, no query, no trailing slash.
pub(crate) fn normalize_base(url: &str) -> Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let ok = (trimmed.starts_with("http://") || trimmed.starts_with("https://"))
        && !trimmed.contains('?')
        && !trimmed.contains('#')
        && trimmed.len() > "https://".len() - 1;
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "coordinator URL {url:?} must be http://host[:port] or https://host[:port]"
        )));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            normalize_base("http://127.0.0.1:7070/").ok().as_deref(),
            Some("http://127.0.0.1:7070")
        );
        assert!(normalize_base("ftp://x").is_err());
        assert!(normalize_base("http://x/?a=b").is_err());
        assert!(normalize_base("localhost:7070").is_err());
    }
}
