//! Result codes, the thread-local last error, and the panic boundary every export runs in.

use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};

use leasehold::Error;

/// What every fallible `lh_` function returns. The numbers are stable: a code is never
/// renumbered or reused, new codes are only added. `lh_last_error` has the details of the last
/// call on this thread that did not return `LH_OK`.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lh_result {
    /// Success; the outputs were written.
    LH_OK = 0,
    /// Nothing came within the time limit: no job, no cancellation, a job not yet terminal, or
    /// a coordinator that did not answer in time.
    LH_TIMEOUT = 1,
    /// The worker is draining or shut down: no more jobs (or cancellation events) will come.
    LH_CLOSED = 2,
    /// The `lh_cancel` passed to the call fired before it finished.
    LH_CANCELLED = 3,
    /// A required pointer argument was NULL.
    LH_NULL_ARGUMENT = 10,
    /// An argument was rejected before anything was sent: bad UTF-8, a bad configuration value,
    /// a bad queue, kind or artifact name, a length too large.
    LH_INVALID_ARGUMENT = 11,
    /// A JSON argument did not parse, or did not have the expected shape.
    LH_INVALID_JSON = 12,
    /// The job was already completed, failed, cancelled or released.
    LH_ALREADY_ENDED = 13,
    /// What was asked for does not exist: the coordinator answered 404, or the job has no
    /// checkpoint.
    LH_NOT_FOUND = 14,
    /// The coordinator could not be reached (after the SDK's own retries).
    LH_UNREACHABLE = 20,
    /// The coordinator answered with an error; `lh_last_error_http_status` and
    /// `lh_last_error_api_code` say which.
    LH_COORDINATOR = 21,
    /// The lease on this job is gone: whatever the handler produces is dropped.
    LH_LEASE_LOST = 22,
    /// The coordinator answered something this library does not understand.
    LH_PROTOCOL = 23,
    /// The coordinator does not offer this operation.
    LH_UNSUPPORTED = 24,
    /// A local file operation failed (artifact from a path, staging).
    LH_IO = 30,
    /// The library panicked; the call had no effect that can be relied on. A bug: please report
    /// it with the message.
    LH_PANIC = 90,
    /// Any other failure inside the library.
    LH_INTERNAL = 91,
}

impl lh_result {
    /// The variant's name, NUL-terminated.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::LH_OK => "LH_OK\0",
            Self::LH_TIMEOUT => "LH_TIMEOUT\0",
            Self::LH_CLOSED => "LH_CLOSED\0",
            Self::LH_CANCELLED => "LH_CANCELLED\0",
            Self::LH_NULL_ARGUMENT => "LH_NULL_ARGUMENT\0",
            Self::LH_INVALID_ARGUMENT => "LH_INVALID_ARGUMENT\0",
            Self::LH_INVALID_JSON => "LH_INVALID_JSON\0",
            Self::LH_ALREADY_ENDED => "LH_ALREADY_ENDED\0",
            Self::LH_NOT_FOUND => "LH_NOT_FOUND\0",
            Self::LH_UNREACHABLE => "LH_UNREACHABLE\0",
            Self::LH_COORDINATOR => "LH_COORDINATOR\0",
            Self::LH_LEASE_LOST => "LH_LEASE_LOST\0",
            Self::LH_PROTOCOL => "LH_PROTOCOL\0",
            Self::LH_UNSUPPORTED => "LH_UNSUPPORTED\0",
            Self::LH_IO => "LH_IO\0",
            Self::LH_PANIC => "LH_PANIC\0",
            Self::LH_INTERNAL => "LH_INTERNAL\0",
        }
    }

    /// Every code, for `lh_result_name` and the tests.
    pub(crate) const ALL: [lh_result; 17] = [
        Self::LH_OK,
        Self::LH_TIMEOUT,
        Self::LH_CLOSED,
        Self::LH_CANCELLED,
        Self::LH_NULL_ARGUMENT,
        Self::LH_INVALID_ARGUMENT,
        Self::LH_INVALID_JSON,
        Self::LH_ALREADY_ENDED,
        Self::LH_NOT_FOUND,
        Self::LH_UNREACHABLE,
        Self::LH_COORDINATOR,
        Self::LH_LEASE_LOST,
        Self::LH_PROTOCOL,
        Self::LH_UNSUPPORTED,
        Self::LH_IO,
        Self::LH_PANIC,
        Self::LH_INTERNAL,
    ];
}

/// A failed call: its code and what the caller reads back through `lh_last_error*`.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) code: lh_result,
    pub(crate) message: String,
    /// HTTP status of a coordinator error (0 otherwise).
    pub(crate) http_status: u16,
    /// The coordinator's stable error code (`not_found`, `lease_lost`, …), if it sent one.
    pub(crate) api_code: Option<String>,
}

impl Failure {
    pub(crate) fn new(code: lh_result, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            http_status: 0,
            api_code: None,
        }
    }

    pub(crate) fn null(what: &str) -> Self {
        Self::new(lh_result::LH_NULL_ARGUMENT, format!("{what} is NULL"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(lh_result::LH_INVALID_ARGUMENT, message)
    }

    pub(crate) fn json(what: &str, err: &serde_json::Error) -> Self {
        Self::new(
            lh_result::LH_INVALID_JSON,
            format!("{what} is not valid JSON of the expected shape: {err}"),
        )
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        let code = match &err {
            Error::Unreachable { .. } => lh_result::LH_UNREACHABLE,
            Error::Timeout(_) | Error::WaitTimeout { .. } => lh_result::LH_TIMEOUT,
            Error::Api { status: 404, .. } => lh_result::LH_NOT_FOUND,
            Error::Api { .. } => lh_result::LH_COORDINATOR,
            Error::LeaseLost { .. } => lh_result::LH_LEASE_LOST,
            Error::InvalidArgument(_) => lh_result::LH_INVALID_ARGUMENT,
            Error::Protocol(_) => lh_result::LH_PROTOCOL,
            Error::Io(_) | Error::File { .. } => lh_result::LH_IO,
            Error::SessionClosed => lh_result::LH_CLOSED,
            Error::Unsupported(_) => lh_result::LH_UNSUPPORTED,
            _ => lh_result::LH_INTERNAL,
        };
        let http_status = match &err {
            Error::Api { status, .. } => *status,
            _ => 0,
        };
        Self {
            code,
            message,
            http_status,
            api_code: err.code().map(|c| c.as_str().to_owned()),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<Failure>> = const { RefCell::new(None) };
}

fn set_last(failure: Failure) {
    // `try_with`: a call made while the thread is being torn down must not panic.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = Some(failure));
}

fn with_last<T>(f: impl FnOnce(Option<&Failure>) -> T) -> T {
    let last = LAST_ERROR
        .try_with(|slot| slot.borrow().clone())
        .ok()
        .flatten();
    f(last.as_ref())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_owned())
}

/// Runs an export's body inside the panic boundary and turns its outcome into a code, recording
/// the failure (or the panic) as this thread's last error.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> lh_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => lh_result::LH_OK,
        Ok(Err(failure)) => {
            let code = failure.code;
            set_last(failure);
            code
        }
        Err(panic) => {
            let msg = panic_message(panic.as_ref());
            set_last(Failure::new(
                lh_result::LH_PANIC,
                format!("libleasehold panicked (a bug; please report it): {msg}"),
            ));
            lh_result::LH_PANIC
        }
    }
}

/// [`guard`] for functions that cannot report anything (the `_free` functions): a panic is
/// recorded as the last error and otherwise swallowed.
pub(crate) fn guard_void(body: impl FnOnce()) {
    let _ = guard(|| {
        body();
        Ok(())
    });
}

/// Copies `text` into `buf` (NUL-terminated, cut at a character boundary) and returns its full
/// length in bytes.
///
/// # Safety
/// `buf` is NULL or valid for writes of `len` bytes.
unsafe fn copy_out(text: &str, buf: *mut c_char, len: usize) -> usize {
    if !buf.is_null() && len > 0 {
        let mut n = text.len().min(len - 1);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: the caller promises `len` writable bytes at `buf`; we write `n + 1 <= len`.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    text.len()
}

/// Copies the message of the last failed call on this thread into `buf` (at most `len - 1`
/// bytes, cut at a UTF-8 character boundary, then a NUL) and returns the message's full length
/// in bytes (so a return value `>= len` means it was cut). Returns 0 and writes an empty string
/// when no call on this thread has failed. `buf` may be NULL (with any `len`) to ask for the
/// length only.
///
/// # Safety
/// `buf` is NULL or valid for writes of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_last_error(buf: *mut c_char, len: usize) -> usize {
    catch_unwind(AssertUnwindSafe(|| {
        with_last(|last| {
            let text = last.map_or("", |f| f.message.as_str());
            // SAFETY: forwarded from the caller.
            unsafe { copy_out(text, buf, len) }
        })
    }))
    .unwrap_or(0)
}

/// The code of the last failed call on this thread (`LH_OK` if none failed yet).
#[unsafe(no_mangle)]
pub extern "C" fn lh_last_error_result() -> lh_result {
    catch_unwind(|| with_last(|last| last.map_or(lh_result::LH_OK, |f| f.code)))
        .unwrap_or(lh_result::LH_PANIC)
}

/// The HTTP status of the last failed call on this thread when the coordinator answered it with
/// an error (`LH_COORDINATOR`, `LH_NOT_FOUND`), else 0.
#[unsafe(no_mangle)]
pub extern "C" fn lh_last_error_http_status() -> u16 {
    catch_unwind(|| with_last(|last| last.map_or(0, |f| f.http_status))).unwrap_or(0)
}

/// Copies the coordinator's error code of the last failed call on this thread (`not_found`,
/// `lease_lost`, `validation_failed`, …) like `lh_last_error` copies the message; empty when
/// there is none.
///
/// # Safety
/// `buf` is NULL or valid for writes of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_last_error_api_code(buf: *mut c_char, len: usize) -> usize {
    catch_unwind(AssertUnwindSafe(|| {
        with_last(|last| {
            let text = last.and_then(|f| f.api_code.as_deref()).unwrap_or("");
            // SAFETY: forwarded from the caller.
            unsafe { copy_out(text, buf, len) }
        })
    }))
    .unwrap_or(0)
}

/// The name of a result code (`"LH_TIMEOUT"`), a static NUL-terminated string;
/// `"LH_UNKNOWN"` for a number that is not a code.
#[unsafe(no_mangle)]
pub extern "C" fn lh_result_name(code: i32) -> *const c_char {
    let name = lh_result::ALL
        .iter()
        .find(|r| **r as i32 == code)
        .map_or("LH_UNKNOWN\0", |r| r.name());
    name.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_variants() {
        for r in lh_result::ALL {
            assert_eq!(r.name().trim_end_matches('\0'), format!("{r:?}"));
        }
    }

    #[test]
    fn a_panic_becomes_a_code_and_a_message() {
        let code = guard(|| panic!("boom"));
        assert_eq!(code, lh_result::LH_PANIC);
        assert_eq!(lh_last_error_result(), lh_result::LH_PANIC);
        let mut buf = [0 as c_char; 256];
        // SAFETY: buf is 256 writable bytes.
        let n = unsafe { lh_last_error(buf.as_mut_ptr(), buf.len()) };
        // SAFETY: lh_last_error NUL-terminates.
        let text = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        assert_eq!(n, text.to_bytes().len());
        assert!(text.to_string_lossy().contains("boom"));
    }

    #[test]
    fn truncation_keeps_utf8_whole() {
        let mut buf = [0x7f as c_char; 4];
        // SAFETY: buf is 4 writable bytes.
        let n = unsafe { copy_out("aé€", buf.as_mut_ptr(), buf.len()) };
        assert_eq!(n, 6);
        // "a" + "é" is 3 bytes and fits with the NUL.
        // SAFETY: NUL-terminated above.
        let text = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        assert_eq!(text.to_str().ok(), Some("aé"));
    }
}
