//! Leasehold's benchmark harness (issue 7): W1–W5 over HTTP on SQLite and PostgreSQL, the
//! raw-SQL ceiling, and the peers (River's `river bench`, pgqueuer through its public API),
//! in one run; writes `bench/results/latest-<mode>.{json,md}` and its SVG charts, and prints
//! the Markdown table.
//!
//! Normally started by `bench/run`, which provides PostgreSQL, the release coordinator and the
//! peers. See bench/README.md for every knob. Without running anything:
//!
//! - `harness chart FILE.json…`: the charts of existing results, written beside them;
//! - `harness check-baseline RESULTS.json [BASELINE.json]`: the W1 ratio guard on a results file;
//! - `harness baseline [--floor-factor F] [--note TEXT] RESULTS.json…`: a new baseline (stdout)
//!   from results files, with the spread of the ratios (stderr).

mod ceiling;
mod charts;
mod coord;
mod dag;
mod driver;
mod fairness;
mod goals;
mod limited;
mod machine;
mod measure;
mod peer_goals;
mod peer_rows;
mod peers;
mod pg;
mod report;
mod rows;
mod sdk_driver;
mod workloads;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

use crate::coord::Coordinator;
use crate::driver::{Driver, RawHttp};
use crate::goals::{Baseline, check_baseline, ratios_and_goals};
use crate::machine::{machine_facts, read_trim};
use crate::measure::Probe;
use crate::pg::Pg;
use crate::report::{Report, Row};
use crate::rows::{Rows, store_pg, store_sqlite};
use crate::workloads::{Bench, EnqueueVia, Producer, Sizes, Variant};

#[derive(Debug, Parser)]
// A flag given twice takes its last value, so that `bench/run … --out DIR` overrides bench/run's.
#[command(
    about = "Leasehold benchmark harness (see bench/README.md)",
    args_override_self = true
)]
struct Args {
    /// `smoke` (tiny sizes, every row once), `quick` (< 5 min) or `full` (5 runs).
    #[arg(long, default_value = "quick")]
    mode: String,
    /// Runs per row (default: 5 in full mode, else 1).
    #[arg(long)]
    runs: Option<usize>,
    /// Admin URL of the PostgreSQL to use (must be allowed to create databases).
    #[arg(long, env = "LEASEHOLD_BENCH_DATABASE_URL")]
    pg_url: Option<String>,
    /// The PostgreSQL cluster was made for this run (CPU of exited backends is then counted).
    #[arg(long)]
    pg_private: bool,
    /// `river` CLI binary; River rows are "not installed" without it.
    #[arg(long)]
    river: Option<PathBuf>,
    /// River driver over its Go API (`bench/peers/river`, built by bench/run); River's W3–W5
    /// rows are "not installed" without it.
    #[arg(long)]
    river_peer: Option<PathBuf>,
    /// Python of the venv holding pgqueuer; pgqueuer rows are "not installed" without it.
    #[arg(long)]
    python: Option<PathBuf>,
    /// The pgqueuer driver script.
    #[arg(long, default_value = "bench/peers/pgqueuer_bench.py")]
    pgqueuer_script: PathBuf,
    /// Where to write results.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// SQLite durability settings to run.
    #[arg(long, value_delimiter = ',', default_value = "normal,full")]
    sqlite_synchronous: Vec<String>,
    /// PostgreSQL `synchronous_commit` settings to run.
    #[arg(long, value_delimiter = ',', default_value = "on,off")]
    pg_synchronous_commit: Vec<String>,
    /// Rust SDK no-op worker (`sdk_noop`, release); its W1 rows are "not installed" without it.
    #[arg(long)]
    sdk_rust: Option<PathBuf>,
    /// Python with the `leasehold` SDK installed; python-sdk rows are "not installed" without it.
    #[arg(long)]
    sdk_python: Option<PathBuf>,
    /// The Python SDK no-op worker script.
    #[arg(long, default_value = "bench/sdk_noop.py")]
    sdk_python_script: PathBuf,
    /// Go SDK no-op worker (`sdk-c/go/cmd/leasehold-noop`, linked against the release C
    /// library); go-sdk rows are "not installed" without it.
    #[arg(long)]
    sdk_go: Option<PathBuf>,
    /// `concurrency` of the SDK workers: enough slots for claims of the same order as the
    /// raw-HTTP driver's (the SDK grants a quarter of its slots per credit message).
    #[arg(long, default_value_t = 256)]
    sdk_concurrency: usize,
    /// Skip these parts (comma list of: sqlite, postgres, sdk, ceiling, river, pgqueuer, fsync).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Run only these Leasehold workloads (comma list of W1…W9; default: all). Peer and ceiling
    /// rows are controlled by `--skip`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Directory on the database's filesystem for `pg_test_fsync` (default: the temp dir).
    #[arg(long)]
    fsync_dir: Option<PathBuf>,
    /// `pg_test_fsync` binary (default: the newest under /usr/lib/postgresql).
    #[arg(long)]
    pg_test_fsync: Option<PathBuf>,
    /// W1's job count for the raw-HTTP and ceiling rows (default: the mode's).
    #[arg(long)]
    w1_jobs: Option<u64>,
    /// Fail when W1's leasehold/ceiling ratio falls below this baseline's floor (bench/run
    /// passes bench/baseline.json in smoke mode).
    #[arg(long)]
    baseline: Option<PathBuf>,
}

#[allow(clippy::too_many_arguments)]
async fn leasehold_rows(
    rows: &mut Rows,
    store: &str,
    coord: &Coordinator,
    pg: Option<&Pg>,
    driver: &dyn Driver,
    sizes: &Sizes,
    http: &reqwest::Client,
    extra: &BTreeMap<String, String>,
) {
    let probe = Probe {
        coordinator: coord.pid(),
        pg: pg.cloned(),
        harness_is_worker: true,
        ..Probe::default()
    };
    let bench = Bench {
        producer: Producer {
            http: http.clone(),
            url: coord.url.clone(),
        },
        driver,
        probe,
        sizes,
    };
    let name = driver.name();
    let with = |mut v: Variant| {
        v.settings.extend(extra.clone());
        v
    };
    if sizes.wants("W1") {
        for _ in 0..sizes.w1_repeats {
            rows.add_variant("leasehold", store, &name, with(bench.w1().await));
        }
    }
    if sizes.wants("W2") {
        rows.add_variant("leasehold", store, &name, with(bench.w2().await));
    }
    if sizes.wants("W3") {
        for (slots, jobs) in sizes.w3_jobs {
            rows.add_variant("leasehold", store, &name, with(bench.w3(slots, jobs).await));
        }
    }
    if sizes.wants("W4") {
        for rate in &sizes.w4_rates {
            rows.add_variant("leasehold", store, &name, with(bench.w4(*rate).await));
        }
    }
    if sizes.wants("W5") {
        for clients in [1, 16] {
            let v = bench.w5_single(clients, EnqueueVia::RawHttp).await;
            rows.add_variant("leasehold", store, &name, with(v));
        }
        // The same enqueues through the Rust SDK's client, once per store (with the raw-HTTP
        // row: enqueues do not depend on the driver that works the jobs).
        if name == "raw-http" {
            for clients in [1, 16] {
                let v = bench.w5_single(clients, EnqueueVia::RustSdk).await;
                rows.add_variant("leasehold", store, "rust-sdk", with(v));
            }
        }
        for batch in [100, 1000] {
            rows.add_variant("leasehold", store, &name, with(bench.w5_bulk(batch).await));
        }
    }
    if sizes.w6_big > 0 && sizes.wants("W6") {
        rows.add_variant("leasehold", store, &name, with(bench.w6().await));
    }
    if sizes.wants("W7") {
        rows.add_variant("leasehold", store, &name, with(bench.w7_dag_steps().await));
    }
    if sizes.wants("W8") {
        rows.add_variant("leasehold", store, &name, with(bench.w8_limited().await));
    }
    // W9 runs its own raw-HTTP pool workers: once per store, with the raw-HTTP row.
    if sizes.wants("W9") && name == "raw-http" {
        for v in bench.w9_fairness().await {
            rows.add_variant("leasehold", store, &name, with(v));
        }
    }
    let failed = rows
        .rows
        .iter()
        .any(|r| r.store == store && r.status.starts_with("failed"));
    if failed {
        let log = coord.log();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        eprintln!(
            "  coordinator log (last lines):\n    {}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
        );
    }
}

struct Ctx {
    args: Args,
    sizes: Sizes,
    http: reqwest::Client,
    pg: Option<Pg>,
    lh_db: Option<String>,
    river_db: Option<String>,
    pgq_db: Option<String>,
    river_ok: Option<String>,
    pgq_ok: Option<String>,
    /// Each SDK's no-op worker, or why it is not installed.
    sdks: Vec<(&'static str, Result<sdk_driver::SdkWorker, String>)>,
    notes: Vec<String>,
}

impl Ctx {
    fn skip(&self, part: &str) -> bool {
        self.args.skip.iter().any(|s| s == part)
    }

    /// `synchronous_commit` settings for the peer rows: all of them in full mode; in quick mode
    /// only `on` (the goals are stated for it), to stay within the time budget.
    fn peer_sc(&self) -> Vec<String> {
        let all = self.args.pg_synchronous_commit.clone();
        if self.args.mode == "quick" && all.iter().any(|s| s == "on") {
            vec!["on".into()]
        } else {
            all
        }
    }
}

async fn run_once(ctx: &mut Ctx, rows: &mut Rows, run: usize) -> Result<()> {
    let driver = RawHttp {
        http: ctx.http.clone(),
    };
    let sizes = ctx.sizes.clone();
    // --- Leasehold on SQLite ---
    if !ctx.skip("sqlite") {
        for sync in ctx.args.sqlite_synchronous.clone() {
            let store = store_sqlite(&sync);
            eprintln!("run {run}: leasehold on {store}");
            let coord =
                Coordinator::spawn(None, &[("LEASEHOLD_SQLITE_SYNCHRONOUS", sync.as_str())])
                    .await?;
            let mut extra = BTreeMap::new();
            extra.insert("sqlite_synchronous".into(), sync.clone());
            extra.insert("journal_mode".into(), "WAL".into());
            leasehold_rows(
                rows, &store, &coord, None, &driver, &sizes, &ctx.http, &extra,
            )
            .await;
            drop(coord);
            if sync == "normal" {
                let fresh = sdk_driver::FreshStore::Sqlite(&sync);
                sdk_driver::sdk_rows(ctx, rows, run, &store, fresh, &extra).await?;
            }
        }
    }
    // --- Leasehold on PostgreSQL ---
    if let (Some(pg), Some(db)) = (ctx.pg.clone(), ctx.lh_db.clone())
        && !ctx.skip("postgres")
    {
        for sc in ctx.args.pg_synchronous_commit.clone() {
            let store = store_pg(&sc);
            eprintln!("run {run}: leasehold on {store}");
            pg.set_synchronous_commit(&db, sc == "on").await?;
            let (url, schema) = pg::fresh_schema(&db).await?;
            let coord = Coordinator::spawn(Some(&url), &[]).await?;
            let mut extra = BTreeMap::new();
            extra.insert("synchronous_commit".into(), sc.clone());
            leasehold_rows(
                rows,
                &store,
                &coord,
                Some(&pg),
                &driver,
                &sizes,
                &ctx.http,
                &extra,
            )
            .await;
            drop(coord);
            pg::drop_schema(&db, &schema).await?;
            if sc == "on" {
                let fresh = sdk_driver::FreshStore::Postgres { pg: &pg, db: &db };
                sdk_driver::sdk_rows(ctx, rows, run, &store, fresh, &extra).await?;
            }
        }
    }
    // --- Ceiling ---
    if !ctx.skip("ceiling") {
        let variant = format!(
            "{} jobs, {}×{}",
            sizes.w1_jobs, sizes.w1_claimers, sizes.w1_batch
        );
        if !ctx.skip("sqlite") {
            for (sync, _) in ctx
                .args
                .sqlite_synchronous
                .clone()
                .into_iter()
                .flat_map(|s| (0..sizes.w1_repeats).map(move |i| (s.clone(), i)))
            {
                let dir = std::env::temp_dir().join(format!(
                    "leasehold-bench-ceiling-{}",
                    uuid::Uuid::new_v4().simple()
                ));
                std::fs::create_dir_all(&dir)?;
                let probe = Probe {
                    harness_is_worker: true,
                    ..Probe::default()
                };
                let m =
                    ceiling::sqlite(&dir, sync == "full", sizes.w1_jobs, sizes.w1_batch, &probe)
                        .await;
                let _ = std::fs::remove_dir_all(&dir);
                let mut s = BTreeMap::new();
                s.insert("sqlite_synchronous".into(), sync.clone());
                s.insert("claim_batch".into(), sizes.w1_batch.to_string());
                s.insert("loops".into(), "1 (single writer)".into());
                rows.add(
                    "ceiling",
                    &store_sqlite(&sync),
                    "raw-sql",
                    "W1",
                    &variant,
                    s,
                    m,
                );
            }
        }
        if let (Some(pg), Some(db)) = (ctx.pg.clone(), ctx.lh_db.clone()) {
            for (sc, _) in ctx
                .args
                .pg_synchronous_commit
                .clone()
                .into_iter()
                .flat_map(|s| (0..sizes.w1_repeats).map(move |i| (s.clone(), i)))
            {
                pg.set_synchronous_commit(&db, sc == "on").await?;
                let (url, schema) = pg::fresh_schema(&db).await?;
                let probe = Probe {
                    pg: Some(pg.clone()),
                    harness_is_worker: true,
                    ..Probe::default()
                };
                let m = ceiling::postgres(
                    &url,
                    sizes.w1_jobs,
                    sizes.w1_claimers,
                    sizes.w1_batch,
                    &probe,
                    sizes.patience,
                )
                .await;
                pg::drop_schema(&db, &schema).await?;
                let mut s = BTreeMap::new();
                s.insert("synchronous_commit".into(), sc.clone());
                s.insert("claim_batch".into(), sizes.w1_batch.to_string());
                s.insert("loops".into(), sizes.w1_claimers.to_string());
                rows.add("ceiling", &store_pg(&sc), "raw-sql", "W1", &variant, s, m);
            }
        }
    }
    peer_rows::river_rows(ctx, rows).await?;
    peer_rows::pgqueuer_rows(ctx, rows).await?;
    Ok(())
}

/// The W1 ratio guard: prints one line per store on stderr; false when one is below its floor.
fn guard(report: &Report, path: &std::path::Path) -> Result<bool> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the baseline {}: {e}", path.display()))?;
    let baseline: Baseline = serde_json::from_str(&text)?;
    let (lines, ok) = check_baseline(report, &baseline);
    for l in lines {
        eprintln!("{l}");
    }
    Ok(ok)
}

fn read_report(path: &std::path::Path) -> Result<Report> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a harness report: {e}", path.display()))
}

/// `harness baseline [--floor-factor F] [--note TEXT] RESULTS.json…`
fn baseline_command(args: &[String]) -> Result<()> {
    let mut floor_factor = 0.5;
    let mut measured = BTreeMap::new();
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--floor-factor" => {
                floor_factor = it.next().map(|v| v.parse()).transpose()?.unwrap_or(0.5);
            }
            "--note" => {
                measured.insert("note".into(), it.next().cloned().unwrap_or_default());
            }
            f => files.push(PathBuf::from(f)),
        }
    }
    let reports = files
        .iter()
        .map(|f| read_report(f))
        .collect::<Result<Vec<_>>>()?;
    if let Some(first) = reports.first() {
        for k in ["coordinator binary", "cores", "cpu"] {
            if let Some(v) = first.machine.facts.get(k) {
                measured.insert(k.into(), v.clone());
            }
        }
    }
    measured.insert(
        "results".into(),
        reports
            .iter()
            .map(|r| format!("{} mode, {} run(s), {}", r.mode, r.runs, r.started_at))
            .collect::<Vec<_>>()
            .join("; "),
    );
    measured.insert(
        "date".into(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
    );
    let b = goals::make_baseline(&reports, floor_factor, measured)?;
    for (store, s) in &b.stores {
        let min = s.runs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = s.runs.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "W1 leasehold/ceiling {store}: {} runs, median {:.3}, min {min:.3} ({:.2}× the median), max {max:.3} ({:.2}×); floor {:.3}",
            s.runs.len(),
            s.ratio,
            min / s.ratio,
            max / s.ratio,
            s.ratio * floor_factor
        );
    }
    println!("{}", serde_json::to_string_pretty(&b)?);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("chart") => {
            let files: Vec<PathBuf> = argv[2..].iter().map(PathBuf::from).collect();
            return charts::chart_files(&files);
        }
        Some("check-baseline") => {
            let results = argv.get(2).ok_or_else(|| {
                anyhow::anyhow!("usage: harness check-baseline RESULTS.json [BASELINE.json]")
            })?;
            let baseline = argv.get(3).map_or("bench/baseline.json", String::as_str);
            let report = read_report(std::path::Path::new(results))?;
            anyhow::ensure!(
                guard(&report, std::path::Path::new(baseline))?,
                "W1's leasehold/ceiling ratio is below the floor of {baseline}"
            );
            return Ok(());
        }
        Some("baseline") => return baseline_command(&argv[2..]),
        _ => {}
    }
    let args = Args::parse();
    let runs = args.runs.unwrap_or(if args.mode == "full" { 5 } else { 1 });
    let mut sizes = Sizes::for_mode(&args.mode);
    sizes.only = args.only.clone();
    if let Some(n) = args.w1_jobs {
        sizes.w1_jobs = n;
    }
    let started_at = chrono::Utc::now();
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .build()?;
    let mut notes = Vec::new();
    let pg = match &args.pg_url {
        Some(url) => Some(Pg::open(url, args.pg_private).await?),
        None => {
            notes.push(
                "no PostgreSQL URL: PostgreSQL, ceiling-PostgreSQL and peer rows skipped".into(),
            );
            None
        }
    };
    let mut ctx = Ctx {
        sizes,
        http,
        pg: pg.clone(),
        lh_db: None,
        river_db: None,
        pgq_db: None,
        river_ok: None,
        pgq_ok: None,
        sdks: Vec::new(),
        notes,
        args,
    };
    if let Some(pg) = &pg {
        for (slot, name) in [
            (&mut ctx.lh_db, "leasehold_bench"),
            (&mut ctx.river_db, "leasehold_bench_river"),
            (&mut ctx.pgq_db, "leasehold_bench_pgqueuer"),
        ] {
            let (url, note) = pg.fresh_database(name).await?;
            if let Some(n) = note {
                ctx.notes.push(n);
            }
            *slot = Some(url);
        }
        for s in [
            "fsync",
            "synchronous_commit",
            "shared_buffers",
            "wal_sync_method",
            "max_connections",
        ] {
            if let Ok(v) = pg.setting(s).await {
                ctx.notes
                    .push(format!("PostgreSQL server setting {s} = {v}"));
            }
        }
    }
    // Peers: check they work before the runs.
    if let (Some(bin), Some(db)) = (&ctx.args.river, &ctx.river_db)
        && !ctx.skip("river")
    {
        match peers::river_migrate(bin, db).await {
            Ok(()) => {
                let v = std::process::Command::new(bin)
                    .arg("version")
                    .output()
                    .ok()
                    .and_then(|o| String::from_utf8(o.stdout).ok())
                    .and_then(|s| s.lines().next().map(str::to_owned))
                    .unwrap_or_else(|| "?".into());
                ctx.river_ok = Some(v);
            }
            Err(e) => ctx.notes.push(format!("river migrate-up failed: {e:#}")),
        }
    }
    if let Some(python) = &ctx.args.python
        && !ctx.skip("pgqueuer")
    {
        match peers::pgqueuer_version(python, &ctx.args.pgqueuer_script).await {
            Ok(v) => ctx.pgq_ok = Some(format!("pgqueuer {v}")),
            Err(e) => ctx
                .notes
                .push(format!("pgqueuer driver failed to start: {e:#}")),
        }
    }
    if !ctx.skip("sdk") {
        let paths = sdk_driver::SdkPaths {
            rust: ctx.args.sdk_rust.clone(),
            python: ctx.args.sdk_python.clone(),
            python_script: ctx.args.sdk_python_script.clone(),
            go: ctx.args.sdk_go.clone(),
            concurrency: ctx.args.sdk_concurrency,
        };
        ctx.sdks = sdk_driver::sdk_workers(&paths, &ctx.http).await;
    }
    let machine = machine_facts(&ctx.args, pg.as_ref());
    let mut rows = Rows::default();
    for run in 1..=runs {
        run_once(&mut ctx, &mut rows, run).await?;
    }
    let mut report = Report {
        mode: ctx.args.mode.clone(),
        runs,
        started_at: started_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        machine,
        rows: Vec::new(),
        ratios: BTreeMap::new(),
        goals: Vec::new(),
        notes: ctx.notes.clone(),
    };
    ratios_and_goals(&rows, &mut report);
    peer_goals::peer_goals(&rows, &mut report);
    report.notes.push(format!(
        "load average at end: {} (2 cores; other work on the machine shows up as noise)",
        read_trim("/proc/loadavg")
    ));
    report.rows = rows.rows;
    let md = report.markdown();
    // Only the latest run of each mode is kept (earlier ones are in git's history).
    std::fs::create_dir_all(&ctx.args.out)?;
    let stem = format!("latest-{}", report.mode);
    let base = ctx.args.out.join(&stem);
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(base.with_extension("md"), &md)?;
    let svgs = charts::write_charts(&ctx.args.out, &stem, &charts::report_charts(&report))?;
    println!("{md}");
    eprintln!(
        "wrote {}.{{json,md}} and {} chart(s) {}-*.svg",
        base.display(),
        svgs.len(),
        base.display()
    );
    let guard_ok = match &ctx.args.baseline {
        Some(path) => guard(&report, path)?,
        None => true,
    };
    let failed: Vec<&Row> = report
        .rows
        .iter()
        .filter(|r| r.status.starts_with("failed"))
        .collect();
    anyhow::ensure!(
        guard_ok,
        "W1's leasehold/ceiling ratio is below the floor of {} (see above)",
        ctx.args.baseline.unwrap_or_default().display()
    );
    if !failed.is_empty() {
        anyhow::bail!(
            "{} row(s) failed: {}",
            failed.len(),
            failed
                .iter()
                .map(|r| r.key.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}
