//! Client-side checks mirroring the coordinator's, so that mistakes fail at build time with a
//! clear message instead of as a 422 in a background loop.

use leasehold_proto::names;

use crate::error::{Error, Result};

/// Queue and tenant names (`leasehold_proto::names`: the coordinator enforces the same rule).
pub(crate) fn queue_name(value: &str) -> Result<()> {
    if names::is_name(value) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "queue name {value:?} must be {}",
        names::NAME_RULE
    )))
}

/// Job kinds (`leasehold_proto::names`).
pub(crate) fn kind(value: &str) -> Result<()> {
    if names::is_kind(value) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "kind {value:?} must be {}",
        names::KIND_RULE
    )))
}

/// Free-form labels (worker id, versions, keys; `leasehold_proto::names`).
pub(crate) fn label(field: &str, value: &str) -> Result<()> {
    if names::is_label(value) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "{field} must be {}, got {value:?}",
        names::LABEL_RULE
    )))
}

/// The `reason` and `ticket` an audited operator action requires (the coordinator's rule: each
/// present and not blank, `reason` at most 1000 characters, `ticket` at most 200, neither with
/// control characters).
pub(crate) fn justification(reason: Option<&str>, ticket: Option<&str>) -> Result<()> {
    for (field, value, max) in [("reason", reason, 1000), ("ticket", ticket, 200)] {
        let value = value.map(str::trim).unwrap_or_default();
        if value.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{field} is required for this action (it is recorded in the audit trail)"
            )));
        }
        if value.chars().count() > max || value.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(format!(
                "{field} must be at most {max} characters, without control characters"
            )));
        }
    }
    Ok(())
}
