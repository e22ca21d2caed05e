//! SDK errors as Python exceptions. The exception classes live in `leasehold.errors` (plain
//! Python, so users can subclass and catch them without touching the native module); this file
//! only decides which one to raise and with what.

use leasehold::Error;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Raises `leasehold.errors.<class>(message, **attrs)`; if that module cannot be imported (the
/// native module used on its own) falls back to `RuntimeError`.
fn raise(
    class: &str,
    message: String,
    attrs: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>,
) -> PyErr {
    Python::attach(|py| {
        let built = (|| -> PyResult<PyErr> {
            let cls = py.import("leasehold.errors")?.getattr(class)?;
            let kwargs = PyDict::new(py);
            attrs(&kwargs)?;
            let exc = cls.call((message.clone(),), Some(&kwargs))?;
            Ok(PyErr::from_value(exc))
        })();
        built.unwrap_or_else(|_| PyRuntimeError::new_err(message))
    })
}

/// The Python exception for an SDK error.
pub(crate) fn to_py(err: Error) -> PyErr {
    let message = err.to_string();
    let retryable = err.is_retryable();
    match err {
        Error::InvalidArgument(m) => PyValueError::new_err(m),
        Error::Io(e) => PyOSError::new_err(e.to_string()),
        // OSError(errno, strerror, filename) becomes the matching subclass (FileNotFoundError,
        // IsADirectoryError, PermissionError, …) and names the file.
        Error::File { path, source } => match source.raw_os_error() {
            Some(errno) => {
                // Python's strerror, without Rust's " (os error N)" suffix.
                let text = source.to_string();
                let suffix = format!(" (os error {errno})");
                let strerror = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
                PyOSError::new_err((errno, strerror, path.into_os_string()))
            }
            None => PyOSError::new_err(message),
        },
        Error::WaitTimeout {
            job_id,
            state,
            attempt,
            max_attempts,
            waited,
        } => raise("WaitTimeout", message, |kw| {
            kw.set_item("job_id", job_id.to_string())?;
            kw.set_item("state", state.as_str())?;
            kw.set_item("attempt", attempt)?;
            kw.set_item("max_attempts", max_attempts)?;
            kw.set_item("waited", waited.as_secs_f64())
        }),
        Error::LeaseLost { job_id } => raise("LeaseLost", message, |kw| {
            kw.set_item("job_id", job_id.to_string())
        }),
        Error::SessionClosed => raise("WorkerClosed", message, |_| Ok(())),
        Error::Api {
            status,
            code,
            message: text,
            details,
            request_id,
            retry_after,
        } => raise("CoordinatorError", message, |kw| {
            kw.set_item("status", status)?;
            kw.set_item("code", code.as_str())?;
            kw.set_item("detail", text)?;
            kw.set_item("details_json", details.to_string())?;
            kw.set_item("request_id", request_id)?;
            kw.set_item("retryable", retryable)?;
            kw.set_item("retry_after", retry_after.map(|d| d.as_secs_f64()))
        }),
        other => {
            let code = match &other {
                Error::Unreachable { .. } => "unreachable",
                Error::Timeout(_) => "timeout",
                Error::Protocol(_) => "protocol",
                Error::Unsupported(_) => "unsupported",
                _ => "internal",
            };
            raise("CoordinatorError", message, |kw| {
                kw.set_item("code", code)?;
                kw.set_item("retryable", retryable)
            })
        }
    }
}

/// `Result<T, leasehold::Error>` → `PyResult<T>`.
pub(crate) trait IntoPyResult<T> {
    /// Converts the error with [`to_py`].
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

/// Parses a JSON text handed over by the Python layer (which produced it with `json.dumps`).
pub(crate) fn parse_json(what: &str, text: &str) -> PyResult<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| PyValueError::new_err(format!("{what} is not valid JSON: {e}")))
}

/// Seconds (a Python float) as a duration: finite and not negative.
pub(crate) fn seconds(what: &str, value: f64) -> PyResult<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a finite, non-negative number of seconds, got {value}"
        ))
    })
}
