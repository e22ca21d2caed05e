//! [`Worker`]: async handlers on top of a [`WorkerSession`].
//!
//! ```no_run
//! use leasehold::{HandlerError, JobContext, Worker};
//! use serde_json::{Value, json};
//!
//! async fn resize(ctx: JobContext) -> Result<Value, HandlerError> {
//!     let width: u64 = ctx.payload()["width"].as_u64().ok_or_else(|| HandlerError::fatal("no width"))?;
//!     ctx.progress(json!({"step": "resizing"}));
//!     Ok(json!({"width": width}))
//! }
//!
//! # async fn run() -> leasehold::Result<()> {
//! Worker::builder("http://127.0.0.1:7070")
//!     .queues(["images"])
//!     .concurrency(8)
//!     .handler("resize", resize)
//!     .build()?
//!     .run(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::ending::Ending;
use crate::error::{Error, HandlerError, Result};
use crate::job::{CancelReason, JobContext, LeasedJob};
use crate::retry::RetryPolicy;
use crate::session::{SessionConfig, Transport, WorkerSession};

type Handler = Arc<
    dyn Fn(JobContext) -> BoxFuture<'static, Result<serde_json::Value, HandlerError>> + Send + Sync,
>;

/// Builds a [`Worker`]; see [`Worker::builder`].
#[must_use]
pub struct WorkerBuilder {
    config: SessionConfig,
    app_version: Option<String>,
    handlers: HashMap<String, Handler>,
    drain_timeout: Duration,
    cancel_grace: Duration,
    error: Option<Error>,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("config", &self.config)
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// Queues to take jobs from (replaces any set before).
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Most jobs run at once (default 10).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self
    }

    /// Whether to hold a few leases beyond the running jobs while jobs are short (under
    /// 100 ms on average), so that a slot that frees starts its next job without waiting a
    /// claim's round trip; about 50 ms of the slots' work, at most three times the
    /// concurrency, never more running at once
    /// than [`WorkerBuilder::concurrency`]. Default on. Turn it off when another worker of the
    /// same queue should get every job this one cannot start at once.
    pub fn prefetch(mut self, on: bool) -> Self {
        self.config.prefetch = on;
        self
    }

    /// Take fewer jobs at once (down to `adaptive.min`) while jobs fail with overload classes
    /// (`throttled`, `timeout`) or run slower than a latency target, and more again as they
    /// recover, up to [`WorkerBuilder::concurrency`] ([`crate::adaptive`]).
    pub fn adaptive_concurrency(mut self, adaptive: crate::AdaptiveConcurrency) -> Self {
        self.config.adaptive_concurrency = Some(adaptive);
        self
    }

    /// Lease length (default 30 s; heartbeats every third of it).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.lease_ttl = ttl;
        self
    }

    /// Registers the async handler of `kind`. It gets the job's [`JobContext`] and returns a
    /// serializable result or a [`HandlerError`].
    pub fn handler<F, Fut, T>(mut self, kind: impl Into<String>, f: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, HandlerError>> + Send + 'static,
        T: Serialize + 'static,
    {
        let kind = kind.into();
        if let Err(e) = crate::validate::kind(&kind) {
            self.error.get_or_insert(e);
        }
        let handler: Handler = Arc::new(move |ctx| {
            let fut = f(ctx);
            Box::pin(async move {
                let value = fut.await?;
                serde_json::to_value(value).map_err(|e| {
                    HandlerError::fatal(format!("cannot serialize the handler's result: {e}"))
                        .with_class("bad_result")
                })
            })
        });
        if self.handlers.insert(kind.clone(), handler).is_some() {
            self.error.get_or_insert(Error::InvalidArgument(format!(
                "two handlers registered for kind {kind:?}"
            )));
        }
        self
    }

    /// Stable worker id (default `<hostname>-<pid>-<random>`).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.config.worker_id = id.into();
        self
    }

    /// The application's own version, recorded with each outcome after the SDK's.
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_version = Some(version.into());
        self
    }

    /// Tenant (default `default`).
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.config.tenant = Some(tenant.into());
        self
    }

    /// Serve a worker pool shared by these tenants instead of one: the coordinator interleaves
    /// their jobs fairly (see [`WorkerBuilder::tenant_weight`]). Needs the coordinator's own key
    /// (`ORCHESTRATOR_API_KEY`) or a keyless coordinator; each job's `tenant` says whose it is.
    pub fn tenants<I, S>(mut self, tenants: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.tenants = tenants.into_iter().map(Into::into).collect();
        self
    }

    /// The share of one of the pool's tenants (1 to 1000; default 1): while both have ready
    /// jobs, a tenant of weight 3 gets three jobs for each one of a tenant of weight 1.
    pub fn tenant_weight(mut self, tenant: impl Into<String>, weight: u32) -> Self {
        self.config.tenant_weights.insert(tenant.into(), weight);
        self
    }

    /// API key, sent as `Authorization: Bearer …`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_key = Some(key.into());
        self
    }

    /// Transport (default [`Transport::Auto`]: WebSocket, HTTP long-poll as fallback).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.config.transport = transport;
        self
    }

    /// Retry policy for jobs without a backoff hint of their own.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.config.retry_policy = policy;
        self
    }

    /// Longest HTTP long-poll (default 10 s).
    pub fn poll_wait(mut self, wait: Duration) -> Self {
        self.config.poll_wait = wait;
        self
    }

    /// How long a shutdown waits for running handlers before releasing their jobs (default
    /// 30 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// How long a handler may keep running after its cancellation fired before it is dropped
    /// (default 5 s).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Where artifacts are staged while hashed (default the system temp dir).
    pub fn staging_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.staging_dir = dir.into();
        self
    }

    /// Full control over the session configuration.
    pub fn configure(mut self, f: impl FnOnce(&mut SessionConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Checks the configuration.
    pub fn build(mut self) -> Result<Worker> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.handlers.is_empty() {
            return Err(Error::InvalidArgument(
                "register at least one handler".into(),
            ));
        }
        if let Some(app) = &self.app_version {
            self.config.worker_version = format!("{} {app}", crate::session::sdk_version());
        }
        // Validate now rather than at run time.
        let probe = self.config.clone();
        crate::transport::http::normalize_base(&probe.url)?;
        if probe.queues.is_empty() {
            return Err(Error::InvalidArgument("name at least one queue".into()));
        }
        Ok(Worker {
            config: self.config,
            handlers: Arc::new(self.handlers),
            drain_timeout: self.drain_timeout,
            cancel_grace: self.cancel_grace,
        })
    }
}

/// Runs async handlers for leased jobs. Build with [`Worker::builder`].
pub struct Worker {
    config: SessionConfig,
    handlers: Arc<HashMap<String, Handler>>,
    drain_timeout: Duration,
    cancel_grace: Duration,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A builder for a worker of the coordinator at `url` (`http(s)://host:port`).
    pub fn builder(url: impl Into<String>) -> WorkerBuilder {
        WorkerBuilder {
            config: SessionConfig {
                prefetch: true,
                ..SessionConfig::new(url, Vec::<String>::new())
            },
            app_version: None,
            handlers: HashMap::new(),
            drain_timeout: crate::defaults::DRAIN_TIMEOUT,
            cancel_grace: crate::defaults::CANCEL_GRACE,
            error: None,
        }
    }

    /// This worker's id.
    pub fn worker_id(&self) -> &str {
        &self.config.worker_id
    }

    /// Runs until `shutdown` resolves, then drains: no new leases, running handlers get up to
    /// the drain timeout, the rest are released (no attempt spent), outcomes are flushed.
    /// Returns an error only if the coordinator refused the worker's configuration or
    /// credentials.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        // Prefetched leases wait in the session's queue until a handler ends.
        let concurrency = self.config.concurrency;
        let session = WorkerSession::start(self.config)?;
        let mut tasks = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failure = None;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                next = session.next_job(None), if tasks.len() < concurrency => match next {
                    Ok(Some(job)) => {
                        tasks.spawn(run_job(self.handlers.clone(), job, self.cancel_grace));
                    }
                    Ok(None) => {}
                    Err(Error::SessionClosed) => break,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                },
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = joined {
                        tracing::error!(error = %e, "job task failed");
                    }
                }
            }
        }
        session.drain();
        let deadline = Instant::now() + self.drain_timeout;
        if !tasks.is_empty() {
            tracing::info!(running = tasks.len(), "waiting for running handlers");
        }
        while !tasks.is_empty() {
            if tokio::time::timeout_at(deadline, tasks.join_next())
                .await
                .is_err()
            {
                tracing::warn!(
                    running = tasks.len(),
                    "drain timeout: releasing the jobs still running"
                );
                break;
            }
        }
        // Dropping a handler drops its unended job, which releases it.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        session.shutdown(Duration::ZERO).await;
        failure.map_or(Ok(()), Err)
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "handler panicked".to_owned())
}

async fn run_job(handlers: Arc<HashMap<String, Handler>>, job: LeasedJob, grace: Duration) {
    let ctx = job.context().clone();
    let span = ctx.span().clone();
    async move {
        let Some(handler) = handlers.get(ctx.kind()).cloned() else {
            tracing::error!("no handler registered for this kind");
            let err = HandlerError::fatal(format!(
                "no handler registered for kind {:?} on this worker",
                ctx.kind()
            ))
            .with_class("unknown_kind");
            let _ = job.fail(err);
            return;
        };
        tracing::debug!("handler started");
        let started = Instant::now();
        let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(ctx.clone()))) {
            Ok(fut) => AssertUnwindSafe(fut).catch_unwind(),
            Err(panic) => {
                let msg = panic_message(panic.as_ref());
                tracing::error!(panic = %msg, "handler panicked");
                drop(job.settle(Ending::Panicked(msg)));
                return;
            }
        };
        let give_up = {
            let ctx = ctx.clone();
            async move {
                ctx.cancelled().await;
                tokio::time::sleep(grace).await;
            }
        };
        let outcome = tokio::select! {
            r = fut => Some(r),
            () = give_up => None,
        };
        let elapsed = started.elapsed();
        if outcome.is_some() && ctx.cancel_reason() == Some(CancelReason::TimedOut) {
            tracing::warn!(
                ?elapsed,
                "handler ended after its run time ran out; a timeout failure is reported instead"
            );
        }
        let ending = match outcome {
            Some(Ok(Ok(value))) => {
                tracing::debug!(?elapsed, "handler succeeded");
                Ending::Returned(value)
            }
            Some(Ok(Err(err))) => {
                tracing::warn!(?elapsed, error = %err, "handler failed");
                Ending::Failed(err)
            }
            Some(Err(panic)) => {
                let msg = panic_message(panic.as_ref());
                tracing::error!(?elapsed, panic = %msg, "handler panicked");
                Ending::Panicked(msg)
            }
            None => {
                tracing::warn!(?grace, "handler ignored its cancellation; abandoning it");
                Ending::Abandoned
            }
        };
        drop(job.settle(ending));
    }
    .instrument(span)
    .await;
}
