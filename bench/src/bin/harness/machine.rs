//! Machine facts for the top of the report: cores, CPU, kernel, memory, PostgreSQL, fsync rate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::Args;
use crate::coord;
use crate::pg::Pg;
use crate::report::Machine;

/// The trimmed contents of a small file (`/proc/…`), empty when unreadable.
pub(crate) fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn find_pg_test_fsync() -> Option<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin/pg_test_fsync")))
        .filter(|p| p.exists())
        .collect();
    v.sort();
    v.pop()
}

/// ops/s of the first `fdatasync` line of `pg_test_fsync -s 1` (one 8 kB write per sync).
fn fsync_rate(bin: &Path, dir: &Path) -> Result<String> {
    let file = dir.join(format!("pg_test_fsync-{}.out", std::process::id()));
    let out = std::process::Command::new(bin)
        .arg("-s")
        .arg("1")
        .arg("-f")
        .arg(&file)
        .output()
        .context("running pg_test_fsync")?;
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    let pick = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| {
                l.split_whitespace()
                    .rev()
                    .nth(3)
                    .and_then(|x| x.parse::<f64>().ok())
            })
    };
    match (pick("fdatasync"), pick("fsync")) {
        (Some(a), Some(b)) => Ok(format!(
            "{a:.0} fdatasync/s, {b:.0} fsync/s (pg_test_fsync -s 1, one 8 kB write per sync)"
        )),
        _ => Ok(format!(
            "could not parse pg_test_fsync output: {}",
            text.lines().take(5).collect::<Vec<_>>().join(" / ")
        )),
    }
}

/// The facts printed above the table.
pub(crate) fn machine_facts(args: &Args, pg: Option<&Pg>) -> Machine {
    let mut f = BTreeMap::new();
    f.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map(|n| n.get().to_string())
            .unwrap_or_default(),
    );
    let cpuinfo = read_trim("/proc/cpuinfo");
    f.insert(
        "cpu".into(),
        cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("?")
            .trim()
            .to_owned(),
    );
    f.insert("kernel".into(), read_trim("/proc/sys/kernel/osrelease"));
    let mem = read_trim("/proc/meminfo");
    if let Some(l) = mem.lines().next() {
        f.insert(
            "memory".into(),
            l.trim_start_matches("MemTotal:").trim().to_owned(),
        );
    }
    f.insert("load average at start".into(), read_trim("/proc/loadavg"));
    let mut bin = coord::coordinator_bin().display().to_string();
    if let Ok(src) = std::env::var("LEASEHOLD_BENCH_COORDINATOR_SOURCE") {
        bin = format!("{bin} (release build of the {src})");
    }
    f.insert("coordinator binary".into(), bin);
    if let Some(pg) = pg {
        f.insert("postgresql".into(), pg.version.clone());
        f.insert(
            "postgresql cluster".into(),
            if pg.private {
                "private to this run (initdb in a temp dir, default settings)".into()
            } else {
                "shared (given URL): CPU counts only live server processes; xid deltas may \
                 include other clients' transactions"
                    .into()
            },
        );
    }
    if !args.skip.iter().any(|s| s == "fsync") && args.mode != "smoke" {
        let bin = args.pg_test_fsync.clone().or_else(find_pg_test_fsync);
        let dir = args.fsync_dir.clone().unwrap_or_else(std::env::temp_dir);
        let v = match bin {
            Some(b) => fsync_rate(&b, &dir).unwrap_or_else(|e| format!("failed: {e:#}")),
            None => "pg_test_fsync not found".into(),
        };
        f.insert("fsync rate".into(), v);
    }
    Machine { facts: f }
}
