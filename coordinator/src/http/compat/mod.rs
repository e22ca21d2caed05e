//! The surfaces of the systems Leasehold replaces (docs/CONTRACT.md §5), served on the v1
//! machinery, one file and one router each so that retiring one is deleting one file:
//! - [`scheduler`]: the scheduler's run records (`/orchestrator/runs`);
//! - [`runs_service`]: the runs service with live events (`/runs…`, deprecated, with `Link`s to
//!   v1);
//! - [`runbook`]: the runbook's start, cancel, run-status stream and health.

pub(crate) mod runbook;
pub(crate) mod runs_service;
pub(crate) mod scheduler;

use axum::Router;
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use crate::error::{ApiError, ApiResult};

/// The compat routes whose requests are bounded (the server's request timeout applies).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .merge(scheduler::router())
        .merge(runs_service::router())
        .merge(runbook::router())
}

/// The compat streams (SSE and WebSocket): no request timeout.
pub(crate) fn streams() -> Router<AppState> {
    Router::new()
        .merge(runs_service::streams())
        .merge(runbook::streams())
}

/// Parses a legacy run id (404 for anything that is not one of ours).
pub(crate) fn legacy_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(format!("run {raw:?} does not exist")))
}

#[derive(Debug, Deserialize)]
pub(crate) struct RunPath {
    #[serde(rename = "runId")]
    pub(crate) run_id: String,
}
