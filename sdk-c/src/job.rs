//! `lh_job`: one leased job — what it carries, how to report on it, and its single ending.

use std::ffi::c_char;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use leasehold::proto::JobState;
use leasehold::{CancelReason, JobContext, LeasedJob, NotSentReason, OutcomeAck};
use tokio_util::sync::CancellationToken;

use crate::cancel::{block_on, to_timeout};
use crate::error::{Failure, guard, guard_void, lh_result};
use crate::mem::{CText, Out, free_handle, handle, lh_bytes, lh_str, parse_json};
use crate::worker_core::WorkerCore;

/// Why a job's cancellation fired. Stable numbers.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lh_cancel_reason {
    /// Not cancelled.
    LH_CANCEL_NONE = 0,
    /// An operator cancelled the job: stop, then end it with `lh_job_cancelled` (it is recorded
    /// `cancelled`).
    LH_CANCEL_REQUESTED = 1,
    /// The coordinator says the lease is gone: stop; any outcome will be dropped.
    LH_CANCEL_LEASE_LOST = 2,
    /// The coordinator stayed unreachable past the lease deadline: stop; any outcome will be
    /// dropped.
    LH_CANCEL_LEASE_EXPIRED = 3,
    /// The worker is shutting down and gave the lease back (no attempt spent): stop.
    LH_CANCEL_SHUTDOWN = 4,
    /// The attempt's run time is running out (the job's timeout): stop. Whatever the job is ended
    /// with, the library reports a retryable failure of class `timeout` in its place.
    LH_CANCEL_TIMED_OUT = 5,
    /// A reason this version of the header does not know.
    LH_CANCEL_OTHER = 99,
}

impl From<Option<CancelReason>> for lh_cancel_reason {
    fn from(r: Option<CancelReason>) -> Self {
        match r {
            None => Self::LH_CANCEL_NONE,
            Some(CancelReason::CancelRequested) => Self::LH_CANCEL_REQUESTED,
            Some(CancelReason::LeaseLost) => Self::LH_CANCEL_LEASE_LOST,
            Some(CancelReason::LeaseExpired) => Self::LH_CANCEL_LEASE_EXPIRED,
            Some(CancelReason::Shutdown) => Self::LH_CANCEL_SHUTDOWN,
            Some(CancelReason::TimedOut) => Self::LH_CANCEL_TIMED_OUT,
            Some(_) => Self::LH_CANCEL_OTHER,
        }
    }
}

/// How the coordinator received a job's outcome. Stable numbers.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lh_ack {
    /// Recorded; `state` is the job's state afterwards.
    LH_ACK_RECORDED = 0,
    /// Refused: the lease was no longer ours, or the job is gone. Nothing changed.
    LH_ACK_REJECTED = 1,
    /// Never sent: the lease was lost before the outcome was ready.
    LH_ACK_LEASE_LOST = 2,
    /// Never sent: the lease deadline passed before it could be delivered.
    LH_ACK_LEASE_EXPIRED = 3,
    /// Never sent: the worker released the job while shutting down.
    LH_ACK_RELEASED = 4,
    /// Never sent: the worker closed first.
    LH_ACK_SESSION_CLOSED = 5,
    /// The coordinator refused the outcome, and the failure reported in its place too (or the
    /// refusal was not one a failure can answer); nothing was recorded, the lease will expire and
    /// the job run again.
    LH_ACK_INVALID = 6,
    /// The coordinator refused the outcome itself (413 for a result over its size limit, 422,
    /// …), so a non-retryable failure was recorded in its place (error class `result_too_large`
    /// or `outcome_refused`): the job ends `dead` with that cause and does not run again.
    LH_ACK_RECORDED_AS_FAILURE = 7,
    /// Never sent: the attempt's run time ran out, and the library reported a `timeout` failure
    /// in its place.
    LH_ACK_TIMED_OUT = 8,
    /// An answer this version of the header does not know.
    LH_ACK_OTHER = 99,
}

/// The fate of a job's outcome, from `lh_job_outcome`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct lh_outcome {
    /// What happened to it.
    pub ack: lh_ack,
    /// The job's state afterwards when the coordinator said (`"succeeded"`, `"queued"` for a
    /// retry, `"dead"`, `"cancelled"`, …); a static string, or `{NULL, 0}`.
    pub state: lh_str,
}

fn state_str(state: Option<JobState>) -> lh_str {
    state.map_or(lh_str::NONE, |s| {
        lh_str::from_static(match s {
            JobState::Blocked => "blocked\0",
            JobState::Queued => "queued\0",
            JobState::Leased => "leased\0",
            JobState::Succeeded => "succeeded\0",
            JobState::Dead => "dead\0",
            JobState::Cancelled => "cancelled\0",
        })
    })
}

impl From<&OutcomeAck> for lh_outcome {
    fn from(ack: &OutcomeAck) -> Self {
        let (ack, state) = match ack {
            OutcomeAck::Recorded { state } => (lh_ack::LH_ACK_RECORDED, *state),
            OutcomeAck::Rejected { state, .. } => (lh_ack::LH_ACK_REJECTED, *state),
            OutcomeAck::NotSent(reason) => (
                match reason {
                    NotSentReason::LeaseLost => lh_ack::LH_ACK_LEASE_LOST,
                    NotSentReason::LeaseExpired => lh_ack::LH_ACK_LEASE_EXPIRED,
                    NotSentReason::Released => lh_ack::LH_ACK_RELEASED,
                    NotSentReason::SessionClosed => lh_ack::LH_ACK_SESSION_CLOSED,
                    NotSentReason::TimedOut => lh_ack::LH_ACK_TIMED_OUT,
                    _ => lh_ack::LH_ACK_OTHER,
                },
                None,
            ),
            OutcomeAck::Invalid { .. } => (lh_ack::LH_ACK_INVALID, None),
            OutcomeAck::RecordedAsFailure { state, .. } => {
                (lh_ack::LH_ACK_RECORDED_AS_FAILURE, *state)
            }
            _ => (lh_ack::LH_ACK_OTHER, None),
        };
        Self {
            ack,
            state: state_str(state),
        }
    }
}

/// Everything fixed about a job, borrowed from its handle (valid until `lh_job_free`). One call
/// instead of one per field, for bindings where each crossing costs.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct lh_job_info {
    /// Job id (hyphenated UUID).
    pub id: lh_str,
    /// Handler name.
    pub kind: lh_str,
    /// Queue.
    pub queue: lh_str,
    /// The payload as JSON text.
    pub payload: lh_str,
    /// Stable across attempts: the job's idempotency key, else its id.
    pub idempotency_key: lh_str,
    /// Correlation id, or `{NULL, 0}`.
    pub correlation_id: lh_str,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// The lease's fencing token.
    pub fencing_token: i64,
    /// This handle's number within its worker, as reported by `lh_worker_next_cancellation`.
    pub tag: u64,
    /// The tenant whose job it is (one of a shared pool's tenants).
    pub tenant: lh_str,
}

type AckFuture = Pin<Box<dyn Future<Output = OutcomeAck> + Send>>;

enum Outcome {
    NotEnded,
    Pending(AckFuture),
    Settled(OutcomeAck),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotEnded => f.write_str("NotEnded"),
            Self::Pending(_) => f.write_str("Pending"),
            Self::Settled(ack) => write!(f, "Settled({ack:?})"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A leased job. Made by `lh_worker_next`, freed by `lh_job_free`; freeing a job that was not
/// ended releases it (no attempt spent). Every function taking a `const lh_job *` may be called
/// from several threads at once; `lh_job_free` may not overlap any of them.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct lh_job {
    pub(crate) ctx: JobContext,
    leased: Mutex<Option<LeasedJob>>,
    outcome: Mutex<Outcome>,
    done: CancellationToken,
    tag: u64,
    id: CText,
    kind: CText,
    queue: CText,
    tenant: CText,
    payload: CText,
    idempotency_key: CText,
    correlation_id: Option<CText>,
    // Last: the runtime may stop when this is dropped, after everything above.
    pub(crate) core: Arc<WorkerCore>,
}

impl lh_job {
    pub(crate) fn new(leased: LeasedJob, core: Arc<WorkerCore>) -> Self {
        let ctx = leased.context().clone();
        let tag = core.next_tag();
        let done = CancellationToken::new();
        if let Some(events) = &core.events {
            let events = events.clone();
            let fired = ctx.cancellation_token();
            let done = done.clone();
            core.runtime().spawn(async move {
                tokio::select! {
                    () = fired.cancelled() => events.push_unless_done(tag, &done),
                    () = done.cancelled() => {}
                }
            });
        }
        let payload = serde_json::to_string(ctx.payload()).unwrap_or_else(|_| "null".to_owned());
        Self {
            id: CText::new(&ctx.id().hyphenated().to_string()),
            kind: CText::new(ctx.kind()),
            queue: CText::new(ctx.queue()),
            tenant: CText::new(ctx.tenant()),
            payload: CText::new(&payload),
            idempotency_key: CText::new(ctx.idempotency_key()),
            correlation_id: ctx.correlation_id().map(CText::new),
            ctx,
            leased: Mutex::new(Some(leased)),
            outcome: Mutex::new(Outcome::NotEnded),
            done,
            tag,
            core,
        }
    }

    fn info(&self) -> lh_job_info {
        lh_job_info {
            id: self.id.as_lh_str(),
            kind: self.kind.as_lh_str(),
            queue: self.queue.as_lh_str(),
            payload: self.payload.as_lh_str(),
            idempotency_key: self.idempotency_key.as_lh_str(),
            correlation_id: self
                .correlation_id
                .as_ref()
                .map_or(lh_str::NONE, CText::as_lh_str),
            attempt: self.ctx.attempt(),
            max_attempts: self.ctx.max_attempts(),
            fencing_token: self.ctx.fencing_token(),
            tag: self.tag,
            tenant: self.tenant.as_lh_str(),
        }
    }

    pub(crate) fn ensure_open(&self) -> Result<(), Failure> {
        if lock(&self.leased).is_none() {
            return Err(already_ended());
        }
        Ok(())
    }

    /// Ends the lease once with `f`, keeping the receipt for `lh_job_outcome`.
    pub(crate) fn end(
        &self,
        f: impl FnOnce(LeasedJob) -> leasehold::OutcomeReceipt,
    ) -> Result<(), Failure> {
        let leased = lock(&self.leased).take().ok_or_else(already_ended)?;
        let receipt = f(leased);
        *lock(&self.outcome) = Outcome::Pending(Box::pin(receipt.wait()));
        self.finish_events();
        Ok(())
    }

    fn finish_events(&self) {
        match &self.core.events {
            Some(events) => events.finish(self.tag, &self.done),
            None => self.done.cancel(),
        }
    }
}

impl Drop for lh_job {
    fn drop(&mut self) {
        self.finish_events();
        // Dropping an unended `LeasedJob` (next, as the fields drop) releases it.
    }
}

fn already_ended() -> Failure {
    Failure::new(
        lh_result::LH_ALREADY_ENDED,
        "the job was already completed, failed, cancelled or released",
    )
}

/// Writes the job's fixed fields to `*out` (strings borrowed until `lh_job_free`).
///
/// # Safety
/// `job` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_get_info(job: *const lh_job, out: *mut lh_job_info) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let j = unsafe { handle(job, "job") }?;
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(j.info());
        Ok(())
    })
}

/// The body of the string getters.
///
/// # Safety
/// `job` is NULL or live; `out` is NULL or valid for a write.
unsafe fn get_str(
    job: *const lh_job,
    out: *mut lh_str,
    field: impl FnOnce(&lh_job) -> &CText,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let j = unsafe { handle(job, "job") }?;
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(field(j).as_lh_str());
        Ok(())
    })
}

/// The job id, hyphenated (borrowed until `lh_job_free`).
///
/// # Safety
/// `job` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_id(job: *const lh_job, out: *mut lh_str) -> lh_result {
    // SAFETY: per the contract.
    unsafe { get_str(job, out, |j| &j.id) }
}

/// The handler name (borrowed until `lh_job_free`).
///
/// # Safety
/// `job` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_kind(job: *const lh_job, out: *mut lh_str) -> lh_result {
    // SAFETY: per the contract.
    unsafe { get_str(job, out, |j| &j.kind) }
}

/// The queue (borrowed until `lh_job_free`).
///
/// # Safety
/// `job` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_queue(job: *const lh_job, out: *mut lh_str) -> lh_result {
    // SAFETY: per the contract.
    unsafe { get_str(job, out, |j| &j.queue) }
}

/// The payload as JSON text (borrowed until `lh_job_free`).
///
/// # Safety
/// `job` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_payload(job: *const lh_job, out: *mut lh_str) -> lh_result {
    // SAFETY: per the contract.
    unsafe { get_str(job, out, |j| &j.payload) }
}

/// A key stable across attempts, for exactly-once side effects downstream: the job's
/// idempotency key, else its id (borrowed until `lh_job_free`).
///
/// # Safety
/// `job` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_idempotency_key(job: *const lh_job, out: *mut lh_str) -> lh_result {
    // SAFETY: per the contract.
    unsafe { get_str(job, out, |j| &j.idempotency_key) }
}

/// This attempt's number, from 1.
///
/// # Safety
/// `job` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_attempt(job: *const lh_job, out: *mut u32) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let j = unsafe { handle(job, "job") }?;
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(j.ctx.attempt());
        Ok(())
    })
}

/// The latest checkpoint as JSON into `*out` (free with `lh_bytes_free`): the one this attempt
/// set last, else the one the previous attempt left. `LH_NOT_FOUND` when there is none.
///
/// # Safety
/// `job` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_last_checkpoint(
    job: *const lh_job,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let j = unsafe { handle(job, "job") }?;
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        let value = j
            .ctx
            .last_checkpoint()
            .ok_or_else(|| Failure::new(lh_result::LH_NOT_FOUND, "the job has no checkpoint"))?;
        let bytes = serde_json::to_vec(&value)
            .map_err(|e| Failure::new(lh_result::LH_INTERNAL, e.to_string()))?;
        out.write(lh_bytes::from_vec(bytes));
        Ok(())
    })
}

/// Whether the job's cancellation has fired (see `lh_job_cancel_reason`).
///
/// # Safety
/// `job` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_is_cancelled(job: *const lh_job, out: *mut bool) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let j = unsafe { handle(job, "job") }?;
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(j.ctx.is_cancelled());
        Ok(())
    })
}

/// Why the job's cancellation fired (`LH_CANCEL_NONE` while it has not).
///
/// # Safety
/// `job` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_cancel_reason(
    job: *const lh_job,
    out: *mut lh_cancel_reason,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let j = unsafe { handle(job, "job") }?;
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(j.ctx.cancel_reason().into());
        Ok(())
    })
}

/// Records a checkpoint (JSON, latest wins). The next heartbeat carries it; a later attempt
/// receives it as its last checkpoint.
///
/// # Safety
/// `job` is NULL or live; `json` is valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_checkpoint(
    job: *const lh_job,
    json: *const c_char,
    len: usize,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let j = unsafe { handle(job, "job") }?;
        // SAFETY: per the contract.
        let value: serde_json::Value = unsafe { parse_json(json, len, "json") }?;
        j.ensure_open()?;
        j.ctx.checkpoint(value);
        Ok(())
    })
}

/// Records progress (JSON, latest wins); the next heartbeat carries it.
///
/// # Safety
/// `job` is NULL or live; `json` is valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_progress(
    job: *const lh_job,
    json: *const c_char,
    len: usize,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let j = unsafe { handle(job, "job") }?;
        // SAFETY: per the contract.
        let value: serde_json::Value = unsafe { parse_json(json, len, "json") }?;
        j.ensure_open()?;
        j.ctx.progress(value);
        Ok(())
    })
}

/// Waits up to `timeout_ms` (negative: no limit) until the coordinator has answered for the
/// job's outcome (or it was dropped), and writes how it fared. `LH_TIMEOUT` if it has not
/// settled yet (ask again later); `LH_INVALID_ARGUMENT` if the job was not ended.
///
/// # Safety
/// `job` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_outcome(
    job: *const lh_job,
    timeout_ms: i64,
    out: *mut lh_outcome,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let j = unsafe { handle(job, "job") }?;
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        let mut slot = lock(&j.outcome);
        let ack = match &mut *slot {
            Outcome::NotEnded => {
                return Err(Failure::invalid("the job has not been ended yet"));
            }
            Outcome::Settled(ack) => ack.clone(),
            Outcome::Pending(fut) => {
                let limit = to_timeout(timeout_ms);
                let ack = block_on(j.core.runtime(), None, async move {
                    Ok(match limit {
                        None => Some(fut.await),
                        Some(d) => tokio::time::timeout(d, fut).await.ok(),
                    })
                })?;
                let Some(ack) = ack else {
                    return Err(Failure::new(
                        lh_result::LH_TIMEOUT,
                        "the outcome has not settled yet",
                    ));
                };
                *slot = Outcome::Settled(ack.clone());
                ack
            }
        };
        out.write((&ack).into());
        Ok(())
    })
}

/// Frees a job handle; a job not yet ended is released (no attempt spent). NULL is ignored.
///
/// # Safety
/// `job` is NULL or a live handle that no other thread is using, and is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_free(job: *mut lh_job) {
    // SAFETY: per the contract.
    guard_void(|| unsafe { free_handle(job) });
}
