//! `leasehold stats`, `leasehold failures`, `leasehold slo`: what happened to the tenant's jobs
//! over time, rolled up from the ledger (reading needs `jobs:read`; setting objectives `admin`).

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use leasehold_proto::{FailureClasses, JobStats, QueueSlo, SloMeasure, SloObjective, SloReport};
use reqwest::Method;

use super::error::CliResult;
use super::output::{self, Table};
use super::{Ctx, GlobalArgs};

/// `leasehold stats [--since T] [--queue Q] [--by-minute]`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    /// From then to now: a time ago (`15m`, `6h`, at most `8d`) or an RFC 3339 time.
    #[arg(long, default_value = "1h")]
    since: String,
    /// Only this queue.
    #[arg(long)]
    queue: Option<String>,
    /// One line per minute and queue instead of a total per queue.
    #[arg(long)]
    by_minute: bool,
}

/// `leasehold failures [--since T] [--queue Q] [--limit N]`.
#[derive(Debug, Args)]
pub struct FailuresArgs {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    /// From then to now: a time ago (`24h`, at most `8d`) or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    since: String,
    /// Only this queue.
    #[arg(long)]
    queue: Option<String>,
    /// At most this many classes (1 to 500).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=500))]
    limit: u32,
}

/// `leasehold slo …`.
#[derive(Debug, Args)]
pub struct SloArgs {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: SloCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SloCommand {
    /// Each queue's objectives, the share met and how fast the error budget burns.
    List {
        /// The window measured: a span from `1m` to `7d`.
        #[arg(long, default_value = "1h")]
        window: String,
    },
    /// Set a queue's objectives (`*`: the tenant's default), replaced whole. Needs `admin`.
    Set {
        /// The queue, or `*`.
        queue: String,
        /// Share of ended jobs that must succeed (0.5 to 0.99999).
        #[arg(long, default_value_t = 0.99)]
        success: f64,
        /// Pickup latency objective in milliseconds (10, 50, 100, 250, 500, 1000, 2500, 5000,
        /// 10000, 30000, 60000 or 300000).
        #[arg(long, default_value_t = 1000)]
        pickup_ms: u64,
        /// Share of leases that must come within `--pickup-ms` (0.5 to 0.99999).
        #[arg(long, default_value_t = 0.99)]
        pickup_ratio: f64,
    },
    /// Remove a queue's objectives (it follows the tenant's, or the defaults). Needs `admin`.
    Delete {
        /// The queue, or `*`.
        queue: String,
    },
}

pub(crate) async fn stats(ctx: &Ctx, args: StatsArgs) -> CliResult {
    let mut query = vec![("since", args.since)];
    if let Some(q) = args.queue {
        query.push(("queue", q));
    }
    let request = ctx.api.request(Method::GET, "/v1/stats").query(&query);
    let stats: JobStats = ctx.api.call(request).await?.body;
    if ctx.json {
        return output::print_json(&stats);
    }
    let headers = ["LEASED", "SUCCEEDED", "FAILED", "DEAD", "CANCELLED"];
    let counts =
        |p: &leasehold_proto::StatsPoint| [p.leased, p.succeeded, p.failed, p.dead, p.cancelled];
    let table = if args.by_minute {
        let mut t = Table::new(&[
            "MINUTE", "QUEUE", headers[0], headers[1], headers[2], headers[3], headers[4],
        ]);
        for p in &stats.points {
            let mut row = vec![output::time(p.at), output::clean(&p.queue)];
            row.extend(counts(p).iter().map(u64::to_string));
            t.row(row);
        }
        t
    } else {
        let mut totals: BTreeMap<&str, [u64; 5]> = BTreeMap::new();
        for p in &stats.points {
            let sum = totals.entry(p.queue.as_str()).or_default();
            for (s, n) in sum.iter_mut().zip(counts(p)) {
                *s += n;
            }
        }
        let mut t = Table::new(&[
            "QUEUE", headers[0], headers[1], headers[2], headers[3], headers[4],
        ]);
        for (queue, sum) in totals {
            let mut row = vec![output::clean(queue)];
            row.extend(sum.iter().map(u64::to_string));
            t.row(row);
        }
        t
    };
    if table.is_empty() {
        eprintln!("nothing happened since {}", output::time(stats.since));
        return Ok(());
    }
    output::print(&table.render())
}

pub(crate) async fn failures(ctx: &Ctx, args: FailuresArgs) -> CliResult {
    let mut query = vec![("since", args.since), ("limit", args.limit.to_string())];
    if let Some(q) = args.queue {
        query.push(("queue", q));
    }
    let request = ctx.api.request(Method::GET, "/v1/failures").query(&query);
    let list: FailureClasses = ctx.api.call(request).await?.body;
    if ctx.json {
        return output::print_json(&list);
    }
    let mut table = Table::new(&["QUEUE", "CLASS", "COUNT", "LAST"]);
    for f in &list.classes {
        table.row(vec![
            output::clean(&f.queue),
            output::clean(&f.class),
            f.count.to_string(),
            output::time(f.last_at),
        ]);
    }
    if table.is_empty() {
        eprintln!("no failed attempts since {}", output::time(list.since));
        return Ok(());
    }
    output::print(&table.render())
}

fn share(m: &SloMeasure) -> String {
    match (m.ratio, m.burn_rate) {
        (Some(ratio), Some(burn)) => {
            format!("{:.2}% of {} (burn {burn:.2}x)", ratio * 100.0, m.total)
        }
        _ => "-".to_owned(),
    }
}

fn objective(o: &SloObjective) -> String {
    format!(
        "{}% ok; {}% within {} ms",
        o.success_ratio * 100.0,
        o.pickup_ratio * 100.0,
        o.pickup_ms
    )
}

pub(crate) async fn slo(ctx: &Ctx, command: SloCommand) -> CliResult {
    match command {
        SloCommand::List { window } => {
            let request = ctx
                .api
                .request(Method::GET, "/v1/slo")
                .query(&[("window", window)]);
            let report: SloReport = ctx.api.call(request).await?.body;
            if ctx.json {
                return output::print_json(&report);
            }
            let mut table = Table::new(&[
                "QUEUE",
                "OBJECTIVE",
                "SET",
                "SUCCEEDED",
                "PICKED UP IN TIME",
            ]);
            for q in &report.queues {
                table.row(row(q));
            }
            if table.is_empty() {
                eprintln!("no queue had jobs in the window");
                return Ok(());
            }
            output::print(&table.render())
        }
        SloCommand::Set {
            queue,
            success,
            pickup_ms,
            pickup_ratio,
        } => {
            let body = SloObjective {
                success_ratio: success,
                pickup_ms,
                pickup_ratio,
            };
            let path = format!("/v1/slo/{}", super::client::segment(&queue));
            let set: SloObjective = ctx.api.put_json(&path, &body).await?;
            if ctx.json {
                return output::print_json(&set);
            }
            output::print(&format!("{queue}: {}", objective(&set)))
        }
        SloCommand::Delete { queue } => {
            let path = format!("/v1/slo/{}", super::client::segment(&queue));
            ctx.api.send(ctx.api.request(Method::DELETE, &path)).await?;
            if ctx.json {
                return output::print_json(&serde_json::json!({"deleted": true}));
            }
            output::print(&format!("{queue}: objectives removed"))
        }
    }
}

fn row(q: &QueueSlo) -> Vec<String> {
    vec![
        output::clean(&q.queue),
        objective(&q.objective),
        if q.configured { "set" } else { "default" }.to_owned(),
        share(&q.success),
        share(&q.pickup),
    ]
}
