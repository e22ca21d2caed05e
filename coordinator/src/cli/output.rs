//! Output: human tables and key/value blocks, JSON for machines, all on stdout; diagnostics go
//! to stderr elsewhere. Writes that fail because the reader went away end the command quietly.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::error::{CliError, CliResult};

/// Writes `text` to stdout, adding a final newline when it lacks one.
pub(crate) fn print(text: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(CliError::output)?;
    if !text.ends_with('\n') {
        out.write_all(b"\n").map_err(CliError::output)?;
    }
    out.flush().map_err(CliError::output)
}

/// Writes `value` as pretty JSON.
pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Protocol(format!("cannot render JSON: {e}")))?;
    print(&text)
}

/// Writes `value` as one line of JSON.
pub(crate) fn print_json_line<T: Serialize + ?Sized>(value: &T) -> CliResult {
    let text = serde_json::to_string(value)
        .map_err(|e| CliError::Protocol(format!("cannot render JSON: {e}")))?;
    print(&text)
}

/// A timestamp as `2026-11-22T15:07:35Z` (UTC, whole seconds).
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An optional timestamp, `-` when absent.
pub(crate) fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), time)
}

/// An optional string, `-` when absent or empty.
pub(crate) fn opt(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => clean(s),
        _ => "-".to_owned(),
    }
}

/// JSON on one line, `-` for null.
pub(crate) fn compact_json(v: &serde_json::Value) -> String {
    if v.is_null() {
        "-".to_owned()
    } else {
        v.to_string()
    }
}

/// `s` with control characters (newlines, escapes) made harmless for a terminal.
pub(crate) fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A table: a header row and left-aligned columns two spaces apart.
#[derive(Debug)]
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column names.
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (cells are cleaned of control characters).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| clean(c)).collect());
    }

    /// Whether no row was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values aligned.
pub(crate) fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (key, value) in pairs {
        let label = format!("{key}:");
        out.push_str(format!("{label:<width$} {value}").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let mut t = Table::new(&["NAME", "STATE"]);
        t.row(vec!["emails".into(), "queued".into()]);
        t.row(vec!["a\nb".into(), "-".into()]);
        assert_eq!(t.render(), "NAME    STATE\nemails  queued\na b     -\n");
    }

    #[test]
    fn fields_align() {
        let text = fields(&[("id", "1".into()), ("state", "queued".into())]);
        assert_eq!(text, "id:    1\nstate: queued\n");
    }

    #[test]
    fn times_are_utc_seconds() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T16:07:35.123+01:00").unwrap();
        assert_eq!(time(t.with_timezone(&Utc)), "2026-11-22T15:07:35Z");
    }
}
