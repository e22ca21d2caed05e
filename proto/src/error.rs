use serde::{Deserialize, Serialize};

/// Every error response body: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorEnvelope {
    /// The error itself.
    pub error: ErrorBody,
}

/// What went wrong, in a stable machine-readable `code` and a human `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable code; clients branch on this, never on `message`.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Structured context (for example the offending `field`).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
    /// The request id, also sent as `X-Request-Id`.
    #[serde(default)]
    pub request_id: String,
}

/// Stable error codes and the HTTP status each one is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the request could not be parsed (bad JSON, bad id, bad cursor).
    InvalidRequest,
    /// 401: credentials missing or wrong.
    Unauthorized,
    /// 403: credentials valid but not allowed here.
    Forbidden,
    /// 404: no such resource or route.
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: the fencing token is stale or the job is no longer leased; nothing changed.
    LeaseLost,
    /// 409: the job is in a state that does not allow this operation.
    InvalidState,
    /// 409: the idempotency key was used already for a job with another kind or payload;
    /// nothing was stored (`details.differs` names what differs, `details.job_id` the job).
    IdempotencyConflict,
    /// 413: the body or one of its parts is over the size limit.
    PayloadTooLarge,
    /// 415: the body's `Content-Type` is not the one the route takes (`application/json`, or
    /// `application/octet-stream` for artifact uploads); nothing was done.
    UnsupportedMediaType,
    /// 422: the request parsed but a field is invalid.
    ValidationFailed,
    /// 429: too many requests; see `Retry-After`.
    RateLimited,
    /// 429: the enqueue would take the tenant past its quota (`details.quota` names it,
    /// `details.limit`, `details.waiting` and `details.adding` say by how much); nothing was
    /// stored. See `Retry-After`.
    QuotaExceeded,
    /// 429: the coordinator is shedding enqueues because its store holds as many waiting jobs
    /// as it is configured to (`--max-queued-jobs`); nothing was stored. See `Retry-After`.
    Overloaded,
    /// 503: the database (or another dependency) is unreachable; retry later.
    Unavailable,
    /// 500: a bug on our side; the request id finds it in the logs.
    Internal,
    /// Any code a newer coordinator sends that this build does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status code this error is sent with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::LeaseLost | Self::InvalidState | Self::IdempotencyConflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::ValidationFailed => 422,
            Self::RateLimited | Self::QuotaExceeded | Self::Overloaded => 429,
            Self::Unavailable => 503,
            Self::Internal | Self::Unknown => 500,
        }
    }

    /// The wire spelling of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::LeaseLost => "lease_lost",
            Self::InvalidState => "invalid_state",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::ValidationFailed => "validation_failed",
            Self::RateLimited => "rate_limited",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::Unknown => "unknown",
        }
    }
}
