//! Adaptive concurrency: a worker that takes fewer jobs at once when what its jobs call is
//! overloaded, and more again as it recovers (bounded AIMD, as TCP's congestion window and
//! Netflix's `concurrency-limits` do).
//!
//! The limit starts at the configured `concurrency` (the most) and moves on each outcome:
//! - a failure of one of the chosen classes (default `throttled` and `timeout`) halves it, at
//!   most once per [`COOLDOWN`] (the jobs that were running together fail together: one
//!   congestion event, one decrease);
//! - a success that took longer than `latency_target` (lease received → outcome) lowers it by
//!   a tenth, under the same cooldown;
//! - other successes raise it by one for every `limit` of them (one step per "round trip").
//!
//! It never goes below `min` nor above `concurrency`. Slots the limit withholds count as taken,
//! so both transports ask the coordinator for fewer leases with no change of their own.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// At most one decrease per this long.
pub const COOLDOWN: Duration = Duration::from_secs(1);
/// The failure classes that lower the limit when none are chosen.
pub const DEFAULT_CLASSES: [&str; 2] = ["throttled", "timeout"];

/// How a worker adapts its concurrency (see the module docs). `concurrency` is the most.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdaptiveConcurrency {
    /// The fewest jobs at once (1 or more, at most `concurrency`).
    pub min: usize,
    /// A success slower than this counts as a sign of overload; `None`: only failures do.
    pub latency_target: Option<Duration>,
    /// Failure classes that count as overload (default `throttled`, `timeout`).
    pub classes: Vec<String>,
}

impl AdaptiveConcurrency {
    /// Adapts between `min` and the worker's `concurrency`, on the default failure classes.
    pub fn new(min: usize) -> Self {
        Self {
            min,
            latency_target: None,
            classes: DEFAULT_CLASSES.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    /// Successes slower than `target` count as overload too.
    #[must_use]
    pub fn latency_target(mut self, target: Duration) -> Self {
        self.latency_target = Some(target);
        self
    }

    /// The failure classes that count as overload, instead of the default ones.
    #[must_use]
    pub fn classes<I, S>(mut self, classes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.classes = classes.into_iter().map(Into::into).collect();
        self
    }

    pub(crate) fn validate(&self, concurrency: usize) -> Result<()> {
        if self.min == 0 || self.min > concurrency {
            return Err(Error::InvalidArgument(format!(
                "adaptive concurrency: min must be between 1 and concurrency ({concurrency}), got {}",
                self.min
            )));
        }
        if self.latency_target.is_some_and(|t| t.is_zero()) {
            return Err(Error::InvalidArgument(
                "adaptive concurrency: latency_target must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// What one ended lease says about overload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Signal<'a> {
    /// The handler succeeded after `latency`.
    Success { latency: Duration },
    /// The handler failed with this class.
    Failure { class: &'a str },
}

/// The limit now, and how it moves.
#[derive(Debug)]
pub(crate) struct Controller {
    cfg: AdaptiveConcurrency,
    max: usize,
    limit: usize,
    /// Successes since the last increase.
    successes: usize,
    last_decrease: Option<Instant>,
}

impl Controller {
    pub(crate) fn new(cfg: AdaptiveConcurrency, max: usize) -> Self {
        Self {
            cfg,
            max,
            limit: max,
            successes: 0,
            last_decrease: None,
        }
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Moves the limit for one outcome at `now`; the new limit when it changed.
    pub(crate) fn on_outcome(&mut self, now: Instant, signal: Signal<'_>) -> Option<usize> {
        let before = self.limit;
        match signal {
            Signal::Failure { class } if self.cfg.classes.iter().any(|c| c == class) => {
                self.decrease(now, |l| l / 2);
            }
            Signal::Failure { .. } => {}
            Signal::Success { latency } if self.cfg.latency_target.is_some_and(|t| latency > t) => {
                self.decrease(now, |l| l - l.div_ceil(10));
            }
            Signal::Success { .. } => {
                self.successes += 1;
                if self.successes >= self.limit {
                    self.successes = 0;
                    self.limit = (self.limit + 1).min(self.max);
                }
            }
        }
        (self.limit != before).then_some(self.limit)
    }

    fn decrease(&mut self, now: Instant, to: impl Fn(usize) -> usize) {
        if self
            .last_decrease
            .is_some_and(|at| now.duration_since(at) < COOLDOWN)
        {
            return;
        }
        self.last_decrease = Some(now);
        self.successes = 0;
        self.limit = to(self.limit).max(self.cfg.min);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Signal<'static> = Signal::Success {
        latency: Duration::from_millis(10),
    };

    #[test]
    fn throttles_halve_the_limit_once_per_cooldown_down_to_min() {
        let mut c = Controller::new(AdaptiveConcurrency::new(3), 32);
        let t0 = Instant::now();
        let throttled = Signal::Failure { class: "throttled" };
        assert_eq!(c.on_outcome(t0, throttled), Some(16));
        // The jobs that ran beside it fail too: the same event.
        assert_eq!(
            c.on_outcome(t0 + Duration::from_millis(10), throttled),
            None
        );
        assert_eq!(c.on_outcome(t0 + COOLDOWN, throttled), Some(8));
        assert_eq!(c.on_outcome(t0 + COOLDOWN * 2, throttled), Some(4));
        assert_eq!(c.on_outcome(t0 + COOLDOWN * 3, throttled), Some(3));
        assert_eq!(
            c.on_outcome(t0 + COOLDOWN * 4, throttled),
            None,
            "min holds"
        );
        // Other failure classes are the handler's own business.
        let broken = Signal::Failure {
            class: "ValueError",
        };
        assert_eq!(c.on_outcome(t0 + COOLDOWN * 9, broken), None);
    }

    #[test]
    fn successes_raise_it_by_one_per_round_up_to_the_configured_most() {
        let mut c = Controller::new(AdaptiveConcurrency::new(1), 6);
        let t0 = Instant::now();
        c.on_outcome(t0, Signal::Failure { class: "timeout" });
        assert_eq!(c.limit(), 3);
        let mut raised = Vec::new();
        for _ in 0..30 {
            if let Some(l) = c.on_outcome(t0, FAST) {
                raised.push(l);
            }
        }
        // 3 successes to reach 4, 4 more to reach 5, 5 more to reach 6; then it stays.
        assert_eq!(raised, [4, 5, 6]);
        assert_eq!(c.limit(), 6);
    }

    #[test]
    fn slow_successes_lower_it_by_a_tenth_when_a_latency_target_is_set() {
        let cfg = AdaptiveConcurrency::new(2).latency_target(Duration::from_millis(100));
        let mut c = Controller::new(cfg, 20);
        let t0 = Instant::now();
        let slow = Signal::Success {
            latency: Duration::from_millis(150),
        };
        assert_eq!(c.on_outcome(t0, slow), Some(18));
        assert_eq!(c.on_outcome(t0 + COOLDOWN, slow), Some(16));
        assert_eq!(c.on_outcome(t0 + COOLDOWN, FAST), None);
        // Without a target, slowness is no signal.
        let mut c = Controller::new(AdaptiveConcurrency::new(2), 20);
        assert_eq!(c.on_outcome(t0, slow), None);
    }

    #[test]
    fn chosen_classes_replace_the_default_ones() {
        let cfg = AdaptiveConcurrency::new(1).classes(["upstream_5xx"]);
        let mut c = Controller::new(cfg, 8);
        let t0 = Instant::now();
        assert_eq!(
            c.on_outcome(t0, Signal::Failure { class: "throttled" }),
            None
        );
        assert_eq!(
            c.on_outcome(
                t0,
                Signal::Failure {
                    class: "upstream_5xx"
                }
            ),
            Some(4)
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(AdaptiveConcurrency::new(0).validate(10).is_err());
        assert!(AdaptiveConcurrency::new(11).validate(10).is_err());
        let zero = AdaptiveConcurrency::new(1).latency_target(Duration::ZERO);
        assert!(zero.validate(10).is_err());
        assert!(AdaptiveConcurrency::new(10).validate(10).is_ok());
    }
}
