//! Flow control at lease time (docs/flow-control.md): the limits a tenant puts on leasing, and
//! the gate every claim passes its candidates through.
//!
//! - [`keys`]: which keys a job carries and which buckets of which limit it falls in;
//! - [`gate`]: given the limits, the buckets' state and the leases held, which candidates a
//!   claim may lease now, in claim order, and when to ask again for the others;
//! - [`adaptive`]: rates that halve on an upstream throttle and recover with time (AIMD);
//! - [`blackout`]: windows in which nothing a limit covers is leased;
//! - [`breaker`]: what an outcome does to a circuit breaker, and whether one lets a lease
//!   through;
//! - [`catalog`]: which tenants have limits, cached briefly for the outcome path;
//! - [`waiters`]: claimers waiting for a concurrency slot, woken when a lease ends;
//! - [`pool`]: worker pools shared by several tenants, and the fair share of their leases.
//!
//! The stores run the gate inside the claim's transaction, after serializing the tenant's
//! gated claims (an advisory lock on the tenant on PostgreSQL, the single writer on SQLite), so
//! the budget a limit states holds across replicas. A tenant without limits pays a look-up in
//! [`catalog`] per claim and nothing else.

pub mod adaptive;
pub mod blackout;
pub mod breaker;
pub mod catalog;
pub mod gate;
pub mod keys;
pub mod pool;
pub mod waiters;

use leasehold_proto::{BreakerSpec, LimitSpec};

use crate::error::{ApiError, ApiResult};

/// The most a rate, burst or concurrency may be.
pub const MAX_LIMIT: u32 = 100_000;
/// The most limits one tenant may define (each limit key is also a metrics label value).
pub const MAX_LIMITS_PER_TENANT: usize = 100;
/// A breaker's cooldown when its definition gives none.
pub const DEFAULT_COOLDOWN_MS: u64 = 30_000;

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
    /// The circuit breaker, with its cooldown filled in.
    pub breaker: Option<BreakerSpec>,
    /// Blackout windows.
    pub blackouts: Vec<blackout::Window>,
    /// Whether the rate adapts to throttles (`adaptive`).
    pub adaptive: bool,
}

/// The limit a tenant's quota `max_leased` is enforced as: a concurrency on every job of the
/// tenant, named so in a claim's `throttled.limits`.
pub const MAX_LEASED: &str = "quota:max_leased";

impl Rule {
    /// The tenant's quota `max_leased` as a rule ([`MAX_LEASED`]).
    pub fn max_leased(max: u32) -> Self {
        Self {
            key: MAX_LEASED.to_owned(),
            matcher: keys::LimitKey::All,
            rate: None,
            burst: None,
            concurrency: Some(max),
            breaker: None,
            blackouts: Vec::new(),
            adaptive: false,
        }
    }

    /// The breaker's cooldown (set whenever `breaker` is).
    pub fn cooldown(&self) -> chrono::Duration {
        let ms = self
            .breaker
            .as_ref()
            .and_then(|b| b.cooldown_ms)
            .unwrap_or(DEFAULT_COOLDOWN_MS);
        chrono::Duration::milliseconds(ms as i64)
    }
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
            blackouts: spec
                .blackouts
                .iter()
                .enumerate()
                .map(|(i, b)| blackout::Window::parse(i, b))
                .collect::<ApiResult<_>>()?,
            breaker: spec.breaker,
            adaptive: spec.adaptive,
        })
    }
}

/// A limit's definition checked, with `burst` defaulting to `rate` rounded up: 422 naming the
/// field otherwise.
pub fn checked_spec(spec: &LimitSpec) -> ApiResult<LimitSpec> {
    let mut spec = spec.clone();
    if spec.rate.is_none()
        && spec.concurrency.is_none()
        && spec.breaker.is_none()
        && spec.blackouts.is_empty()
    {
        return Err(ApiError::validation(
            "rate",
            "a limit sets at least one of `rate`, `concurrency`, `breaker` and `blackouts`",
        ));
    }
    if spec.adaptive && spec.rate.is_none() {
        return Err(ApiError::validation(
            "adaptive",
            "adaptive adjusts a rate limit: set `rate` with it",
        ));
    }
    if spec.blackouts.len() > blackout::MAX_WINDOWS {
        return Err(ApiError::validation(
            "blackouts",
            format!(
                "at most {} blackout windows per limit",
                blackout::MAX_WINDOWS
            ),
        ));
    }
    for (i, b) in spec.blackouts.iter().enumerate() {
        blackout::Window::parse(i, b)?;
    }
    if let Some(breaker) = &mut spec.breaker {
        if !(1..=1000).contains(&breaker.failures) {
            return Err(ApiError::validation(
                "breaker.failures",
                "failures is the number of consecutive failures that opens it, 1 to 1000",
            ));
        }
        if breaker.classes.len() > 32
            || breaker
                .classes
                .iter()
                .any(|c| c.is_empty() || c.len() > 200 || c.chars().any(char::is_control))
        {
            return Err(ApiError::validation(
                "breaker.classes",
                "classes lists at most 32 failure classes, each 1 to 200 characters",
            ));
        }
        let cooldown = breaker.cooldown_ms.unwrap_or(DEFAULT_COOLDOWN_MS);
        if !(1000..=86_400_000).contains(&cooldown) {
            return Err(ApiError::validation(
                "breaker.cooldown_ms",
                "cooldown_ms is from 1000 (a second) to 86400000 (a day)",
            ));
        }
        breaker.cooldown_ms = Some(cooldown);
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
            breaker: None,
            blackouts: Vec::new(),
            adaptive: false,
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
