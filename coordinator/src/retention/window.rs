//! Retention windows (`90s`, `15m`, `24h`, `7d`, `off`) and how overrides resolve: a queue's
//! override, then its tenant's, then the coordinator's flag, field by field.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::PolicyRow;

/// How long something is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Kept forever (`off`).
    Forever,
    /// Removed once older than this.
    After(Duration),
}

/// Longest window accepted: 100 years, far beyond any use, far below any overflow.
const MAX_SECS: u64 = 100 * 365 * 86_400;

impl Window {
    /// The instant before which something finished is past this window (`None`: never).
    pub fn cutoff(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Forever => None,
            Self::After(d) => chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d)),
        }
    }
}

impl FromStr for Window {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let s = raw.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::Forever);
        }
        let bad = || {
            format!(
                "{raw:?} is not a window: write a whole number and a unit (s, m, h or d), e.g. \
                 24h or 7d, or off to keep forever"
            )
        };
        let secs = crate::validate::span_secs(s).ok_or_else(bad)?;
        if secs == 0 {
            return Err(format!(
                "{raw:?}: a window must be at least 1s (off keeps forever)"
            ));
        }
        if secs > MAX_SECS {
            return Err(format!("{raw:?}: a window is at most 36500d"));
        }
        Ok(Self::After(Duration::from_secs(secs)))
    }
}

impl fmt::Display for Window {
    /// The largest unit that divides the window exactly: `86400s` prints as `1d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Forever => f.write_str("off"),
            Self::After(d) => {
                let secs = d.as_secs();
                let (n, unit) = [(86_400, "d"), (3600, "h"), (60, "m")]
                    .into_iter()
                    .find(|(scale, _)| secs % scale == 0)
                    .map_or((secs, "s"), |(scale, unit)| (secs / scale, unit));
                write!(f, "{n}{unit}")
            }
        }
    }
}

/// Which level a window comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The queue's override.
    Queue,
    /// The tenant's override.
    Tenant,
    /// The coordinator's flag.
    Default,
}

impl Source {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Tenant => "tenant",
            Self::Default => "default",
        }
    }
}

/// The windows of one tenant and queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// For `succeeded` jobs, and where it comes from.
    pub succeeded: (Window, Source),
    /// For `dead` and `cancelled` jobs, and where it comes from.
    pub failed: (Window, Source),
}

/// The defaults and every stored override, ready to answer for any tenant and queue.
#[derive(Debug, Clone)]
pub struct Policies {
    succeeded: Window,
    failed: Window,
    rows: HashMap<(String, String), Override>,
}

/// One override's windows: `(succeeded, failed)`, `None` where inherited.
type Override = (Option<Window>, Option<Window>);

fn parse_stored(row: &PolicyRow, raw: Option<&String>) -> Option<Window> {
    let raw = raw?;
    match raw.parse() {
        Ok(w) => Some(w),
        Err(err) => {
            // Only the API writes these, validated; a hand-edited row is ignored, loudly.
            tracing::warn!(tenant = %row.tenant, queue = %row.queue, %err, "ignoring a stored retention window");
            None
        }
    }
}

impl Policies {
    /// The defaults refined by `rows`.
    pub fn new(succeeded: Window, failed: Window, rows: &[PolicyRow]) -> Self {
        let rows = rows
            .iter()
            .map(|r| {
                (
                    (r.tenant.clone(), r.queue.clone()),
                    (
                        parse_stored(r, r.succeeded.as_ref()),
                        parse_stored(r, r.failed.as_ref()),
                    ),
                )
            })
            .collect();
        Self {
            succeeded,
            failed,
            rows,
        }
    }

    /// The windows that apply to jobs of `tenant` in `queue`.
    pub fn resolve(&self, tenant: &str, queue: &str) -> Resolved {
        let queue_row = self.rows.get(&(tenant.to_owned(), queue.to_owned()));
        let tenant_row = self.rows.get(&(tenant.to_owned(), String::new()));
        let pick = |field: fn(&Override) -> Option<Window>, default: Window| {
            if let Some(w) = queue_row.and_then(field) {
                (w, Source::Queue)
            } else if let Some(w) = tenant_row.and_then(field) {
                (w, Source::Tenant)
            } else {
                (default, Source::Default)
            }
        };
        Resolved {
            succeeded: pick(|r| r.0, self.succeeded),
            failed: pick(|r| r.1, self.failed),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_print_in_their_largest_unit() {
        for (raw, secs, shown) in [
            ("90s", 90, "90s"),
            ("15m", 900, "15m"),
            ("24h", 86_400, "1d"),
            ("7d", 604_800, "7d"),
            ("3600s", 3600, "1h"),
        ] {
            let w: Window = raw.parse().unwrap();
            assert_eq!(w, Window::After(Duration::from_secs(secs)), "{raw}");
            assert_eq!(w.to_string(), shown);
        }
        assert_eq!("off".parse::<Window>().unwrap(), Window::Forever);
        assert_eq!(Window::Forever.to_string(), "off");
        for bad in [
            "",
            "7",
            "d",
            "0s",
            "1w",
            "-1d",
            "1.5h",
            "99999999999999999999d",
            "36501d",
        ] {
            assert!(bad.parse::<Window>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_queue_override_beats_the_tenant_one_which_beats_the_default() {
        let row = |queue: &str, s: Option<&str>, f: Option<&str>| PolicyRow {
            tenant: "t".into(),
            queue: queue.into(),
            succeeded: s.map(Into::into),
            failed: f.map(Into::into),
            updated_at: Utc::now(),
        };
        let day = Window::After(Duration::from_secs(86_400));
        let week = Window::After(Duration::from_secs(7 * 86_400));
        let hour = Window::After(Duration::from_secs(3600));
        let p = Policies::new(
            day,
            week,
            &[row("", Some("1h"), None), row("q", None, Some("off"))],
        );
        let r = p.resolve("t", "q");
        assert_eq!(r.succeeded, (hour, Source::Tenant));
        assert_eq!(r.failed, (Window::Forever, Source::Queue));
        let other = p.resolve("t", "other");
        assert_eq!(other.failed, (week, Source::Default));
        let stranger = p.resolve("u", "q");
        assert_eq!(stranger.succeeded, (day, Source::Default));
    }
}
