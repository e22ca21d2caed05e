//! Circuit breakers, per bucket of a limit that has one (`LimitSpec::breaker`):
//!
//! - **closed**: leases flow; each counted failure of a job in the bucket adds one to
//!   `failures`, a success sets it back to 0; `failures` consecutive failures open it;
//! - **open** for the cooldown: no job of the bucket is leased;
//! - **half-open** after it: one job is leased as a probe; its success closes the breaker, its
//!   failure opens it again for another cooldown. A probe that never reports (its worker died)
//!   lets another through after a cooldown.
//!
//! A failure of a class the breaker does not count neither counts nor resets. A success
//! reported while open (a job leased before it opened) closes it: the dependency works again.
//! Pure: the stores keep the state (`limit_state`) and write each opening and closing as a
//! `breaker` event in the tenant's ledger.

use chrono::{DateTime, Utc};

use super::Rule;
use super::gate::Level;

/// Whether a breaker lets a lease through now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Closed: leases flow.
    Pass,
    /// Half-open and no probe out: this lease is the probe.
    Probe,
    /// Open, or half-open with its probe out: no lease before `until` (a probe's outcome may
    /// close it earlier).
    Hold {
        /// The end of the cooldown (or of the probe's grace).
        until: DateTime<Utc>,
    },
}

/// How the breaker of `rule` in `state` treats a lease at `now`.
pub fn verdict(rule: &Rule, state: &Level, now: DateTime<Utc>) -> Verdict {
    let Some(opened) = state.opened_at else {
        return Verdict::Pass;
    };
    let cooldown = rule.cooldown();
    if now < opened + cooldown {
        return Verdict::Hold {
            until: opened + cooldown,
        };
    }
    match state.probe_at {
        Some(probe) if now < probe + cooldown => Verdict::Hold {
            until: probe + cooldown,
        },
        _ => Verdict::Probe,
    }
}

/// A breaker's change of state, recorded as an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It opened (from closed, or again after a failed probe).
    Opened,
    /// It closed.
    Closed,
}

impl Change {
    /// The incident's spelling (`breaker` events' `data.state`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "open",
            Self::Closed => "closed",
        }
    }
}

/// The state a breaker shows: `closed`, `open` or `half_open`.
pub fn phase(rule: &Rule, state: &Level, now: DateTime<Utc>) -> &'static str {
    match (state.opened_at, verdict(rule, state, now)) {
        (None, _) => "closed",
        (Some(_), Verdict::Hold { .. }) if state.probe_at.is_none() => "open",
        _ => "half_open",
    }
}

/// Applies one outcome of a job in the bucket (`failure`: its class, `None` for a success) to
/// the breaker of `rule`; the change of state, if any.
pub fn record(
    rule: &Rule,
    state: &mut Level,
    failure: Option<&str>,
    now: DateTime<Utc>,
) -> Option<Change> {
    let spec = rule.breaker.as_ref()?;
    let Some(class) = failure else {
        state.failures = 0;
        state.probe_at = None;
        return state.opened_at.take().map(|_| Change::Closed);
    };
    if !spec.classes.is_empty() && !spec.classes.iter().any(|c| c == class) {
        return None;
    }
    state.failures = state.failures.saturating_add(1);
    let probe_failed = state.opened_at.is_some() && state.probe_at.is_some();
    let tripped = state.opened_at.is_none() && state.failures >= spec.failures;
    if probe_failed || tripped {
        state.opened_at = Some(now);
        state.probe_at = None;
        return Some(Change::Opened);
    }
    None
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use leasehold_proto::{BreakerSpec, LimitSpec};

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0)
            .single()
            .expect("a valid time")
    }

    fn rule(classes: &[&str]) -> Rule {
        let spec = LimitSpec {
            breaker: Some(BreakerSpec {
                failures: 3,
                classes: classes.iter().map(|c| c.to_string()).collect(),
                cooldown_ms: Some(10_000),
            }),
            ..LimitSpec::default()
        };
        Rule::new("host:*", &spec).expect("a valid rule")
    }

    #[test]
    fn a_breaker_goes_round_its_whole_cycle() {
        let r = rule(&[]);
        let mut s = Level::fresh(1.0, t(0));
        assert_eq!(record(&r, &mut s, Some("http_503"), t(1)), None);
        assert_eq!(
            record(&r, &mut s, None, t(2)),
            None,
            "a success resets the count"
        );
        assert_eq!(s.failures, 0);
        for at in 3..5 {
            assert_eq!(record(&r, &mut s, Some("http_503"), t(at)), None);
        }
        assert_eq!(verdict(&r, &s, t(5)), Verdict::Pass);
        assert_eq!(
            record(&r, &mut s, Some("http_503"), t(5)),
            Some(Change::Opened)
        );
        assert_eq!(phase(&r, &s, t(6)), "open");
        assert_eq!(verdict(&r, &s, t(6)), Verdict::Hold { until: t(15) });
        // Half-open: one probe, which fails: open again.
        assert_eq!(verdict(&r, &s, t(15)), Verdict::Probe);
        s.probe_at = Some(t(15));
        assert_eq!(phase(&r, &s, t(16)), "half_open");
        assert_eq!(verdict(&r, &s, t(16)), Verdict::Hold { until: t(25) });
        assert_eq!(
            record(&r, &mut s, Some("http_503"), t(17)),
            Some(Change::Opened)
        );
        assert_eq!(verdict(&r, &s, t(20)), Verdict::Hold { until: t(27) });
        // The next probe succeeds: closed.
        assert_eq!(verdict(&r, &s, t(27)), Verdict::Probe);
        s.probe_at = Some(t(27));
        assert_eq!(record(&r, &mut s, None, t(28)), Some(Change::Closed));
        assert_eq!((phase(&r, &s, t(28)), s.failures), ("closed", 0));
    }

    #[test]
    fn only_the_chosen_classes_count_and_a_silent_probe_is_replaced() {
        let r = rule(&["throttled"]);
        let mut s = Level::fresh(1.0, t(0));
        for at in 0..5 {
            assert_eq!(record(&r, &mut s, Some("bad_input"), t(at)), None);
        }
        assert_eq!(s.failures, 0, "other classes neither count nor reset");
        for at in 0..2 {
            record(&r, &mut s, Some("throttled"), t(at));
        }
        assert_eq!(
            record(&r, &mut s, Some("throttled"), t(2)),
            Some(Change::Opened)
        );
        s.probe_at = Some(t(12));
        assert_eq!(verdict(&r, &s, t(21)), Verdict::Hold { until: t(22) });
        assert_eq!(
            verdict(&r, &s, t(22)),
            Verdict::Probe,
            "the probe never reported"
        );
    }
}
