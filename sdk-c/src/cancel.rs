//! `lh_cancel`: a token a caller fires from any thread to make a blocking call return early with
//! `LH_CANCELLED` (how Go turns `ctx.Done()` into a cancellation of a native call).

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::error::{Failure, guard, guard_void, lh_result};
use crate::mem::{Out, free_handle, handle, into_handle};

/// A cancellation token. Passed (optionally) to blocking calls; `lh_cancel_fire` from any
/// thread makes them return `LH_CANCELLED` as soon as they can. Firing is permanent.
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct lh_cancel {
    pub(crate) token: CancellationToken,
}

/// Makes a new, unfired cancellation token.
///
/// # Safety
/// `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_cancel_new(out: *mut *mut lh_cancel) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(into_handle(lh_cancel::default()));
        Ok(())
    })
}

/// Fires the token: every call it was passed to returns `LH_CANCELLED` soon. Idempotent; may be
/// called from any thread while those calls run.
///
/// # Safety
/// `cancel` is NULL or a live `lh_cancel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_cancel_fire(cancel: *const lh_cancel) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let c = unsafe { handle(cancel, "cancel") }?;
        c.token.cancel();
        Ok(())
    })
}

/// Frees a token. NULL is ignored. No call it was passed to may still be running.
///
/// # Safety
/// `cancel` is NULL or a live `lh_cancel` not used by any running call, and is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_cancel_free(cancel: *mut lh_cancel) {
    // SAFETY: per the contract.
    guard_void(|| unsafe { free_handle(cancel) });
}

/// The optional token behind a `const lh_cancel *` argument.
///
/// # Safety
/// `cancel` is NULL or a live `lh_cancel`.
pub(crate) unsafe fn optional<'a>(cancel: *const lh_cancel) -> Option<&'a lh_cancel> {
    // SAFETY: per the contract.
    unsafe { cancel.as_ref() }
}

/// Runs `fut` to completion on `rt` from the calling (non-runtime) thread, unless `cancel`
/// fires first.
pub(crate) fn block_on<T>(
    rt: &Runtime,
    cancel: Option<&lh_cancel>,
    fut: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Failure::invalid(
            "blocking libleasehold calls cannot be made from inside a Tokio runtime thread",
        ));
    }
    rt.block_on(async move {
        match cancel {
            None => fut.await,
            Some(c) => tokio::select! {
                biased;
                r = fut => r,
                () = c.token.cancelled() => Err(Failure::new(
                    lh_result::LH_CANCELLED,
                    "the call was cancelled through its lh_cancel",
                )),
            },
        }
    })
}

/// A timeout argument in milliseconds: negative means "no limit". Capped at ten years so that
/// deadlines never overflow the clock.
pub(crate) fn to_timeout(ms: i64) -> Option<Duration> {
    const CAP_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
    u64::try_from(ms)
        .ok()
        .map(|ms| Duration::from_millis(ms.min(CAP_MS)))
}

/// A multi-threaded runtime owned by one worker or client handle.
pub(crate) fn runtime(threads: Option<usize>, name: &str) -> Result<Runtime, Failure> {
    let threads = threads.unwrap_or(2);
    if !(1..=64).contains(&threads) {
        return Err(Failure::invalid("threads must be between 1 and 64"));
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                lh_result::LH_INTERNAL,
                format!("cannot start the runtime: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fired_token_ends_a_blocking_call() -> Result<(), String> {
        let rt = runtime(Some(1), "t").map_err(|f| f.message)?;
        let c = lh_cancel::default();
        c.token.cancel();
        let r: Result<(), Failure> = block_on(&rt, Some(&c), std::future::pending());
        assert_eq!(r.err().map(|f| f.code), Some(lh_result::LH_CANCELLED));
        assert_eq!(to_timeout(-1), None);
        assert_eq!(to_timeout(5), Some(Duration::from_millis(5)));
        Ok(())
    }
}
