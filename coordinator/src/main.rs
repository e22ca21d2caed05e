//! `leasehold`: the coordinator binary. Thin: parse flags, set up logging, run.

use std::io::IsTerminal;

use clap::Parser;
use leasehold_coordinator::config::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// Requests allocate and free many small buffers across threads, which glibc's allocator paid
/// an eighth of the coordinator's CPU for (docs/postgres-hot-path.md §17).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Openapi => {
            print!("{}", leasehold_coordinator::http::openapi::openapi_json());
            Ok(())
        }
        Command::Client(command) => {
            std::process::exit(leasehold_coordinator::cli::run(command).await);
        }
        Command::Serve(args) => {
            let filter = EnvFilter::try_from_env("LEASEHOLD_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
            // Colours only for a person at a terminal: a log file or a collector gets plain
            // text, and no request pays for formatting escape codes.
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(std::io::stdout().is_terminal());
            match args.log_format {
                LogFormat::Json => builder.json().init(),
                LogFormat::Text => builder.init(),
            }
            leasehold_coordinator::server::serve(*args).await?;
            Ok(())
        }
    }
}
