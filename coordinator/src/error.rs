//! The one HTTP error type. Every failure leaves as the design's envelope
//! `{"error": {"code", "message", "details", "request_id"}}` with the status its code implies.
//! Database details are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use leasehold_proto::ErrorCode;
use serde_json::Value;

use crate::store::StoreError;

/// An error on its way to becoming an HTTP response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Stable code (decides the status).
    pub code: ErrorCode,
    /// Human message.
    pub message: String,
    /// Structured context.
    pub details: Value,
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

/// 404 for a job that does not exist (or belongs to another tenant).
pub(crate) fn job_not_found(id: uuid::Uuid) -> ApiError {
    ApiError::not_found(format!("job {id} does not exist"))
        .with_details(serde_json::json!({"job_id": id}))
}

/// 404 for a run that does not exist (or belongs to another tenant).
pub(crate) fn run_not_found(id: uuid::Uuid) -> ApiError {
    ApiError::not_found(format!("run {id} does not exist"))
        .with_details(serde_json::json!({"run_id": id}))
}

impl ApiError {
    /// An error with no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// Attaches structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Prefixes the `field` in the details (and the message) with `prefix`, for errors inside
    /// a batch element: `queue` → `jobs[3].queue`.
    pub fn prefix_field(mut self, prefix: &str) -> Self {
        if let Some(field) = self
            .details
            .get("field")
            .and_then(serde_json::Value::as_str)
        {
            let field = format!("{prefix}.{field}");
            self.message = format!("{prefix}: {}", self.message);
            self.details["field"] = serde_json::Value::String(field);
        }
        self
    }

    /// 400: unparseable request.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// 422 naming the offending field.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message)
            .with_details(serde_json::json!({ "field": field }))
    }

    /// 404 for a missing resource.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, what)
    }

    /// The envelope body for this error, with secret fields redacted
    /// (`crate::redaction`): in its details, and in its message when it is about one.
    pub fn into_body(self, request_id: &str) -> leasehold_proto::ErrorBody {
        let redactor = crate::redaction::current();
        let about_a_secret = self
            .details
            .get("field")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|f| redactor.is_secret_path(f));
        let message = if about_a_secret {
            crate::redaction::scrub_quotes(&self.message)
        } else {
            self.message
        };
        leasehold_proto::ErrorBody {
            code: self.code,
            message,
            details: redactor.redact(&self.details),
            request_id: request_id.to_owned(),
        }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(detail) | StoreError::Retryable(detail) => {
                crate::outage::unavailable(&detail);
                Self::new(
                    ErrorCode::Unavailable,
                    "the database is unavailable; retry later",
                )
            }
            StoreError::Conflict(detail) => {
                tracing::info!(%detail, "constraint conflict");
                Self::new(
                    ErrorCode::InvalidState,
                    "the request conflicts with stored data",
                )
            }
            StoreError::IdempotencyConflict(c) => Self::new(
                ErrorCode::IdempotencyConflict,
                format!(
                    "idempotency key {:?} was used for job {} with a different {}; nothing was \
                     stored (use a new key for new work)",
                    c.key,
                    c.existing,
                    c.differs.join(" and ")
                ),
            )
            .with_details(serde_json::json!({
                "field": "idempotency_key",
                "position": c.position,
                "job_id": c.existing,
                "differs": c.differs,
            })),
            StoreError::QuotaExceeded(q) => {
                let retry = crate::admission::QUOTA_RETRY_AFTER_SECS;
                Self::new(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "tenant `{}` may keep at most {} jobs waiting (max_queued; queued or \
                         blocked); it has {} and this request adds {}: nothing was stored. Retry \
                         once its workers have drained some, or raise its quota",
                        q.tenant, q.limit, q.waiting, q.adding
                    ),
                )
                .with_details(serde_json::json!({
                    "tenant": q.tenant,
                    "quota": "max_queued",
                    "limit": q.limit,
                    "waiting": q.waiting,
                    "adding": q.adding,
                    "retry_after_seconds": retry,
                }))
            }
            StoreError::Internal(detail) => {
                tracing::error!(%detail, "store failure");
                Self::new(
                    ErrorCode::Internal,
                    "internal error; the request id finds it in the logs",
                )
            }
        }
    }
}

/// Marker left in the response extensions; the envelope middleware renders the body once the
/// request id is known (`finish_response` in `http/mod.rs`).
#[derive(Debug, Clone)]
pub struct PendingError(pub ApiError);

/// The details key that also becomes the `Retry-After` header (seconds) of an error.
pub const RETRY_AFTER_DETAIL: &str = "retry_after_seconds";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        // An error that says when to ask again says it in the header clients and proxies read.
        if let Some(secs) = self.details.get(RETRY_AFTER_DETAIL).and_then(Value::as_u64) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(PendingError(self));
        response
    }
}
