//! The peers' rows: River and pgqueuer on the same PostgreSQL as Leasehold, in the shapes of
//! its workloads — W1 (burn-down), W3 (10 ms jobs at 10 and 100 slots), W4 (open-loop pickup
//! latency) and W5 (single-job inserts at 1 and 16 clients, bulk inserts) — each with the
//! settings it ran with.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::Ctx;
use crate::measure::Probe;
use crate::peers;
use crate::report::Measurement;
use crate::rows::{Rows, store_pg};

/// One W3–W5 variant both peers run: its workload, the driver's arguments, the row's
/// variant label, and W3's slot count (whose flag differs per peer: the caller adds it).
struct Shared {
    workload: &'static str,
    args: Vec<String>,
    variant: String,
    slots: Option<usize>,
}

/// The W3–W5 variants both peers run.
fn shared_variants(ctx: &Ctx) -> Vec<Shared> {
    let s = &ctx.sizes;
    let mut out = Vec::new();
    for (slots, jobs) in s.w3_jobs {
        out.push(Shared {
            workload: "W3",
            args: vec![
                "w3".into(),
                "--jobs".into(),
                jobs.to_string(),
                "--sleep-ms".into(),
                "10".into(),
            ],
            variant: format!("{jobs} jobs × 10 ms, {slots} slots"),
            slots: Some(slots),
        });
    }
    for clients in [1, 16] {
        out.push(Shared {
            workload: "W5",
            args: vec![
                "w5-single".into(),
                "--clients".into(),
                clients.to_string(),
                "--seconds".into(),
                s.w5_secs.to_string(),
            ],
            variant: format!("single-job insert, {clients} client(s)"),
            slots: None,
        });
    }
    for batch in [100, 1000] {
        out.push(Shared {
            workload: "W5",
            args: vec![
                "w5-bulk".into(),
                "--rows".into(),
                s.w5_bulk_rows.to_string(),
                "--batch".into(),
                batch.to_string(),
            ],
            variant: format!("bulk {batch}/request, {} rows", s.w5_bulk_rows),
            slots: None,
        });
    }
    out
}

/// River: W1 through its own `river bench`, W3–W5 through `bench/peers/river` at River's
/// default fetch settings and, for W3 and W4, tuned as `river bench` tunes itself.
pub(crate) async fn river_rows(ctx: &Ctx, rows: &mut Rows) -> Result<()> {
    if ctx.skip("river") {
        return Ok(());
    }
    let sizes = &ctx.sizes;
    let (Some(version), Some(bin), Some(pg), Some(db)) = (
        &ctx.river_ok,
        &ctx.args.river,
        ctx.pg.clone(),
        ctx.river_db.clone(),
    ) else {
        let why = ctx
            .args
            .river
            .as_ref()
            .map_or("no --river binary", |_| "river migrate-up failed");
        for w in ["W1", "W3", "W4", "W5"] {
            rows.not_installed("river", w, why);
        }
        return Ok(());
    };
    for sc in ctx.peer_sc() {
        pg.set_synchronous_commit(&db, sc == "on").await?;
        let probe = Probe {
            pg: Some(pg.clone()),
            reaped_children_are_workers: true,
            ..Probe::default()
        };
        let m = peers::river_bench(bin, &db, sizes.w1_side_jobs, &probe, sizes.patience).await;
        let mut s = BTreeMap::new();
        s.insert("version".into(), version.clone());
        s.insert("synchronous_commit".into(), sc.clone());
        s.insert(
            "client settings".into(),
            "river bench built-ins: MaxWorkers 2000, FetchCooldown 2 ms, \
             FetchPollInterval 20 ms (not adjustable in this CLI version)"
                .into(),
        );
        rows.add(
            "river",
            &store_pg(&sc),
            "river bench -n",
            "W1",
            &format!("{} jobs", sizes.w1_side_jobs),
            s,
            m,
        );
        if sc != "on" {
            continue;
        }
        let Some(peer) = &ctx.args.river_peer else {
            for w in ["W3", "W4", "W5"] {
                rows.not_installed("river", w, "no --river-peer binary");
            }
            continue;
        };
        let probe = Probe {
            pg: Some(pg.clone()),
            ..Probe::default()
        };
        // River's defaults fetch at most every 100 ms; `river bench` runs at 2 ms.
        let tunings: [(&str, &[&str]); 2] = [
            ("defaults", &[]),
            (
                "fetch 2 ms",
                &["--fetch-cooldown-ms", "2", "--fetch-poll-interval-ms", "20"],
            ),
        ];
        let mut variants = shared_variants(ctx);
        for rate in &sizes.w4_rates {
            variants.push(Shared {
                workload: "W4",
                args: vec![
                    "w4".into(),
                    "--rate".into(),
                    rate.to_string(),
                    "--seconds".into(),
                    sizes.w4_secs.to_string(),
                ],
                variant: format!("{rate} jobs/s open loop"),
                slots: None,
            });
        }
        for Shared {
            workload,
            mut args,
            variant,
            slots,
        } in variants
        {
            if let Some(slots) = slots {
                args.extend(["--slots".into(), slots.to_string()]);
            }
            let tuned: &[(&str, &[&str])] = if workload == "W5" {
                &tunings[..1]
            } else {
                &tunings
            };
            for (label, extra) in tuned {
                let mut args = args.clone();
                args.extend(extra.iter().map(|s| (*s).to_owned()));
                let program = [peer.display().to_string()];
                let (m, s) =
                    run_driver(&program, &args, &db, &probe, sizes.patience, version, &sc).await;
                let variant = if workload == "W5" {
                    variant.clone()
                } else {
                    format!("{variant}, {label}")
                };
                rows.add(
                    "river",
                    &store_pg(&sc),
                    "river API",
                    workload,
                    &variant,
                    s,
                    m,
                );
            }
        }
    }
    Ok(())
}

/// pgqueuer through `bench/peers/pgqueuer_bench.py`: W1 at its defaults and at its best
/// settings, W3 at the slot counts, W4 at each rate, W5 single and bulk.
pub(crate) async fn pgqueuer_rows(ctx: &Ctx, rows: &mut Rows) -> Result<()> {
    if ctx.skip("pgqueuer") {
        return Ok(());
    }
    let sizes = &ctx.sizes;
    let (Some(version), Some(python), Some(pg), Some(db)) = (
        &ctx.pgq_ok,
        &ctx.args.python,
        ctx.pg.clone(),
        ctx.pgq_db.clone(),
    ) else {
        let why = if ctx.args.python.is_none() {
            "no --python with pgqueuer"
        } else {
            "pgqueuer import failed"
        };
        for w in ["W1", "W3", "W4", "W5"] {
            rows.not_installed("pgqueuer", w, why);
        }
        return Ok(());
    };
    let program = [
        python.display().to_string(),
        ctx.args.pgqueuer_script.display().to_string(),
    ];
    for sc in ctx.peer_sc() {
        pg.set_synchronous_commit(&db, sc == "on").await?;
        let probe = Probe {
            pg: Some(pg.clone()),
            ..Probe::default()
        };
        for (label, procs, batch) in [("defaults", 1usize, 10usize), ("best", 2, 1000)] {
            let args = [
                "w1".into(),
                "--jobs".into(),
                sizes.w1_side_jobs.to_string(),
                "--processes".into(),
                procs.to_string(),
                "--batch".into(),
                batch.to_string(),
            ];
            let (m, mut s) =
                run_driver(&program, &args, &db, &probe, sizes.patience, version, &sc).await;
            s.insert("processes".into(), procs.to_string());
            s.insert("batch_size".into(), batch.to_string());
            s.insert("durability".into(), "durable (default)".into());
            rows.add(
                "pgqueuer",
                &store_pg(&sc),
                "pgqueuer API",
                "W1",
                &format!(
                    "{} jobs, {label} ({procs} proc × batch {batch})",
                    sizes.w1_side_jobs
                ),
                s,
                m,
            );
        }
        if sc != "on" {
            continue;
        }
        for rate in &sizes.w4_rates {
            let args = [
                "w4".into(),
                "--rate".into(),
                rate.to_string(),
                "--seconds".into(),
                sizes.w4_secs.to_string(),
            ];
            let (m, mut s) =
                run_driver(&program, &args, &db, &probe, sizes.patience, version, &sc).await;
            s.insert("processes".into(), "1 worker + 1 producer".into());
            s.insert("batch_size".into(), "10 (default)".into());
            rows.add(
                "pgqueuer",
                &store_pg(&sc),
                "pgqueuer API",
                "W4",
                &format!("{rate} jobs/s open loop"),
                s,
                m,
            );
        }
        for Shared {
            workload,
            mut args,
            variant,
            slots,
        } in shared_variants(ctx)
        {
            if let Some(slots) = slots {
                args.extend(["--concurrency".into(), slots.to_string()]);
            }
            let (m, s) =
                run_driver(&program, &args, &db, &probe, sizes.patience, version, &sc).await;
            rows.add(
                "pgqueuer",
                &store_pg(&sc),
                "pgqueuer API",
                workload,
                &variant,
                s,
                m,
            );
        }
    }
    Ok(())
}

/// Runs a peer driver (`program`: its command) with `args` on database `db`; its measurement,
/// and its settings with the peer's `version` and the `synchronous_commit` it ran at (no
/// driver settings when it failed).
async fn run_driver(
    program: &[String],
    args: &[String],
    db: &str,
    probe: &Probe,
    patience: std::time::Duration,
    version: &str,
    sc: &str,
) -> (Result<Measurement>, BTreeMap<String, String>) {
    let mut argv = program.to_vec();
    argv.extend(args.iter().cloned());
    argv.extend([
        "--dsn".into(),
        db.into(),
        "--timeout".into(),
        patience.as_secs().to_string(),
    ]);
    let (m, mut settings) = match peers::driver_run(&argv, probe, patience).await {
        Ok((m, s)) => (Ok(m), s),
        Err(e) => (Err(e), BTreeMap::new()),
    };
    settings.insert("version".into(), version.to_owned());
    settings.insert("synchronous_commit".into(), sc.to_owned());
    (m, settings)
}
