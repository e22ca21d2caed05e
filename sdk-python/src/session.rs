//! `Session`: the Rust core's `WorkerSession` (transport, credit, coalesced heartbeats,
//! outcome batching, lease-loss cancellation, drain) driven by pulling jobs from Python.

use std::sync::Arc;
use std::time::Duration;

use leasehold::{Error, LeasedJob, SessionConfig, Transport, WorkerSession};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::{IntoPyResult, seconds};
use crate::job::PyJob;
use crate::runtime::{Owner, awaitable, block, runtime};

/// `leasehold-python/<version>`.
pub(crate) const SDK_VERSION: &str = concat!("leasehold-python/", env!("CARGO_PKG_VERSION"));

/// A worker session: holds leases for up to `concurrency` jobs at once.
#[pyclass(module = "leasehold._native", name = "Session", frozen)]
pub(crate) struct PySession {
    owner: Owner,
    inner: Arc<WorkerSession>,
}

/// Waits for the first job (up to `timeout`), then takes whatever else is ready, up to `max`.
async fn next_jobs(
    session: Arc<WorkerSession>,
    max: usize,
    timeout: Option<Duration>,
) -> PyResult<Vec<PyJob>> {
    let Some(first) = session.next_job(timeout).await.py()? else {
        return Ok(Vec::new());
    };
    let mut jobs: Vec<LeasedJob> = vec![first];
    while jobs.len() < max {
        // A zero timeout still polls once: it takes a job that is already queued.
        match session.next_job(Some(Duration::ZERO)).await {
            Ok(Some(job)) => jobs.push(job),
            Ok(None) | Err(Error::SessionClosed) => break,
            Err(e) => return Err(crate::errors::to_py(e)),
        }
    }
    Ok(jobs.into_iter().map(PyJob::new).collect())
}

fn check_max(max: usize) -> PyResult<usize> {
    if max == 0 {
        Err(PyValueError::new_err("max must be at least 1"))
    } else {
        Ok(max)
    }
}

#[pymethods]
impl PySession {
    /// Validates the configuration and starts connecting (in the background).
    #[new]
    #[pyo3(signature = (
        url, queues, *, concurrency=10, lease_ttl=30.0, worker_id=None, app_version=None,
        tenant=None, api_key=None, transport="auto", poll_wait=10.0, request_timeout=30.0,
        staging_dir=None, rng_seed=None, tenants=None, tenant_weights=None, adaptive_min=None,
        adaptive_latency_target=None, adaptive_classes=None, prefetch=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        url: String,
        queues: Vec<String>,
        concurrency: usize,
        lease_ttl: f64,
        worker_id: Option<String>,
        app_version: Option<String>,
        tenant: Option<String>,
        api_key: Option<String>,
        transport: &str,
        poll_wait: f64,
        request_timeout: f64,
        staging_dir: Option<std::path::PathBuf>,
        rng_seed: Option<u64>,
        tenants: Option<Vec<String>>,
        tenant_weights: Option<std::collections::BTreeMap<String, u32>>,
        adaptive_min: Option<usize>,
        adaptive_latency_target: Option<f64>,
        adaptive_classes: Option<Vec<String>>,
        prefetch: bool,
    ) -> PyResult<Self> {
        let mut cfg = SessionConfig::new(url, queues);
        cfg.concurrency = concurrency;
        // The consumer must then run at most `concurrency` jobs at once (`Worker` does).
        cfg.prefetch = prefetch;
        cfg.lease_ttl = seconds("lease_ttl", lease_ttl)?;
        if let Some(id) = worker_id {
            cfg.worker_id = id;
        }
        // The Rust core's version, then this layer's, then the application's (as the C ABI does).
        cfg.worker_version = match app_version.filter(|a| !a.is_empty()) {
            Some(app) => format!("{} {SDK_VERSION} {app}", leasehold::sdk_version()),
            None => format!("{} {SDK_VERSION}", leasehold::sdk_version()),
        };
        cfg.tenant = tenant;
        cfg.tenants = tenants.unwrap_or_default();
        cfg.tenant_weights = tenant_weights.unwrap_or_default();
        cfg.api_key = api_key;
        if let Some(min) = adaptive_min {
            let mut adaptive = leasehold::AdaptiveConcurrency::new(min);
            if let Some(target) = adaptive_latency_target {
                adaptive = adaptive.latency_target(seconds("adaptive_latency_target", target)?);
            }
            if let Some(classes) = adaptive_classes {
                adaptive = adaptive.classes(classes);
            }
            cfg.adaptive_concurrency = Some(adaptive);
        }
        cfg.transport = match transport {
            "auto" => Transport::Auto,
            "websocket" => Transport::WebSocket,
            "http" => Transport::Http,
            other => {
                return Err(PyValueError::new_err(format!(
                    "transport must be 'auto', 'websocket' or 'http', got {other:?}"
                )));
            }
        };
        cfg.poll_wait = seconds("poll_wait", poll_wait)?;
        cfg.request_timeout = seconds("request_timeout", request_timeout)?;
        if let Some(dir) = staging_dir {
            cfg.staging_dir = dir;
        }
        cfg.rng_seed = rng_seed;
        let rt = runtime()?;
        let _entered = rt.enter();
        let inner = WorkerSession::start(cfg).py()?;
        Ok(Self {
            owner: Owner::here("Worker"),
            inner: Arc::new(inner),
        })
    }

    /// This worker's id.
    #[getter]
    fn worker_id(&self) -> &str {
        self.inner.worker_id()
    }

    /// Up to `max` leased jobs: waits (GIL released, Ctrl-C honoured) up to `timeout` seconds
    /// (`None`: until one comes) for the first, then takes the others already waiting. An empty
    /// list on timeout; raises `WorkerClosed` once the session drains or closes.
    #[pyo3(signature = (max=1, timeout=None))]
    fn next_jobs(&self, py: Python<'_>, max: usize, timeout: Option<f64>) -> PyResult<Vec<PyJob>> {
        self.owner.check()?;
        let max = check_max(max)?;
        let timeout = timeout.map(|t| seconds("timeout", t)).transpose()?;
        block(py, next_jobs(self.inner.clone(), max, timeout))
    }

    /// [`next_jobs`](Self::next_jobs) as an awaitable (no timeout).
    #[pyo3(signature = (max=1))]
    fn next_jobs_async<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Bound<'py, PyAny>> {
        self.owner.check()?;
        let max = check_max(max)?;
        awaitable(py, next_jobs(self.inner.clone(), max, None))
    }

    /// Leases not yet ended (queued or running).
    fn active(&self) -> usize {
        self.inner.active()
    }

    /// How many jobs the session takes at once now (less than `concurrency` while an adaptive
    /// limit holds it back).
    fn concurrency_limit(&self) -> usize {
        self.inner.concurrency_limit()
    }

    /// Stops taking new leases and releases queued ones nobody took; running jobs go on.
    fn drain(&self) -> PyResult<()> {
        self.owner.check()?;
        self.inner.drain();
        Ok(())
    }

    /// Drains, waits up to `grace` seconds for running jobs, releases the rest, flushes every
    /// outcome and closes. Returns how many leases had to be released.
    #[pyo3(signature = (grace=0.0))]
    fn shutdown(&self, py: Python<'_>, grace: f64) -> PyResult<usize> {
        self.owner.check()?;
        let grace = seconds("grace", grace)?;
        let inner = self.inner.clone();
        block(py, async move { Ok(inner.shutdown(grace).await) })
    }
}
