//! Client-side checks mirroring the coordinator's, so that mistakes fail at build time with a
//! clear message instead of as a 422 in a background loop.

use crate::error::{Error, Result};

/// Queue and tenant names: `[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}`.
pub(crate) fn queue_name(value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "queue name {value:?} must be 1-128 characters of letters, digits, '_', '.', ':' or \
             '-', starting with a letter or digit"
        )))
    }
}

/// Job kinds: like queue names, with `/` also allowed and up to 255 bytes.
pub(crate) fn kind(value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "kind {value:?} must be 1-255 characters of letters, digits, '_', '.', ':', '-' or \
             '/', starting with a letter or digit"
        )))
    }
}

/// Free-form labels (worker id, versions, keys): 1-255 bytes without control characters.
pub(crate) fn label(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{field} must be 1-255 bytes without control characters, got {value:?}"
        )));
    }
    Ok(())
}
