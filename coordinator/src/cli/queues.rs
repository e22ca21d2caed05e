//! `leasehold queues list|pause|resume`.

use clap::{Args, Subcommand};
use leasehold_proto::{QueueInfo, QueueList};

use super::client::segment;
use super::error::CliResult;
use super::output::{self, Table};
use super::{Ctx, GlobalArgs};

/// `leasehold queues …`.
#[derive(Debug, Args)]
pub struct QueuesArgs {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: QueuesCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueuesCommand {
    /// Every queue with its depth per state.
    List,
    /// Stop granting leases from a queue (leases already held run on).
    Pause {
        /// Queue name.
        name: String,
    },
    /// Grant leases from a queue again.
    Resume {
        /// Queue name.
        name: String,
    },
}

pub(crate) async fn run(ctx: &Ctx, command: QueuesCommand) -> CliResult {
    match command {
        QueuesCommand::List => {
            let list: QueueList = ctx.api.get("/v1/queues").await?;
            if ctx.json {
                return output::print_json(&list);
            }
            if list.queues.is_empty() {
                eprintln!("no queues yet");
                return Ok(());
            }
            output::print(&table(&list.queues))
        }
        QueuesCommand::Pause { name } => toggle(ctx, &name, "pause").await,
        QueuesCommand::Resume { name } => toggle(ctx, &name, "resume").await,
    }
}

async fn toggle(ctx: &Ctx, name: &str, action: &str) -> CliResult {
    let info: QueueInfo = ctx
        .api
        .post_empty(&format!("/v1/queues/{}/{action}", segment(name)))
        .await?;
    if ctx.json {
        return output::print_json(&info);
    }
    let what = if info.paused {
        "paused: no new leases"
    } else {
        "active: leases are granted"
    };
    output::print(&format!(
        "queue {} {what}\n\n{}",
        output::clean(&info.name),
        table(std::slice::from_ref(&info))
    ))
}

fn table(queues: &[QueueInfo]) -> String {
    let mut table = Table::new(&[
        "QUEUE",
        "PAUSED",
        "BLOCKED",
        "QUEUED",
        "LEASED",
        "SUCCEEDED",
        "DEAD",
        "CANCELLED",
    ]);
    for q in queues {
        let d = &q.depth;
        table.row(vec![
            q.name.clone(),
            if q.paused { "yes" } else { "no" }.to_owned(),
            d.blocked.to_string(),
            d.queued.to_string(),
            d.leased.to_string(),
            d.succeeded.to_string(),
            d.dead.to_string(),
            d.cancelled.to_string(),
        ]);
    }
    table.render()
}
