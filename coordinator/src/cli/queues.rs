//! `leasehold queues list|pause|resume|settings`.

use clap::{Args, Subcommand};
use leasehold_proto::{QueueInfo, QueueList, QueueSettings};

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
    /// Set a queue's settings: the default run time of one attempt for its jobs that set no
    /// `timeout_ms` of their own (applied from the next claim on). Say which, always: the
    /// settings are replaced as a whole, so a bare `settings NAME` would silently clear them.
    #[command(group(clap::ArgGroup::new("timeout").required(true)))]
    Settings {
        /// Queue name.
        name: String,
        /// Default run time of one attempt, in milliseconds (1000 to 604800000).
        #[arg(long, value_name = "MS", group = "timeout")]
        default_timeout_ms: Option<u64>,
        /// Remove the default run time (jobs then run as long as they heartbeat).
        #[arg(long, group = "timeout")]
        no_default_timeout: bool,
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
        QueuesCommand::Settings {
            name,
            default_timeout_ms,
            no_default_timeout: _,
        } => {
            let settings = QueueSettings { default_timeout_ms };
            let info: QueueInfo = ctx
                .api
                .put_json(
                    &format!("/v1/queues/{}/settings", segment(&name)),
                    &settings,
                )
                .await?;
            if ctx.json {
                return output::print_json(&info);
            }
            let what = match info.default_timeout_ms {
                Some(ms) => format!("attempts run at most {ms} ms unless a job sets its own"),
                None => "no default run time".to_owned(),
            };
            output::print(&format!(
                "queue {} {what}\n\n{}",
                output::clean(&info.name),
                table(std::slice::from_ref(&info))
            ))
        }
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
        "TIMEOUT_MS",
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
            q.default_timeout_ms
                .map_or_else(|| "-".to_owned(), |ms| ms.to_string()),
        ]);
    }
    table.render()
}
