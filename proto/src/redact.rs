//! Redaction of secrets in JSON (payloads, results, checkpoints, error details) before it
//! reaches a log line or an error message. A field is redacted when its name, lowercased and
//! without `_` or `-`, contains one of the listed names likewise normalized: `password` covers
//! `db_password` and `passwordHash`, `api_key` covers `apiKey` and `X-Api-Key` (Leasehold's own
//! `fencing_token` is not a secret and is never redacted). Its value, whatever
//! its type, becomes the string [`REDACTED`]. Stored data is never changed: this is for what is
//! shown, not what is kept.

use serde_json::Value;

/// The field names redacted when nothing else is configured.
pub const DEFAULT_REDACTED_FIELDS: [&str; 5] =
    ["password", "secret", "token", "api_key", "authorization"];

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Which field names are secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redactor {
    needles: Vec<String>,
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(DEFAULT_REDACTED_FIELDS)
    }
}

impl Redactor {
    /// Redacts fields named like any of `names` (blank names are ignored).
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            needles: names
                .into_iter()
                .map(|n| normalize(n.as_ref()))
                .filter(|n| !n.is_empty())
                .collect(),
        }
    }

    /// Whether a field called `name` is secret. `fencing_token`, the lease's fencing number
    /// in Leasehold's own contract, never is.
    pub fn is_secret(&self, name: &str) -> bool {
        let name = normalize(name);
        name != "fencingtoken" && self.needles.iter().any(|n| name.contains(n.as_str()))
    }

    /// `value` with every secret field's value replaced, at any depth.
    pub fn redact(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let v = if self.is_secret(k) {
                            Value::String(REDACTED.to_owned())
                        } else {
                            self.redact(v)
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.redact(v)).collect()),
            other => other.clone(),
        }
    }

    /// Whether a field path such as `payload.db.password` or `outcomes[0].result.token` names a
    /// secret in any of its segments.
    pub fn is_secret_path(&self, path: &str) -> bool {
        path.split(['.', '[', ']'])
            .filter(|s| !s.is_empty() && !s.chars().all(|c| c.is_ascii_digit()))
            .any(|s| self.is_secret(s))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_fields_are_redacted_at_any_depth_and_nothing_else() {
        let r = Redactor::default();
        let v = json!({"user": "ann", "db_password": "pw", "nested": [{"apiKey": {"a": 1}}],
                       "Authorization": "Bearer x", "tokens_left": 3, "count": 2});
        assert_eq!(
            r.redact(&v),
            json!({"user": "ann", "db_password": REDACTED, "nested": [{"apiKey": REDACTED}],
                   "Authorization": REDACTED, "tokens_left": REDACTED, "count": 2})
        );
        assert!(r.is_secret_path("payload.db.password"));
        assert!(r.is_secret_path("outcomes[0].result.token"));
        assert!(!r.is_secret_path("outcomes[0].fencing_token"));
        assert!(!r.is_secret_path("payload.user"));
    }

    #[test]
    fn a_jobs_debug_form_hides_its_secrets() {
        let job: crate::Job = serde_json::from_value(json!({
            "id": "01a24767-2721-74af-8fa3-788298a876a5", "tenant": "t", "queue": "q", "kind": "k",
            "state": "queued", "payload": {"password": "hunter2", "user": "ann"}, "priority": 0,
            "attempt": 0, "max_attempts": 1, "fencing_token": 7, "run_at": "2026-12-05T00:00:00Z",
            "created_at": "2026-12-05T00:00:00Z", "updated_at": "2026-12-05T00:00:00Z",
            "inputs_hash": "sha256:00", "cancel_requested": false, "artifacts": [],
            "result": {"token": "t0k3n"}
        }))
        .unwrap();
        let shown = format!("{job:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("t0k3n"),
            "{shown}"
        );
        assert!(
            shown.contains("ann") && shown.contains("fencing_token: 7"),
            "{shown}"
        );
        // The data itself is untouched.
        assert_eq!(job.payload["password"], "hunter2");
    }

    #[test]
    fn the_list_is_configurable() {
        let r = Redactor::new(["pin", " "]);
        assert!(r.is_secret("card_pin"));
        assert!(!r.is_secret("password"));
    }
}
