//! Adaptive refill (AIMD) of rate limits marked `adaptive`: a worker that meets an upstream
//! throttle reports a failure of class [`THROTTLED`] (the SDKs' `throttled` helpers); the rate
//! of every adaptive bucket the job falls in is then halved (never below 1% of the configured
//! rate) and its tokens dropped, and it recovers additively, 2% of the configured rate per
//! second without a new throttle, back to the configured rate (never above it).

use chrono::{DateTime, Utc};

use super::gate::Level;

/// The failure class that reports an upstream throttle.
pub const THROTTLED: &str = "throttled";
/// What a throttle multiplies the rate by.
pub const DECREASE: f64 = 0.5;
/// The lowest fraction of the configured rate.
pub const FLOOR: f64 = 0.01;
/// The fraction of the configured rate regained per second without a throttle.
pub const RECOVERY_PER_SEC: f64 = 0.02;

/// The fraction of the configured rate a bucket runs at, at `now`.
pub fn factor(level: &Level, now: DateTime<Utc>) -> f64 {
    let base = level.factor.clamp(FLOOR, 1.0);
    match level.adjusted_at {
        None => base,
        Some(at) if now > at => {
            let secs = (now - at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
            (base + RECOVERY_PER_SEC * secs).min(1.0)
        }
        Some(_) => base,
    }
}

/// A throttle reported at `now`: the rate halves (from where it has recovered to), and the
/// tokens saved up are dropped: the upstream said "too much" already.
pub fn throttle(level: &mut Level, now: DateTime<Utc>) {
    level.factor = (factor(level, now) * DECREASE).max(FLOOR);
    level.adjusted_at = Some(now);
    level.tokens = level.tokens.min(0.0);
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0)
            .single()
            .expect("a valid time")
    }

    #[test]
    fn throttles_halve_the_rate_and_time_brings_it_back() {
        let mut level = Level::fresh(10.0, t(0));
        assert_eq!(factor(&level, t(0)), 1.0);
        throttle(&mut level, t(0));
        assert_eq!((factor(&level, t(0)), level.tokens), (0.5, 0.0));
        throttle(&mut level, t(0));
        assert_eq!(factor(&level, t(0)), 0.25);
        assert!((factor(&level, t(10)) - 0.45).abs() < 1e-9, "+2% a second");
        assert_eq!(
            factor(&level, t(60)),
            1.0,
            "never above the configured rate"
        );
        for _ in 0..20 {
            throttle(&mut level, t(0));
        }
        assert_eq!(factor(&level, t(0)), FLOOR, "never below 1%");
    }
}
