//! Peer programs: River (its own `river bench` CLI for W1; `bench/peers/river`, our Go driver
//! over its public API, for W3–W5) and pgqueuer (`bench/peers/pgqueuer_bench.py`, our Python
//! driver over its public API), on the same PostgreSQL, measured the same way.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::measure::Probe;
use crate::report::{Measurement, Percentiles};
use leasehold_bench::procstat;

/// Runs a child process to completion, sampling its peak RSS; returns (stdout, stderr, peak).
async fn run_child(
    cmd: &mut tokio::process::Command,
    patience: Duration,
) -> Result<(String, String, f64)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning peer")?;
    let pid = child.id().context("peer pid")?;
    let mut out = child.stdout.take().context("stdout")?;
    let mut err = child.stderr.take().context("stderr")?;
    let read_out = tokio::spawn(async move {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s).await;
        s
    });
    let read_err = tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    });
    let deadline = Instant::now() + patience;
    let mut peak = 0.0f64;
    let status = loop {
        if let Some(v) = procstat::peak_rss_mib(pid) {
            peak = peak.max(v);
        }
        tokio::select! {
            s = child.wait() => break s?,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if Instant::now() > deadline {
            let _ = child.kill().await;
            bail!("peer did not finish within {patience:?}");
        }
    };
    let (stdout, stderr) = (read_out.await?, read_err.await?);
    if !status.success() {
        bail!(
            "peer exited with {status}: {}",
            stderr
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    Ok((stdout, stderr, peak))
}

/// `river migrate-up` on the database of `url`.
pub(crate) async fn river_migrate(river: &Path, url: &str) -> Result<()> {
    run_child(
        tokio::process::Command::new(river).args(["migrate-up", "--database-url", url]),
        Duration::from_secs(120),
    )
    .await?;
    Ok(())
}

/// `river bench --num-total-jobs N`: River inserts N jobs, then works them down; we take its
/// own `overall job/sec`. CPU of River's process covers its insert too.
pub(crate) async fn river_bench(
    river: &Path,
    url: &str,
    jobs: u64,
    probe: &Probe,
    patience: Duration,
) -> Result<Measurement> {
    let mark = probe.begin().await;
    let (stdout, stderr, peak) = run_child(
        tokio::process::Command::new(river).args([
            "bench",
            "--database-url",
            url,
            "--num-total-jobs",
            &jobs.to_string(),
        ]),
        patience,
    )
    .await?;
    let text = format!("{stdout}\n{stderr}");
    let line = text
        .lines()
        .find(|l| l.contains("overall job/sec"))
        .with_context(|| format!("no `overall job/sec` in river bench output: {text}"))?;
    let rate = bracketed_after(line, "overall job/sec").context("parsing job/sec")?;
    let worked = bracketed_after(line, "total jobs worked").unwrap_or(jobs as f64);
    let mut m = probe.end(mark, worked as u64, None).await;
    m.extra.insert("wall_s_incl_insert".into(), m.secs);
    m.secs = worked / rate;
    m.jobs_per_s = Some(rate);
    m.peak_rss_mib.insert("workers".into(), peak);
    Ok(m)
}

/// The number in `[ … ]` after `label` in a `river bench` line.
fn bracketed_after(line: &str, label: &str) -> Option<f64> {
    let rest = &line[line.find(label)? + label.len()..];
    let open = rest.find('[')?;
    let close = rest[open..].find(']')? + open;
    rest[open + 1..close].trim().parse().ok()
}

/// Runs `bench/peers/pgqueuer_bench.py` with `args`; returns its JSON.
async fn pgqueuer(
    python: &Path,
    script: &Path,
    args: &[String],
    patience: Duration,
) -> Result<Value> {
    let (stdout, _stderr, _) = run_child(
        tokio::process::Command::new(python).arg(script).args(args),
        patience,
    )
    .await?;
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("pgqueuer driver printed no JSON")?;
    Ok(serde_json::from_str(line)?)
}

/// pgqueuer's version (the driver imports it, so this also checks the venv works).
pub(crate) async fn pgqueuer_version(python: &Path, script: &Path) -> Result<String> {
    let v = pgqueuer(python, script, &["version".into()], Duration::from_secs(60)).await?;
    Ok(v["version"].as_str().unwrap_or("?").to_owned())
}

/// Runs a peer driver that prints one JSON object (`bench/peers/river`, the pgqueuer script):
/// `argv` is the program and its arguments. The database's CPU and commits come from `probe`
/// around the run; the figures, the driver's own CPU and RSS, and its settings from its JSON:
/// `jobs`, `secs`, optional `jobs_per_s` (W4's arrival rate), `latency_ms`, `worker_cpu_s`,
/// `worker_peak_rss_mib`, `efficiency`/`ideal_per_s`/`errors`, and a `settings` object.
pub(crate) async fn driver_run(
    argv: &[String],
    probe: &Probe,
    patience: Duration,
) -> Result<(Measurement, BTreeMap<String, String>)> {
    let (program, args) = argv.split_first().context("empty peer command")?;
    let mark = probe.begin().await;
    let (stdout, _stderr, _) =
        run_child(tokio::process::Command::new(program).args(args), patience).await?;
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{program} printed no JSON"))?;
    let v: Value = serde_json::from_str(line)?;
    let jobs = v["jobs"].as_u64().context("no jobs in the peer's JSON")?;
    let secs = v["secs"].as_f64().context("no secs in the peer's JSON")?;
    let mut m = probe.end(mark, jobs, Some(secs)).await;
    if let Some(rate) = v["jobs_per_s"].as_f64() {
        m.jobs_per_s = Some(rate);
    }
    m.cpu_s_per_1k.insert(
        "workers".into(),
        v["worker_cpu_s"].as_f64().unwrap_or(0.0) * 1000.0 / jobs.max(1) as f64,
    );
    m.peak_rss_mib.insert(
        "workers".into(),
        v["worker_peak_rss_mib"].as_f64().unwrap_or(0.0),
    );
    for key in ["efficiency", "ideal_per_s", "errors", "completed_rows"] {
        if let Some(x) = v[key].as_f64() {
            m.extra.insert(key.into(), x);
        }
    }
    // A W1 driver inserts its jobs first, at this rate (named as Leasehold's rows name it).
    if let Some(x) = v["insert_rows_per_s"].as_f64() {
        m.extra.insert("enqueue_rows_per_s".into(), x);
    }
    let l = &v["latency_ms"];
    if l.is_object() {
        m.latency_ms = Some(Percentiles {
            n: l["n"].as_u64().unwrap_or(0) as usize,
            p50: l["p50"].as_f64().unwrap_or(f64::NAN),
            p90: l["p90"].as_f64().unwrap_or(f64::NAN),
            p99: l["p99"].as_f64().unwrap_or(f64::NAN),
            max: l["max"].as_f64().unwrap_or(f64::NAN),
        });
    }
    let mut settings = BTreeMap::new();
    if let Some(obj) = v["settings"].as_object() {
        for (k, x) in obj {
            let text = match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            settings.insert(k.clone(), text);
        }
    }
    Ok((m, settings))
}
