//! SVG charts of a report, written beside its JSON and Markdown: per workload a bar chart of its
//! figure (jobs/s, requests/s, rows/s) per row, and a latency chart (p50/p90/p99) for the rows
//! that report latency. Hand-written SVG text: no dependency, readable diffs.
//!
//! `harness chart FILE.json…` draws them again from a results file (a [`Report`], or the JSON
//! `bench/sdk-ratio` writes) without running anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::report::{Percentiles, Report, Row, Spread};

/// One chart: the file name's suffix (`W1-rate`) and the SVG text.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    pub(crate) suffix: String,
    pub(crate) svg: String,
}

/// What a workload's charts are called and what their figures mean.
struct Meta {
    title: &'static str,
    /// Unit of the throughput figure; `None`: the rate is an input (offered load) or absent.
    rate_unit: Option<&'static str>,
    /// What the latency figure measures; `None`: no latency chart.
    latency: Option<&'static str>,
}

fn meta(workload: &str) -> Meta {
    let m = |title, rate_unit, latency| Meta {
        title,
        rate_unit,
        latency,
    };
    match workload {
        "W1" => m("W1 burn-down", Some("jobs/s"), None),
        "W2" => m(
            "W2 steady state",
            Some("jobs/s (median of 2-s windows)"),
            None,
        ),
        "W3" => m("W3 10-ms sleeping jobs", Some("jobs/s"), None),
        "W4" => m(
            "W4 pickup latency, open-loop arrivals",
            None,
            Some("handler start − intended arrival"),
        ),
        "W5" => m("W5 enqueue", Some("requests/s"), Some("request latency")),
        "W6" => m(
            "W6 claim latency by queue depth",
            None,
            Some("claim latency"),
        ),
        "W7" => m(
            "W7 DAG step latency",
            None,
            Some("parent reported → child leased"),
        ),
        "W8" => m("W8 burn-down under limits", Some("jobs/s"), None),
        "W9" => m(
            "W9 fairness: trickle pickup latency",
            None,
            Some("trickle job pickup latency"),
        ),
        _ => m("", Some("per s"), Some("latency")),
    }
}

/// A colour per system; anything else is purple.
fn colour(system: &str) -> &'static str {
    match system {
        "leasehold" => "#2b6cb0",
        "ceiling" => "#718096",
        "river" => "#dd6b20",
        "pgqueuer" => "#2f855a",
        _ => "#805ad5",
    }
}

/// Text for SVG: `&`, `<`, `>`, quotes escaped.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `15023.4` → `15,023`; `1.754` → `1.75`; `0.0123` → `0.012`.
pub(crate) fn fmt_value(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        return "0".into();
    }
    if a.round() >= 1000.0 {
        let digits = format!("{:.0}", a.round());
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if x < 0.0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// A tick label: `fmt_value` without trailing zeros (`10.0` → `10`, `0.100` → `0.1`).
fn fmt_tick(t: f64) -> String {
    let s = fmt_value(t);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Width of `s` in px at 12 px sans-serif, roughly (no font metrics here).
fn text_w(s: &str) -> f64 {
    s.chars().count() as f64 * 6.6
}

/// One bar (or latency triple) of a chart.
struct Bar {
    label: String,
    system: String,
    value: Spread,
    /// p50, p90, p99 (medians over the runs) for latency bars.
    lat: Option<[f64; 3]>,
}

/// The chart's frame: title, subtitle, caption and the systems in the legend.
struct Frame<'a> {
    title: String,
    subtitle: String,
    caption: &'a [String],
    footnotes: Vec<String>,
}

const BAR_H: f64 = 18.0;
const GAP: f64 = 8.0;
const PLOT_W: f64 = 440.0;

/// The systems of `bars`, Leasehold first, then the ceiling and the peers.
fn legend_systems(bars: &[Bar]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for b in bars {
        if !seen.contains(&b.system) {
            seen.push(b.system.clone());
        }
    }
    let rank = |s: &str| {
        ["leasehold", "ceiling", "river", "pgqueuer"]
            .iter()
            .position(|x| *x == s)
            .unwrap_or(4)
    };
    seen.sort_by_key(|s| rank(s));
    seen
}

/// Nice tick values for 0..=max (linear).
fn linear_ticks(max: f64) -> Vec<f64> {
    if max <= 0.0 {
        return vec![0.0];
    }
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    // Up to the first tick at or above `max`, so that the longest bar ends inside the grid.
    let n = (max / step - 1e-9).ceil() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// Powers of ten covering lo..=hi (log scale).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let a = lo.log10().floor() as i32;
    let b = hi.log10().ceil() as i32;
    (a..=b).map(|e| 10f64.powi(e)).collect()
}

enum Scale {
    Linear { max: f64 },
    Log { lo: f64, hi: f64 },
}

impl Scale {
    fn x(&self, v: f64) -> f64 {
        match self {
            Scale::Linear { max } => {
                if *max <= 0.0 {
                    0.0
                } else {
                    v.max(0.0) / max * PLOT_W
                }
            }
            Scale::Log { lo, hi } => {
                let v = v.max(*lo);
                (v.log10() - lo.log10()) / (hi.log10() - lo.log10()) * PLOT_W
            }
        }
    }

    fn ticks(&self) -> Vec<f64> {
        match self {
            Scale::Linear { max } => linear_ticks(*max),
            Scale::Log { lo, hi } => log_ticks(*lo, *hi),
        }
    }
}

/// Draws a horizontal bar chart: labels on the left, bars sorted as given, value labels at the
/// bar ends, legend of the systems, caption below.
fn draw(frame: &Frame<'_>, bars: &[Bar], scale: &Scale, unit: &str) -> String {
    let label_w = bars
        .iter()
        .map(|b| text_w(&b.label))
        .fold(120.0, f64::max)
        .min(560.0);
    let value_w = bars
        .iter()
        .map(|b| text_w(&value_label(b, unit)))
        .fold(60.0, f64::max);
    let left = 16.0 + label_w + 8.0;
    let width = (left + PLOT_W + 8.0 + value_w + 16.0).max(640.0);
    let legend_y = 58.0;
    let plot_top = legend_y + 26.0;
    let plot_h = bars.len() as f64 * (BAR_H + GAP);
    let axis_y = plot_top + plot_h;
    let mut lines: Vec<String> = frame.caption.to_vec();
    lines.extend(frame.footnotes.iter().cloned());
    let height = axis_y + 30.0 + lines.len() as f64 * 16.0 + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="16" y="24" font-size="16" font-weight="bold" fill="#1a202c">{}</text>"##,
        esc(&frame.title)
    );
    let _ = writeln!(
        s,
        r##"<text x="16" y="44" fill="#4a5568">{}</text>"##,
        esc(&frame.subtitle)
    );
    // Legend: one swatch per system, then the percentile shades for latency charts.
    let mut lx = 16.0;
    for sys in legend_systems(bars) {
        let _ = writeln!(
            s,
            r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}" fill="#1a202c">{}</text>"##,
            legend_y - 10.0,
            colour(&sys),
            lx + 16.0,
            legend_y,
            esc(&sys)
        );
        lx += 16.0 + text_w(&sys) + 18.0;
    }
    if bars.iter().any(|b| b.lat.is_some()) {
        for (name, op) in [("p50", 1.0), ("p90", 0.55), ("p99", 0.25)] {
            let _ = writeln!(
                s,
                r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="#4a5568" fill-opacity="{op}"/><text x="{:.1}" y="{:.1}" fill="#1a202c">{name}</text>"##,
                legend_y - 10.0,
                lx + 16.0,
                legend_y,
            );
            lx += 16.0 + text_w(name) + 18.0;
        }
    }
    // Grid and ticks.
    for t in scale.ticks() {
        let x = left + scale.x(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{plot_top:.1}" x2="{x:.1}" y2="{axis_y:.1}" stroke="#e2e8f0"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#4a5568">{}</text>"##,
            axis_y + 14.0,
            esc(&fmt_tick(t))
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left:.1}" y1="{plot_top:.1}" x2="{left:.1}" y2="{axis_y:.1}" stroke="#a0aec0"/>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#4a5568">{}</text>"##,
        left + PLOT_W / 2.0,
        axis_y + 28.0,
        esc(unit)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = plot_top + i as f64 * (BAR_H + GAP) + GAP / 2.0;
        let mid = y + BAR_H / 2.0 + 4.0;
        let c = colour(&b.system);
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{mid:.1}" text-anchor="end" fill="#1a202c">{}</text>"##,
            left - 8.0,
            esc(&b.label)
        );
        let end = match b.lat {
            Some([p50, p90, p99]) => {
                for (v, op) in [(p99, 0.25), (p90, 0.55), (p50, 1.0)] {
                    let _ = writeln!(
                        s,
                        r##"<rect x="{left:.1}" y="{y:.1}" width="{:.1}" height="{BAR_H}" fill="{c}" fill-opacity="{op}"><title>{}</title></rect>"##,
                        scale.x(v).max(1.0),
                        esc(&format!("{} {}", b.label, fmt_value(v)))
                    );
                }
                left + scale.x(p99).max(1.0)
            }
            None => {
                let w = scale.x(b.value.median).max(1.0);
                let _ = writeln!(
                    s,
                    r##"<rect x="{left:.1}" y="{y:.1}" width="{w:.1}" height="{BAR_H}" fill="{c}"/>"##
                );
                if b.value.max > b.value.min {
                    let (x1, x2) = (left + scale.x(b.value.min), left + scale.x(b.value.max));
                    let _ = writeln!(
                        s,
                        r##"<line x1="{x1:.1}" y1="{:.1}" x2="{x2:.1}" y2="{:.1}" stroke="#1a202c"/>"##,
                        y + BAR_H / 2.0,
                        y + BAR_H / 2.0
                    );
                }
                left + w.max(scale.x(b.value.max))
            }
        };
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{mid:.1}" fill="#1a202c">{}</text>"##,
            end + 6.0,
            esc(&value_label(b, unit))
        );
    }
    for (i, line) in lines.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<text x="16" y="{:.1}" font-size="11" fill="#718096">{}</text>"##,
            axis_y + 48.0 + i as f64 * 16.0,
            esc(line)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn value_label(b: &Bar, unit: &str) -> String {
    match b.lat {
        Some([p50, p90, p99]) => format!(
            "{} · {} · {} ms",
            fmt_value(p50),
            fmt_value(p90),
            fmt_value(p99)
        ),
        None if b.value.max > b.value.min => format!(
            "{} [{}–{}]",
            fmt_value(b.value.median),
            fmt_value(b.value.min),
            fmt_value(b.value.max)
        ),
        None => {
            let short = unit.split_whitespace().next().unwrap_or("");
            format!("{} {short}", fmt_value(b.value.median))
        }
    }
}

/// The caption: how, when and where the run was made.
fn caption(report: &Report) -> Vec<String> {
    let command = match report.mode.as_str() {
        "full" => "bench/run".to_string(),
        m => format!("bench/run --{m}"),
    };
    let f = |k: &str| report.machine.facts.get(k).cloned();
    let mut machine = Vec::new();
    if let Some(c) = f("cores") {
        machine.push(format!("{c} cores"));
    }
    if let Some(c) = f("cpu") {
        machine.push(c);
    }
    if let Some(pg) = f("postgresql") {
        machine.push(pg.split(" on ").next().unwrap_or(&pg).to_string());
    }
    let mut lines = vec![format!(
        "{command} · {} mode, {} run(s){} · {} · {}",
        report.mode,
        report.runs,
        if report.runs > 1 {
            ": medians, whiskers min–max"
        } else {
            ""
        },
        report.started_at,
        machine.join(", ")
    )];
    if let Some(c) = f("coordinator binary") {
        lines.push(format!("coordinator: {c}"));
    }
    lines
}

fn row_label(r: &Row, with_variant: bool) -> String {
    let mut s = format!("{} · {} · {}", r.system, r.store, r.driver);
    if with_variant {
        s.push_str(" · ");
        s.push_str(&r.variant);
    }
    s
}

/// The rows of a chart, with their labels: the variant is in the label only when the rows'
/// variants differ (else it goes into the subtitle).
fn labelled<'a>(rows: &[&'a Row]) -> (Vec<(&'a Row, String)>, Option<String>) {
    let first = rows.first().map(|r| r.variant.clone());
    let same = rows.iter().all(|r| Some(&r.variant) == first.as_ref());
    let out = rows.iter().map(|r| (*r, row_label(r, !same))).collect();
    (out, if same { first } else { None })
}

fn not_shown(report: &Report, workload: &str) -> Vec<String> {
    let mut out: Vec<String> = report
        .rows
        .iter()
        .filter(|r| r.workload == workload && r.status != "ok")
        .map(|r| {
            let mut s = format!("{} · {} · {}: {}", r.system, r.store, r.driver, r.status);
            if s.chars().count() > 140 {
                s = s.chars().take(139).collect::<String>() + "…";
            }
            s
        })
        .collect();
    out.dedup();
    if !out.is_empty() {
        out.insert(0, "not shown:".into());
    }
    out
}

/// The throughput chart of one group of rows (`None`: none has a figure).
fn rate_chart(
    report: &Report,
    workload: &str,
    what: &str,
    unit: &str,
    rows: &[&Row],
    suffix: &str,
) -> Option<Chart> {
    let rows: Vec<&Row> = rows
        .iter()
        .copied()
        .filter(|r| r.status == "ok" && r.rate().is_some())
        .collect();
    if rows.is_empty() {
        return None;
    }
    let (rows, variant) = labelled(&rows);
    let mut bars: Vec<Bar> = rows
        .into_iter()
        .filter_map(|(r, label)| {
            Some(Bar {
                label,
                system: r.system.clone(),
                value: r.rate()?,
                lat: None,
            })
        })
        .collect();
    bars.sort_by(|a, b| b.value.median.total_cmp(&a.value.median));
    let max = bars
        .iter()
        .map(|b| b.value.max)
        .fold(0.0, f64::max)
        .max(1e-9);
    let frame = Frame {
        title: format!("{what}: {unit} (higher is better)"),
        subtitle: subtitle(workload, variant),
        caption: &caption(report),
        footnotes: not_shown(report, workload),
    };
    let scale = Scale::Linear {
        max: linear_ticks(max).last().copied().unwrap_or(max).max(max),
    };
    Some(Chart {
        suffix: suffix.into(),
        svg: draw(&frame, &bars, &scale, unit),
    })
}

fn subtitle(workload: &str, variant: Option<String>) -> String {
    let mut s = format!("workload {workload}, one bar per system · store · driver");
    if let Some(v) = variant {
        s.push_str(&format!(" · all rows: {v}"));
    }
    s
}

/// The latency chart of a workload's rows that report latency (`None`: none does).
fn latency_chart(
    report: &Report,
    workload: &str,
    what: &str,
    measures: &str,
    rows: &[&Row],
) -> Option<Chart> {
    let rows: Vec<&Row> = rows
        .iter()
        .copied()
        .filter(|r| r.status == "ok" && r.runs.iter().any(|m| m.latency_ms.is_some()))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let (rows, variant) = labelled(&rows);
    let pick = |r: &Row, f: fn(&Percentiles) -> f64| {
        r.spread(|m| m.latency_ms.as_ref().map(f)).map(|s| s.median)
    };
    let mut bars: Vec<Bar> = rows
        .into_iter()
        .filter_map(|(r, label)| {
            let p50 = pick(r, |p| p.p50)?;
            let p90 = pick(r, |p| p.p90)?;
            let p99 = pick(r, |p| p.p99)?;
            Some(Bar {
                label,
                system: r.system.clone(),
                value: r.spread(|m| m.latency_ms.as_ref().map(|p| p.p50))?,
                lat: Some([p50, p90, p99]),
            })
        })
        .collect();
    bars.sort_by(|a, b| a.value.median.total_cmp(&b.value.median));
    let all: Vec<f64> = bars
        .iter()
        .flat_map(|b| b.lat.unwrap_or_default())
        .filter(|v| *v > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(0.0, f64::max);
    let scale = if hi > 0.0 && lo.is_finite() && hi / lo > 30.0 {
        Scale::Log {
            lo: 10f64.powf(lo.log10().floor()),
            hi: 10f64.powf(hi.log10().ceil()),
        }
    } else {
        Scale::Linear {
            max: linear_ticks(hi).last().copied().unwrap_or(hi).max(hi),
        }
    };
    let log = matches!(scale, Scale::Log { .. });
    let frame = Frame {
        title: format!("{what}: p50 / p90 / p99 in ms (lower is better)"),
        subtitle: subtitle(workload, variant),
        caption: &caption(report),
        footnotes: not_shown(report, workload),
    };
    let unit = format!("ms{}: {measures}", if log { " (log scale)" } else { "" });
    Some(Chart {
        suffix: format!("{workload}-latency"),
        svg: draw(&frame, &bars, &scale, &unit),
    })
}

/// Every chart of a report, workloads in order.
pub(crate) fn report_charts(report: &Report) -> Vec<Chart> {
    let mut by_workload: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in &report.rows {
        by_workload.entry(r.workload.clone()).or_default().push(r);
    }
    let mut charts = Vec::new();
    for (w, rows) in by_workload {
        let m = meta(&w);
        let title = if m.title.is_empty() {
            w.clone()
        } else {
            m.title.to_string()
        };
        if w == "W5" {
            // Single-job requests and bulk rows are different figures: one chart each.
            let (bulk, single): (Vec<&Row>, Vec<&Row>) =
                rows.iter().partition(|r| r.variant.starts_with("bulk"));
            charts.extend(rate_chart(
                report,
                &w,
                "W5 single-job enqueue",
                "requests/s",
                &single,
                "W5-rate",
            ));
            charts.extend(rate_chart(
                report,
                &w,
                "W5 bulk enqueue",
                "rows/s",
                &bulk,
                "W5-bulk-rate",
            ));
        } else if let Some(unit) = m.rate_unit {
            charts.extend(rate_chart(
                report,
                &w,
                &title,
                unit,
                &rows,
                &format!("{w}-rate"),
            ));
        }
        if let Some(measures) = m.latency {
            let what = if w == "W5" {
                "W5 single-job request latency"
            } else {
                &title
            };
            charts.extend(latency_chart(report, &w, what, measures, &rows));
        }
    }
    charts
}

/// The chart of `bench/sdk-ratio`'s JSON (`{"args": …, "results": {sdk: {runs, …}}}`);
/// `caption` is the line under it (its date and machine, from the Markdown beside it).
pub(crate) fn sdk_ratio_chart(v: &Value, caption: Vec<String>) -> Option<Chart> {
    let results = v.get("results")?.as_object()?;
    let mut bars = Vec::new();
    for (sdk, r) in results {
        let runs: Vec<f64> = r
            .get("runs")?
            .as_array()?
            .iter()
            .filter_map(|m| m.get("jobs_per_s")?.as_f64())
            .collect();
        let Some(value) = Spread::of(runs) else {
            continue;
        };
        let ratio = r.get("ratio_to_rust").and_then(Value::as_f64);
        bars.push(Bar {
            label: match ratio {
                Some(x) => format!("{sdk} ({x:.2}× Rust SDK)"),
                None => sdk.clone(),
            },
            system: "leasehold".into(),
            value,
            lat: None,
        });
    }
    if bars.is_empty() {
        return None;
    }
    bars.sort_by(|a, b| b.value.median.total_cmp(&a.value.median));
    let args = v.get("args");
    let arg = |k: &str| {
        args.and_then(|a| a.get(k))
            .map(|x| x.to_string().trim_matches('"').to_string())
            .unwrap_or_else(|| "?".into())
    };
    let max = bars.iter().map(|b| b.value.max).fold(0.0, f64::max);
    let frame = Frame {
        title: "SDK overhead: no-op jobs/s per SDK (higher is better)".into(),
        subtitle: format!(
            "bench/sdk-ratio: {} jobs × {} rounds per SDK, concurrency {}, SQLite {}, a fresh coordinator per measurement",
            arg("jobs"),
            arg("rounds"),
            arg("concurrency"),
            arg("sqlite_synchronous").to_uppercase()
        ),
        caption: &caption,
        footnotes: Vec::new(),
    };
    let scale = Scale::Linear {
        max: linear_ticks(max).last().copied().unwrap_or(max).max(max),
    };
    Some(Chart {
        suffix: "rate".into(),
        svg: draw(&frame, &bars, &scale, "jobs/s (median, whiskers min–max)"),
    })
}

/// Writes `charts` as `<dir>/<stem>-<suffix>.svg`, after removing the `<stem>-*.svg` files
/// there (charts of workloads this report no longer has). Returns the files written.
pub(crate) fn write_charts(dir: &Path, stem: &str, charts: &[Chart]) -> Result<Vec<PathBuf>> {
    let prefix = format!("{stem}-");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(".svg") {
                std::fs::remove_file(e.path())?;
            }
        }
    }
    let mut written = Vec::new();
    for c in charts {
        let path = dir.join(format!("{prefix}{}.svg", c.suffix));
        std::fs::write(&path, &c.svg).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// `harness chart FILE.json…`: the charts of existing results files, written beside them.
pub(crate) fn chart_files(files: &[PathBuf]) -> Result<()> {
    anyhow::ensure!(
        !files.is_empty(),
        "usage: harness chart bench/results/latest-quick.json [more.json…]"
    );
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let charts = if v.get("rows").is_some() {
            let report: Report = serde_json::from_value(v)
                .with_context(|| format!("{} is not a harness report", file.display()))?;
            report_charts(&report)
        } else {
            // bench/sdk-ratio's JSON carries no date or machine; its Markdown's second line does.
            let md = std::fs::read_to_string(file.with_extension("md")).unwrap_or_default();
            let caption: Vec<String> = md
                .lines()
                .find(|l| l.starts_with(|c: char| c.is_ascii_digit()))
                .map(|l| vec![l.replace('`', "")])
                .unwrap_or_default();
            sdk_ratio_chart(&v, caption).into_iter().collect()
        };
        let dir = file.parent().unwrap_or(Path::new("."));
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .context("a results file name")?;
        for p in write_charts(dir, stem, &charts)? {
            eprintln!("wrote {}", p.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Machine, Measurement};

    fn row(workload: &str, system: &str, store: &str, variant: &str, rate: f64) -> Row {
        Row {
            key: format!("{workload}|{system}|{store}|{variant}"),
            system: system.into(),
            store: store.into(),
            driver: "raw-http".into(),
            workload: workload.into(),
            variant: variant.into(),
            settings: BTreeMap::new(),
            status: "ok".into(),
            runs: vec![Measurement {
                jobs: 100,
                secs: 1.0,
                jobs_per_s: Some(rate),
                ..Measurement::default()
            }],
        }
    }

    fn report(rows: Vec<Row>) -> Report {
        let mut facts = BTreeMap::new();
        facts.insert("cores".into(), "2".into());
        facts.insert("cpu".into(), "Test CPU".into());
        Report {
            mode: "quick".into(),
            runs: 1,
            started_at: "2026-12-06 04:00 UTC".into(),
            machine: Machine { facts },
            rows,
            ratios: BTreeMap::new(),
            goals: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn one_bar_per_row_sorted_with_escaped_labels_and_values() {
        let r = report(vec![
            row("W1", "leasehold", "SQLite <NORMAL>", "a & b", 1234.6),
            row("W1", "ceiling", "SQLite <NORMAL>", "a & b", 20000.0),
            row("W1", "river", "PostgreSQL sc=on", "x", 15917.2),
        ]);
        let charts = report_charts(&r);
        assert_eq!(charts.len(), 1, "W1 has a rate chart only");
        let svg = &charts[0].svg;
        assert_eq!(charts[0].suffix, "W1-rate");
        // One bar per row (bars are the rects with a height of BAR_H; swatches are 12 high).
        assert_eq!(svg.matches(r#"height="18""#).count(), 3);
        assert!(svg.contains("SQLite &lt;NORMAL&gt;"));
        assert!(svg.contains("a &amp; b"));
        assert!(!svg.contains("a & b"));
        assert!(!svg.contains("<NORMAL>"));
        assert!(svg.contains("1,235 jobs/s"), "{svg}");
        assert!(svg.contains("20,000 jobs/s"));
        // Sorted, highest first.
        let pos = |s: &str| svg.find(s).expect(s);
        assert!(pos("20,000 jobs/s") < pos("15,917 jobs/s"));
        assert!(pos("15,917 jobs/s") < pos("1,235 jobs/s"));
        // Legend per system, title with the workload's name and unit, caption with mode and date.
        for s in [
            "leasehold",
            "ceiling",
            "river",
            "W1 burn-down: jobs/s",
            "quick mode",
        ] {
            assert!(svg.contains(s), "{s}");
        }
        assert!(svg.contains("2026-12-06 04:00 UTC") && svg.contains("2 cores, Test CPU"));
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
    }

    #[test]
    fn workloads_without_figures_are_skipped_and_latency_has_its_own_chart() {
        let mut lat = row(
            "W4",
            "leasehold",
            "SQLite NORMAL",
            "100 jobs/s open loop",
            100.0,
        );
        lat.runs[0].latency_ms = Some(Percentiles {
            n: 10,
            p50: 1.5,
            p90: 2.25,
            p99: 5.0,
            max: 9.0,
        });
        let mut failed = row("W2", "leasehold", "SQLite NORMAL", "depth 5000", 0.0);
        failed.status = "failed: boom".into();
        failed.runs.clear();
        let r = report(vec![lat, failed]);
        let charts = report_charts(&r);
        let names: Vec<&str> = charts.iter().map(|c| c.suffix.as_str()).collect();
        // W4's rate is the offered load: no rate chart; W2 has no measured row: no chart at all.
        assert_eq!(names, ["W4-latency"]);
        let svg = &charts[0].svg;
        assert!(svg.contains("1.50 · 2.25 · 5.00 ms"), "{svg}");
        assert!(svg.contains("p50 / p90 / p99"));
        assert!(report_charts(&report(Vec::new())).is_empty());
    }

    #[test]
    fn values_are_formatted_for_reading() {
        assert_eq!(fmt_value(15023.4), "15,023");
        assert_eq!(fmt_value(1_234_567.0), "1,234,567");
        assert_eq!(fmt_value(999.6), "1,000");
        assert_eq!(fmt_value(123.4), "123");
        assert_eq!(fmt_value(12.34), "12.3");
        assert_eq!(fmt_value(1.754), "1.75");
        assert_eq!(fmt_value(0.0123), "0.012");
        assert_eq!(fmt_value(0.0), "0");
        assert_eq!(fmt_tick(10.0), "10");
        assert_eq!(fmt_tick(0.1), "0.1");
        assert_eq!(fmt_tick(20000.0), "20,000");
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn stale_charts_of_the_same_results_are_replaced() {
        let dir = std::env::temp_dir().join(format!("charts-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("test setup");
        std::fs::write(dir.join("latest-quick-W9-latency.svg"), "old").expect("test setup");
        std::fs::write(dir.join("latest-smoke-W1-rate.svg"), "other").expect("test setup");
        let r = report(vec![row("W1", "leasehold", "SQLite NORMAL", "v", 10.0)]);
        let written = write_charts(&dir, "latest-quick", &report_charts(&r)).expect("test setup");
        assert_eq!(written, [dir.join("latest-quick-W1-rate.svg")]);
        assert!(!dir.join("latest-quick-W9-latency.svg").exists());
        assert!(dir.join("latest-smoke-W1-rate.svg").exists());
        std::fs::remove_dir_all(&dir).expect("test setup");
    }
}
