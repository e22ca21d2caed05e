//! `leasehold workers`: the tenant's workers as the coordinators saw them (needs `jobs:read`).

use clap::Args;
use leasehold_proto::WorkerList;

use super::error::CliResult;
use super::output::{self, Table};
use super::{Ctx, GlobalArgs};

/// `leasehold workers [--since T]`.
#[derive(Debug, Args)]
pub struct WorkersArgs {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    /// Only workers seen since then: a time ago (`10m`, `24h`) or an RFC 3339 time (default:
    /// the last hour). Workers holding leases are always listed.
    #[arg(long)]
    since: Option<String>,
}

pub(crate) async fn run(ctx: &Ctx, args: WorkersArgs) -> CliResult {
    let mut path = "/v1/workers".to_owned();
    if let Some(raw) = &args.since {
        let from = super::audit::time_ago("--since", raw, chrono::Utc::now())?;
        path.push_str(&format!("?since={}", super::client::segment(&from)));
    }
    let list: WorkerList = ctx.api.get(&path).await?;
    if ctx.json {
        return output::print_json(&list);
    }
    let mut table = Table::new(&[
        "WORKER",
        "STATE",
        "TRANSPORT",
        "QUEUES",
        "LEASES",
        "LAST SEEN",
        "LAST HEARTBEAT",
    ]);
    for w in &list.workers {
        table.row(vec![
            output::clean(&w.worker_id),
            if w.connected { "connected" } else { "gone" }.to_owned(),
            w.transport.clone(),
            output::clean(&w.queues.join(",")),
            w.leases.to_string(),
            output::time(w.last_seen_at),
            output::opt_time(w.last_heartbeat_at),
        ]);
    }
    if table.is_empty() {
        eprintln!("no workers seen");
        return Ok(());
    }
    output::print(&table.render())
}
