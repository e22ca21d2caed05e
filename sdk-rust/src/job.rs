//! One leased job: [`JobContext`] (what a handler reads and reports while it runs) and
//! [`LeasedJob`] (the lease itself, ended exactly once by complete, fail, cancelled or release).

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use leasehold_proto::{Artifact, Job, Lease, OutcomeKind};
use serde::de::DeserializeOwned;
use tokio::io::AsyncRead;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use uuid::Uuid;

use crate::artifact::{self, DEFAULT_MEDIA_TYPE};
use crate::error::{Error, HandlerError, Result};
pub use crate::receipt::{NotSentReason, OutcomeAck, OutcomeReceipt};
use crate::transport::http::HttpApi;
use crate::util::lock;

/// Why a job's cancellation fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// An operator cancelled the job; it will be reported `cancelled`.
    CancelRequested,
    /// The coordinator says the lease is gone (stale token): the outcome is dropped.
    LeaseLost,
    /// The coordinator stayed unreachable past the lease deadline (monotonic clock): the lease
    /// is presumed gone and the outcome is dropped.
    LeaseExpired,
    /// The worker is shutting down and gave the lease back (no attempt spent).
    Shutdown,
    /// The attempt's run time is running out (the lease's `timeout_ms`): stop. The SDK reports a
    /// retryable failure of class `timeout` in place of whatever the handler ends with, before
    /// the coordinator's deadline.
    TimedOut,
}

impl CancelReason {
    /// Whether the handler's own ending will still be reported (only for
    /// [`CancelReason::CancelRequested`]; after [`CancelReason::TimedOut`] the SDK reports the
    /// `timeout` failure instead).
    pub fn outcome_is_reported(self) -> bool {
        matches!(self, Self::CancelRequested)
    }
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CancelRequested => "cancel requested",
            Self::LeaseLost => "lease lost",
            Self::LeaseExpired => "lease expired while the coordinator was unreachable",
            Self::Shutdown => "worker shutting down",
            Self::TimedOut => "run time exceeded",
        })
    }
}

/// Progress, checkpoint and artifacts of one attempt, with versions so that a heartbeat knows
/// what it still has to send (latest wins).
#[derive(Debug, Default)]
pub(crate) struct JobData {
    pub(crate) progress: Option<serde_json::Value>,
    pub(crate) progress_ver: u64,
    pub(crate) progress_acked: u64,
    pub(crate) checkpoint: Option<serde_json::Value>,
    pub(crate) checkpoint_ver: u64,
    pub(crate) checkpoint_acked: u64,
    pub(crate) artifacts: Vec<Artifact>,
}

impl JobData {
    pub(crate) fn dirty(&self) -> bool {
        self.progress_ver > self.progress_acked || self.checkpoint_ver > self.checkpoint_acked
    }
}

/// State shared by a job's context handles and the session core.
#[derive(Debug)]
pub(crate) struct JobShared {
    pub(crate) lease: Lease,
    idempotency_key: String,
    cancel: CancellationToken,
    reason: OnceLock<CancelReason>,
    /// When the session handed the job out to run (prefetch measures the run from here).
    handed_out: OnceLock<Instant>,
    pub(crate) data: Mutex<JobData>,
    http: Arc<HttpApi>,
    staging_dir: Arc<Path>,
    span: tracing::Span,
}

impl JobShared {
    pub(crate) fn new(
        lease: Lease,
        http: Arc<HttpApi>,
        staging_dir: Arc<Path>,
        worker_id: &str,
    ) -> Self {
        let job = &lease.job;
        let span = tracing::info_span!(
            "job",
            job_id = %job.id,
            kind = %job.kind,
            queue = %job.queue,
            attempt = lease.attempt,
            correlation_id = job.correlation_id.as_deref().unwrap_or(""),
            worker_id = %worker_id,
        );
        Self {
            idempotency_key: crate::idempotency::job_key(job),
            cancel: CancellationToken::new(),
            reason: OnceLock::new(),
            handed_out: OnceLock::new(),
            data: Mutex::new(JobData::default()),
            http,
            staging_dir,
            span,
            lease,
        }
    }

    pub(crate) fn id(&self) -> Uuid {
        self.lease.job.id
    }

    pub(crate) fn token(&self) -> i64 {
        self.lease.fencing_token
    }

    /// Fires cancellation; the first reason sticks.
    pub(crate) fn fire(&self, reason: CancelReason) {
        if self.reason.set(reason).is_ok() {
            let _enter = self.span.enter();
            match reason {
                CancelReason::CancelRequested | CancelReason::Shutdown => {
                    tracing::info!(%reason, "cancelling handler");
                }
                CancelReason::LeaseLost | CancelReason::LeaseExpired => {
                    tracing::warn!(%reason, "cancelling handler; its outcome will be dropped");
                }
                CancelReason::TimedOut => {
                    tracing::warn!(
                        timeout_ms = ?self.lease.timeout_ms,
                        "cancelling handler: run time exceeded; a timeout failure will be reported"
                    );
                }
            }
        }
        self.cancel.cancel();
    }

    pub(crate) fn reason(&self) -> Option<CancelReason> {
        self.reason.get().copied()
    }

    /// Notes that the session handed the job out to run (the first time counts).
    pub(crate) fn hand_out(&self) {
        let _ = self.handed_out.set(Instant::now());
    }

    /// When the session handed the job out to run, if it did.
    pub(crate) fn handed_out(&self) -> Option<Instant> {
        self.handed_out.get().copied()
    }

    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }
}

/// What a handler sees of its job: input, identity, cancellation, and ways to report
/// progress, checkpoints and artifacts. Cheap to clone; every clone is the same job.
///
/// Progress and checkpoints are latest-wins and travel with the next coalesced heartbeat (a
/// checkpoint set just before a failure is sent before the failure, so the next attempt sees it).
#[derive(Debug, Clone)]
pub struct JobContext {
    pub(crate) shared: Arc<JobShared>,
}

impl JobContext {
    /// The job as the coordinator stored it when leasing it.
    pub fn job(&self) -> &Job {
        &self.shared.lease.job
    }

    /// The lease (fencing token, deadline, retry hints).
    pub fn lease(&self) -> &Lease {
        &self.shared.lease
    }

    /// Job id.
    pub fn id(&self) -> Uuid {
        self.shared.id()
    }

    /// Handler name.
    pub fn kind(&self) -> &str {
        &self.job().kind
    }

    /// The tenant whose job it is (one of a shared pool's tenants).
    pub fn tenant(&self) -> &str {
        &self.job().tenant
    }

    /// Queue.
    pub fn queue(&self) -> &str {
        &self.job().queue
    }

    /// The input.
    pub fn payload(&self) -> &serde_json::Value {
        &self.job().payload
    }

    /// The input decoded as `T`; a payload that does not fit is a fatal error (another attempt
    /// would see the same payload).
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_value(self.payload().clone()).map_err(|e| {
            HandlerError::fatal(format!("payload does not match the expected shape: {e}"))
                .with_class("bad_payload")
        })
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        u32::try_from(self.shared.lease.attempt).unwrap_or(1)
    }

    /// Attempts allowed in all.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.shared.lease.retry.max_attempts).unwrap_or(1)
    }

    /// A key stable across attempts for making side effects exactly-once downstream: the job's
    /// idempotency key if it was enqueued with one, else its id.
    pub fn idempotency_key(&self) -> &str {
        &self.shared.idempotency_key
    }

    /// The job's correlation id, if any.
    pub fn correlation_id(&self) -> Option<&str> {
        self.job().correlation_id.as_deref()
    }

    /// The lease's fencing token.
    pub fn fencing_token(&self) -> i64 {
        self.shared.token()
    }

    /// This attempt's longest run (the job's `timeout_ms`, else its queue's default), if it has
    /// one. Shortly before it runs out the job's cancellation fires
    /// ([`CancelReason::TimedOut`]) and the attempt is reported failed with class `timeout`.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.shared
            .lease
            .timeout_ms
            .map(std::time::Duration::from_millis)
    }

    /// The latest checkpoint: the one this attempt set last, else the one the previous attempt
    /// left.
    pub fn last_checkpoint(&self) -> Option<serde_json::Value> {
        let data = lock(&self.shared.data);
        data.checkpoint
            .clone()
            .or_else(|| self.shared.lease.checkpoint.clone())
    }

    /// Records a checkpoint (latest wins); the next heartbeat carries it and the next attempt
    /// receives it.
    pub fn checkpoint(&self, value: serde_json::Value) {
        let mut data = lock(&self.shared.data);
        data.checkpoint = Some(value);
        data.checkpoint_ver += 1;
    }

    /// Records progress (latest wins); the next heartbeat carries it.
    pub fn progress(&self, value: serde_json::Value) {
        let mut data = lock(&self.shared.data);
        data.progress = Some(value);
        data.progress_ver += 1;
    }

    /// Resolves when the job should stop: cancel requested, lease lost or expired, run time
    /// exceeded, or worker shutdown ([`JobContext::cancel_reason`] says which). Owned, so it can be moved into a
    /// `select!` or a spawned task.
    pub fn cancelled(&self) -> WaitForCancellationFutureOwned {
        self.shared.cancel.clone().cancelled_owned()
    }

    /// Whether cancellation has fired (for synchronous code).
    pub fn is_cancelled(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// A child of the job's cancellation token, for passing to code that takes a
    /// `CancellationToken` (cancelling it does not cancel the job).
    pub fn cancellation_token(&self) -> CancellationToken {
        self.shared.cancel.child_token()
    }

    /// Why cancellation fired, once it has.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.shared.reason()
    }

    /// The `tracing` span of this job (job id, kind, queue, attempt, correlation id).
    pub fn span(&self) -> &tracing::Span {
        &self.shared.span
    }

    /// Artifacts uploaded so far by this attempt.
    pub fn artifacts(&self) -> Vec<Artifact> {
        lock(&self.shared.data).artifacts.clone()
    }

    fn check_lease(&self) -> Result<()> {
        match self.shared.reason() {
            Some(CancelReason::LeaseLost | CancelReason::LeaseExpired | CancelReason::TimedOut) => {
                Err(Error::LeaseLost { job_id: self.id() })
            }
            _ => Ok(()),
        }
    }

    fn record(&self, artifact: Artifact) {
        let mut data = lock(&self.shared.data);
        data.artifacts.retain(|a| a.name != artifact.name);
        data.artifacts.push(artifact);
    }

    /// Adds an artifact uploaded earlier (by an earlier attempt, say, as recorded in a
    /// checkpoint) to this attempt's manifest without uploading it again. The blob must already
    /// be stored under its digest.
    pub fn declare_artifact(&self, artifact: Artifact) -> Result<()> {
        artifact::validate_name(&artifact.name)?;
        artifact::validate_media_type(&artifact.media_type)?;
        if !artifact::is_digest(&artifact.digest) {
            return Err(Error::InvalidArgument(format!(
                "{:?} is not sha256:<64 lowercase hex>",
                artifact.digest
            )));
        }
        self.record(artifact);
        Ok(())
    }

    /// Uploads `reader` as artifact `name` (`application/octet-stream`): hashed while it is
    /// copied to a temporary file, then streamed to `PUT /v1/artifacts/{digest}`. The completion
    /// carries it in the manifest. Putting the same name again replaces the entry.
    pub async fn put_artifact<R: AsyncRead + Unpin>(
        &self,
        name: &str,
        reader: &mut R,
    ) -> Result<Artifact> {
        self.put_artifact_typed(name, DEFAULT_MEDIA_TYPE, reader)
            .await
    }

    /// [`JobContext::put_artifact`] with a media type.
    pub async fn put_artifact_typed<R: AsyncRead + Unpin>(
        &self,
        name: &str,
        media_type: &str,
        reader: &mut R,
    ) -> Result<Artifact> {
        artifact::validate_name(name)?;
        artifact::validate_media_type(media_type)?;
        self.check_lease()?;
        let staged = artifact::stage(reader, &self.shared.staging_dir).await?;
        self.shared
            .http
            .put_artifact(&staged.digest, staged.path(), staged.size)
            .await?;
        let artifact = Artifact {
            name: name.to_owned(),
            digest: staged.digest.clone(),
            size: staged.size,
            media_type: media_type.to_owned(),
        };
        self.record(artifact.clone());
        Ok(artifact)
    }

    /// Uploads the file at `path` without copying it: hashed in one pass, streamed in a second.
    /// The file must not change in between (a change is caught by the coordinator's digest check).
    pub async fn put_artifact_file(
        &self,
        name: &str,
        media_type: &str,
        path: &Path,
    ) -> Result<Artifact> {
        artifact::validate_name(name)?;
        artifact::validate_media_type(media_type)?;
        self.check_lease()?;
        let (digest, size) = artifact::digest_file(path).await?;
        self.shared.http.put_artifact(&digest, path, size).await?;
        let artifact = Artifact {
            name: name.to_owned(),
            digest,
            size,
            media_type: media_type.to_owned(),
        };
        self.record(artifact.clone());
        Ok(artifact)
    }

    /// Uploads bytes already in memory.
    pub async fn put_artifact_bytes(
        &self,
        name: &str,
        media_type: &str,
        bytes: impl Into<bytes::Bytes>,
    ) -> Result<Artifact> {
        artifact::validate_name(name)?;
        artifact::validate_media_type(media_type)?;
        self.check_lease()?;
        let bytes = bytes.into();
        let digest = artifact::digest_bytes(&bytes);
        let size = bytes.len() as u64;
        self.shared.http.put_artifact_bytes(&digest, bytes).await?;
        let artifact = Artifact {
            name: name.to_owned(),
            digest,
            size,
            media_type: media_type.to_owned(),
        };
        self.record(artifact.clone());
        Ok(artifact)
    }
}

/// Where a job's ending goes: the engine holding its lease, seen from the job.
pub(crate) trait Settle: Send + Sync {
    /// Ends the lease of `job` with `outcome` (once per job).
    fn end(&self, job: &Arc<JobShared>, outcome: OutcomeKind) -> OutcomeReceipt;

    /// The failure outcome for `error` (retry time from the job's policy).
    fn failure(&self, ctx: &JobContext, error: &HandlerError) -> OutcomeKind;
}

/// A lease held by this worker. End it exactly once with [`LeasedJob::complete`],
/// [`LeasedJob::fail`], [`LeasedJob::report_cancelled`] or [`LeasedJob::release`]; dropping it
/// unended releases it (no attempt spent). Derefs to its [`JobContext`].
#[derive(Debug)]
pub struct LeasedJob {
    ctx: JobContext,
    core: Weak<dyn Settle>,
    ended: bool,
}

impl std::ops::Deref for LeasedJob {
    type Target = JobContext;

    fn deref(&self) -> &JobContext {
        &self.ctx
    }
}

impl LeasedJob {
    pub(crate) fn new(shared: Arc<JobShared>, core: Weak<dyn Settle>) -> Self {
        Self {
            ctx: JobContext { shared },
            core,
            ended: false,
        }
    }

    /// The job's context (clone it into the handler).
    pub fn context(&self) -> &JobContext {
        &self.ctx
    }

    fn end(mut self, outcome: OutcomeKind) -> OutcomeReceipt {
        self.ended = true;
        match self.core.upgrade() {
            Some(core) => core.end(&self.ctx.shared, outcome),
            None => OutcomeReceipt::ready(OutcomeAck::NotSent(NotSentReason::SessionClosed)),
        }
    }

    /// Reports success with `result` and the artifacts uploaded through the context (with the
    /// manifest digest).
    pub fn complete(self, result: serde_json::Value) -> OutcomeReceipt {
        let artifacts = self.ctx.artifacts();
        let manifest_digest = if artifacts.is_empty() {
            None
        } else {
            artifact::manifest_digest(&artifacts).ok()
        };
        let artifacts = artifact::manifest(&artifacts).unwrap_or(artifacts);
        self.end(OutcomeKind::Complete {
            result,
            artifacts,
            manifest_digest,
        })
    }

    /// Reports a failure. A retryable error is retried at its `after` if given, else after the
    /// retry policy's delay (the job's backoff hint, else the session's policy); a fatal or
    /// cancelled one ends the job.
    pub fn fail(self, error: HandlerError) -> OutcomeReceipt {
        let outcome = match self.core.upgrade() {
            Some(core) => core.failure(&self.ctx, &error),
            None => {
                return OutcomeReceipt::ready(OutcomeAck::NotSent(NotSentReason::SessionClosed));
            }
        };
        self.end(outcome)
    }

    /// Reports that the handler stopped because the job was cancelled (a `fail` with class
    /// `cancelled`, not retryable; the coordinator records a cancel-requested job as
    /// `cancelled`).
    pub fn report_cancelled(self) -> OutcomeReceipt {
        let message = match self.ctx.cancel_reason() {
            Some(reason) => format!("handler stopped: {reason}"),
            None => "handler stopped: cancelled".to_owned(),
        };
        self.fail(HandlerError::cancelled(message))
    }

    /// Gives the lease back unrun (no attempt spent); another worker may take it at once.
    pub fn release(self) -> OutcomeReceipt {
        self.end(OutcomeKind::Release)
    }
}

impl Drop for LeasedJob {
    fn drop(&mut self) {
        if !self.ended {
            self.ended = true;
            if let Some(core) = self.core.upgrade() {
                let _ = core.end(&self.ctx.shared, OutcomeKind::Release);
            }
        }
    }
}
