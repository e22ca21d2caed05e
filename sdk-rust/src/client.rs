//! [`Client`]: enqueue, inspect, cancel, retry and wait for jobs; list runs and workers; cancel
//! and replay the jobs a filter selects; job statistics, failure classes and SLO reports.
//!
//! Every call retries transport faults and 429/502/503/504 with jittered backoff. Enqueues are
//! safe to retry: each logical call carries one idempotency key (the caller's, the deterministic
//! one from [`JobSpec::deterministic_key`], or a fresh UUIDv4) on every attempt, so a network
//! blip never creates two jobs.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use leasehold_proto::{
    BackoffHint, EnqueueBatchRequest, EnqueueBatchResponse, EnqueuedJob, Job, JobList, JobState,
    NewJob, QueueInfo, QueueList,
};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use uuid::Uuid;

use crate::artifact::Sha256Stream;
use crate::error::{Error, Result};
use crate::idempotency;
use crate::retry::RetryPolicy;
use crate::transport::http::{Answer, DEFAULT_TIMEOUT, HttpApi};

mod operators;

pub use operators::ListRuns;

/// A job to enqueue, built fluently. Converts from a wire [`NewJob`] too.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct JobSpec {
    job: NewJob,
    deterministic: bool,
}

impl JobSpec {
    /// A job of `kind` with `payload` on the `default` queue.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            job: NewJob {
                queue: leasehold_proto::DEFAULT_QUEUE.to_owned(),
                kind: kind.into(),
                payload,
                priority: 0,
                max_attempts: None,
                run_at: None,
                idempotency_key: None,
                correlation_id: None,
                project: None,
                tenant: None,
                backoff: None,
                timeout_ms: None,
                limit_keys: Vec::new(),
            },
            deterministic: false,
        }
    }

    /// Queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.job.queue = queue.into();
        self
    }

    /// Priority, -1000..=1000 (higher first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.job.priority = priority;
        self
    }

    /// Attempts before the job is `dead`, 1..=1000 (default 25).
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.job.max_attempts = Some(n);
        self
    }

    /// A key the tenant's limits apply to (`<prefix>:<value>`, e.g. `host:api.example.com`);
    /// call once per key, at most 8. See docs/flow-control.md.
    pub fn limit_key(mut self, key: impl Into<String>) -> Self {
        self.job.limit_keys.push(key.into());
        self
    }

    /// Not runnable before this instant.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.job.run_at = Some(at);
        self
    }

    /// Explicit idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.job.idempotency_key = Some(key.into());
        self.deterministic = false;
        self
    }

    /// Idempotency key derived from queue, kind and payload ([`idempotency::key_for`]): the
    /// same job enqueued twice, by anyone, is one job.
    pub fn deterministic_key(mut self) -> Self {
        self.deterministic = true;
        self
    }

    /// Correlation id (ties the job to an upstream request or trace).
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.job.correlation_id = Some(id.into());
        self
    }

    /// Project, for provenance.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.job.project = Some(project.into());
        self
    }

    /// Tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.job.tenant = Some(tenant.into());
        self
    }

    /// The job's own retry backoff (workers use it instead of their default policy).
    pub fn backoff(mut self, initial: Duration, multiplier: f64, max_delay: Duration) -> Self {
        self.job.backoff = Some(BackoffHint {
            initial_ms: u64::try_from(initial.as_millis()).unwrap_or(u64::MAX),
            multiplier,
            max_delay_ms: u64::try_from(max_delay.as_millis()).unwrap_or(u64::MAX),
        });
        self
    }

    /// Longest run of one attempt (1 s to 7 days; whole milliseconds): past it the worker's
    /// handler is cancelled and the attempt fails with class `timeout` (retried per the job's
    /// policy). Default: the queue's `default_timeout_ms`, else none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.job.timeout_ms = Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// The wire form, with its idempotency key settled (given, deterministic, or a fresh
    /// UUIDv4 for this logical call).
    pub fn into_new_job(self) -> Result<NewJob> {
        let mut job = self.job;
        crate::validate::queue_name(&job.queue)?;
        crate::validate::kind(&job.kind)?;
        if self.deterministic {
            job.idempotency_key = Some(idempotency::key_for(&job.queue, &job.kind, &job.payload)?);
        } else if job.idempotency_key.is_none() {
            job.idempotency_key = Some(idempotency::random_key());
        }
        Ok(job)
    }
}

impl From<NewJob> for JobSpec {
    fn from(job: NewJob) -> Self {
        Self {
            job,
            deterministic: false,
        }
    }
}

/// An enqueued job.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    /// The job (the earlier one when `replayed`).
    pub job: Job,
    /// True when the coordinator already had a job with this idempotency key (including when
    /// an earlier attempt of this same call got through before a retry).
    pub replayed: bool,
}

/// Filters for [`Client::list`]. `since` and `until` take an RFC 3339 time
/// (`2026-12-05T10:00:00Z`) or a span back from now (`90s`, `15m`, `24h`, `7d`).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ListJobs {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only the jobs of this run.
    pub run_id: Option<Uuid>,
    /// Only jobs with this correlation id.
    pub correlation_id: Option<String>,
    /// Only jobs enqueued at or after this.
    pub since: Option<String>,
    /// Only jobs enqueued before this.
    pub until: Option<String>,
    /// Page size (coordinator default 50, cap 500).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Builds a [`Client`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    url: String,
    api_key: Option<String>,
    tenant: Option<String>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl ClientBuilder {
    /// API key, sent as `Authorization: Bearer …`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Tenant for every call (the `Leasehold-Tenant` header).
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Timeout of one request (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retry policy for transport faults (default [`RetryPolicy::transport`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client> {
        Ok(Client {
            http: Arc::new(HttpApi::new(
                &self.url,
                self.api_key,
                self.tenant,
                self.timeout,
                self.retry,
            )?),
        })
    }
}

/// The producer and operator side of the API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: Arc<HttpApi>,
}

impl Client {
    /// A client of the coordinator at `url` with defaults.
    pub fn new(url: impl Into<String>) -> Result<Self> {
        Self::builder(url).build()
    }

    /// A builder for a client of the coordinator at `url`.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            api_key: None,
            tenant: None,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::transport(),
        }
    }

    /// Enqueues one job.
    pub async fn enqueue(&self, job: impl Into<JobSpec>) -> Result<Enqueued> {
        let job = job.into().into_new_job()?;
        let timeout = self.http.timeout;
        let answer: Answer<Job> = self
            .http
            .retrying("enqueue", || {
                self.http
                    .call(Method::POST, "/v1/jobs", Some(&job), &[], timeout)
            })
            .await?;
        let replayed = answer.status == reqwest::StatusCode::OK
            || answer
                .headers
                .get(leasehold_proto::IDEMPOTENT_REPLAYED_HEADER)
                .is_some_and(|v| v.as_bytes() == b"true");
        Ok(Enqueued {
            job: answer.body,
            replayed,
        })
    }

    /// Enqueues many jobs, in request order. Up to 1000 go in one transaction; larger inputs are
    /// sent in chunks of 1000 (each chunk atomic, and safe to retry thanks to the keys).
    pub async fn enqueue_many<I, J>(&self, jobs: I) -> Result<Vec<EnqueuedJob>>
    where
        I: IntoIterator<Item = J>,
        J: Into<JobSpec>,
    {
        let jobs = jobs
            .into_iter()
            .map(|j| j.into().into_new_job())
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(jobs.len());
        let timeout = self.http.timeout;
        for chunk in jobs.chunks(1000) {
            let body = EnqueueBatchRequest {
                jobs: chunk.to_vec(),
            };
            let answer: Answer<EnqueueBatchResponse> = self
                .http
                .retrying("enqueue batch", || {
                    self.http
                        .call(Method::POST, "/v1/jobs", Some(&body), &[], timeout)
                })
                .await?;
            out.extend(answer.body.jobs);
        }
        Ok(out)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let timeout = self.http.timeout;
        let answer: Answer<T> = self
            .http
            .retrying("get", || {
                self.http
                    .call::<(), T>(Method::GET, path, None, &[], timeout)
            })
            .await?;
        Ok(answer.body)
    }

    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        let timeout = self.http.timeout;
        let answer: Answer<T> = self
            .http
            .retrying("post", || {
                self.http.call(Method::POST, path, body, &[], timeout)
            })
            .await?;
        Ok(answer.body)
    }

    /// One job.
    pub async fn get(&self, id: Uuid) -> Result<Job> {
        self.get_json(&format!("/v1/jobs/{id}")).await
    }

    /// A page of jobs, newest first.
    pub async fn list(&self, query: &ListJobs) -> Result<JobList> {
        let path = with_query(
            "/v1/jobs",
            &[
                ("queue", query.queue.clone()),
                ("state", query.state.map(|s| s.as_str().to_owned())),
                ("kind", query.kind.clone()),
                ("run_id", query.run_id.map(|id| id.to_string())),
                ("correlation_id", query.correlation_id.clone()),
                ("since", query.since.clone()),
                ("until", query.until.clone()),
                ("limit", query.limit.map(|l| l.to_string())),
                ("cursor", query.cursor.clone()),
            ],
        );
        self.get_json(&path).await
    }

    /// Cancels a job: at once when queued or blocked, at its next heartbeat when leased.
    /// Cancelling a cancelled job is not an error.
    pub async fn cancel(&self, id: Uuid, reason: Option<&str>) -> Result<Job> {
        let body = reason.map(|r| json!({ "reason": r }));
        self.post_json(&format!("/v1/jobs/{id}/cancel"), body.as_ref())
            .await
    }

    /// Sends a `dead` or `cancelled` job back to `queued` with a fresh attempt budget.
    pub async fn retry(&self, id: Uuid) -> Result<Job> {
        self.post_json(&format!("/v1/jobs/{id}/retry"), None).await
    }

    /// Waits until the job reaches a terminal state (`succeeded`, `dead`, `cancelled`), polling
    /// with growing intervals (50 ms up to 1 s). [`Error::WaitTimeout`], with the job's state at
    /// the deadline, if it has not within `timeout` ([`Error::Timeout`] means the coordinator
    /// itself did not answer).
    pub async fn wait(&self, id: Uuid, timeout: Duration) -> Result<Job> {
        let deadline = Instant::now() + timeout;
        let mut every = Duration::from_millis(50);
        loop {
            let job = self.get(id).await?;
            if job.state.is_terminal() {
                return Ok(job);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::WaitTimeout {
                    job_id: id,
                    state: job.state,
                    attempt: job.attempt,
                    max_attempts: job.max_attempts,
                    waited: timeout,
                });
            }
            tokio::time::sleep_until((now + every).min(deadline)).await;
            every = (every * 3 / 2).min(Duration::from_secs(1));
        }
    }

    /// Every queue with its depth per state.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>> {
        Ok(self.get_json::<QueueList>("/v1/queues").await?.queues)
    }

    /// Stops new leases on a queue.
    pub async fn pause_queue(&self, name: &str) -> Result<QueueInfo> {
        crate::validate::queue_name(name)?;
        self.post_json(&format!("/v1/queues/{name}/pause"), None)
            .await
    }

    /// Resumes a paused queue.
    pub async fn resume_queue(&self, name: &str) -> Result<QueueInfo> {
        crate::validate::queue_name(name)?;
        self.post_json(&format!("/v1/queues/{name}/resume"), None)
            .await
    }

    /// Submits a run: a DAG of jobs (each with a `key` and the `depends_on` keys it waits for).
    /// A run without a `run_token` gets a fresh one, so a retried submission returns the same
    /// run instead of starting a second one.
    pub async fn submit_run(&self, run: &leasehold_proto::NewRun) -> Result<leasehold_proto::Run> {
        let mut run = run.clone();
        run.run_token
            .get_or_insert_with(|| Uuid::new_v4().to_string());
        let body = serde_json::to_value(&run).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.post_json("/v1/runs", Some(&body)).await
    }

    /// One run with its jobs and aggregate status.
    pub async fn get_run(&self, id: Uuid) -> Result<leasehold_proto::Run> {
        self.get_json(&format!("/v1/runs/{id}")).await
    }

    /// Cancels a run (idempotent): waiting jobs end cancelled, running ones are asked to stop.
    pub async fn cancel_run(&self, id: Uuid) -> Result<leasehold_proto::Run> {
        self.post_json(&format!("/v1/runs/{id}/cancel"), None).await
    }

    /// Downloads an artifact into `writer`, verifying its digest while streaming. Returns the
    /// size. On a digest mismatch the bytes written so far must be discarded by the caller.
    pub async fn download_artifact<W: AsyncWrite + Unpin>(
        &self,
        digest: &str,
        writer: &mut W,
    ) -> Result<u64> {
        if !crate::artifact::is_digest(digest) {
            return Err(Error::InvalidArgument(format!(
                "{digest:?} is not sha256:<64 lowercase hex>"
            )));
        }
        let mut response = self.http.get_artifact(digest).await?;
        let mut hash = Sha256Stream::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Error::from_reqwest(e, self.http.timeout))?
        {
            hash.update(&chunk);
            writer.write_all(&chunk).await?;
        }
        writer.flush().await?;
        let size = hash.size();
        let got = hash.finish();
        if got != digest {
            return Err(Error::Protocol(format!(
                "artifact {digest} arrived with digest {got}"
            )));
        }
        Ok(size)
    }
}

/// `path` with the parameters that have a value, percent-encoded, in the order given.
fn with_query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={}", encode(v))))
        .collect();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_settle_their_key() -> Result<()> {
        let a = JobSpec::new("k", json!({"x": 1})).into_new_job()?;
        let b = JobSpec::new("k", json!({"x": 1})).into_new_job()?;
        assert_ne!(a.idempotency_key, b.idempotency_key, "fresh key per call");
        let d = JobSpec::new("k", json!({"x": 1}))
            .queue("q")
            .deterministic_key()
            .into_new_job()?;
        assert_eq!(
            d.idempotency_key,
            Some(idempotency::key_for("q", "k", &json!({"x": 1}))?)
        );
        assert!(
            JobSpec::new("bad kind", json!(null))
                .into_new_job()
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn query_encoding() {
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(with_query("/v1/jobs", &[("queue", None)]), "/v1/jobs");
        assert_eq!(
            with_query(
                "/v1/jobs",
                &[
                    ("queue", Some("q".into())),
                    ("kind", None),
                    ("since", Some("2026-12-05T10:00:00+01:00".into())),
                ]
            ),
            "/v1/jobs?queue=q&since=2026-12-05T10%3A00%3A00%2B01%3A00"
        );
    }
}
