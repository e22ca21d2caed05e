//! What the coordinator never shows: the values of secret fields (`--redact-fields`,
//! `LEASEHOLD_REDACT_FIELDS`; default `password,secret,token,api_key,authorization`; matching
//! as [`leasehold_proto::redact`] says) in error messages, error details and the JSON it logs.
//! One list per process, like the log subscriber it protects: `leasehold serve` installs it at
//! start-up; before that (and in tests) the default applies.
//!
//! Keys never reach a log at all: request spans carry the method and path only (never the
//! query, where `?api_key=` may be), `ORCHESTRATOR_API_KEY` is never printed, tokens are shown
//! once in the answer that creates them, and records name keys by id.

use std::sync::OnceLock;

use leasehold_proto::redact::{REDACTED, Redactor};

static CURRENT: OnceLock<Redactor> = OnceLock::new();

/// Installs the process's list; false when one was installed already (it stays).
pub fn install(redactor: Redactor) -> bool {
    CURRENT.set(redactor).is_ok()
}

/// The process's list.
pub fn current() -> &'static Redactor {
    CURRENT.get_or_init(Redactor::default)
}

/// `message` with every double-quoted part (where serde quotes the value it refused) replaced:
/// for an error about a secret field.
pub fn scrub_quotes(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('"') {
            Some(end) => {
                out.push('"');
                out.push_str(REDACTED);
                out.push('"');
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_scrubbed() {
        assert_eq!(
            scrub_quotes(r#"invalid type: string "hunter2", expected i32 at "x""#),
            r#"invalid type: string "[redacted]", expected i32 at "[redacted]""#
        );
        assert_eq!(scrub_quotes("no quotes"), "no quotes");
        assert_eq!(scrub_quotes(r#"half "open"#), r#"half "open"#);
    }
}
