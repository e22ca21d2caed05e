//! `leasehold jobs list|get|cancel|retry|replay|bulk-cancel`.

use clap::{Args, Subcommand, ValueEnum};
use leasehold_proto::{
    CancellationRequest, CancellationResult, Job, JobList, JobState, ReplayRequest, ReplayResult,
};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use super::error::CliResult;
use super::output::{self, Table};
use super::{Ctx, GlobalArgs};

/// Largest page the server hands out.
const MAX_PAGE: u32 = 500;

/// `leasehold jobs …`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: JobsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// List jobs, newest first.
    List(ListArgs),
    /// Show one job.
    Get {
        /// Job id.
        id: Uuid,
    },
    /// Cancel a job: queued or blocked at once, leased at its worker's next heartbeat.
    /// Cancelling a cancelled job is not an error.
    Cancel {
        /// Job id.
        id: Uuid,
        /// Why; recorded on the job and its event.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send a dead or cancelled job back to `queued` with a fresh attempt budget.
    Retry {
        /// Job id.
        id: Uuid,
    },
    /// Replay dead (or cancelled) jobs by filter, newest first: each goes back to `queued` as
    /// with `retry`. Needs the `orch:backfill` scope, a reason and a ticket, recorded in the
    /// audit trail (`leasehold audit`). Try it with `--dry-run` first.
    Replay(ReplayArgs),
    /// Cancel waiting and running jobs by filter, newest first, as `cancel` does each. Needs a
    /// reason and a ticket, recorded in the audit trail. Try it with `--dry-run` first.
    BulkCancel(BulkCancelArgs),
}

/// The filter `list`, `replay` and `bulk-cancel` share (as `GET /v1/jobs` takes it).
#[derive(Debug, Args)]
pub(crate) struct Selection {
    /// Only this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only this kind (handler name).
    #[arg(long)]
    kind: Option<String>,
    /// Only the jobs of this run.
    #[arg(long = "run")]
    run_id: Option<Uuid>,
    /// Only jobs with this correlation id.
    #[arg(long)]
    correlation_id: Option<String>,
    /// Only jobs enqueued since then: a time ago (`15m`, `24h`, `7d`) or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only jobs enqueued before then: a time ago or an RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
}

impl Selection {
    /// The filter as query parameters.
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        let fields = [
            ("queue", self.queue.clone()),
            ("kind", self.kind.clone()),
            ("run_id", self.run_id.map(|r| r.to_string())),
            ("correlation_id", self.correlation_id.clone()),
            ("since", self.since.clone()),
            ("until", self.until.clone()),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                query.push((name, v));
            }
        }
        query
    }
}

#[derive(Debug, Args)]
pub(crate) struct BulkCancelArgs {
    #[command(flatten)]
    select: Selection,
    /// Only jobs in this state (default: queued, blocked and leased).
    #[arg(long, value_enum)]
    state: Option<WaitingArg>,
    /// At most this many jobs (1 to 10000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    /// Count and list the jobs; change and record nothing.
    #[arg(long)]
    dry_run: bool,
    /// Why (recorded on each job and in the audit trail).
    #[arg(long, required = true)]
    reason: String,
    /// The change ticket (recorded in the audit trail).
    #[arg(long, required = true)]
    ticket: String,
}

/// The states a bulk cancel takes jobs from.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum WaitingArg {
    Queued,
    Blocked,
    Leased,
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    select: Selection,
    /// Which ended jobs.
    #[arg(long, value_enum, default_value_t = EndedArg::Dead)]
    state: EndedArg,
    /// At most this many jobs (1 to 10000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    /// Count and list the jobs; change and record nothing.
    #[arg(long)]
    dry_run: bool,
    /// Why (recorded in the audit trail).
    #[arg(long, required = true)]
    reason: String,
    /// The change ticket (recorded in the audit trail).
    #[arg(long, required = true)]
    ticket: String,
}

/// The ended states a replay takes jobs from.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum EndedArg {
    Dead,
    Cancelled,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    select: Selection,
    /// Only jobs in this state.
    #[arg(long, value_enum)]
    state: Option<StateArg>,
    /// Jobs per page (1 to 500).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PAGE)))]
    limit: u32,
    /// Follow `next_cursor` to the last page.
    #[arg(long)]
    all: bool,
    /// Start after this cursor (the `next_cursor` of an earlier page).
    #[arg(long, conflicts_with = "all")]
    cursor: Option<String>,
}

/// A job state on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum StateArg {
    Blocked,
    Queued,
    Leased,
    Succeeded,
    Dead,
    Cancelled,
}

impl From<StateArg> for JobState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Blocked => Self::Blocked,
            StateArg::Queued => Self::Queued,
            StateArg::Leased => Self::Leased,
            StateArg::Succeeded => Self::Succeeded,
            StateArg::Dead => Self::Dead,
            StateArg::Cancelled => Self::Cancelled,
        }
    }
}

pub(crate) async fn run(ctx: &Ctx, command: JobsCommand) -> CliResult {
    match command {
        JobsCommand::List(args) => list(ctx, args).await,
        JobsCommand::Get { id } => {
            let job: Job = ctx.api.get(&format!("/v1/jobs/{id}")).await?;
            if ctx.json {
                output::print_json(&job)
            } else {
                output::print(&detail(&job))
            }
        }
        JobsCommand::Cancel { id, reason } => {
            let body = match reason {
                Some(reason) => json!({ "reason": reason }),
                None => json!({}),
            };
            let request = ctx
                .api
                .request(Method::POST, &format!("/v1/jobs/{id}/cancel"))
                .json(&body);
            let job: Job = ctx.api.call(request).await?.body;
            if ctx.json {
                return output::print_json(&job);
            }
            let text = match job.state {
                JobState::Cancelled => format!(
                    "job {id} cancelled ({})",
                    output::opt(job.cancel_reason.as_deref())
                ),
                state if job.cancel_requested => format!(
                    "job {id} is {state}: cancel requested; its worker stops at the next heartbeat"
                ),
                state => format!("job {id} is {state}"),
            };
            output::print(&text)
        }
        JobsCommand::Retry { id } => {
            let job: Job = ctx.api.post_empty(&format!("/v1/jobs/{id}/retry")).await?;
            if ctx.json {
                return output::print_json(&job);
            }
            output::print(&format!(
                "job {id} is {} again ({} attempts allowed)",
                job.state, job.max_attempts
            ))
        }
        JobsCommand::Replay(args) => replay(ctx, args).await,
        JobsCommand::BulkCancel(args) => bulk_cancel(ctx, args).await,
    }
}

async fn bulk_cancel(ctx: &Ctx, args: BulkCancelArgs) -> CliResult {
    let Selection {
        queue,
        kind,
        run_id,
        correlation_id,
        since,
        until,
    } = args.select;
    let body = CancellationRequest {
        queue,
        kind,
        state: args.state.map(|s| {
            match s {
                WaitingArg::Queued => "queued",
                WaitingArg::Blocked => "blocked",
                WaitingArg::Leased => "leased",
            }
            .to_owned()
        }),
        run_id,
        correlation_id,
        since,
        until,
        limit: Some(args.limit),
        dry_run: args.dry_run,
        reason: Some(args.reason),
        ticket: Some(args.ticket),
    };
    let result: CancellationResult = ctx
        .api
        .call(
            ctx.api
                .request(Method::POST, "/v1/cancellations")
                .json(&body),
        )
        .await?
        .body;
    if ctx.json {
        return output::print_json(&result);
    }
    report(
        (result.matched, result.cancelled, result.audit_event_id),
        result.dry_run,
        ("cancelled", "cancelled or asked to stop"),
    )
}

/// What a bulk action did, in a line: `(matched, acted, audit event)`; `verbs`: what a dry run
/// would do, what was done.
fn report(
    (matched, acted, audit): (u64, u64, Option<i64>),
    dry_run: bool,
    (would, did): (&str, &str),
) -> CliResult {
    if dry_run {
        return output::print(&format!(
            "dry run: {matched} job(s) would be {would}; nothing changed"
        ));
    }
    let audit = audit.map_or_else(String::new, |id| format!(" (audit event {id})"));
    output::print(&format!("{acted} of {matched} matched job(s) {did}{audit}"))
}

async fn replay(ctx: &Ctx, args: ReplayArgs) -> CliResult {
    let Selection {
        queue,
        kind,
        run_id,
        correlation_id,
        since,
        until,
    } = args.select;
    let body = ReplayRequest {
        queue,
        kind,
        run_id,
        correlation_id,
        since,
        until,
        state: Some(
            match args.state {
                EndedArg::Dead => "dead",
                EndedArg::Cancelled => "cancelled",
            }
            .to_owned(),
        ),
        limit: Some(args.limit),
        dry_run: args.dry_run,
        reason: Some(args.reason),
        ticket: Some(args.ticket),
    };
    let result: ReplayResult = ctx
        .api
        .call(ctx.api.request(Method::POST, "/v1/replays").json(&body))
        .await?
        .body;
    if ctx.json {
        return output::print_json(&result);
    }
    report(
        (result.matched, result.replayed, result.audit_event_id),
        result.dry_run,
        ("replayed", "replayed"),
    )
}

async fn list(ctx: &Ctx, args: ListArgs) -> CliResult {
    let mut query = args.select.query();
    query.push(("limit", args.limit.to_string()));
    if let Some(s) = args.state {
        query.push(("state", JobState::from(s).as_str().to_owned()));
    }
    let mut cursor = args.cursor.clone();
    let mut jobs = Vec::new();
    let next_cursor = loop {
        let mut request = ctx.api.request(Method::GET, "/v1/jobs").query(&query);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let page: JobList = ctx.api.call(request).await?.body;
        jobs.extend(page.jobs);
        match page.next_cursor {
            Some(next) if args.all => cursor = Some(next),
            other => break other,
        }
    };
    if ctx.json {
        return output::print_json(&JobList { jobs, next_cursor });
    }
    let mut table = Table::new(&[
        "ID", "QUEUE", "KIND", "STATE", "ATTEMPTS", "PRIORITY", "CREATED",
    ]);
    for job in &jobs {
        table.row(vec![
            job.id.to_string(),
            job.queue.clone(),
            job.kind.clone(),
            state_label(job),
            format!("{}/{}", job.attempt, job.max_attempts),
            job.priority.to_string(),
            output::time(job.created_at),
        ]);
    }
    if table.is_empty() {
        eprintln!("no jobs match");
        return Ok(());
    }
    output::print(&table.render())?;
    if let Some(next) = next_cursor {
        eprintln!("more jobs: rerun with --all, or with --cursor {next}");
    }
    Ok(())
}

/// The state, marked when a cancel is pending.
fn state_label(job: &Job) -> String {
    if job.cancel_requested && !job.state.is_terminal() {
        format!("{} (cancel requested)", job.state)
    } else {
        job.state.to_string()
    }
}

/// `jobs get` as key/value lines.
fn detail(job: &Job) -> String {
    let mut pairs = vec![
        ("id", job.id.to_string()),
        ("state", state_label(job)),
        ("queue", output::clean(&job.queue)),
        ("kind", output::clean(&job.kind)),
        ("tenant", output::clean(&job.tenant)),
        ("attempts", format!("{}/{}", job.attempt, job.max_attempts)),
        ("priority", job.priority.to_string()),
        ("fencing token", job.fencing_token.to_string()),
        ("created", output::time(job.created_at)),
        ("run at", output::time(job.run_at)),
        ("started", output::opt_time(job.started_at)),
        ("finished", output::opt_time(job.finished_at)),
    ];
    if job.state == JobState::Leased {
        pairs.push(("lease expires", output::opt_time(job.lease_expires_at)));
    }
    pairs.extend([
        ("worker", output::opt(job.worker_id.as_deref())),
        ("worker version", output::opt(job.worker_version.as_deref())),
        (
            "run",
            job.run_id.map_or_else(|| "-".to_owned(), |r| r.to_string()),
        ),
        (
            "idempotency key",
            output::opt(job.idempotency_key.as_deref()),
        ),
        ("correlation id", output::opt(job.correlation_id.as_deref())),
        ("project", output::opt(job.project.as_deref())),
        ("inputs hash", job.inputs_hash.clone()),
    ]);
    if job.cancel_requested || job.cancel_reason.is_some() {
        pairs.push(("cancel reason", output::opt(job.cancel_reason.as_deref())));
    }
    pairs.push(("payload", output::clean(&job.payload.to_string())));
    for (key, value) in [
        ("progress", &job.progress),
        ("checkpoint", &job.checkpoint),
        ("result", &job.result),
        ("last error", &job.last_error),
    ] {
        if let Some(v) = value {
            pairs.push((key, output::clean(&output::compact_json(v))));
        }
    }
    let mut text = output::fields(&pairs);
    if !job.artifacts.is_empty() {
        let mut table = Table::new(&["ARTIFACT", "SIZE", "MEDIA TYPE", "DIGEST"]);
        for a in &job.artifacts {
            table.row(vec![
                a.name.clone(),
                a.size.to_string(),
                a.media_type.clone(),
                a.digest.clone(),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    text
}
