//! `Job`: one leased job as the Python layer sees it — its data, its cancellation, artifact
//! uploads, and its single ending. Everything here is a thin call into the Rust core's
//! `LeasedJob`/`JobContext`; no protocol logic lives in Python.

use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use leasehold::proto::Artifact;
use leasehold::{CancelReason, Ending, HandlerError, JobContext, LeasedJob};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::errors::{IntoPyResult, parse_json, seconds, to_py};
use crate::runtime::{Owner, awaitable, block};

/// `(name, digest, size, media_type)`, what the Python layer turns into `leasehold.Artifact`.
pub(crate) type ArtifactTuple = (String, String, u64, String);

fn tuple(a: Artifact) -> ArtifactTuple {
    (a.name, a.digest, a.size, a.media_type)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The stable name of a cancellation reason (`None` until cancellation fires).
fn reason_name(reason: Option<CancelReason>) -> Option<&'static str> {
    reason.map(|r| match r {
        CancelReason::CancelRequested => "cancel_requested",
        CancelReason::LeaseLost => "lease_lost",
        CancelReason::LeaseExpired => "lease_expired",
        CancelReason::Shutdown => "shutdown",
        CancelReason::TimedOut => "timed_out",
        _ => "other",
    })
}

/// One leased job. End it exactly once; a job dropped unended is released (no attempt spent).
#[pyclass(module = "leasehold._native", name = "Job", frozen)]
pub(crate) struct PyJob {
    owner: Owner,
    ctx: JobContext,
    lease: Mutex<Option<LeasedJob>>,
}

impl PyJob {
    pub(crate) fn new(job: LeasedJob) -> Self {
        Self {
            owner: Owner::here("Job"),
            ctx: job.context().clone(),
            lease: Mutex::new(Some(job)),
        }
    }

    /// Takes the lease for ending it; fails if it already ended.
    fn take(&self) -> PyResult<LeasedJob> {
        self.owner.check()?;
        lock(&self.lease).take().ok_or_else(|| {
            PyValueError::new_err(format!("job {} has already been ended", self.ctx.id()))
        })
    }
}

#[pymethods]
impl PyJob {
    /// Job id (UUID text).
    #[getter]
    fn id(&self) -> String {
        self.ctx.id().to_string()
    }

    /// Job kind.
    #[getter]
    fn kind(&self) -> &str {
        self.ctx.kind()
    }

    /// Tenant whose job it is (one of a shared pool's).
    #[getter]
    fn tenant(&self) -> &str {
        self.ctx.tenant()
    }

    /// Queue.
    #[getter]
    fn queue(&self) -> &str {
        self.ctx.queue()
    }

    /// Payload as JSON text.
    #[getter]
    fn payload_json(&self) -> String {
        self.ctx.payload().to_string()
    }

    /// 1-based attempt number.
    #[getter]
    fn attempt(&self) -> u32 {
        self.ctx.attempt()
    }

    /// Attempts allowed in all.
    #[getter]
    fn max_attempts(&self) -> u32 {
        self.ctx.max_attempts()
    }

    /// Key stable across attempts (the job's idempotency key, else its id).
    #[getter]
    fn idempotency_key(&self) -> &str {
        self.ctx.idempotency_key()
    }

    /// Correlation id, if any.
    #[getter]
    fn correlation_id(&self) -> Option<&str> {
        self.ctx.correlation_id()
    }

    /// The lease's fencing token.
    #[getter]
    fn fencing_token(&self) -> i64 {
        self.ctx.fencing_token()
    }

    /// Whether the job has been ended (completed, failed, cancelled or released).
    #[getter]
    fn ended(&self) -> bool {
        lock(&self.lease).is_none()
    }

    /// Latest checkpoint as JSON text (this attempt's, else the previous attempt's).
    fn last_checkpoint_json(&self) -> Option<String> {
        self.ctx.last_checkpoint().map(|v| v.to_string())
    }

    /// Records a checkpoint (JSON text); the next coalesced heartbeat carries it.
    fn checkpoint(&self, value_json: &str) -> PyResult<()> {
        self.owner.check()?;
        self.ctx.checkpoint(parse_json("checkpoint", value_json)?);
        Ok(())
    }

    /// Records progress (JSON text); the next coalesced heartbeat carries it.
    fn progress(&self, value_json: &str) -> PyResult<()> {
        self.owner.check()?;
        self.ctx.progress(parse_json("progress", value_json)?);
        Ok(())
    }

    /// Whether cancellation has fired.
    fn is_cancelled(&self) -> bool {
        self.ctx.is_cancelled()
    }

    /// Why cancellation fired: `cancel_requested`, `lease_lost`, `lease_expired`, `shutdown`,
    /// or `None`.
    fn cancel_reason(&self) -> Option<&'static str> {
        reason_name(self.ctx.cancel_reason())
    }

    /// Waits (GIL released) until cancellation fires or `timeout` seconds pass; returns whether
    /// it fired.
    #[pyo3(signature = (timeout=None))]
    fn wait_cancelled(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.owner.check()?;
        let fired = self.ctx.cancelled();
        match timeout {
            None => block(py, async move {
                fired.await;
                Ok(true)
            }),
            Some(t) => {
                let t = seconds("timeout", t)?;
                block(py, async move {
                    Ok(tokio::time::timeout(t, fired).await.is_ok())
                })
            }
        }
    }

    /// An awaitable that resolves (to `None`) once cancellation fires.
    fn cancelled_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.owner.check()?;
        let fired = self.ctx.cancelled();
        awaitable(py, async move {
            fired.await;
            Ok(())
        })
    }

    /// Uploads in-memory bytes (hashed in Rust, GIL released).
    fn put_artifact_bytes(
        &self,
        py: Python<'_>,
        name: String,
        data: &[u8],
        media_type: String,
    ) -> PyResult<ArtifactTuple> {
        self.owner.check()?;
        let ctx = self.ctx.clone();
        let data = Bytes::copy_from_slice(data);
        block(py, async move {
            ctx.put_artifact_bytes(&name, &media_type, data)
                .await
                .py()
                .map(tuple)
        })
    }

    /// [`put_artifact_bytes`](Self::put_artifact_bytes) as an awaitable.
    fn put_artifact_bytes_async<'py>(
        &self,
        py: Python<'py>,
        name: String,
        data: &[u8],
        media_type: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.owner.check()?;
        let ctx = self.ctx.clone();
        let data = Bytes::copy_from_slice(data);
        awaitable(py, async move {
            ctx.put_artifact_bytes(&name, &media_type, data)
                .await
                .py()
                .map(tuple)
        })
    }

    /// Uploads the file at `path` without loading it: hashed in one pass, streamed in another.
    fn put_artifact_file(
        &self,
        py: Python<'_>,
        name: String,
        path: std::path::PathBuf,
        media_type: String,
    ) -> PyResult<ArtifactTuple> {
        self.owner.check()?;
        let ctx = self.ctx.clone();
        block(py, async move {
            ctx.put_artifact_file(&name, &media_type, &path)
                .await
                .py()
                .map(tuple)
        })
    }

    /// [`put_artifact_file`](Self::put_artifact_file) as an awaitable.
    fn put_artifact_file_async<'py>(
        &self,
        py: Python<'py>,
        name: String,
        path: std::path::PathBuf,
        media_type: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.owner.check()?;
        let ctx = self.ctx.clone();
        awaitable(py, async move {
            ctx.put_artifact_file(&name, &media_type, &path)
                .await
                .py()
                .map(tuple)
        })
    }

    /// A writer that streams chunks into a new artifact (staged to disk and hashed in Rust).
    fn artifact_writer(&self, name: String, media_type: String) -> PyResult<PyArtifactWriter> {
        self.owner.check()?;
        leasehold::artifact::validate_name(&name).py()?;
        leasehold::artifact::validate_media_type(&media_type).py()?;
        let rt = crate::runtime::runtime()?;
        let (tx, mut rx) = mpsc::channel::<Bytes>(4);
        let ctx = self.ctx.clone();
        let upload = rt.spawn(async move {
            let chunks = futures_stream(&mut rx);
            let mut reader = tokio_util::io::StreamReader::new(chunks);
            ctx.put_artifact_typed(&name, &media_type, &mut reader)
                .await
                .map(tuple)
        });
        Ok(PyArtifactWriter {
            owner: self.owner,
            tx: Mutex::new(Some(tx)),
            upload: Mutex::new(Some(upload)),
        })
    }

    /// Reports success with `result_json` and the artifacts uploaded so far.
    fn complete(&self, result_json: &str) -> PyResult<()> {
        let result = parse_json("result", result_json)?;
        drop(self.take()?.complete(result));
        Ok(())
    }

    /// Reports a failure: retried (after `after` seconds if given, else per the retry policy)
    /// unless `fatal`; the job ends `dead` once attempts are spent or when `fatal`.
    #[pyo3(signature = (message, *, error_class, fatal=false, after=None))]
    fn fail(
        &self,
        message: String,
        error_class: String,
        fatal: bool,
        after: Option<f64>,
    ) -> PyResult<()> {
        let error = match (fatal, after) {
            (true, _) => HandlerError::fatal(message),
            (false, Some(after)) => HandlerError::retry_after(message, seconds("after", after)?),
            (false, None) => HandlerError::retry(message),
        };
        drop(self.take()?.fail(error.with_class(error_class)));
        Ok(())
    }

    /// Ends the job as the handler's ending means, decided by the core
    /// (`leasehold::LeasedJob::settle`): `"returned"` with `result_json`; `"failed"` with
    /// `message` and `error_class` (retried after `after` seconds if given, else per the retry
    /// policy, unless `fatal`); `"panicked"` with `message`; `"stopped"`; `"abandoned"`.
    #[pyo3(signature = (ending, *, result_json=None, message=None, error_class=None, fatal=false, after=None))]
    fn settle(
        &self,
        ending: &str,
        result_json: Option<&str>,
        message: Option<String>,
        error_class: Option<String>,
        fatal: bool,
        after: Option<f64>,
    ) -> PyResult<()> {
        let ending = match ending {
            "returned" => Ending::Returned(parse_json("result", result_json.unwrap_or("null"))?),
            "failed" => {
                let message = message.unwrap_or_default();
                let error = match (fatal, after) {
                    (true, _) => HandlerError::fatal(message),
                    (false, Some(after)) => {
                        HandlerError::retry_after(message, seconds("after", after)?)
                    }
                    (false, None) => HandlerError::retry(message),
                };
                Ending::Failed(match error_class {
                    Some(class) => error.with_class(class),
                    None => error,
                })
            }
            "panicked" => Ending::Panicked(message.unwrap_or_default()),
            "stopped" => Ending::Stopped,
            "abandoned" => Ending::Abandoned,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "ending must be returned, failed, panicked, stopped or abandoned, got {other:?}"
                )));
            }
        };
        drop(self.take()?.settle(ending));
        Ok(())
    }

    /// Reports that the handler stopped because the job was cancelled.
    fn report_cancelled(&self) -> PyResult<()> {
        drop(self.take()?.report_cancelled());
        Ok(())
    }

    /// Gives the lease back unrun (no attempt spent).
    fn release(&self) -> PyResult<()> {
        drop(self.take()?.release());
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "<leasehold._native.Job id={} kind={:?} attempt={}>",
            self.ctx.id(),
            self.ctx.kind(),
            self.ctx.attempt()
        )
    }
}

/// The chunks a writer sends, as the byte stream `StreamReader` wants.
fn futures_stream(
    rx: &mut mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Unpin + '_ {
    Box::pin(futures_util::stream::unfold(rx, |rx| async move {
        rx.recv().await.map(|chunk| (Ok(chunk), rx))
    }))
}

type Upload = JoinHandle<leasehold::Result<ArtifactTuple>>;

/// Streams an artifact chunk by chunk: `write()` as often as needed, then `finish()`.
#[pyclass(module = "leasehold._native", name = "ArtifactWriter", frozen)]
pub(crate) struct PyArtifactWriter {
    owner: Owner,
    tx: Mutex<Option<mpsc::Sender<Bytes>>>,
    upload: Mutex<Option<Upload>>,
}

impl PyArtifactWriter {
    fn sender(&self) -> PyResult<mpsc::Sender<Bytes>> {
        self.owner.check()?;
        lock(&self.tx)
            .clone()
            .ok_or_else(|| PyValueError::new_err("this artifact writer is already finished"))
    }

    fn take_upload(&self) -> PyResult<Upload> {
        self.owner.check()?;
        drop(lock(&self.tx).take());
        lock(&self.upload)
            .take()
            .ok_or_else(|| PyValueError::new_err("this artifact writer is already finished"))
    }
}

async fn send(tx: mpsc::Sender<Bytes>, chunk: Bytes) -> PyResult<()> {
    // A closed channel means the upload task ended early; finish() reports why.
    let _ = tx.send(chunk).await;
    Ok(())
}

async fn finished(upload: Upload) -> PyResult<ArtifactTuple> {
    match upload.await {
        Ok(result) => result.map_err(to_py),
        Err(e) => Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "leasehold: artifact upload task failed: {e}"
        ))),
    }
}

#[pymethods]
impl PyArtifactWriter {
    /// Appends a chunk (waits, GIL released, while the stager is behind).
    fn write(&self, py: Python<'_>, chunk: &[u8]) -> PyResult<()> {
        let tx = self.sender()?;
        block(py, send(tx, Bytes::copy_from_slice(chunk)))
    }

    /// [`write`](Self::write) as an awaitable.
    fn write_async<'py>(&self, py: Python<'py>, chunk: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let tx = self.sender()?;
        awaitable(py, send(tx, Bytes::copy_from_slice(chunk)))
    }

    /// Ends the stream, uploads it, and returns the artifact.
    fn finish(&self, py: Python<'_>) -> PyResult<ArtifactTuple> {
        let upload = self.take_upload()?;
        block(py, finished(upload))
    }

    /// [`finish`](Self::finish) as an awaitable.
    fn finish_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let upload = self.take_upload()?;
        awaitable(py, finished(upload))
    }

    /// Abandons the artifact (nothing is recorded).
    fn abort(&self) {
        drop(lock(&self.tx).take());
        if let Some(upload) = lock(&self.upload).take() {
            upload.abort();
        }
    }
}
