//! The operator CLI: `leasehold jobs|queues|quota|run|events|ledger|keys|audit …`, a client of
//! the HTTP API.
//!
//! Every command talks to a running coordinator (`--url`, `LEASEHOLD_URL`, default
//! `http://127.0.0.1:7070`) with the API key from `LEASEHOLD_API_KEY` or
//! `ORCHESTRATOR_API_KEY` and the tenant from `LEASEHOLD_TENANT`. Output is a human table by
//! default and JSON with `--json`, always on stdout; diagnostics go to stderr. Exit codes: 0 ok,
//! 1 the server answered an error, 2 usage or local error, 3 cannot connect, 4 a ledger export
//! or the ledger archive did not verify, 130 interrupted. `docs/cli.md` is the user's guide.

mod audit;
mod client;
mod error;
mod events;
mod jobs;
mod keys;
mod ledger;
mod limits;
mod output;
mod progress;
mod queues;
mod quota;
mod runs;
mod sse;
mod stats;
mod workers;

use clap::{Args, Subcommand};

pub use audit::AuditArgs;
pub use events::EventsArgs;
pub use jobs::JobsArgs;
pub use keys::KeysArgs;
pub use ledger::LedgerArgs;
pub use limits::LimitsArgs;
pub use queues::QueuesArgs;
pub use quota::QuotaArgs;
pub use runs::RunArgs;
pub use stats::{FailuresArgs, SloArgs, StatsArgs};
pub use workers::WorkersArgs;

use client::Api;
use error::{CliError, CliResult};

/// A time given on the command line, as [`when`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// That instant.
    At(chrono::DateTime<chrono::Utc>),
    /// `off`: no time at all.
    Never,
    /// A span too long to count from now.
    OutOfRange,
}

/// Reads `raw` as an RFC 3339 time, or as a span (`90d`, `12h`, `30m`, `off`) counted from `now`:
/// forward when `ahead`, else back. The error is the span parser's.
pub(crate) fn when(
    raw: &str,
    now: chrono::DateTime<chrono::Utc>,
    ahead: bool,
) -> Result<When, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(When::At(at.with_timezone(&chrono::Utc)));
    }
    Ok(match raw.parse::<crate::retention::Window>()? {
        crate::retention::Window::Forever => When::Never,
        crate::retention::Window::After(d) => chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| {
                if ahead {
                    now.checked_add_signed(d)
                } else {
                    now.checked_sub_signed(d)
                }
            })
            .map_or(When::OutOfRange, When::At),
    })
}

/// Default coordinator URL.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7070";

/// Client subcommands: each talks to a running coordinator.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Inspect and manage jobs: list, get, cancel, retry, replay and cancel by filter. (Boxed:
    /// its filters outweigh most commands'.)
    Jobs(Box<JobsArgs>),
    /// Queue depths per state; pause and resume claiming.
    Queues(QueuesArgs),
    /// The tenant's quota (most jobs waiting, most leased) and its usage; set or remove it.
    Quota(QuotaArgs),
    /// Runs (DAGs of jobs): plan, start, list, get, cancel, stream.
    Run(RunArgs),
    /// The workers seen claiming and heartbeating: transport, queues, leases held, last seen.
    Workers(WorkersArgs),
    /// Jobs per queue over time, rolled up from the ledger: leased, succeeded, failed
    /// attempts, dead, cancelled.
    Stats(StatsArgs),
    /// Failed attempts by queue and error class: which errors cluster where.
    Failures(FailuresArgs),
    /// Service-level objectives per queue (success, pickup latency) and their burn rates.
    Slo(SloArgs),
    /// Follow the event feed.
    Events(EventsArgs),
    /// Export the event ledger as verified NDJSON; verify the archived ledger.
    Ledger(LedgerArgs),
    /// API keys bound to a tenant and scopes: create (the token is shown once), list, revoke.
    Keys(KeysArgs),
    /// The audit trail: who changed keys, queues, retention or quotas, or replayed jobs, and
    /// why.
    Audit(AuditArgs),
    /// Flow-control limits (rates, concurrency, breakers, blackouts) and breaker incidents.
    /// (Boxed: its flags outweigh every other command's.)
    Limits(Box<LimitsArgs>),
}

/// Options every client command takes, before or after its subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Coordinator base URL.
    #[arg(long, global = true, env = "LEASEHOLD_URL", default_value = DEFAULT_URL, help_heading = "Global options")]
    pub url: String,
    /// Machine output: JSON on stdout instead of tables.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Tenant to act for (sent as the `Leasehold-Tenant` header).
    #[arg(
        long,
        global = true,
        env = "LEASEHOLD_TENANT",
        help_heading = "Global options"
    )]
    pub tenant: Option<String>,
}

/// What a command needs: the coordinator and the output mode.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The coordinator.
    pub(crate) api: Api,
    /// `--json`.
    pub(crate) json: bool,
}

impl GlobalArgs {
    fn ctx(&self) -> CliResult<Ctx> {
        Ok(Ctx {
            api: Api::new(&self.url, self.tenant.as_deref())?,
            json: self.json,
        })
    }
}

/// Runs a client command; returns the process exit code.
pub async fn run(command: ClientCommand) -> i32 {
    let result = match command {
        ClientCommand::Jobs(args) => match args.global.ctx() {
            Ok(ctx) => jobs::run(&ctx, args.command).await,
            Err(e) => Err(e),
        },
        ClientCommand::Queues(args) => match args.global.ctx() {
            Ok(ctx) => queues::run(&ctx, args.command).await,
            Err(e) => Err(e),
        },
        ClientCommand::Quota(args) => match args.global.ctx() {
            Ok(ctx) => quota::run(&ctx, args.command).await,
            Err(e) => Err(e),
        },
        ClientCommand::Run(args) => match args.global.ctx() {
            Ok(ctx) => runs::run(&ctx, args.command).await,
            Err(e) => Err(e),
        },
        ClientCommand::Workers(args) => match args.global.ctx() {
            Ok(ctx) => workers::run(&ctx, args).await,
            Err(e) => Err(e),
        },
        ClientCommand::Stats(args) => match args.global.ctx() {
            Ok(ctx) => stats::stats(&ctx, args).await,
            Err(e) => Err(e),
        },
        ClientCommand::Failures(args) => match args.global.ctx() {
            Ok(ctx) => stats::failures(&ctx, args).await,
            Err(e) => Err(e),
        },
        ClientCommand::Slo(args) => match args.global.ctx() {
            Ok(ctx) => stats::slo(&ctx, args.command).await,
            Err(e) => Err(e),
        },
        ClientCommand::Events(args) => match args.global.ctx() {
            Ok(ctx) => events::run(&ctx, args.command).await,
            Err(e) => Err(e),
        },
        ClientCommand::Ledger(args) => match args.global.ctx() {
            Ok(ctx) => ledger::run(&ctx, args.command).await,
            Err(e) => Err(e),
        },
        ClientCommand::Keys(args) => keys::run(args).await,
        ClientCommand::Audit(args) => match args.global.ctx() {
            Ok(ctx) => audit::run(&ctx, args).await,
            Err(e) => Err(e),
        },
        ClientCommand::Limits(args) => match args.global.ctx() {
            Ok(ctx) => limits::run(&ctx, args.command).await,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => error::EXIT_OK,
        Err(err) => {
            // Ctrl-C is how streams are stopped: the shell shows it, no message needed.
            if !matches!(err, CliError::BrokenPipe | CliError::Interrupted) {
                eprintln!("error: {err}");
                if let Some(details) = err.details() {
                    eprintln!("  details: {details}");
                }
            }
            err.exit_code()
        }
    }
}
