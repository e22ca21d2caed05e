//! Command line and environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::store::SqliteSync;

/// `leasehold`: the coordinator.
#[derive(Debug, Parser)]
#[command(name = "leasehold", version, about = "Leasehold job coordinator")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator.
    Serve(ServeArgs),
    /// Print the OpenAPI document (the contents of `proto/openapi.json`).
    Openapi,
    /// Operator commands against a running coordinator.
    #[command(flatten)]
    Client(crate::cli::ClientCommand),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `leasehold serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LEASEHOLD_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// `postgres://…` for PostgreSQL or `sqlite://…` for a SQLite file. Default: `DATABASE_URL`,
    /// else `leasehold.db` in the data directory.
    #[arg(long, env = "LEASEHOLD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where the SQLite file and the artifacts live.
    #[arg(long, env = "LEASEHOLD_DATA_DIR", default_value = ".")]
    pub data_dir: PathBuf,
    /// SQLite durability: `normal` survives process crashes, `full` also power loss.
    #[arg(long, env = "LEASEHOLD_SQLITE_SYNCHRONOUS", value_enum, default_value_t = SqliteSync::Normal)]
    pub sqlite_synchronous: SqliteSync,
    /// Log format.
    #[arg(long, env = "LEASEHOLD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Largest request body in bytes.
    #[arg(long, env = "LEASEHOLD_MAX_BODY_BYTES", default_value_t = crate::http::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Largest artifact in bytes.
    #[arg(long, env = "LEASEHOLD_MAX_ARTIFACT_BYTES", default_value_t = crate::http::artifacts::DEFAULT_MAX_ARTIFACT_BYTES)]
    pub max_artifact_bytes: u64,
    /// How long to keep trying to reach the database at start-up, in seconds.
    #[arg(long, env = "LEASEHOLD_CONNECT_TIMEOUT_SECS", default_value_t = 30)]
    pub connect_timeout_secs: u64,
    /// On SIGTERM or Ctrl-C: streams end at once, then in-flight requests get this many
    /// milliseconds to finish before the connections still open are closed and the process
    /// exits 0 (a client that stopped reading would otherwise hold the shutdown forever).
    #[arg(long, env = "LEASEHOLD_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
}

impl ServeArgs {
    /// The database URL to use: the flag or `LEASEHOLD_DATABASE_URL`, then `DATABASE_URL`,
    /// then the SQLite file in the data directory.
    pub fn resolved_database_url(&self) -> String {
        self.database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("leasehold.db").display()))
    }
}
