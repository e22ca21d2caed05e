//! A `leasehold serve` process for one row, on a free port, killed on drop. (The benchmark
//! keeps its own small spawner so that it builds without the SDK crates the test harness pulls
//! in.)

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The coordinator binary: `LEASEHOLD_BIN`, else `target/release/leasehold`.
pub(crate) fn coordinator_bin() -> PathBuf {
    std::env::var_os("LEASEHOLD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/leasehold"))
}

/// A running coordinator.
#[derive(Debug)]
pub(crate) struct Coordinator {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    data_dir: PathBuf,
}

impl Coordinator {
    /// Starts `leasehold serve` on `database_url` (`None`: a SQLite file in a fresh temp dir)
    /// with extra environment variables, and waits until `/health` answers.
    pub(crate) async fn spawn(database_url: Option<&str>, env: &[(&str, &str)]) -> Result<Self> {
        let data_dir =
            std::env::temp_dir().join(format!("leasehold-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir)?;
        let db = database_url.map_or_else(
            || format!("sqlite://{}", data_dir.join("leasehold.db").display()),
            str::to_owned,
        );
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(data_dir.join("coordinator.log"))?;
        let bin = coordinator_bin();
        let child = Command::new(&bin)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--database-url")
            .arg(&db)
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("DATABASE_URL")
            .env_remove("LEASEHOLD_DATABASE_URL")
            .envs(env.iter().copied())
            .env("LEASEHOLD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut me = Self {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            data_dir,
        };
        me.wait_healthy(Duration::from_secs(60)).await?;
        Ok(me)
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

    /// Its stderr so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("coordinator.log")).unwrap_or_default()
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
