//! Test harness for Leasehold's suites: real coordinator processes, real databases.
//!
//! - [`Coordinator::spawn`] starts the `leasehold` binary on a free port (building it first if
//!   needed) and waits until it answers.
//! - [`postgres_url`] returns the PostgreSQL the suites use (`LEASEHOLD_TEST_DATABASE_URL`); with
//!   `LEASEHOLD_REQUIRE_PG=1` (set by `scripts/test`) a missing database fails the test instead
//!   of skipping it, and every PostgreSQL-backed test is recorded in `LEASEHOLD_PG_MARKER` so
//!   that CI can prove the suite ran.
//! - [`fresh_schema`] gives each test its own PostgreSQL schema.
//! - [`PrivatePostgres`] runs a throwaway PostgreSQL server that a test may stop and restart.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod sdk;

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Path to the `leasehold` binary: `LEASEHOLD_BIN` (set by `scripts/test`), else a build of
/// the coordinator made once per test process into `target/testkit` — its own target dir, so
/// that this build and the test build (whose feature sets differ) do not keep relinking each
/// other's binary.
pub fn leasehold_bin() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Ok(bin) = std::env::var("LEASEHOLD_BIN") {
                return Ok(PathBuf::from(bin));
            }
            let root = workspace_root();
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join("target"))
                .join("testkit");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "leasehold-coordinator",
                    "--bin",
                    "leasehold",
                ])
                .arg("--target-dir")
                .arg(&target)
                .current_dir(&root)
                .status()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if !status.success() {
                return Err("building the leasehold binary failed".into());
            }
            Ok(target.join("debug").join("leasehold"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// PostgreSQL for the suites, or `None` to skip — unless `LEASEHOLD_REQUIRE_PG=1`, in which
/// case a missing URL panics (CI must never skip PostgreSQL silently). `test` is recorded in
/// the marker file.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("LEASEHOLD_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(url) => {
            if let Ok(marker) = std::env::var("LEASEHOLD_PG_MARKER")
                && let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(marker)
            {
                let _ = writeln!(f, "{test}");
            }
            Some(url)
        }
        None => {
            assert!(
                std::env::var("LEASEHOLD_REQUIRE_PG").as_deref() != Ok("1"),
                "LEASEHOLD_REQUIRE_PG=1 but LEASEHOLD_TEST_DATABASE_URL is unset: {test} cannot run"
            );
            eprintln!("skipping {test}: LEASEHOLD_TEST_DATABASE_URL is unset");
            None
        }
    }
}

/// Creates a fresh schema on `base_url` and returns a URL whose connections use it, so that
/// tests sharing one database never see each other's rows.
pub async fn fresh_schema(base_url: &str) -> Result<String> {
    use sqlx::Connection;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(base_url)
        .await
        .context("connecting to the test PostgreSQL")?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let sep = if base_url.contains('?') { '&' } else { '?' };
    Ok(format!(
        "{base_url}{sep}options=-c%20search_path%3D{schema}"
    ))
}

/// A running `leasehold serve` process, killed on drop.
#[derive(Debug)]
pub struct Coordinator {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    database_url: String,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Coordinator {
    /// Starts a coordinator on `database_url` (`None`: SQLite in a fresh temp dir).
    pub async fn spawn(database_url: Option<&str>) -> Result<Self> {
        Self::spawn_with_env(database_url, &[]).await
    }

    /// Starts a coordinator with extra environment variables.
    pub async fn spawn_with_env(database_url: Option<&str>, env: &[(&str, &str)]) -> Result<Self> {
        let data_dir =
            std::env::temp_dir().join(format!("leasehold-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir)?;
        let database_url = database_url.map_or_else(
            || format!("sqlite://{}", data_dir.join("leasehold.db").display()),
            str::to_owned,
        );
        let mut me = Self {
            child: None,
            url: String::new(),
            port: free_port()?,
            database_url,
            data_dir,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        me.start().await?;
        Ok(me)
    }

    /// (Re)starts the process on the same port and database.
    pub async fn start(&mut self) -> Result<()> {
        let bin = leasehold_bin()?;
        let log = std::fs::File::create(self.data_dir.join("coordinator.log"))?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--database-url")
            .arg(&self.database_url)
            .arg("--data-dir")
            .arg(&self.data_dir)
            // Only what the test gives: never the operator's database or access settings.
            .env_remove("DATABASE_URL")
            .env_remove("LEASEHOLD_DATABASE_URL")
            .env_remove("ORCHESTRATOR_API_KEY")
            .env_remove("CORS_ORIGINS")
            .env_remove("RATE_LIMIT_WINDOW_MS")
            .env_remove("RATE_LIMIT_MAX")
            // Quiet unless the test asks for more.
            .env("LEASEHOLD_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // The coordinator logs to stdout; panics go to stderr: both into the log file.
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("spawning leasehold serve")?;
        self.child = Some(child);
        self.url = format!("http://127.0.0.1:{}", self.port);
        self.wait_healthy(Duration::from_secs(30)).await
    }

    async fn wait_healthy(&mut self, patience: Duration) -> Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + patience;
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.url)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "coordinator exited early with {status}; log: {}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                bail!("coordinator did not become healthy; log: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The process's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("coordinator.log")).unwrap_or_default()
    }

    /// The process's data directory (SQLite file, artifacts, log).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        Ok(child.wait()?)
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A private PostgreSQL server in a temp dir, on its own port, that a test may stop and start.
/// Runs the Debian binaries (`/usr/lib/postgresql/*/bin` or `LEASEHOLD_PG_BIN`), as the
/// `postgres` user when the tests run as root.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    /// Port it listens on.
    pub port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    fn find_bin() -> Result<PathBuf> {
        if let Ok(dir) = std::env::var("LEASEHOLD_PG_BIN") {
            return Ok(PathBuf::from(dir));
        }
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .context("no /usr/lib/postgresql; set LEASEHOLD_PG_BIN")?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .collect();
        versions.sort();
        versions
            .pop()
            .context("no PostgreSQL server binaries found")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<std::process::Output> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        let out = cmd.args(args).stdin(Stdio::null()).output()?;
        Ok(out)
    }

    /// Initializes and starts a server with a `leasehold` database.
    pub fn start_new() -> Result<Self> {
        let bin = Self::find_bin()?;
        let dir =
            std::env::temp_dir().join(format!("leasehold-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        if as_postgres {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()?;
        }
        let me = Self {
            dir,
            bin,
            port: free_port()?,
            as_postgres,
        };
        let data = me.dir.join("data");
        let out = me.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        )?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        me.start()?;
        let out = me.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &me.port.to_string(),
                "-U",
                "postgres",
                "leasehold",
            ],
        )?;
        if !out.status.success() {
            bail!("createdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(me)
    }

    /// Runs `sql` as the superuser in `database` (psql over TCP).
    pub fn sql(&self, database: &str, sql: &str) -> Result<()> {
        let port = self.port.to_string();
        let out = self.run(
            "psql",
            &[
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ],
        )?;
        if !out.status.success() {
            bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// URL of its `leasehold` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/leasehold", self.port)
    }

    /// Starts the server (after [`stop`](Self::stop)).
    pub fn start(&self) -> Result<()> {
        let data = self.dir.join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &self.dir.join("pg.log").to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        )?;
        if !out.status.success() {
            bail!(
                "pg_ctl start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Stops the server (fast mode: open connections are cut).
    pub fn stop(&self) -> Result<()> {
        let data = self.dir.join("data");
        let out = self.run(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", "fast", "-w", "stop"],
        )?;
        if !out.status.success() {
            bail!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
