//! How a job ends from C. `lh_job_settle`: a binding says how its handler ended and the Rust
//! core decides what that means for the job (`leasehold::LeasedJob::settle`: an operator's
//! cancel, a lost lease and a timeout are the core's to weigh, once for every skin). The direct
//! endings (`lh_job_complete`, `lh_job_fail`, `lh_job_cancelled`, `lh_job_release`) say it
//! outright.

use std::ffi::c_char;

use leasehold::{Ending, HandlerError, LeasedJob};

use crate::cancel::to_timeout;
use crate::error::{Failure, guard, lh_result};
use crate::job::lh_job;
use crate::mem::{handle, opt_text, parse_json};

/// The handler returned a result (`result_json`).
pub const LH_ENDING_RETURNED: u32 = 0;
/// The handler failed (`class`, `message`, `retryable`, `retry_after_ms`).
pub const LH_ENDING_FAILED: u32 = 1;
/// The handler panicked or crashed (`message`): a retryable failure of class `panic`.
pub const LH_ENDING_PANICKED: u32 = 2;
/// The handler stopped without an outcome of its own (it acknowledged its cancellation).
pub const LH_ENDING_STOPPED: u32 = 3;
/// The handler ignored its cancellation past the cancel grace and was left running.
pub const LH_ENDING_ABANDONED: u32 = 4;

/// Ends the job as the handler's `ending` (one of `LH_ENDING_*`) means, decided by the core:
/// `LH_ENDING_RETURNED` completes with `result_json` (`result_len` bytes of JSON);
/// `LH_ENDING_FAILED` fails with `class` and `message` (retried after `retry_after_ms` if 0 or
/// more, else per the retry policy, when `retryable`); a job an operator cancelled is reported
/// cancelled whatever the handler did but return; `LH_ENDING_STOPPED` and `LH_ENDING_ABANDONED`
/// otherwise give the lease back. Arguments an ending does not use are ignored (NULL is fine).
/// Does not wait for the coordinator; `lh_job_outcome` tells how it fared.
///
/// # Safety
/// `job` is NULL or live; each (pointer, length) pair is NULL or valid for reads.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn lh_job_settle(
    job: *const lh_job,
    ending: u32,
    result_json: *const c_char,
    result_len: usize,
    class: *const c_char,
    class_len: usize,
    message: *const c_char,
    message_len: usize,
    retryable: bool,
    retry_after_ms: i64,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract (all of the below).
        let j = unsafe { handle(job, "job") }?;
        let text = |ptr, len, what| unsafe { opt_text(ptr, len, what) };
        let ending = match ending {
            LH_ENDING_RETURNED => {
                // SAFETY: per the contract.
                Ending::Returned(unsafe { parse_json(result_json, result_len, "result_json") }?)
            }
            LH_ENDING_FAILED => {
                let class = text(class, class_len, "class")?;
                let message = text(message, message_len, "message")?.unwrap_or("failed");
                let error = if retryable {
                    match to_timeout(retry_after_ms) {
                        Some(after) => HandlerError::retry_after(message, after),
                        None => HandlerError::retry(message),
                    }
                } else {
                    HandlerError::fatal(message)
                };
                Ending::Failed(match class {
                    Some(c) => error.with_class(c),
                    None => error,
                })
            }
            LH_ENDING_PANICKED => Ending::Panicked(
                text(message, message_len, "message")?
                    .unwrap_or("panicked")
                    .to_owned(),
            ),
            LH_ENDING_STOPPED => Ending::Stopped,
            LH_ENDING_ABANDONED => Ending::Abandoned,
            other => {
                return Err(Failure::invalid(format!(
                    "ending {other} is not one of LH_ENDING_RETURNED..LH_ENDING_ABANDONED"
                )));
            }
        };
        j.end(|leased| leased.settle(ending))
    })
}

/// Ends the job with success: `result_json` (`len` bytes of JSON) plus the artifacts put so far
/// (with the manifest digest). Does not wait for the coordinator (outcomes are batched);
/// `lh_job_outcome` tells how it fared. Invalid JSON leaves the job unended.
///
/// # Safety
/// `job` is NULL or live; `result_json` is valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_complete(
    job: *const lh_job,
    result_json: *const c_char,
    len: usize,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let j = unsafe { handle(job, "job") }?;
        // SAFETY: per the contract.
        let value: serde_json::Value = unsafe { parse_json(result_json, len, "result_json") }?;
        j.end(|leased| leased.complete(value))
    })
}

/// Ends the job with a failure. `class` (e.g. an exception type; NULL or empty: `"error"`, or
/// `"fatal"` when not retryable) and `message` are recorded with it. A `retryable` failure runs
/// again — after `retry_after_ms` if it is 0 or more, else after the retry policy's delay (the
/// job's backoff hint, else the worker's) — until the job's attempts are spent; a non-retryable
/// one makes the job `dead` at once (`retry_after_ms` is then ignored). Does not wait for the
/// coordinator.
///
/// # Safety
/// `job` is NULL or live; each (pointer, length) pair is valid for reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_fail(
    job: *const lh_job,
    class: *const c_char,
    class_len: usize,
    message: *const c_char,
    message_len: usize,
    retryable: bool,
    retry_after_ms: i64,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract (all of the below).
        let j = unsafe { handle(job, "job") }?;
        let class = unsafe { opt_text(class, class_len, "class") }?;
        let message = unsafe { opt_text(message, message_len, "message") }?.unwrap_or("failed");
        let error = if retryable {
            match to_timeout(retry_after_ms) {
                Some(after) => HandlerError::retry_after(message, after),
                None => HandlerError::retry(message),
            }
        } else {
            HandlerError::fatal(message)
        };
        let error = match class {
            Some(c) => error.with_class(c),
            None => error,
        };
        j.end(|leased| leased.fail(error))
    })
}

/// Ends the job after it stopped because its cancellation fired: a non-retryable failure of
/// class `cancelled`; a job whose cancel was requested is recorded `cancelled`.
///
/// # Safety
/// `job` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_cancelled(job: *const lh_job) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let j = unsafe { handle(job, "job") }?;
        j.end(LeasedJob::report_cancelled)
    })
}

/// Gives the lease back unrun (no attempt spent); another worker may take it at once.
///
/// # Safety
/// `job` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_job_release(job: *const lh_job) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let j = unsafe { handle(job, "job") }?;
        j.end(LeasedJob::release)
    })
}
