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
