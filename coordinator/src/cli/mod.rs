//! The operator CLI: `leasehold jobs|queues|run|events|ledger …`, a client of the HTTP API.

use clap::Subcommand;

/// Client subcommands (filled in by the CLI work).
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Inspect and manage jobs.
    Jobs,
}

/// Runs a client command; returns the process exit code.
pub async fn run(command: ClientCommand) -> i32 {
    match command {
        ClientCommand::Jobs => {
            eprintln!("not implemented yet");
            2
        }
    }
}
