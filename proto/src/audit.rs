//! The audit trail (`GET /v1/audit`) of operators' actions (keys, queues, retention, quotas,
//! and the bulk actions of `crate::bulk`). Each audited action is a ledger event of type
//! `audit` whose `data` says who (`actor`), what (`action`, `target`), and why (`reason`,
//! `ticket`).

use serde::{Deserialize, Serialize};

use crate::Event;

/// Answer of `GET /v1/audit`: the tenant's audit events, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditList {
    /// Events of type `audit`.
    pub events: Vec<Event>,
    /// Pass as `after` for the next page (absent on the last page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
}
