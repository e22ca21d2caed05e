//! An agent that does real work with the Leasehold Rust SDK: it hashes every file of a folder
//! into content-addressed artifacts.
//!
//! Run with (see README.md):
//!
//! ```text
//! leasehold serve &                                   # the coordinator, on :7070
//! cargo run -p rust-agent -- work                     # the worker (Ctrl-C drains it)
//! cargo run -p rust-agent -- enqueue ./some/folder    # enqueue a job and wait for it
//! ```
//!
//! The `hash_folder` handler walks the folder (sorted, so that attempts agree), uploads each
//! file as an artifact named by its relative path (streamed and hashed, never loaded whole),
//! reports progress, checkpoints the files done so a retried attempt skips them, and stops
//! early if the job is cancelled or its lease lost. The completion carries the manifest and its
//! digest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use leasehold::proto::Artifact;
use leasehold::{Client, HandlerError, JobContext, JobSpec, Worker};
use serde::Deserialize;
use serde_json::{Value, json};

const QUEUE: &str = "agents";
const KIND: &str = "hash_folder";
/// Refuse folders with more files than this (a guard for the demo).
const MAX_FILES: usize = 10_000;

#[derive(Debug, Deserialize)]
struct HashFolder {
    /// Folder to hash, as seen by the worker.
    path: PathBuf,
}

/// Every regular file under `root`, as sorted `/`-separated relative names.
fn list_files(root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .map_err(std::io::Error::other)?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn media_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "txt" | "md" | "log" => "text/plain",
        "json" => "application/json",
        "csv" => "text/csv",
        "html" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "rs" | "toml" | "py" | "go" => "text/plain",
        _ => "application/octet-stream",
    }
}

async fn hash_folder(ctx: JobContext) -> Result<Value, HandlerError> {
    let job: HashFolder = ctx.payload_as()?;
    let root = job.path.clone();
    let files = tokio::task::spawn_blocking(move || list_files(&root))
        .await
        .map_err(|e| HandlerError::retry(e.to_string()))?
        .map_err(|e| {
            HandlerError::fatal(format!("cannot read {}: {e}", job.path.display()))
                .with_class("bad_path")
        })?;
    if files.len() > MAX_FILES {
        return Err(HandlerError::fatal(format!(
            "{} files is over the limit of {MAX_FILES}",
            files.len()
        )));
    }
    // Files an earlier attempt already uploaded (from its checkpoint).
    let done_before: Vec<Value> = ctx
        .last_checkpoint()
        .and_then(|c| c.get("done").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    let mut done = done_before.clone();
    let mut bytes = 0u64;
    for (i, (name, path)) in files.iter().enumerate() {
        if ctx.is_cancelled() {
            return Err(HandlerError::cancelled(format!("stopped after {i} files")));
        }
        if let Some(prev) = done_before.iter().find(|d| d["name"] == name.as_str()) {
            // Uploaded by an earlier attempt: declare it again without re-reading the file.
            let artifact: Artifact = serde_json::from_value(prev.clone())
                .map_err(|e| HandlerError::fatal(format!("bad checkpoint: {e}")))?;
            bytes += artifact.size;
            ctx.declare_artifact(artifact)
                .map_err(|e| HandlerError::fatal(e.to_string()))?;
            continue;
        }
        let artifact = ctx
            .put_artifact_file(name, media_type(name), path)
            .await
            .map_err(|e| match e {
                leasehold::Error::InvalidArgument(m) => HandlerError::fatal(m),
                other => HandlerError::retry(other.to_string()),
            })?;
        bytes += artifact.size;
        done.push(json!(artifact));
        ctx.checkpoint(json!({ "done": done }));
        ctx.progress(json!({ "files_done": i + 1, "files_total": files.len() }));
    }
    let manifest_digest = leasehold::artifact::manifest_digest(&ctx.artifacts())
        .map_err(|e| HandlerError::fatal(e.to_string()))?;
    Ok(json!({
        "files": files.len(),
        "bytes": bytes,
        "manifest_digest": manifest_digest,
    }))
}

async fn work(url: &str) -> Result<()> {
    let worker = Worker::builder(url)
        .queues([QUEUE])
        .concurrency(4)
        .lease_ttl(Duration::from_secs(30))
        .app_version(concat!("rust-agent/", env!("CARGO_PKG_VERSION")))
        .handler(KIND, hash_folder)
        .build()?;
    println!(
        "rust-agent {} working on queue {QUEUE:?} at {url} (Ctrl-C to stop)",
        worker.worker_id()
    );
    worker
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
            println!("draining...");
        })
        .await?;
    println!("stopped");
    Ok(())
}

async fn enqueue(url: &str, folder: &str) -> Result<()> {
    let path = std::fs::canonicalize(folder).with_context(|| format!("no folder {folder}"))?;
    let client = Client::new(url)?;
    let job = client
        .enqueue(
            JobSpec::new(KIND, json!({ "path": path }))
                .queue(QUEUE)
                .max_attempts(3)
                .deterministic_key(),
        )
        .await?;
    if job.replayed {
        println!(
            "job {} already existed for this folder (same idempotency key)",
            job.job.id
        );
    } else {
        println!("enqueued job {}", job.job.id);
    }
    let done = client.wait(job.job.id, Duration::from_secs(600)).await?;
    println!("state: {}", done.state);
    if let Some(result) = &done.result {
        println!("result: {result}");
    }
    if let Some(err) = &done.last_error {
        println!("last error: {err}");
    }
    for a in &done.artifacts {
        println!("  {}  {:>8}  {}", a.digest, a.size, a.name);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = std::env::var("LEASEHOLD_URL").unwrap_or_else(|_| "http://127.0.0.1:7070".into());
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["work"] => work(&url).await,
        ["enqueue", folder] => enqueue(&url, folder).await,
        _ => bail!(
            "usage: rust-agent work | rust-agent enqueue <folder>   (LEASEHOLD_URL, default http://127.0.0.1:7070)"
        ),
    }
}
