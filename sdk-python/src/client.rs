//! `Client`: the Rust core's `Client` (enqueue safely retried with idempotency keys, inspect,
//! cancel, retry, wait, runs, artifacts; for operators, listings by filter, workers, cancel or
//! replay by filter, statistics, failure classes and SLO reports). One dispatcher serves the blocking and the asyncio
//! entry points, so each operation is written once; arguments and answers travel as JSON text
//! (the Python layer turns them into typed objects).

use std::sync::Arc;
use std::time::Duration;

use leasehold::proto::{CancellationRequest, JobState, NewJob, NewRun, ReplayRequest, RunStatus};
use leasehold::{Client, Error, JobSpec, ListJobs, ListRuns};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::errors::{parse_json, seconds, to_py};
use crate::runtime::{Owner, awaitable, block};

/// A coordinator client. Cheap to share between threads.
#[pyclass(module = "leasehold._native", name = "Client", frozen)]
pub(crate) struct PyClient {
    owner: Owner,
    inner: Arc<Client>,
}

/// One operation, decoded from its name and JSON arguments before anything is sent.
enum Op {
    Enqueue(JobSpec),
    EnqueueMany(Vec<JobSpec>),
    Get(Uuid),
    List(ListJobs),
    Cancel(Uuid, Option<String>),
    Retry(Uuid),
    Wait(Uuid, Duration),
    SubmitRun(Box<NewRun>),
    GetRun(Uuid),
    CancelRun(Uuid),
    ListRuns(ListRuns),
    Workers(Option<String>),
    CancelJobs(Box<CancellationRequest>),
    ReplayJobs(Box<ReplayRequest>),
    Stats(Option<String>, Option<String>),
    Failures(Option<String>, Option<String>),
    Slo(Option<String>),
    Queues,
    PauseQueue(String),
    ResumeQueue(String),
    Download(String, std::path::PathBuf),
}

fn bad(msg: String) -> PyErr {
    PyValueError::new_err(msg)
}

fn field<T: DeserializeOwned>(args: &Value, name: &str) -> PyResult<T> {
    serde_json::from_value(args.get(name).cloned().unwrap_or(Value::Null))
        .map_err(|e| bad(format!("bad {name}: {e}")))
}

fn uuid_field(args: &Value, name: &str) -> PyResult<Uuid> {
    let text: String = field(args, name)?;
    Uuid::parse_str(&text).map_err(|_| bad(format!("{name} {text:?} is not a UUID")))
}

fn opt_uuid_field(args: &Value, name: &str) -> PyResult<Option<Uuid>> {
    let text: Option<String> = field(args, name)?;
    text.map(|t| Uuid::parse_str(&t).map_err(|_| bad(format!("{name} {t:?} is not a UUID"))))
        .transpose()
}

fn spec(job: Value, deterministic: bool) -> PyResult<JobSpec> {
    let job: NewJob = serde_json::from_value(job).map_err(|e| bad(format!("bad job: {e}")))?;
    let spec = JobSpec::from(job);
    Ok(if deterministic {
        spec.deterministic_key()
    } else {
        spec
    })
}

impl Op {
    fn decode(op: &str, args: &Value) -> PyResult<Self> {
        Ok(match op {
            "enqueue" => Op::Enqueue(spec(field(args, "job")?, field(args, "deterministic")?)?),
            "enqueue_many" => {
                let deterministic: bool = field(args, "deterministic")?;
                let jobs: Vec<Value> = field(args, "jobs")?;
                Op::EnqueueMany(
                    jobs.into_iter()
                        .map(|j| spec(j, deterministic))
                        .collect::<PyResult<_>>()?,
                )
            }
            "get" => Op::Get(uuid_field(args, "id")?),
            "list" => {
                let mut q = ListJobs::default();
                q.queue = field(args, "queue")?;
                let state: Option<String> = field(args, "state")?;
                q.state = state
                    .map(|s| {
                        serde_json::from_value::<JobState>(json!(s))
                            .map_err(|_| bad(format!("unknown job state {s:?}")))
                    })
                    .transpose()?;
                q.kind = field(args, "kind")?;
                q.run_id = opt_uuid_field(args, "run_id")?;
                q.correlation_id = field(args, "correlation_id")?;
                q.since = field(args, "since")?;
                q.until = field(args, "until")?;
                q.limit = field(args, "limit")?;
                q.cursor = field(args, "cursor")?;
                Op::List(q)
            }
            "list_runs" => {
                let mut q = ListRuns::default();
                let status: Option<String> = field(args, "status")?;
                q.status = status
                    .map(|s| {
                        RunStatus::parse(&s).ok_or_else(|| bad(format!("unknown run status {s:?}")))
                    })
                    .transpose()?;
                q.name = field(args, "name")?;
                q.project = field(args, "project")?;
                q.correlation_id = field(args, "correlation_id")?;
                q.since = field(args, "since")?;
                q.until = field(args, "until")?;
                q.limit = field(args, "limit")?;
                q.cursor = field(args, "cursor")?;
                Op::ListRuns(q)
            }
            "workers" => Op::Workers(field(args, "since")?),
            "cancel_jobs" => Op::CancelJobs(Box::new(field(args, "request")?)),
            "replay_jobs" => Op::ReplayJobs(Box::new(field(args, "request")?)),
            "stats" => Op::Stats(field(args, "since")?, field(args, "queue")?),
            "failures" => Op::Failures(field(args, "since")?, field(args, "queue")?),
            "slo" => Op::Slo(field(args, "window")?),
            "cancel" => Op::Cancel(uuid_field(args, "id")?, field(args, "reason")?),
            "retry" => Op::Retry(uuid_field(args, "id")?),
            "wait" => {
                let timeout: f64 = field(args, "timeout")?;
                Op::Wait(uuid_field(args, "id")?, seconds("timeout", timeout)?)
            }
            "submit_run" => Op::SubmitRun(Box::new(field(args, "run")?)),
            "get_run" => Op::GetRun(uuid_field(args, "id")?),
            "cancel_run" => Op::CancelRun(uuid_field(args, "id")?),
            "queues" => Op::Queues,
            "pause_queue" => Op::PauseQueue(field(args, "name")?),
            "resume_queue" => Op::ResumeQueue(field(args, "name")?),
            "download_artifact" => Op::Download(field(args, "digest")?, field(args, "path")?),
            other => return Err(bad(format!("unknown client operation {other:?}"))),
        })
    }

    async fn run(self, c: Arc<Client>) -> Result<Value, Error> {
        fn v<T: serde::Serialize>(x: T) -> Result<Value, Error> {
            serde_json::to_value(x).map_err(|e| Error::Protocol(e.to_string()))
        }
        match self {
            Op::Enqueue(s) => {
                let e = c.enqueue(s).await?;
                Ok(json!({ "job": v(e.job)?, "replayed": e.replayed }))
            }
            Op::EnqueueMany(s) => v(c.enqueue_many(s).await?),
            Op::Get(id) => v(c.get(id).await?),
            Op::List(q) => v(c.list(&q).await?),
            Op::Cancel(id, reason) => v(c.cancel(id, reason.as_deref()).await?),
            Op::Retry(id) => v(c.retry(id).await?),
            Op::Wait(id, t) => v(c.wait(id, t).await?),
            Op::SubmitRun(run) => v(c.submit_run(&run).await?),
            Op::GetRun(id) => v(c.get_run(id).await?),
            Op::CancelRun(id) => v(c.cancel_run(id).await?),
            Op::ListRuns(q) => v(c.list_runs(&q).await?),
            Op::Workers(since) => v(c.workers(since.as_deref()).await?),
            Op::CancelJobs(r) => v(c.cancel_jobs(&r).await?),
            Op::ReplayJobs(r) => v(c.replay_jobs(&r).await?),
            Op::Stats(since, queue) => v(c.stats(since.as_deref(), queue.as_deref()).await?),
            Op::Failures(since, queue) => v(c.failures(since.as_deref(), queue.as_deref()).await?),
            Op::Slo(window) => v(c.slo(window.as_deref()).await?),
            Op::Queues => v(c.queues().await?),
            Op::PauseQueue(name) => v(c.pause_queue(&name).await?),
            Op::ResumeQueue(name) => v(c.resume_queue(&name).await?),
            Op::Download(digest, path) => {
                // Written beside the target and renamed: a failed or mismatched download never
                // leaves a partial file under the requested name.
                let partial = path.with_extension("leasehold-partial");
                let mut file = tokio::fs::File::create(&partial).await?;
                let result = c.download_artifact(&digest, &mut file).await;
                drop(file);
                match result {
                    Ok(size) => {
                        tokio::fs::rename(&partial, &path).await?;
                        Ok(json!(size))
                    }
                    Err(e) => {
                        let _ = tokio::fs::remove_file(&partial).await;
                        Err(e)
                    }
                }
            }
        }
    }
}

impl PyClient {
    fn prepare(
        &self,
        op: &str,
        args_json: &str,
    ) -> PyResult<impl Future<Output = PyResult<String>> + Send + 'static> {
        self.owner.check()?;
        let op = Op::decode(op, &parse_json("arguments", args_json)?)?;
        let client = self.inner.clone();
        Ok(async move {
            let value = op.run(client).await.map_err(to_py)?;
            Ok(value.to_string())
        })
    }
}

#[pymethods]
impl PyClient {
    /// A client of the coordinator at `url`.
    #[new]
    #[pyo3(signature = (url, *, api_key=None, tenant=None, timeout=30.0))]
    fn new(
        url: String,
        api_key: Option<String>,
        tenant: Option<String>,
        timeout: f64,
    ) -> PyResult<Self> {
        let mut b = Client::builder(url).timeout(seconds("timeout", timeout)?);
        if let Some(k) = api_key {
            b = b.api_key(k);
        }
        if let Some(t) = tenant {
            b = b.tenant(t);
        }
        let inner = b.build().map_err(to_py)?;
        Ok(Self {
            owner: Owner::here("Client"),
            inner: Arc::new(inner),
        })
    }

    /// Runs operation `op` with JSON arguments, blocking with the GIL released (Ctrl-C
    /// honoured); returns the answer as JSON text.
    fn call(&self, py: Python<'_>, op: &str, args_json: &str) -> PyResult<String> {
        let fut = self.prepare(op, args_json)?;
        block(py, fut)
    }

    /// [`call`](Self::call) as an asyncio awaitable.
    fn call_async<'py>(
        &self,
        py: Python<'py>,
        op: &str,
        args_json: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fut = self.prepare(op, args_json)?;
        awaitable(py, fut)
    }
}
