//! `leasehold limits list|show|set|delete` and `leasehold limits incidents`: the tenant's
//! flow-control limits (docs/flow-control.md).

use clap::{Args, Subcommand};
use leasehold_proto::{Blackout, BreakerSpec, IncidentList, Limit, LimitList, PutLimit};
use reqwest::Method;

use super::client::segment;
use super::error::{CliError, CliResult};
use super::output::{self, Table};
use super::{Ctx, GlobalArgs};

/// `leasehold limits …`.
#[derive(Debug, Args)]
pub struct LimitsArgs {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: LimitsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LimitsCommand {
    /// Every limit with its buckets now.
    List,
    /// One limit.
    Show {
        /// Its key: `*`, `queue:NAME`, `kind:KIND`, `host:api.example.com`, `host:*`…
        key: String,
    },
    /// Set (or replace) the limit on KEY. Needs the `orch:quota` scope.
    Set {
        /// Its key: `*`, `queue:NAME`, `kind:KIND`, `host:api.example.com`, `host:*`…
        key: String,
        /// Leases per second.
        #[arg(long)]
        rate: Option<f64>,
        /// Leases at once after a quiet spell (default: the rate rounded up).
        #[arg(long)]
        burst: Option<u32>,
        /// Leases held at once.
        #[arg(long)]
        concurrency: Option<u32>,
        /// The rate halves on a worker's `throttled` failure and recovers with time.
        #[arg(long)]
        adaptive: bool,
        /// A circuit breaker: consecutive failures that open it.
        #[arg(long, value_name = "N")]
        breaker_failures: Option<u32>,
        /// The failure classes the breaker counts (repeat; default every class).
        #[arg(
            long = "breaker-class",
            value_name = "CLASS",
            requires = "breaker_failures"
        )]
        breaker_classes: Vec<String>,
        /// How long the breaker stays open before a probe, in milliseconds.
        #[arg(long, value_name = "MS", requires = "breaker_failures")]
        breaker_cooldown_ms: Option<u64>,
        /// A blackout window as JSON, e.g. '{"start":"22:00","end":"06:00","tz":"Europe/Paris"}'
        /// or '{"from":"2026-12-24T00:00:00Z","to":"2026-12-27T00:00:00Z"}' (repeat).
        #[arg(long = "blackout", value_name = "JSON")]
        blackouts: Vec<String>,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        /// The change ticket (recorded in the audit trail).
        #[arg(long)]
        ticket: String,
    },
    /// Remove the limit on KEY. Needs the `orch:quota` scope.
    Delete {
        /// Its key.
        key: String,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        /// The change ticket (recorded in the audit trail).
        #[arg(long)]
        ticket: String,
    },
    /// Circuit breaker openings and closings, oldest first.
    Incidents,
}

pub(crate) async fn run(ctx: &Ctx, command: LimitsCommand) -> CliResult {
    match command {
        LimitsCommand::List => {
            let list: LimitList = ctx.api.get("/v1/limits").await?;
            if ctx.json {
                return output::print_json(&list);
            }
            if list.limits.is_empty() {
                eprintln!("no limits: every ready job is leased when a worker asks");
                return Ok(());
            }
            output::print(&table(&list.limits))
        }
        LimitsCommand::Show { key } => {
            let limit: Limit = ctx
                .api
                .get(&format!("/v1/limits/{}", segment(&key)))
                .await?;
            show(ctx, &limit)
        }
        LimitsCommand::Set {
            key,
            rate,
            burst,
            concurrency,
            adaptive,
            breaker_failures,
            breaker_classes,
            breaker_cooldown_ms,
            blackouts,
            reason,
            ticket,
        } => {
            let blackouts = blackouts
                .iter()
                .map(|raw| {
                    serde_json::from_str::<Blackout>(raw).map_err(|e| {
                        CliError::Usage(format!("--blackout {raw:?} is not a window: {e}"))
                    })
                })
                .collect::<CliResult<Vec<_>>>()?;
            let body = PutLimit {
                rate,
                burst,
                concurrency,
                breaker: breaker_failures.map(|failures| BreakerSpec {
                    failures,
                    classes: breaker_classes,
                    cooldown_ms: breaker_cooldown_ms,
                }),
                blackouts,
                adaptive,
                reason: Some(reason),
                ticket: Some(ticket),
            };
            let limit: Limit = ctx
                .api
                .put_json(&format!("/v1/limits/{}", segment(&key)), &body)
                .await?;
            show(ctx, &limit)
        }
        LimitsCommand::Delete {
            key,
            reason,
            ticket,
        } => {
            let request = ctx
                .api
                .request(Method::DELETE, &format!("/v1/limits/{}", segment(&key)))
                .query(&[("reason", reason), ("ticket", ticket)]);
            ctx.api.send(request).await?;
            if ctx.json {
                return output::print_json(&serde_json::json!({"deleted": key}));
            }
            output::print(&format!("limit {} removed", output::clean(&key)))
        }
        LimitsCommand::Incidents => {
            let list: IncidentList = ctx.api.get("/v1/incidents").await?;
            if ctx.json {
                return output::print_json(&list);
            }
            if list.events.is_empty() {
                eprintln!("no incidents: no breaker has opened");
                return Ok(());
            }
            let mut table = Table::new(&["AT", "LIMIT", "BUCKET", "STATE", "FAILURES", "JOB"]);
            for e in &list.events {
                let text = |k: &str| e.data[k].as_str().unwrap_or("-").to_owned();
                table.row(vec![
                    output::time(e.at),
                    text("limit"),
                    text("bucket"),
                    text("state"),
                    e.data["failures"].to_string(),
                    text("job_id"),
                ]);
            }
            output::print(&table.render())
        }
    }
}

fn show(ctx: &Ctx, limit: &Limit) -> CliResult {
    if ctx.json {
        return output::print_json(limit);
    }
    let mut text = table(std::slice::from_ref(limit));
    if !limit.buckets.is_empty() {
        let mut buckets = Table::new(&[
            "BUCKET", "TOKENS", "RATE_NOW", "LEASED", "BREAKER", "FAILURES",
        ]);
        for b in &limit.buckets {
            let num = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v}"));
            buckets.row(vec![
                b.bucket.clone(),
                num(b.tokens),
                num(b.effective_rate),
                b.leased.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                b.breaker
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |s| s.state.clone()),
                b.breaker
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |s| s.failures.to_string()),
            ]);
        }
        text = format!("{text}\n\n{}", buckets.render());
    }
    output::print(&text)
}

fn table(limits: &[Limit]) -> String {
    let mut table = Table::new(&[
        "KEY",
        "RATE",
        "BURST",
        "ADAPTIVE",
        "CONCURRENCY",
        "BREAKER",
        "BLACKOUTS",
        "BLACKOUT_UNTIL",
    ]);
    for l in limits {
        let dash = || "-".to_owned();
        table.row(vec![
            l.key.clone(),
            l.rate.map_or_else(dash, |r| format!("{r}/s")),
            l.burst.map_or_else(dash, |b| b.to_string()),
            if l.adaptive { "yes" } else { "no" }.to_owned(),
            l.concurrency.map_or_else(dash, |c| c.to_string()),
            l.breaker.as_ref().map_or_else(dash, |b| {
                format!(
                    "{} fails, {} ms",
                    b.failures,
                    b.cooldown_ms.unwrap_or_default()
                )
            }),
            l.blackouts.len().to_string(),
            output::opt_time(l.blackout_until),
        ]);
    }
    table.render()
}
