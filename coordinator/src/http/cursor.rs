//! Opaque list cursors. Ids are UUIDv7, so "older than this id" is "further down the newest-first
//! list"; the cursor hides that so it can change without breaking clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::error::ApiError;

const PREFIX: &str = "j1:";

/// Cursor pointing after `id`.
pub(crate) fn encode(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{PREFIX}{}", id.simple()))
}

/// The id a cursor points after (400 when it is not one of ours).
pub(crate) fn decode(cursor: &str) -> Result<Uuid, ApiError> {
    let bad = || {
        ApiError::invalid_request("cursor is not valid; pass back a next_cursor unchanged")
            .with_details(serde_json::json!({"field": "cursor"}))
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let hex = text.strip_prefix(PREFIX).ok_or_else(bad)?;
    Uuid::try_parse(hex).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let id = Uuid::now_v7();
        assert_eq!(decode(&encode(id)).ok(), Some(id));
        for bad in ["", "!!", "AAAA", &URL_SAFE_NO_PAD.encode("x1:abc")] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }
}
