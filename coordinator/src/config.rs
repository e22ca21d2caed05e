//! Command line and environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::http::access::AccessConfig;
use crate::store::SqliteSync;

/// The shortest API key accepted.
pub const MIN_API_KEY_LEN: usize = 16;

/// `--api-key` / `ORCHESTRATOR_API_KEY`: trimmed, and refused when blank or short. A parser of
/// its own because clap's usual error quotes the invalid value, and a key must never be printed.
#[derive(Debug, Clone, Copy)]
struct ApiKeyParser;

impl clap::builder::TypedValueParser for ApiKeyParser {
    type Value = String;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let refuse = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("--api-key / ORCHESTRATOR_API_KEY: {why}\n"),
            )
        };
        let key = value
            .to_str()
            .ok_or_else(|| refuse("the API key is not UTF-8".to_owned()))?
            .trim();
        if key.is_empty() {
            return Err(refuse(
                "the API key is blank: unset it to run without one, or set a key of at least \
                 16 characters (e.g. `openssl rand -hex 32`)"
                    .to_owned(),
            ));
        }
        if key.len() < MIN_API_KEY_LEN {
            return Err(refuse(format!(
                "the API key has {} characters; use at least {MIN_API_KEY_LEN} \
                 (e.g. `openssl rand -hex 32`)",
                key.len()
            )));
        }
        Ok(key.to_owned())
    }
}

/// Default cap on a request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Default cap on one artifact.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 1024 * 1024 * 1024;

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
    /// Run the coordinator. (Boxed: its flags outweigh every other command's.)
    Serve(Box<ServeArgs>),
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
    #[arg(long, env = "LEASEHOLD_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Largest artifact in bytes.
    #[arg(long, env = "LEASEHOLD_MAX_ARTIFACT_BYTES", default_value_t = DEFAULT_MAX_ARTIFACT_BYTES)]
    pub max_artifact_bytes: u64,
    /// How long to keep trying to reach the database at start-up, in seconds.
    #[arg(long, env = "LEASEHOLD_CONNECT_TIMEOUT_SECS", default_value_t = 30)]
    pub connect_timeout_secs: u64,
    /// On SIGTERM or Ctrl-C: streams end at once, then in-flight requests get this many
    /// milliseconds to finish before the connections still open are closed and the process
    /// exits 0 (a client that stopped reading would otherwise hold the shutdown forever).
    #[arg(long, env = "LEASEHOLD_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// The API key every route but `/health`, `/ready` and `/metrics` requires (as `Authorization:
    /// Bearer …` or `X-Api-Key`). Unset: no key is required. Prefer the variable to the flag: a
    /// flag is visible to every user of the machine in the process list.
    /// At least 16 characters (surrounding whitespace, e.g. a file's trailing newline, is not
    /// part of it); a blank or shorter key is refused at start-up rather than silently turning
    /// authentication off or guessable.
    #[arg(long, env = "ORCHESTRATOR_API_KEY", hide_env_values = true, value_parser = ApiKeyParser)]
    pub api_key: Option<String>,
    /// Field names whose values never appear in error messages, error details or logs,
    /// comma-separated; matched case-insensitively inside longer names, ignoring `_` and `-`
    /// (`password` covers `db_password`). Replaces the default list.
    #[arg(
        long,
        env = "LEASEHOLD_REDACT_FIELDS",
        value_delimiter = ',',
        default_value = "password,secret,token,api_key,authorization"
    )]
    pub redact_fields: Vec<String>,
    /// Label `/metrics`'s job gauges with tenant names too (`/metrics` is open to anyone who
    /// reaches the coordinator, so tenant names stay out of it unless asked for).
    #[arg(long, env = "LEASEHOLD_METRICS_TENANT_LABEL")]
    pub metrics_tenant_label: bool,
    /// Browser origins allowed by CORS, comma-separated (`*` for any). Unset: no CORS headers.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Seconds a client has to send a request's headers (and its next request on a kept-alive
    /// connection) before the connection is closed.
    #[arg(long, env = "LEASEHOLD_HEADER_READ_TIMEOUT_SECS", default_value_t = crate::connections::DEFAULT_HEADER_READ_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may move no byte while waiting on its client before it is closed
    /// (above 60: long polls last up to 60 s).
    #[arg(long, env = "LEASEHOLD_IDLE_TIMEOUT_SECS", default_value_t = crate::connections::DEFAULT_IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(61..))]
    pub idle_timeout_secs: u64,
    /// Connections served at once (WebSocket sessions included); more wait to be accepted.
    /// Keep it under the process's descriptor limit (`ulimit -n`) less the database pool's.
    #[arg(long, env = "LEASEHOLD_MAX_CONNECTIONS", default_value_t = crate::connections::DEFAULT_MAX_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Host names a keyless coordinator answers to besides IP addresses, `localhost` and this
    /// machine's name, comma-separated (`*` for any): other `Host` headers are refused, so a
    /// web page cannot read it through DNS rebinding (docs/SECURITY.md).
    #[arg(long, env = "LEASEHOLD_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Rate limit per client address: the window in milliseconds (with `--rate-limit-max`).
    #[arg(long, env = "RATE_LIMIT_WINDOW_MS", requires = "rate_limit_max",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit_window_ms: Option<u64>,
    /// Rate limit per client address: requests allowed per window (with
    /// `--rate-limit-window-ms`); beyond, 429 with `Retry-After`.
    #[arg(long, env = "RATE_LIMIT_MAX", requires = "rate_limit_window_ms",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_max: Option<u32>,
    /// Shed enqueues (429 `overloaded`, nothing stored) while the store holds at least this
    /// many waiting jobs (`queued` or `blocked`, every tenant). The count is taken at most once
    /// a second, so the mark is approximate by up to a second of enqueues. Unset: never shed.
    #[arg(long, env = "LEASEHOLD_MAX_QUEUED_JOBS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queued_jobs: Option<u64>,
    /// PostgreSQL: hear the other replicas' wake-ups (`LISTEN`; an enqueue on one replica wakes
    /// the claimers parked on another). `false` for a database or pooler without `LISTEN`
    /// (PgBouncer in transaction mode, CockroachDB): parked claimers then ask again every
    /// `--wake-poll-ms` instead.
    #[arg(long, env = "LEASEHOLD_PG_LISTEN", default_value_t = true, action = clap::ArgAction::Set)]
    pub pg_listen: bool,
    /// The longest a parked claimer (long poll or WebSocket session) waits before asking the
    /// store again, whatever wakes it. Default: 500 on PostgreSQL without `--pg-listen`, else
    /// none (wake-ups come from this replica's writes and, on PostgreSQL, `LISTEN`).
    #[arg(long, env = "LEASEHOLD_WAKE_POLL_MS", value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub wake_poll_ms: Option<u64>,
    /// Retention: the flags below (docs/CONTRACT.md, "Retention").
    #[command(flatten)]
    pub retention: RetentionArgs,
}

/// `leasehold serve`'s retention flags. A window is a whole number and a unit (`90s`, `15m`,
/// `24h`, `7d`) or `off` (kept forever); per-tenant and per-queue overrides are set through
/// `/v1/retention` and win over these.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    /// How long `succeeded` jobs are kept after they finished.
    #[arg(long, env = "LEASEHOLD_RETAIN_SUCCEEDED", default_value = crate::retention::DEFAULT_RETAIN_SUCCEEDED,
          value_parser = parse_window)]
    pub retain_succeeded: crate::retention::Window,
    /// How long `dead` and `cancelled` jobs (`upstream_failed` included) are kept after they
    /// finished.
    #[arg(long, env = "LEASEHOLD_RETAIN_FAILED", default_value = crate::retention::DEFAULT_RETAIN_FAILED,
          value_parser = parse_window)]
    pub retain_failed: crate::retention::Window,
    /// Ledger events older than this are archived to `--archive-dir`, then deleted (all
    /// tenants). `off`: the ledger stays in the database.
    #[arg(long, env = "LEASEHOLD_RETAIN_LEDGER", default_value = crate::retention::DEFAULT_RETAIN_LEDGER,
          value_parser = parse_window)]
    pub retain_ledger: crate::retention::Window,
    /// Where archived ledger segments are written (default `<data-dir>/ledger-archive`). With
    /// several replicas, a directory they all share.
    #[arg(long, env = "LEASEHOLD_ARCHIVE_DIR")]
    pub archive_dir: Option<PathBuf>,
    /// Artifact blobs no job names are deleted once older than this (since their last upload
    /// or the last completion that named them); at least 5m; `off` never deletes them.
    #[arg(long, env = "LEASEHOLD_ARTIFACT_GRACE", default_value = crate::retention::DEFAULT_ARTIFACT_GRACE,
          value_parser = parse_grace)]
    pub artifact_grace: crate::retention::Window,
    /// Time between retention sweeps; `off` runs none on a schedule (`POST
    /// /v1/retention/sweep` still does).
    #[arg(long, env = "LEASEHOLD_RETENTION_INTERVAL", default_value = crate::retention::DEFAULT_INTERVAL,
          value_parser = parse_window)]
    pub retention_interval: crate::retention::Window,
}

fn parse_window(raw: &str) -> Result<crate::retention::Window, String> {
    raw.parse()
}

fn parse_grace(raw: &str) -> Result<crate::retention::Window, String> {
    match raw.parse()? {
        crate::retention::Window::After(d) if d >= crate::retention::MIN_ARTIFACT_GRACE => {
            Ok(crate::retention::Window::After(d))
        }
        crate::retention::Window::Forever => Ok(crate::retention::Window::Forever),
        _ => Err(format!(
            "{raw:?}: the grace period must be at least 5m (it must outlast any request)"
        )),
    }
}

impl RetentionArgs {
    /// The sweeper's configuration, archiving under `data_dir` unless `--archive-dir` says.
    pub fn config(&self, data_dir: &std::path::Path) -> crate::retention::RetentionConfig {
        let mut config = crate::retention::RetentionConfig::defaults(data_dir);
        config.succeeded = self.retain_succeeded;
        config.failed = self.retain_failed;
        config.ledger = self.retain_ledger;
        config.artifact_grace = match self.artifact_grace {
            crate::retention::Window::After(d) => Some(d),
            crate::retention::Window::Forever => None,
        };
        if let Some(dir) = &self.archive_dir {
            config.archive_dir = dir.clone();
        }
        config
    }
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

impl ServeArgs {
    /// The bounds on connections (`--header-read-timeout-secs`, `--idle-timeout-secs`,
    /// `--max-connections`).
    pub fn connection_limits(&self) -> crate::connections::ConnectionLimits {
        crate::connections::ConnectionLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }

    /// The access settings: API key, CORS origins, rate limit, allowed hosts (flags, and their
    /// variables `ORCHESTRATOR_API_KEY`, `CORS_ORIGINS`, `RATE_LIMIT_WINDOW_MS`,
    /// `RATE_LIMIT_MAX`, `LEASEHOLD_ALLOWED_HOSTS`).
    pub fn access_config(&self) -> AccessConfig {
        let args = self;
        let mut config = AccessConfig::default();
        if let Some(key) = args.api_key.as_deref() {
            config = config.with_api_key(key);
        }
        config.cors_origins = args
            .cors_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        config.allowed_hosts = args
            .allowed_hosts
            .iter()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect();
        // clap requires both or neither and refuses zero.
        if let (Some(window), Some(max)) = (args.rate_limit_window_ms, args.rate_limit_max) {
            config.rate_limit = Some((std::time::Duration::from_millis(window), max));
        }
        config
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command, ServeArgs};

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let argv = ["leasehold", "serve"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(a) => Ok(*a),
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn every_setting_is_a_flag_listed_with_its_variable() {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_long_help()
            .to_string();
        for (flag, var) in [
            ("--listen", "LEASEHOLD_LISTEN"),
            ("--database-url", "LEASEHOLD_DATABASE_URL"),
            ("--api-key", "ORCHESTRATOR_API_KEY"),
            ("--cors-origins", "CORS_ORIGINS"),
            ("--rate-limit-window-ms", "RATE_LIMIT_WINDOW_MS"),
            ("--rate-limit-max", "RATE_LIMIT_MAX"),
            ("--shutdown-grace-ms", "LEASEHOLD_SHUTDOWN_GRACE_MS"),
            ("--retain-succeeded", "LEASEHOLD_RETAIN_SUCCEEDED"),
            ("--retain-failed", "LEASEHOLD_RETAIN_FAILED"),
            ("--retain-ledger", "LEASEHOLD_RETAIN_LEDGER"),
            ("--archive-dir", "LEASEHOLD_ARCHIVE_DIR"),
            ("--artifact-grace", "LEASEHOLD_ARTIFACT_GRACE"),
            ("--retention-interval", "LEASEHOLD_RETENTION_INTERVAL"),
            ("--max-queued-jobs", "LEASEHOLD_MAX_QUEUED_JOBS"),
        ] {
            assert!(help.contains(flag), "{flag} missing from:\n{help}");
            assert!(
                help.contains(&format!("env: {var}")),
                "{var} missing from:\n{help}"
            );
        }
    }

    #[test]
    fn access_flags_build_the_access_config() {
        let args = serve(&[
            "--api-key",
            "s3cret-key-0123456789",
            "--cors-origins",
            "https://a.example, https://b.example",
            "--rate-limit-window-ms",
            "1000",
            "--rate-limit-max",
            "5",
        ])
        .unwrap();
        let access = args.access_config();
        assert!(access.requires_key());
        assert_eq!(
            access.cors_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(
            access.rate_limit,
            Some((std::time::Duration::from_secs(1), 5))
        );
        let open = serve(&[]).unwrap().access_config();
        assert!(!open.requires_key() && open.cors_origins.is_empty());
        assert_eq!(open.rate_limit, None);
    }

    #[test]
    fn retention_flags_build_the_sweeper_config_and_refuse_bad_windows() {
        use crate::retention::Window;
        let args = serve(&["--retain-succeeded", "2h", "--retain-ledger", "30d"]).unwrap();
        let config = args.retention.config(std::path::Path::new("/data"));
        assert_eq!(config.succeeded.to_string(), "2h");
        assert_eq!(config.failed.to_string(), "7d");
        assert_eq!(config.ledger.to_string(), "30d");
        assert_eq!(
            config.archive_dir,
            std::path::PathBuf::from("/data/ledger-archive")
        );
        let defaults = serve(&[]).unwrap().retention;
        assert_eq!(defaults.retain_ledger, Window::Forever);
        assert_eq!(defaults.retention_interval.to_string(), "10m");
        let bad = serve(&["--retain-failed", "7 days"])
            .unwrap_err()
            .to_string();
        assert!(bad.contains("--retain-failed"), "{bad}");
    }

    #[test]
    fn a_blank_or_short_key_is_refused_and_surrounding_whitespace_is_not_part_of_it() {
        for blank in ["", "   ", "\n"] {
            let err = serve(&["--api-key", blank]).unwrap_err().to_string();
            assert!(err.contains("--api-key") && err.contains("blank"), "{err}");
        }
        let short = serve(&["--api-key", "s3cret"]).unwrap_err().to_string();
        assert!(short.contains("at least 16"), "{short}");
        assert!(
            !short.contains("s3cret"),
            "the key is never repeated: {short}"
        );
        let args = serve(&["--api-key", "0123456789abcdef-key\n"]).unwrap();
        assert_eq!(args.api_key.as_deref(), Some("0123456789abcdef-key"));
    }

    #[test]
    fn the_high_water_mark_is_off_by_default_and_at_least_one() {
        assert_eq!(serve(&[]).unwrap().max_queued_jobs, None);
        let set = serve(&["--max-queued-jobs", "50000"]).unwrap();
        assert_eq!(set.max_queued_jobs, Some(50_000));
        let zero = serve(&["--max-queued-jobs", "0"]).unwrap_err().to_string();
        assert!(zero.contains("--max-queued-jobs"), "{zero}");
    }

    #[test]
    fn listen_is_on_and_the_wake_poll_bounded() {
        let default = serve(&[]).unwrap();
        assert!(default.pg_listen);
        assert_eq!(default.wake_poll_ms, None);
        let off = serve(&["--pg-listen", "false", "--wake-poll-ms", "200"]).unwrap();
        assert!(!off.pg_listen);
        assert_eq!(off.wake_poll_ms, Some(200));
        let fast = serve(&["--wake-poll-ms", "1"]).unwrap_err().to_string();
        assert!(fast.contains("--wake-poll-ms"), "{fast}");
    }

    #[test]
    fn a_half_or_zero_rate_limit_is_refused_naming_the_flag() {
        let half = serve(&["--rate-limit-max", "5"]).unwrap_err().to_string();
        assert!(half.contains("--rate-limit-window-ms"), "{half}");
        let zero = serve(&["--rate-limit-window-ms", "0", "--rate-limit-max", "5"])
            .unwrap_err()
            .to_string();
        assert!(zero.contains("--rate-limit-window-ms"), "{zero}");
    }
}
