//! Limit keys. A job carries `queue:<queue>`, `kind:<kind>` and the keys it was enqueued with
//! (`limit_keys`, e.g. `host:api.example.com`); a limit names `*` (every job of the tenant), one
//! of those keys exactly, or a prefix (`host:*`: a bucket per key with that prefix, i.e. per
//! host).

use crate::error::{ApiError, ApiResult};

/// The most keys one job may carry besides its implicit two.
pub const MAX_JOB_KEYS: usize = 8;

/// The rule for a key's prefix and value, for error messages.
const KEY_RULE: &str = "`<prefix>:<value>`: a prefix of 1 to 32 lower-case letters, digits, `_` \
                        or `-` starting with a letter, and a value of 1 to 200 letters, digits or \
                        `_.:/@-`";

fn is_prefix(p: &str) -> bool {
    (1..=32).contains(&p.len())
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_value(v: &str) -> bool {
    (1..=200).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:/@-".contains(c))
}

/// Checks the `limit_keys` of a new job: at most [`MAX_JOB_KEYS`], each `<prefix>:<value>` with
/// a prefix other than the implicit `queue` and `kind`, no duplicates. 422 naming the key.
pub fn check_job_keys(keys: &[String]) -> ApiResult<()> {
    if keys.len() > MAX_JOB_KEYS {
        return Err(ApiError::validation(
            "limit_keys",
            format!("a job carries at most {MAX_JOB_KEYS} limit keys"),
        ));
    }
    for (i, key) in keys.iter().enumerate() {
        let field = format!("limit_keys[{i}]");
        let Some((prefix, value)) = key.split_once(':') else {
            return Err(ApiError::validation(
                &field,
                format!("a limit key is {KEY_RULE}"),
            ));
        };
        if !is_prefix(prefix) || !is_value(value) {
            return Err(ApiError::validation(
                &field,
                format!("a limit key is {KEY_RULE}"),
            ));
        }
        if prefix == "queue" || prefix == "kind" {
            return Err(ApiError::validation(
                &field,
                format!("`{prefix}:` keys are implicit: every job carries its own"),
            ));
        }
        if keys[..i].contains(key) {
            return Err(ApiError::validation(
                &field,
                format!("{key:?} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// What a limit's key matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// `*`: every job of the tenant, one bucket.
    All,
    /// One key exactly, one bucket.
    Exact(String),
    /// `<prefix>:*`: every key with that prefix, a bucket per key. Holds `<prefix>:`.
    Prefix(String),
}

impl LimitKey {
    /// Parses a limit's key: `*`, `<prefix>:*`, or a key as jobs carry them (`queue:<name>` and
    /// `kind:<kind>` included). 422 naming `key` otherwise.
    pub fn parse(key: &str) -> ApiResult<Self> {
        if key == "*" {
            return Ok(Self::All);
        }
        let bad = || {
            ApiError::validation(
                "key",
                format!("a limit's key is `*` (the whole tenant), `<prefix>:*` or {KEY_RULE}"),
            )
        };
        let (prefix, value) = key.split_once(':').ok_or_else(bad)?;
        if !is_prefix(prefix) {
            return Err(bad());
        }
        if value == "*" {
            return Ok(Self::Prefix(format!("{prefix}:")));
        }
        // Queue names and kinds have rules of their own (a kind may hold characters a key's
        // value may not); every other prefix takes the key rule.
        let ok = match prefix {
            "queue" => leasehold_proto::names::is_name(value),
            "kind" => leasehold_proto::names::is_kind(value),
            _ => is_value(value),
        };
        if ok {
            Ok(Self::Exact(key.to_owned()))
        } else {
            Err(bad())
        }
    }

    /// The buckets of this limit that a job with `keys` falls in (none when it does not apply).
    pub fn buckets<'k>(&self, keys: &'k [String]) -> Vec<&'k str> {
        match self {
            Self::All => vec!["*"],
            Self::Exact(k) => keys
                .iter()
                .filter(|j| *j == k)
                .map(String::as_str)
                .collect(),
            Self::Prefix(p) => keys
                .iter()
                .filter(|j| j.starts_with(p.as_str()))
                .map(String::as_str)
                .collect(),
        }
    }
}

/// Every key a job carries: `queue:<queue>`, `kind:<kind>`, then its own.
pub fn job_keys(queue: &str, kind: &str, own: &[String]) -> Vec<String> {
    let mut keys = Vec::with_capacity(2 + own.len());
    keys.push(format!("queue:{queue}"));
    keys.push(format!("kind:{kind}"));
    keys.extend(own.iter().cloned());
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_keys_follow_the_rule() {
        let ok = |k: &[&str]| check_job_keys(&k.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&["host:api.example.com", "vendor:acme", "acct:1234/eu-west"]).is_ok());
        assert!(ok(&[]).is_ok());
        for bad in [
            "host", "host:", ":x", "Host:x", "host:a b", "host:*", "queue:q", "kind:k",
        ] {
            let err = ok(&[bad]).expect_err("refused");
            assert_eq!(err.details["field"], "limit_keys[0]", "{bad}");
        }
        assert_eq!(
            ok(&["a:x", "a:x"]).expect_err("refused").details["field"],
            "limit_keys[1]"
        );
        let nine: Vec<String> = (0..9).map(|i| format!("k:{i}")).collect();
        assert_eq!(
            check_job_keys(&nine).expect_err("refused").details["field"],
            "limit_keys"
        );
    }

    #[test]
    fn limit_keys_match_their_buckets() {
        let keys = job_keys("mail", "send", &["host:a.io".into(), "host:b.io".into()]);
        assert_eq!(LimitKey::parse("*").expect("present").buckets(&keys), ["*"]);
        assert_eq!(
            LimitKey::parse("queue:mail")
                .expect("present")
                .buckets(&keys),
            ["queue:mail"]
        );
        assert!(
            LimitKey::parse("queue:other")
                .expect("present")
                .buckets(&keys)
                .is_empty()
        );
        assert_eq!(
            LimitKey::parse("kind:send")
                .expect("present")
                .buckets(&keys),
            ["kind:send"]
        );
        assert_eq!(
            LimitKey::parse("host:*").expect("present").buckets(&keys),
            ["host:a.io", "host:b.io"]
        );
        assert_eq!(
            LimitKey::parse("queue:*").expect("present").buckets(&keys),
            ["queue:mail"]
        );
        for bad in ["", "**", "host", "Host:x", "queue:bad name", "host:a*"] {
            assert_eq!(
                LimitKey::parse(bad).expect_err("refused").details["field"],
                "key",
                "{bad}"
            );
        }
    }
}
