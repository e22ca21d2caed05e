//! Blackout windows: while one is on, no job a limit covers is leased (the jobs wait, nothing
//! is lost). A window is absolute (`from`–`to`, instants) or recurring (`start`–`end` local
//! times on some `days`, in a time zone, daylight saving included; an `end` before its `start`
//! crosses midnight).

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;
use leasehold_proto::Blackout;

use crate::error::{ApiError, ApiResult};

/// The most windows one limit may have.
pub const MAX_WINDOWS: usize = 32;

/// A blackout window, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    /// From one instant to another.
    Absolute {
        /// Start (inclusive).
        from: DateTime<Utc>,
        /// End (exclusive).
        to: DateTime<Utc>,
    },
    /// Every listed day (every day when none), from `start` to `end` local time in `tz`.
    Recurring {
        /// Local start time.
        start: NaiveTime,
        /// Local end time (before `start`: the next day).
        end: NaiveTime,
        /// The days a window starts on.
        days: Vec<Weekday>,
        /// The time zone of `start` and `end`.
        tz: Tz,
    },
}

fn time(field: &str, raw: &str) -> ApiResult<NaiveTime> {
    NaiveTime::parse_from_str(raw, "%H:%M").map_err(|_| {
        ApiError::validation(
            field,
            format!("{field} is a local time `HH:MM`, got {raw:?}"),
        )
    })
}

fn weekday(field: &str, raw: &str) -> ApiResult<Weekday> {
    match raw.to_ascii_lowercase().as_str() {
        "mon" => Ok(Weekday::Mon),
        "tue" => Ok(Weekday::Tue),
        "wed" => Ok(Weekday::Wed),
        "thu" => Ok(Weekday::Thu),
        "fri" => Ok(Weekday::Fri),
        "sat" => Ok(Weekday::Sat),
        "sun" => Ok(Weekday::Sun),
        _ => Err(ApiError::validation(
            field,
            format!("days are mon, tue, wed, thu, fri, sat, sun; got {raw:?}"),
        )),
    }
}

impl Window {
    /// Parses the window at `blackouts[i]`: 422 naming the field.
    pub fn parse(i: usize, b: &Blackout) -> ApiResult<Self> {
        let at = |name: &str| format!("blackouts[{i}].{name}");
        let recurring =
            b.start.is_some() || b.end.is_some() || !b.days.is_empty() || b.tz.is_some();
        match (b.from, b.to) {
            (Some(from), Some(to)) if !recurring => {
                if from >= to {
                    return Err(ApiError::validation(&at("to"), "to must be after from"));
                }
                Ok(Self::Absolute { from, to })
            }
            (None, None) if recurring => {
                let (Some(start), Some(end)) = (&b.start, &b.end) else {
                    let missing = if b.start.is_none() { "start" } else { "end" };
                    return Err(ApiError::validation(
                        &at(missing),
                        "a recurring window has a `start` and an `end` (`HH:MM`)",
                    ));
                };
                let (start, end) = (time(&at("start"), start)?, time(&at("end"), end)?);
                if start == end {
                    return Err(ApiError::validation(
                        &at("end"),
                        "end must differ from start",
                    ));
                }
                let days = b
                    .days
                    .iter()
                    .map(|d| weekday(&at("days"), d))
                    .collect::<ApiResult<Vec<_>>>()?;
                let tz = match &b.tz {
                    None => Tz::UTC,
                    Some(name) => name.parse::<Tz>().map_err(|_| {
                        ApiError::validation(
                            &at("tz"),
                            format!("tz is an IANA time zone such as Europe/Paris; got {name:?}"),
                        )
                    })?,
                };
                Ok(Self::Recurring {
                    start,
                    end,
                    days,
                    tz,
                })
            }
            (Some(_), None) => Err(ApiError::validation(
                &at("to"),
                "an absolute window has `from` and `to`",
            )),
            (None, Some(_)) => Err(ApiError::validation(
                &at("from"),
                "an absolute window has `from` and `to`",
            )),
            _ => Err(ApiError::validation(
                &at("from"),
                "a window is absolute (`from`, `to`) or recurring (`start`, `end`, `days`, `tz`), \
                 not both",
            )),
        }
    }

    /// When the window that is on at `now` ends; `None` when none is on.
    pub fn on_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Absolute { from, to } => (*from <= now && now < *to).then_some(*to),
            Self::Recurring {
                start,
                end,
                days,
                tz,
            } => {
                let today = now.with_timezone(tz).date_naive();
                // A window that started yesterday may still be on (it crosses midnight).
                [today.checked_sub_days(Days::new(1)), Some(today)]
                    .into_iter()
                    .flatten()
                    .filter(|day| days.is_empty() || days.contains(&day.weekday()))
                    .find_map(|day| {
                        let (from, to) = span(day, *start, *end, tz)?;
                        (from <= now && now < to).then_some(to)
                    })
            }
        }
    }
}

/// The instants of a recurring window starting on local `day`.
fn span(
    day: NaiveDate,
    start: NaiveTime,
    end: NaiveTime,
    tz: &Tz,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let end_day = if end > start {
        day
    } else {
        day.checked_add_days(Days::new(1))?
    };
    Some((
        instant(day.and_time(start), tz)?,
        instant(end_day.and_time(end), tz)?,
    ))
}

/// A local time as an instant: the earlier of an ambiguous time (clocks going back), and a time
/// skipped by clocks going forward read an hour later.
fn instant(local: NaiveDateTime, tz: &Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        LocalResult::None => tz
            .from_local_datetime(&(local + chrono::Duration::hours(1)))
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// The end of the window of `windows` that is on at `now` (the latest, if several are).
pub fn on_until(windows: &[Window], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    windows.iter().filter_map(|w| w.on_until(now)).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("an RFC 3339 time")
            .with_timezone(&Utc)
    }

    fn recurring(start: &str, end: &str, days: &[&str], tz: &str) -> Window {
        let b = Blackout {
            start: Some(start.into()),
            end: Some(end.into()),
            days: days.iter().map(|d| d.to_string()).collect(),
            tz: Some(tz.into()),
            ..Blackout::default()
        };
        Window::parse(0, &b).expect("a valid window")
    }

    #[test]
    fn a_nightly_window_crosses_midnight_in_its_time_zone() {
        // Paris is UTC+1 in December: 22:00–06:00 local is 21:00–05:00 UTC.
        let w = recurring("22:00", "06:00", &[], "Europe/Paris");
        assert_eq!(w.on_until(utc("2026-12-05T20:59:00Z")), None);
        assert_eq!(
            w.on_until(utc("2026-12-05T21:00:00Z")),
            Some(utc("2026-12-06T05:00:00Z"))
        );
        assert_eq!(
            w.on_until(utc("2026-12-06T04:59:00Z")),
            Some(utc("2026-12-06T05:00:00Z")),
            "still on after midnight: the window that started yesterday"
        );
        assert_eq!(w.on_until(utc("2026-12-06T05:00:00Z")), None);
        // In July Paris is UTC+2: the same local window is an hour earlier in UTC.
        assert_eq!(
            w.on_until(utc("2026-07-01T20:30:00Z")),
            Some(utc("2026-07-02T04:00:00Z"))
        );
    }

    #[test]
    fn a_weekend_window_starts_only_on_its_days() {
        let w = recurring("00:00", "23:59", &["sat", "sun"], "UTC");
        assert!(
            w.on_until(utc("2026-12-05T12:00:00Z")).is_some(),
            "a Saturday"
        );
        assert!(
            w.on_until(utc("2026-12-07T12:00:00Z")).is_none(),
            "a Monday"
        );
    }

    #[test]
    fn absolute_windows_and_bad_ones() {
        let b = Blackout {
            from: Some(utc("2026-12-24T00:00:00Z")),
            to: Some(utc("2026-12-27T00:00:00Z")),
            ..Blackout::default()
        };
        let w = Window::parse(0, &b).expect("valid");
        assert_eq!(
            w.on_until(utc("2026-12-25T00:00:00Z")),
            Some(utc("2026-12-27T00:00:00Z"))
        );
        assert_eq!(w.on_until(utc("2026-12-27T00:00:00Z")), None);
        let field =
            |b: Blackout| Window::parse(2, &b).expect_err("refused").details["field"].clone();
        let bad = |f: fn(&mut Blackout)| {
            let mut b = Blackout::default();
            f(&mut b);
            b
        };
        assert_eq!(field(bad(|b| b.to = Some(Utc::now()))), "blackouts[2].from");
        assert_eq!(
            field(bad(|b| {
                b.start = Some("25:00".into());
                b.end = Some("06:00".into());
            })),
            "blackouts[2].start"
        );
        assert_eq!(
            field(bad(|b| b.start = Some("22:00".into()))),
            "blackouts[2].end"
        );
        assert_eq!(
            field(bad(|b| {
                b.start = Some("22:00".into());
                b.end = Some("06:00".into());
                b.tz = Some("Mars/Olympus".into());
            })),
            "blackouts[2].tz"
        );
        assert_eq!(
            field(bad(|b| {
                b.start = Some("22:00".into());
                b.end = Some("06:00".into());
                b.days = vec!["funday".into()];
            })),
            "blackouts[2].days"
        );
        assert_eq!(field(Blackout::default()), "blackouts[2].from");
    }
}
