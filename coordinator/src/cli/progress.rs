//! A one-line progress display on stderr (bytes, lines, rate), shown only when stderr is a
//! terminal so that logs and pipes stay clean.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the line is redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// Spinner frames.
const FRAMES: [char; 4] = ['|', '/', '-', '\\'];

/// A progress line for a transfer of unknown size.
#[derive(Debug)]
pub(crate) struct Progress {
    enabled: bool,
    label: String,
    started: Instant,
    last_draw: Option<Instant>,
    frame: usize,
}

impl Progress {
    /// A progress line labelled `label`, drawn only if stderr is a terminal.
    pub(crate) fn new(label: impl Into<String>) -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            label: label.into(),
            started: Instant::now(),
            last_draw: None,
            frame: 0,
        }
    }

    /// Redraws with the current totals (at most every [`REDRAW_EVERY`]).
    pub(crate) fn update(&mut self, bytes: u64, lines: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|t| now.duration_since(t) < REDRAW_EVERY)
        {
            return;
        }
        self.last_draw = Some(now);
        self.frame = (self.frame + 1) % FRAMES.len();
        self.draw(FRAMES[self.frame], bytes, lines);
    }

    /// Draws the final totals and ends the line.
    pub(crate) fn finish(&mut self, bytes: u64, lines: u64) {
        if !self.enabled {
            return;
        }
        self.draw('✓', bytes, lines);
        eprintln!();
    }

    /// Ends the line without a final draw (on failure, before an error message).
    pub(crate) fn abandon(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            eprintln!();
        }
    }

    fn draw(&self, mark: char, bytes: u64, lines: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let rate = (bytes as f64 / secs) as u64;
        let mut err = std::io::stderr().lock();
        // \r and "erase to end of line": the line shrinks cleanly.
        let _ = write!(
            err,
            "\r\x1b[2K{mark} {}  {}  {lines} lines  {}/s  {:.1}s",
            self.label,
            human_bytes(bytes),
            human_bytes(rate),
            secs
        );
        let _ = err.flush();
    }
}

/// `1.5 MiB`-style sizes.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)]
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_readable() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
