//! Helpers for the SDK suites (`tests/tests/sdk_*.rs`): polling with a deadline, reading job
//! states, and driving worker *processes* (the `sdk_worker` binary) that a test can kill,
//! freeze and resume.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use leasehold::proto::{Job, JobState};
use leasehold::{Client, ListJobs};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Polls `probe` until it yields `Some`, or fails after `patience` naming `what`. Starts at
/// 10 ms between probes and backs off to 200 ms.
pub async fn eventually<T, F, Fut>(what: &str, patience: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + patience;
    let mut every = Duration::from_millis(10);
    loop {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {patience:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
        every = (every * 2).min(Duration::from_millis(200));
    }
}

/// Jobs per state in `queue`.
pub async fn depth(client: &Client, queue: &str) -> Result<HashMap<JobState, i64>> {
    let queues = client.queues().await?;
    let mut out = HashMap::new();
    if let Some(q) = queues.into_iter().find(|q| q.name == queue) {
        let d = q.depth;
        out.insert(JobState::Blocked, d.blocked);
        out.insert(JobState::Queued, d.queued);
        out.insert(JobState::Leased, d.leased);
        out.insert(JobState::Succeeded, d.succeeded);
        out.insert(JobState::Dead, d.dead);
        out.insert(JobState::Cancelled, d.cancelled);
    }
    Ok(out)
}

/// Waits until `n` jobs of `queue` are in `state`.
pub async fn wait_for_state(
    client: &Client,
    queue: &str,
    state: JobState,
    n: i64,
    patience: Duration,
) -> Result<()> {
    eventually(
        &format!("{n} jobs {state} in {queue}"),
        patience,
        || async {
            let d = depth(client, queue).await?;
            Ok((d.get(&state).copied().unwrap_or(0) >= n).then_some(()))
        },
    )
    .await
}

/// Every job of `queue` (all pages).
pub async fn all_jobs(client: &Client, queue: &str) -> Result<Vec<Job>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let mut query = ListJobs::default();
        query.queue = Some(queue.to_owned());
        query.limit = Some(500);
        query.cursor = cursor.take();
        let page = client.list(&query).await?;
        out.extend(page.jobs);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// A worker process running `sdk_worker`, with its stdout lines.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl WorkerProcess {
    /// Starts `bin` (the path of `sdk_worker`) with `LH_*` settings in `env`.
    pub fn spawn(bin: &Path, env: &[(&str, String)]) -> Result<Self> {
        let mut child = Command::new(bin)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning sdk_worker")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Waits for a line matching `pred` (lines already seen count too).
    pub async fn expect_line(
        &mut self,
        what: &str,
        patience: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return Ok(l.clone());
        }
        let deadline = Instant::now() + patience;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Ok(None) => bail!("worker exited before {what}; output: {:?}", self.seen),
                Err(_) => bail!("timed out waiting for {what}; output: {:?}", self.seen),
            }
        }
    }

    /// Lines that arrived so far, without waiting.
    pub fn drain_lines(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`, `KILL`).
    pub fn signal(&self, name: &str) -> Result<()> {
        let pid = self.child.id().context("worker already exited")?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{name} {pid} failed");
        }
        Ok(())
    }

    /// SIGKILL, then reap.
    pub async fn kill9(&mut self) -> Result<()> {
        self.signal("KILL")?;
        self.child.wait().await?;
        Ok(())
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self, patience: Duration) -> Result<std::process::ExitStatus> {
        Ok(tokio::time::timeout(patience, self.child.wait())
            .await
            .context("worker did not exit")??)
    }
}

/// A [`leasehold::Worker`] running on a task, stopped (drained) on demand.
#[derive(Debug)]
pub struct RunningWorker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<leasehold::Result<()>>,
}

impl RunningWorker {
    /// Runs `worker` until [`RunningWorker::stop`].
    pub fn start(worker: leasehold::Worker) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(worker.run(async move {
            let _ = rx.await;
        }));
        Self {
            stop: Some(tx),
            handle,
        }
    }

    /// Triggers the graceful shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.handle).await??;
        Ok(())
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Installs a `tracing` subscriber for tests once (`RUST_LOG` decides what shows).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A TCP proxy in front of `target` (`host:port`) that refuses every WebSocket upgrade with a
/// plain `404` — like an older coordinator or a proxy that does not pass upgrades — and passes
/// everything else through. Returns its `http://` URL and a counter of refused upgrades.
pub async fn proxy_without_websocket(
    target: &str,
) -> Result<(String, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let refused = Arc::new(AtomicUsize::new(0));
    let counter = refused.clone();
    let target = target.to_owned();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let target = target.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                // Read the first request head.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let lower = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if lower.contains("upgrade: websocket") {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = client
                        .write_all(
                            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                if upstream.write_all(&head).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    Ok((url, refused))
}
