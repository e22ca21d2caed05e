//! How busy a worker's handlers were: the mean number running at once (the sum of the
//! handlers' times over the span from the first start to the last end) and the mean handler
//! time. W3's efficiency is their product over the ideal (`slots` running, each job exactly its
//! length), so the two say whether a shortfall is idle slots (leases not there in time) or
//! jobs that ran long (their wake-ups waited for a CPU). Counted exactly, without sampling.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Handler times, shared by every handler of a process.
#[derive(Debug)]
pub struct Busy {
    base: OnceLock<Instant>,
    /// Offsets from `base`, in ns.
    first_start: AtomicU64,
    last_end: AtomicU64,
    total: AtomicU64,
    count: AtomicU64,
}

/// A handler's start, from [`Busy::start`].
#[derive(Debug, Clone, Copy)]
pub struct Started(u64);

impl Default for Busy {
    fn default() -> Self {
        Self::new()
    }
}

impl Busy {
    /// Nothing counted yet.
    pub const fn new() -> Self {
        Self {
            base: OnceLock::new(),
            first_start: AtomicU64::new(u64::MAX),
            last_end: AtomicU64::new(0),
            total: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        let base = *self.base.get_or_init(Instant::now);
        u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A handler starts.
    pub fn start(&self) -> Started {
        let t = self.now();
        self.first_start.fetch_min(t, Relaxed);
        Started(t)
    }

    /// The handler that started at `started` ends.
    pub fn end(&self, started: Started) {
        let t = self.now();
        self.last_end.fetch_max(t, Relaxed);
        self.total.fetch_add(t.saturating_sub(started.0), Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// `busy <mean handlers running> body_ms <mean handler ms>`, or `None` before a handler
    /// ended.
    pub fn report(&self) -> Option<String> {
        let count = self.count.load(Relaxed);
        let span = self
            .last_end
            .load(Relaxed)
            .checked_sub(self.first_start.load(Relaxed))?;
        if count == 0 || span == 0 {
            return None;
        }
        let total = self.total.load(Relaxed) as f64;
        Some(format!(
            "busy {:.2} body_ms {:.3}",
            total / span as f64,
            total / count as f64 / 1e6
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(report: &str) -> (f64, f64) {
        let fields: Vec<&str> = report.split(' ').collect();
        assert_eq!((fields[0], fields[2]), ("busy", "body_ms"), "{report}");
        (
            fields[1].parse().expect("busy"),
            fields[3].parse().expect("body_ms"),
        )
    }

    #[test]
    fn one_handler_alone_is_one_running_for_its_whole_time() {
        let busy = Busy::new();
        assert_eq!(busy.report(), None);
        let a = busy.start();
        std::thread::sleep(Duration::from_millis(20));
        busy.end(a);
        let (running, body) = parse(&busy.report().expect("a report"));
        assert!((running - 1.0).abs() < 1e-9, "{running}");
        // A sleep only ever runs long.
        assert!(body >= 20.0, "{body}");
    }

    #[test]
    fn handlers_side_by_side_count_twice() {
        let busy = Busy::new();
        let a = busy.start();
        let b = busy.start();
        std::thread::sleep(Duration::from_millis(20));
        busy.end(a);
        busy.end(b);
        let (running, body) = parse(&busy.report().expect("a report"));
        // Only the few ns between the two starts and the two ends are not shared.
        assert!((1.99..=2.0).contains(&running), "{running}");
        assert!(body >= 20.0, "{body}");
    }
}
