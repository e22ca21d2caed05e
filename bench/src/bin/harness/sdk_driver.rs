//! SDK drivers: the Rust, Python and Go SDKs, each as a no-op worker process
//! (`bench/src/bin/sdk_noop.rs`, `bench/sdk_noop.py`, `sdk-c/go/cmd/leasehold-noop`; the same
//! processes `bench/sdk-ratio` runs), started as `WORKER URL QUEUE CONCURRENCY`.
//!
//! [`Driver::start`] returns once the process printed `ready`, so its start-up (interpreter,
//! imports, linking) is not timed. The process does not report to the harness, so completion is
//! read from the coordinator (`GET /v1/queues`, the queue's `succeeded` depth), the same signal
//! `bench/sdk-ratio` uses: "all N succeeded" means every outcome was committed. That count is
//! a query over the jobs table, so it is polled sparingly: the next poll is due when, at the
//! rate seen so far, half the remaining jobs should be done (between 5 and 250 ms), which is a
//! dozen or two polls per burn-down and still ends the timing within a few ms of the last commit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Ctx;
use crate::coord::Coordinator;
use crate::driver::{Driver, Handler, Running, Sink, WorkerCfg};
use crate::measure::Probe;
use crate::pg::Pg;
use crate::report::Goal;
use crate::rows::{Rows, store_pg, store_sqlite};
use crate::workloads::{Bench, Producer};

/// The three SDKs, in the order of the table.
pub(crate) const SDK_NAMES: [&str; 3] = ["rust-sdk", "python-sdk", "go-sdk"];

/// Where the SDK worker programs are (from the harness's arguments).
#[derive(Debug, Clone, Default)]
pub(crate) struct SdkPaths {
    /// The release `sdk_noop` binary (Rust SDK).
    pub(crate) rust: Option<PathBuf>,
    /// A Python with `leasehold` installed, and the worker script.
    pub(crate) python: Option<PathBuf>,
    pub(crate) python_script: PathBuf,
    /// The `leasehold-noop` Go binary (Go SDK over the release C library).
    pub(crate) go: Option<PathBuf>,
    /// The worker's `concurrency` (jobs at once; the SDK sizes its claims from it).
    pub(crate) concurrency: usize,
}

/// One SDK's no-op worker program.
#[derive(Debug, Clone)]
pub(crate) struct SdkWorker {
    name: &'static str,
    /// Program and leading arguments; URL, QUEUE and CONCURRENCY follow.
    argv: Vec<String>,
    concurrency: usize,
    /// What `leasehold.__version__` or the like said when checked (for the row's settings).
    pub(crate) version: String,
    http: reqwest::Client,
}

/// Each SDK's worker, or why it is not installed, in [`SDK_NAMES`] order.
pub(crate) async fn sdk_workers(
    paths: &SdkPaths,
    http: &reqwest::Client,
) -> Vec<(&'static str, Result<SdkWorker, String>)> {
    let mut out = Vec::new();
    for name in SDK_NAMES {
        let found = match name {
            "rust-sdk" => binary(paths.rust.as_ref(), "--sdk-rust")
                .map(|b| (vec![b], "leasehold crate (workspace)".to_owned())),
            "python-sdk" => python(paths).await,
            _ => binary(paths.go.as_ref(), "--sdk-go")
                .map(|b| (vec![b], "sdk-c/go over the release C library".to_owned())),
        };
        out.push((
            name,
            found.map(|(argv, version)| SdkWorker {
                name,
                argv,
                concurrency: paths.concurrency,
                version,
                http: http.clone(),
            }),
        ));
    }
    out
}

fn binary(path: Option<&PathBuf>, flag: &str) -> Result<String, String> {
    let p = path.ok_or_else(|| format!("no {flag} binary"))?;
    if !p.is_file() {
        return Err(format!("{} not found", p.display()));
    }
    Ok(p.display().to_string())
}

async fn python(paths: &SdkPaths) -> Result<(Vec<String>, String), String> {
    let py = paths
        .python
        .as_ref()
        .ok_or("no --sdk-python with leasehold")?;
    if !paths.python_script.is_file() {
        return Err(format!("{} not found", paths.python_script.display()));
    }
    let out = Command::new(py)
        .args(["-c", "import leasehold; print(leasehold.__version__)"])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} cannot import leasehold (pip install ./sdk-python)",
            py.display()
        ));
    }
    let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok((
        vec![
            py.display().to_string(),
            paths.python_script.display().to_string(),
        ],
        format!("leasehold {v} (Python)"),
    ))
}

impl SdkWorker {
    /// The same worker program at another concurrency (W3 runs at its slot counts).
    pub(crate) fn with_concurrency(&self, concurrency: usize) -> Self {
        Self {
            concurrency,
            ..self.clone()
        }
    }

    /// The row's settings beyond the store's: the worker program and its concurrency.
    pub(crate) fn settings(&self) -> BTreeMap<String, String> {
        let mut s = BTreeMap::new();
        s.insert("sdk".into(), self.version.clone());
        s.insert("worker".into(), self.argv.join(" "));
        s.insert("concurrency".into(), self.concurrency.to_string());
        s.insert(
            "completion".into(),
            "polled: GET /v1/queues succeeded depth".into(),
        );
        s
    }
}

struct SdkRunning {
    child: Child,
    stop: watch::Sender<bool>,
    poller: JoinHandle<()>,
    /// Drains the worker's stdout; ends with what it printed after `ready` about itself.
    said: JoinHandle<BTreeMap<String, f64>>,
}

#[async_trait]
impl Running for SdkRunning {
    fn pids(&self) -> Vec<u32> {
        self.child.id().into_iter().collect()
    }

    /// SIGTERM (the workers drain and exit), then a kill if that takes more than 10 s; then
    /// what the worker printed about itself on the way out (`sdk_noop`'s `busy … body_ms …`:
    /// `slots_busy` and `body_ms`).
    async fn stop(mut self: Box<Self>) -> BTreeMap<String, f64> {
        let _ = self.stop.send(true);
        let _ = (&mut self.poller).await;
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        match tokio::time::timeout(Duration::from_secs(2), &mut self.said).await {
            Ok(Ok(said)) => said,
            _ => {
                self.said.abort();
                BTreeMap::new()
            }
        }
    }
}

/// `busy 93.41 body_ms 10.512` as `slots_busy` and `body_ms`; nothing from another line.
fn parse_busy(line: &str) -> BTreeMap<String, f64> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        ["busy", busy, "body_ms", body] => match (busy.parse(), body.parse()) {
            (Ok(busy), Ok(body)) => {
                BTreeMap::from([("slots_busy".into(), busy), ("body_ms".into(), body)])
            }
            _ => BTreeMap::new(),
        },
        _ => BTreeMap::new(),
    }
}

#[async_trait]
impl Driver for SdkWorker {
    fn name(&self) -> String {
        self.name.into()
    }

    /// Only `cfg.queue` and `cfg.handler` are used: the SDK chooses its own claim batches and
    /// flushes from its concurrency; the handler is the worker program's no-op, or its sleep
    /// (Rust SDK only: `sdk_noop … SLEEP_MS`).
    async fn start(&self, url: &str, cfg: &WorkerCfg, sink: Arc<Sink>) -> Result<Box<dyn Running>> {
        anyhow::ensure!(
            cfg.tenants.is_empty(),
            "the SDK drivers serve one tenant; a shared pool runs on the raw-HTTP driver"
        );
        let sleep_ms = match cfg.handler {
            Handler::Noop => None,
            Handler::Sleep(d) => {
                anyhow::ensure!(
                    self.name == "rust-sdk",
                    "only the Rust SDK's worker program sleeps"
                );
                Some(d.as_millis().to_string())
            }
        };
        let (program, lead) = self.argv.split_first().context("empty worker command")?;
        let mut child = Command::new(program)
            .args(lead)
            .arg(url)
            .arg(&cfg.queue)
            .arg(self.concurrency.to_string())
            .args(sleep_ms)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", self.argv.join(" ")))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let mut stderr = child.stderr.take().context("stderr")?;
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        let first = match first {
            Ok(Ok(Some(l))) => l,
            _ => String::new(),
        };
        if first.trim() != "ready" {
            let _ = child.kill().await;
            let mut err = String::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(2), stderr.read_to_string(&mut err)).await;
            bail!(
                "{} worker did not start (said {first:?}): {}",
                self.name,
                err.lines().rev().take(10).collect::<Vec<_>>().join(" / ")
            );
        }
        // Keep the pipes drained so the worker never blocks on a full pipe.
        let said = tokio::spawn(async move {
            let mut said = BTreeMap::new();
            while let Ok(Some(line)) = lines.next_line().await {
                said.extend(parse_busy(&line));
            }
            said
        });
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut stderr, &mut sink).await;
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let poller = tokio::spawn(poll_succeeded(
            self.http.clone(),
            format!("{url}/v1/queues"),
            cfg.queue.clone(),
            sink,
            stop_rx,
        ));
        Ok(Box::new(SdkRunning {
            child,
            stop: stop_tx,
            poller,
            said,
        }))
    }
}

async fn succeeded(http: &reqwest::Client, url: &str, queue: &str) -> Result<(u64, u64)> {
    let v: Value = http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let q = v["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == queue));
    let depth = q.and_then(|q| q["depth"].as_object());
    let done = depth
        .and_then(|d| d.get("succeeded"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let total = depth
        .map(|d| d.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    Ok((done, total))
}

/// Feeds the queue's `succeeded` depth into `sink` until told to stop or all jobs succeeded.
async fn poll_succeeded(
    http: reqwest::Client,
    url: String,
    queue: String,
    sink: Arc<Sink>,
    mut stop: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut seen = 0u64;
    let mut delay = Duration::from_millis(50);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        let (done, total) = match succeeded(&http, &url, &queue).await {
            Ok(v) => v,
            Err(_) => {
                sink.errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
        };
        if done > seen {
            sink.on_completed(done - seen);
            seen = done;
        }
        if total > 0 && done >= total {
            return;
        }
        // Next poll when half of what remains should be done at the rate so far.
        let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-3);
        let remaining = total.saturating_sub(done) as f64;
        delay = if rate > 0.0 {
            Duration::from_secs_f64((remaining / rate / 2.0).clamp(0.005, 0.25))
        } else {
            Duration::from_millis(50)
        };
    }
}

/// How to get an empty store of one kind, for a fresh coordinator per SDK row.
pub(crate) enum FreshStore<'a> {
    /// A new SQLite file with this `synchronous` setting.
    Sqlite(&'a str),
    /// A new schema in this database (its `synchronous_commit` already set).
    Postgres { pg: &'a Pg, db: &'a str },
}

/// W1 through each SDK's worker on `store`, then W3 through the Rust SDK's. Each SDK's W1, and
/// the Rust SDK's W3, gets a fresh coordinator and an empty store, as W1 through the raw-HTTP
/// driver does (a store that grows from one row to the next would favour whichever runs
/// first), and the SDK order alternates between runs.
pub(crate) async fn sdk_rows(
    ctx: &Ctx,
    rows: &mut Rows,
    run: usize,
    store: &str,
    fresh: FreshStore<'_>,
    extra: &BTreeMap<String, String>,
) -> Result<()> {
    if ctx.skip("sdk") || !(ctx.sizes.wants("W1") || ctx.sizes.wants("W3")) {
        return Ok(());
    }
    // The SDK rows burn down W1's side size (smaller than the raw-HTTP row's in smoke mode).
    let side = crate::workloads::Sizes {
        w1_jobs: ctx.sizes.w1_side_jobs,
        ..ctx.sizes.clone()
    };
    let mut order: Vec<_> = ctx.sdks.iter().collect();
    if run.is_multiple_of(2) {
        order.reverse();
    }
    for (name, sdk) in order {
        let sdk = match sdk {
            Ok(s) => s,
            Err(why) => {
                rows.not_installed_at("leasehold", store, name, "W1", why);
                continue;
            }
        };
        eprintln!("run {run}: leasehold on {store} through {name}");
        if ctx.sizes.wants("W1") {
            let started = fresh.start().await?;
            let bench = started.bench(ctx, sdk, &side);
            let mut v = bench.w1().await;
            v.variant = format!("{} jobs, concurrency {}", side.w1_jobs, sdk.concurrency);
            v.settings = sdk.settings();
            v.settings.extend(extra.clone());
            report_failure(&v, name, &started.coord);
            rows.add_variant("leasehold", store, name, v);
            started.end().await?;
        }
        // W3 (10 ms jobs) through the Rust SDK at each slot count, on a coordinator and store
        // of its own: the harness learns that the last outcome landed from the queue's depth,
        // and `GET /v1/queues` counts every job of the tenant, W1's 20 000 included, on each
        // poll (docs/postgres-hot-path.md §12) — load of the harness's, not the worker's.
        if *name == "rust-sdk" && ctx.sizes.wants("W3") {
            let started = fresh.start().await?;
            for (slots, jobs) in ctx.sizes.w3_jobs {
                let at = sdk.with_concurrency(slots);
                let bench = started.bench(ctx, &at, &side);
                let mut v = bench.w3(slots, jobs).await;
                v.settings = at.settings();
                v.settings.extend(extra.clone());
                report_failure(&v, name, &started.coord);
                rows.add_variant("leasehold", store, name, v);
            }
            started.end().await?;
        }
    }
    Ok(())
}

impl FreshStore<'_> {
    /// A coordinator over an empty store of this kind.
    async fn start(&self) -> Result<Started<'_>> {
        Ok(match self {
            FreshStore::Sqlite(sync) => {
                let env = [("LEASEHOLD_SQLITE_SYNCHRONOUS", *sync)];
                Started {
                    coord: Coordinator::spawn(None, &env).await?,
                    pg: None,
                }
            }
            FreshStore::Postgres { pg, db } => {
                let (url, schema) = crate::pg::fresh_schema(db).await?;
                Started {
                    coord: Coordinator::spawn(Some(&url), &[]).await?,
                    pg: Some(((*pg).clone(), *db, schema)),
                }
            }
        })
    }
}

/// A coordinator started by [`FreshStore::start`], and on PostgreSQL the server, database
/// and schema it stores in.
struct Started<'a> {
    coord: Coordinator,
    pg: Option<(Pg, &'a str, String)>,
}

impl Started<'_> {
    /// The workloads against this coordinator through `driver`: the worker process is the
    /// worker; the harness only enqueues (before the measurement) and polls the queue's depth.
    fn bench<'b>(
        &self,
        ctx: &Ctx,
        driver: &'b dyn Driver,
        sizes: &'b crate::workloads::Sizes,
    ) -> Bench<'b> {
        Bench {
            producer: Producer {
                http: ctx.http.clone(),
                url: self.coord.url.clone(),
            },
            driver,
            probe: Probe {
                coordinator: self.coord.pid(),
                pg: self.pg.as_ref().map(|(pg, ..)| pg.clone()),
                ..Probe::default()
            },
            sizes,
        }
    }

    /// Stops the coordinator and drops its schema.
    async fn end(self) -> Result<()> {
        drop(self.coord);
        if let Some((_, db, schema)) = self.pg {
            crate::pg::drop_schema(db, &schema).await?;
        }
        Ok(())
    }
}

/// Prints a failed row's error with the coordinator's last log lines.
fn report_failure(v: &crate::workloads::Variant, name: &str, coord: &Coordinator) {
    if let Err(e) = &v.result {
        let log = coord.log();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        eprintln!(
            "  {name} failed: {e:#}; coordinator log (last lines):\n    {}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
        );
    }
}

/// The goal "Python and Go SDKs each ≥ 0.7× the Rust SDK on W1", from the
/// `W1 <store>: <sdk> / rust-sdk` ratios: met when both hold on every store measured.
pub(crate) fn sdk_goal(ratios: &BTreeMap<String, f64>) -> Goal {
    let mut parts = Vec::new();
    let mut met = true;
    for store in [store_sqlite("normal"), store_pg("on")] {
        let get = |d: &str| ratios.get(&format!("W1 {store}: {d} / rust-sdk")).copied();
        let (py, go) = (get("python-sdk"), get("go-sdk"));
        if py.is_none() && go.is_none() {
            continue;
        }
        let show = |v: Option<f64>| v.map_or("not measured".into(), |v| format!("{v:.2}×"));
        parts.push(format!("{store}: Python {}, Go {}", show(py), show(go)));
        met &= py.is_some_and(|v| v >= 0.7) && go.is_some_and(|v| v >= 0.7);
    }
    Goal {
        goal: "Python and Go SDKs each ≥ 0.7× the Rust SDK on W1".into(),
        measured: if parts.is_empty() {
            "not measured in this run".into()
        } else {
            parts.join("; ")
        },
        met: (!parts.is_empty()).then_some(met),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_busy;

    #[test]
    fn the_worker_s_busy_line_becomes_two_notes() {
        let said = parse_busy("busy 93.41 body_ms 10.512");
        assert_eq!(said.get("slots_busy"), Some(&93.41));
        assert_eq!(said.get("body_ms"), Some(&10.512));
        assert!(parse_busy("ready").is_empty());
        assert!(parse_busy("busy x body_ms 1").is_empty());
    }
}
