//! Audited operator actions. Each is a ledger event of type `audit` in the tenant whose data it
//! changed, so it travels with that tenant's ledger (event feed, export, archive) and is listed
//! by `GET /v1/audit` and `leasehold audit`. Its `data`:
//!
//! - `action`: what was done (`keys.create`, `keys.revoke`, `queues.pause`, `queues.resume`,
//!   `queues.settings`, `retention.set`, `retention.delete`, `retention.sweep`,
//!   `jobs.replay`, `jobs.cancel`, `quotas.set`, `quotas.delete`, `slo.set`, `slo.delete`);
//! - `actor`: who — `{"kind": "key", "key_id", "key_name"}`, `{"kind": "root"}` (the
//!   coordinator's own key) or `{"kind": "keyless"}`; never a token;
//! - `target`: what it was done to (a key's id, a queue, a filter…);
//! - `reason` and `ticket`: why, required on the actions the `orch:quota` and `orch:backfill`
//!   scopes govern (422 naming the missing one), absent elsewhere.
//!
//! The action and its record are two writes: the record follows the action, and a failure to
//! write it is logged (the action stands; the log has the whole record).

use chrono::{DateTime, Utc};
use leasehold_proto::Event;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::keys::Principal;
use crate::store::Store;

/// Longest `reason`.
pub const MAX_REASON: usize = 1000;
/// Longest `ticket`.
pub const MAX_TICKET: usize = 200;

/// Why an operator acted: both required where a scope says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Justification {
    /// Free text.
    pub reason: String,
    /// The change ticket.
    pub ticket: String,
}

fn text(field: &str, value: Option<String>, max: usize) -> ApiResult<String> {
    let value = value.map(|v| v.trim().to_owned()).unwrap_or_default();
    if value.is_empty() {
        return Err(ApiError::validation(
            field,
            format!("`{field}` is required for this action (it is recorded in the audit trail)"),
        ));
    }
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ApiError::validation(
            field,
            format!("`{field}` is at most {max} characters, without control characters"),
        ));
    }
    Ok(value)
}

/// The justification of an action governed by `orch:quota` or `orch:backfill`: 422 naming
/// `reason` or `ticket` when missing, blank or too long.
pub fn justification(reason: Option<String>, ticket: Option<String>) -> ApiResult<Justification> {
    Ok(Justification {
        reason: text("reason", reason, MAX_REASON)?,
        ticket: text("ticket", ticket, MAX_TICKET)?,
    })
}

/// Who the caller is, for the record.
pub fn actor(principal: &Principal) -> Value {
    match principal {
        Principal::Open => json!({"kind": "keyless"}),
        Principal::Root => json!({"kind": "root"}),
        Principal::Key(grant) => {
            json!({"kind": "key", "key_id": grant.id, "key_name": grant.name})
        }
    }
}

/// Records `action` on `target` by `principal` in `tenant`'s ledger. A failure to write the
/// record is logged with the record itself and answered `None`: the action already happened.
pub async fn record(
    store: &dyn Store,
    tenant: &str,
    principal: &Principal,
    action: &str,
    target: Value,
    why: Option<&Justification>,
    now: DateTime<Utc>,
) -> Option<Event> {
    let mut data = json!({"action": action, "actor": actor(principal), "target": target});
    if let Some(why) = why {
        data["reason"] = json!(why.reason);
        data["ticket"] = json!(why.ticket);
    }
    match store.record_audit(tenant, data.clone(), now).await {
        Ok(event) => {
            tracing::info!(audit_event = event.id, %tenant, action, actor = %data["actor"], "audited");
            Some(event)
        }
        Err(err) => {
            let record = crate::redaction::current().redact(&data);
            tracing::error!(%err, %tenant, %record, "the audit record could not be written");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_and_ticket_are_both_required_by_name() {
        let field =
            |r: ApiResult<Justification>| r.err().map(|e| e.into_body("").details["field"].clone());
        assert_eq!(
            field(justification(None, Some("T-1".into()))),
            Some(json!("reason"))
        );
        assert_eq!(
            field(justification(Some("why".into()), Some("  ".into()))),
            Some(json!("ticket"))
        );
        assert_eq!(
            field(justification(
                Some("x".repeat(MAX_REASON + 1)),
                Some("T-1".into())
            )),
            Some(json!("reason"))
        );
        assert_eq!(
            justification(
                Some(" backfill after outage ".into()),
                Some("INC-42".into())
            )
            .ok(),
            Some(Justification {
                reason: "backfill after outage".into(),
                ticket: "INC-42".into()
            })
        );
    }

    #[test]
    fn the_actor_names_a_key_never_a_token() {
        assert_eq!(actor(&Principal::Root), json!({"kind": "root"}));
        assert_eq!(actor(&Principal::Open), json!({"kind": "keyless"}));
    }
}
