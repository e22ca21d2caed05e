//! Flow control at lease time (docs/flow-control.md): the limits a tenant puts on leasing, and
//! the gate every claim passes its candidates through.
//!
//! - [`keys`]: which keys a job carries and which buckets of which limit it falls in;
//! - [`gate`]: given the limits, the buckets' state and the leases held, which candidates a
//!   claim may lease now, in claim order, and when to ask again for the others;
//! - [`waiters`]: claimers waiting for a concurrency slot, woken when a lease ends.
//!
//! The stores run the gate inside the claim's transaction, after serializing the tenant's
//! gated claims (a row lock on its limits on PostgreSQL, the single writer on SQLite), so the
//! budget a limit states holds across replicas. A tenant without limits pays one indexed
//! lookup per claim and nothing else.

pub mod gate;
pub mod keys;
pub mod waiters;

use leasehold_proto::LimitSpec;

use crate::error::{ApiError, ApiResult};

/// The most a rate, burst or concurrency may be.
pub const MAX_LIMIT: u32 = 100_000;

/// A limit as the gate applies it: its key, parsed, and its spec with `burst` filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The limit's key as stored.
    pub key: String,
    /// What the key matches.
    pub matcher: keys::LimitKey,
    /// Leases per second, if rate-limited.
    pub rate: Option<f64>,
    /// The bucket's size (set whenever `rate` is).
    pub burst: Option<u32>,
    /// Leases held at once, if limited.
    pub concurrency: Option<u32>,
}

impl Rule {
    /// The rule of a stored limit (validated when it was set; checked again, as stored rows
    /// may predate a rule).
    pub fn new(key: &str, spec: &LimitSpec) -> ApiResult<Self> {
        let spec = checked_spec(spec)?;
        Ok(Self {
            key: key.to_owned(),
            matcher: keys::LimitKey::parse(key)?,
            rate: spec.rate,
            burst: spec.burst,
            concurrency: spec.concurrency,
        })
    }
}

/// A limit's definition checked, with `burst` defaulting to `rate` rounded up: 422 naming the
/// field otherwise.
pub fn checked_spec(spec: &LimitSpec) -> ApiResult<LimitSpec> {
    let mut spec = spec.clone();
    if spec.rate.is_none() && spec.concurrency.is_none() {
        return Err(ApiError::validation(
            "rate",
            "a limit sets `rate`, `concurrency` or both",
        ));
    }
    if let Some(rate) = spec.rate
        && !(rate.is_finite() && (0.001..=f64::from(MAX_LIMIT)).contains(&rate))
    {
        return Err(ApiError::validation(
            "rate",
            format!("rate is leases per second, from 0.001 to {MAX_LIMIT}"),
        ));
    }
    match (spec.rate, spec.burst) {
        (None, Some(_)) => {
            return Err(ApiError::validation(
                "burst",
                "burst is the size of a rate limit's bucket: set `rate` with it",
            ));
        }
        (Some(_), Some(burst)) if !(1..=MAX_LIMIT).contains(&burst) => {
            return Err(ApiError::validation(
                "burst",
                format!("burst is from 1 to {MAX_LIMIT}"),
            ));
        }
        (Some(rate), None) => spec.burst = Some((rate.ceil() as u32).clamp(1, MAX_LIMIT)),
        _ => {}
    }
    if let Some(n) = spec.concurrency
        && !(1..=MAX_LIMIT).contains(&n)
    {
        return Err(ApiError::validation(
            "concurrency",
            format!("concurrency is from 1 to {MAX_LIMIT}"),
        ));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(err: ApiError) -> String {
        err.details["field"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn a_spec_needs_a_rate_or_a_concurrency_within_bounds() {
        let spec = |rate, burst, concurrency| LimitSpec {
            rate,
            burst,
            concurrency,
        };
        assert_eq!(
            field(checked_spec(&spec(None, None, None)).expect_err("refused")),
            "rate"
        );
        assert_eq!(
            field(checked_spec(&spec(Some(0.0), None, None)).expect_err("refused")),
            "rate"
        );
        assert_eq!(
            field(checked_spec(&spec(Some(f64::NAN), None, None)).expect_err("refused")),
            "rate"
        );
        assert_eq!(
            field(checked_spec(&spec(None, Some(3), Some(1))).expect_err("refused")),
            "burst"
        );
        assert_eq!(
            field(checked_spec(&spec(Some(1.0), Some(0), None)).expect_err("refused")),
            "burst"
        );
        assert_eq!(
            field(checked_spec(&spec(None, None, Some(0))).expect_err("refused")),
            "concurrency"
        );
        // The bucket holds a second's worth by default, at least one token.
        assert_eq!(
            checked_spec(&spec(Some(2.5), None, None))
                .expect("present")
                .burst,
            Some(3)
        );
        assert_eq!(
            checked_spec(&spec(Some(0.1), None, None))
                .expect("present")
                .burst,
            Some(1)
        );
        assert_eq!(
            checked_spec(&spec(Some(5.0), Some(1), None))
                .expect("present")
                .burst,
            Some(1)
        );
    }
}
