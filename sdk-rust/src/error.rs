//! Errors: [`Error`] for everything the SDK itself does, [`HandlerError`] for what a handler
//! returns.
//!
//! Every [`Error`] variant says whether trying again may help ([`Error::is_retryable`]); the SDK
//! uses the same answer for its own retries of transport faults, so callers see an error only
//! once the SDK has given up.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use leasehold_proto::{ErrorCode, JobState};
use uuid::Uuid;

/// Result with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the SDK.
///
/// Retryable variants ([`Error::is_retryable`]) are transport faults or a coordinator that is
/// temporarily unable to answer; the SDK has already retried them with backoff before returning
/// one. The others will fail the same way again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The coordinator could not be reached, or the connection broke (connection refused, reset,
    /// DNS failure, TLS failure). Retryable.
    #[error("cannot reach the coordinator: {message}")]
    Unreachable {
        /// What failed.
        message: String,
    },
    /// The coordinator did not answer in time. Retryable.
    #[error("the coordinator did not answer within {0:?}")]
    Timeout(Duration),
    /// [`Client::wait`](crate::Client::wait) gave up: the coordinator answered, but the job was
    /// not terminal by the deadline. Carries the job's state as last seen (a job still `queued`
    /// after its wait usually has no worker on its queue). Retryable (waiting longer may see it
    /// end).
    #[error("job {job_id} still {state} after {waited:?} (attempt {attempt} of {max_attempts})")]
    WaitTimeout {
        /// The job waited for.
        job_id: Uuid,
        /// Its state at the deadline (`queued`, `leased` or `blocked`).
        state: JobState,
        /// Claims made so far (0: no worker has taken it yet).
        attempt: i32,
        /// Attempts allowed.
        max_attempts: i32,
        /// How long the wait lasted.
        waited: Duration,
    },
    /// The coordinator answered with an error envelope. Retryable only for 429, 502, 503 and
    /// 504; every other 4xx and 5xx is final.
    #[error("coordinator answered {status} {}: {message} (request id {request_id:?})", code.as_str())]
    Api {
        /// HTTP status (or the status the code implies, on the WebSocket).
        status: u16,
        /// Stable error code.
        code: ErrorCode,
        /// Human message from the coordinator.
        message: String,
        /// Structured details from the coordinator.
        details: serde_json::Value,
        /// Request id, for finding the request in the coordinator's logs.
        request_id: String,
        /// `Retry-After`, when the coordinator sent one.
        retry_after: Option<Duration>,
    },
    /// The lease on this job is gone (stale fencing token, expired, or the coordinator stayed
    /// unreachable past the lease deadline). Whatever the handler produced is dropped. Not
    /// retryable: another attempt runs elsewhere.
    #[error("the lease on job {job_id} is lost")]
    LeaseLost {
        /// The job.
        job_id: Uuid,
    },
    /// An argument was rejected before anything was sent (bad artifact name, bad queue name,
    /// bad configuration). Not retryable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The coordinator answered something this SDK cannot understand. Not retryable.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A local file or stream failed (artifact staging). Not retryable.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A local file named by the caller could not be read (an artifact's path: missing,
    /// unreadable, a directory). Not retryable.
    #[error("cannot read {}: {source}", path.display())]
    File {
        /// The path as given.
        path: PathBuf,
        /// What failed (`source.kind()` is `NotFound` for a missing file).
        source: std::io::Error,
    },
    /// The worker session is shut down; no more jobs will come. Not retryable.
    #[error("the worker session is closed")]
    SessionClosed,
    /// The coordinator does not offer this operation (yet). Not retryable.
    #[error("not supported by this coordinator: {0}")]
    Unsupported(String),
}

impl Error {
    /// Whether doing the same thing again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout(_) | Self::WaitTimeout { .. } => true,
            Self::Api { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            Self::LeaseLost { .. }
            | Self::InvalidArgument(_)
            | Self::Protocol(_)
            | Self::Io(_)
            | Self::File { .. }
            | Self::SessionClosed
            | Self::Unsupported(_) => false,
        }
    }

    /// The coordinator's error code, when the coordinator answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            Self::LeaseLost { .. } => Some(ErrorCode::LeaseLost),
            _ => None,
        }
    }

    /// The delay the coordinator asked for (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn from_reqwest(err: reqwest::Error, timeout: Duration) -> Self {
        if err.is_timeout() {
            Self::Timeout(timeout)
        } else if err.is_decode() {
            Self::Protocol(format!("cannot decode the coordinator's answer: {err}"))
        } else if err.is_builder() {
            Self::InvalidArgument(err.to_string())
        } else {
            // Connect, request, body and redirect errors: the exchange broke in transit.
            Self::Unreachable {
                message: error_chain(&err),
            }
        }
    }

    /// An I/O failure on the caller's file at `path`.
    pub(crate) fn file(path: &Path, source: std::io::Error) -> Self {
        Self::File {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn from_body(status: u16, body: leasehold_proto::ErrorBody) -> Self {
        Self::Api {
            status,
            code: body.code,
            message: body.message,
            details: body.details,
            request_id: body.request_id,
            retry_after: None,
        }
    }
}

/// `err` and its sources, joined: reqwest's own message alone is often "error sending request".
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// What a handler returns when it does not succeed.
///
/// - [`HandlerError::Retry`]: try again later — after `after` if given, else after the retry
///   policy's delay (the job's own backoff hint, or the worker's default). The coordinator makes
///   the job `dead` once its attempts are spent.
/// - [`HandlerError::Fatal`]: never try again; the job ends `dead`.
/// - [`HandlerError::Cancelled`]: the handler stopped because it was asked to.
///
/// Any `std::error::Error` converts into a retryable `HandlerError` (its type name becomes the
/// error class), so `?` works in handlers. `HandlerError` itself deliberately does not implement
/// `std::error::Error`: that is what makes this blanket conversion possible (as with `anyhow`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HandlerError {
    /// A failure that another attempt may not repeat.
    Retry {
        /// Error class recorded with the failure (e.g. an exception type).
        class: String,
        /// Human message.
        message: String,
        /// Run again after this delay instead of the policy's.
        after: Option<Duration>,
    },
    /// A failure that no attempt can fix (bad input, unknown kind).
    Fatal {
        /// Error class recorded with the failure.
        class: String,
        /// Human message.
        message: String,
    },
    /// The handler stopped because its job was cancelled.
    Cancelled {
        /// Why, for the record.
        message: String,
    },
}

impl HandlerError {
    /// A retryable failure with class `error`.
    pub fn retry(message: impl Into<String>) -> Self {
        Self::Retry {
            class: "error".to_owned(),
            message: message.into(),
            after: None,
        }
    }

    /// A retryable failure to run again after `after` exactly (no jitter).
    pub fn retry_after(message: impl Into<String>, after: Duration) -> Self {
        Self::Retry {
            class: "error".to_owned(),
            message: message.into(),
            after: Some(after),
        }
    }

    /// The upstream this job calls throttled it (HTTP 429, a quota): a retryable failure of
    /// class `throttled`, run again after `after`. A tenant's adaptive rate limits the job falls
    /// under slow down when they see it (docs/flow-control.md).
    pub fn throttled(message: impl Into<String>, after: Duration) -> Self {
        Self::Retry {
            class: "throttled".to_owned(),
            message: message.into(),
            after: Some(after),
        }
    }

    /// A fatal failure with class `fatal`.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::Fatal {
            class: "fatal".to_owned(),
            message: message.into(),
        }
    }

    /// The handler gave up because it was cancelled.
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::Cancelled {
            message: message.into(),
        }
    }

    /// Replaces the error class (kept to 255 bytes without control characters on the wire).
    #[must_use]
    pub fn with_class(mut self, new_class: impl Into<String>) -> Self {
        match &mut self {
            Self::Retry { class, .. } | Self::Fatal { class, .. } => *class = new_class.into(),
            Self::Cancelled { .. } => {}
        }
        self
    }

    /// Whether another attempt may run.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retry { .. })
    }

    /// The error class sent to the coordinator.
    pub fn class(&self) -> &str {
        match self {
            Self::Retry { class, .. } | Self::Fatal { class, .. } => class,
            Self::Cancelled { .. } => "cancelled",
        }
    }

    /// The message sent to the coordinator.
    pub fn message(&self) -> &str {
        match self {
            Self::Retry { message, .. }
            | Self::Fatal { message, .. }
            | Self::Cancelled { message } => message,
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retry { class, message, .. } => write!(f, "{class} (retryable): {message}"),
            Self::Fatal { class, message } => write!(f, "{class} (fatal): {message}"),
            Self::Cancelled { message } => write!(f, "cancelled: {message}"),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(err: E) -> Self {
        let class = std::any::type_name::<E>()
            .rsplit("::")
            .next()
            .unwrap_or("error")
            .to_owned();
        Self::Retry {
            class,
            message: error_chain(&err),
            after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        let api = |status| Error::Api {
            status,
            code: ErrorCode::Unknown,
            message: String::new(),
            details: serde_json::Value::Null,
            request_id: String::new(),
            retry_after: None,
        };
        for s in [429, 502, 503, 504] {
            assert!(api(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 404, 409, 413, 422, 500] {
            assert!(!api(s).is_retryable(), "{s}");
        }
        assert!(Error::Timeout(Duration::from_secs(1)).is_retryable());
        assert!(!Error::SessionClosed.is_retryable());
    }

    #[test]
    fn any_error_converts_to_a_retryable_handler_error() {
        fn parse(s: &str) -> Result<i32, HandlerError> {
            Ok(s.parse::<i32>()?)
        }
        let err = parse("x").err();
        let Some(HandlerError::Retry { class, after, .. }) = err else {
            panic!("expected Retry, got {err:?}");
        };
        assert_eq!(class, "ParseIntError");
        assert_eq!(after, None);
        assert_eq!(
            HandlerError::fatal("no").with_class("bad_input").class(),
            "bad_input"
        );
        assert!(!HandlerError::cancelled("stop").is_retryable());
    }
}
