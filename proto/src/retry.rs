//! Retry delays: a policy (plain data) and a pure function from attempt number and a seeded
//! random source to a delay. It lives in the wire crate because two parties compute it: the SDK
//! for the failures it reports, and the coordinator for a failure reported without `retry_at`. The algorithm is fixed and versioned so that Rust, Python and Go
//! compute the same schedule for the same seed; `proto/vectors/retry_schedules.json` pins it and
//! `docs/retries.md` explains it and why we do not use a retry crate.
//!
//! # Algorithm `leasehold-retry-v1`
//!
//! For the attempt that just failed, `attempt ≥ 1` (clamped to at most 1000):
//!
//! 1. `c = initial_ms` as an IEEE-754 double; repeat `attempt − 1` times: `c = c × multiplier`,
//!    stopping early once `c ≥ max_delay_ms`. (Repeated multiplication, not `pow`, so every
//!    language rounds identically.)
//! 2. `cap = min(floor(c), max_delay_ms)` as an unsigned 64-bit integer.
//! 3. Full jitter: `delay_ms = r mod (cap + 1)` where `r` is the next output of
//!    [`SplitMix64`]. The delay is uniform over `0..=cap` (the modulo bias is below 2⁻²⁰ for any
//!    cap under 2⁴⁴ ms, i.e. over 500 years).
//!
//! [`RetryPolicy::next_delay`] returns `None` (and draws nothing) once `attempt ≥ max_attempts`.

use std::time::Duration;

use crate::job::BackoffHint;

/// Largest attempt number the schedule distinguishes (the coordinator's cap on `max_attempts`).
const MAX_ATTEMPT: u32 = 1000;

/// The SplitMix64 generator (Steele, Lea and Flood, 2014): 64 bits of state, one addition and two
/// multiply-xorshift rounds per output. We own this type so that its output never changes under
/// us: `rand`'s `StdRng` makes no such promise across versions.
///
/// ```text
/// state = state + 0x9E3779B97F4A7C15            (wrapping)
/// z = state
/// z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9      (wrapping)
/// z = (z ^ (z >> 27)) * 0x94D049BB133111EB      (wrapping)
/// return z ^ (z >> 31)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed` (the state before the first output).
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator seeded from the operating system's randomness (through a version-4 UUID's
    /// random bits, so that this crate needs no random-number crate of its own).
    pub fn from_entropy() -> Self {
        Self::new(uuid::Uuid::new_v4().as_u64_pair().0)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Exponential backoff with full jitter. Plain data; see the module docs for the algorithm.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Ceiling of the first delay.
    pub initial: Duration,
    /// Growth of the ceiling per attempt (≥ 1).
    pub multiplier: f64,
    /// Cap on any ceiling.
    pub max_delay: Duration,
    /// Attempts in all, the first one included; `next_delay` returns `None` from this attempt on.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// Job retries: ceilings of 1 s, 2 s, 4 s … capped at 10 minutes, 25 attempts (the
    /// coordinator's default `max_attempts`).
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max_delay: Duration::from_secs(600),
            max_attempts: 25,
        }
    }
}

impl RetryPolicy {
    /// Transport retries (connect errors, timeouts, 502/503/504): ceilings of 100 ms, 200 ms …
    /// capped at 5 s, 6 attempts in all.
    pub fn transport() -> Self {
        Self {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(5),
            max_attempts: 6,
        }
    }

    /// Reconnecting a worker session: ceilings of 100 ms … capped at 10 s, never giving up.
    pub fn reconnect() -> Self {
        Self {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(10),
            max_attempts: u32::MAX,
        }
    }

    /// The job's own backoff hint (from its lease) with the job's `max_attempts`.
    pub fn from_hint(hint: &BackoffHint, max_attempts: i32) -> Self {
        let multiplier = if hint.multiplier.is_finite() && hint.multiplier >= 1.0 {
            hint.multiplier
        } else {
            1.0
        };
        Self {
            initial: Duration::from_millis(hint.initial_ms),
            multiplier,
            max_delay: Duration::from_millis(hint.max_delay_ms.max(hint.initial_ms)),
            max_attempts: u32::try_from(max_attempts).unwrap_or(1).max(1),
        }
    }

    /// The ceiling for `attempt` (steps 1 and 2 of the algorithm), without jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        Duration::from_millis(self.ceiling_ms(attempt))
    }

    fn ceiling_ms(&self, attempt: u32) -> u64 {
        let max_ms = duration_ms(self.max_delay);
        let mut c = duration_ms(self.initial) as f64;
        let multiplier = if self.multiplier.is_finite() && self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        let n = attempt.clamp(1, MAX_ATTEMPT);
        if multiplier > 1.0 {
            for _ in 1..n {
                c *= multiplier;
                if c >= max_ms as f64 {
                    break;
                }
            }
        }
        // `as` saturates for floats above u64::MAX; the `min` then caps it.
        (c.floor() as u64).min(max_ms)
    }

    /// The jittered delay for `attempt`, whatever `max_attempts` says: draws one value.
    pub fn delay(&self, attempt: u32, rng: &mut SplitMix64) -> Duration {
        let cap = self.ceiling_ms(attempt);
        let r = rng.next_u64();
        let ms = if cap == u64::MAX { r } else { r % (cap + 1) };
        Duration::from_millis(ms)
    }

    /// The delay before the attempt after `attempt` (which just failed), or `None` when no
    /// attempt is left. Pure: the same policy, attempt and generator state give the same answer.
    pub fn next_delay(&self, attempt: u32, rng: &mut SplitMix64) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        Some(self.delay(attempt, rng))
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_outputs() {
        // Reference values of SplitMix64 from seed 0 (as published with the algorithm, e.g. in
        // Vigna's splitmix64.c).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn ceilings_grow_and_cap() {
        let p = RetryPolicy {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_millis(1000),
            max_attempts: 10,
        };
        let got: Vec<u64> = (1..=6).map(|a| p.ceiling_ms(a)).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.ceiling_ms(0), 100);
        assert_eq!(p.ceiling_ms(u32::MAX), 1000);
    }

    #[test]
    fn jitter_stays_within_the_ceiling_and_is_reproducible() {
        let p = RetryPolicy::default();
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for attempt in 1..p.max_attempts {
            let d = p.next_delay(attempt, &mut a).unwrap_or_default();
            assert!(d <= p.ceiling(attempt));
            assert_eq!(Some(d), p.next_delay(attempt, &mut b));
        }
        assert_eq!(p.next_delay(p.max_attempts, &mut a), None);
    }

    #[test]
    fn hint_sanitizes_nonsense() {
        let p = RetryPolicy::from_hint(
            &BackoffHint {
                initial_ms: 50,
                multiplier: f64::NAN,
                max_delay_ms: 10,
            },
            0,
        );
        assert_eq!(p.multiplier, 1.0);
        assert_eq!(p.max_delay, Duration::from_millis(50));
        assert_eq!(p.max_attempts, 1);
        assert_eq!(p.ceiling_ms(7), 50);
    }
}
