//! The operator CLI (`leasehold jobs|queues|quota|run|events|ledger …`) against a real coordinator:
//! the same binary started with `serve` on a temp SQLite directory, driven as a subprocess.
//! Checks stdout (tables and `--json`), stderr messages, exit codes, and effects over HTTP.
//! This module holds the harness; the tests are in its children, by command family.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use leasehold_testkit::{Coordinator, free_port};
use serde_json::{Value, json};

mod audit;
mod jobs_and_queues;
mod limits;
mod quota;
mod runs_and_exports;
mod stats;
mod streams;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold");

/// A `leasehold serve` on a fresh SQLite directory (the testkit's process harness, the one
/// every suite uses), with the helpers these tests share.
struct Server {
    coord: Coordinator,
    url: String,
    http: reqwest::Client,
}

impl Server {
    async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    async fn start_with_env(env: &[(&str, &str)]) -> Self {
        let coord = Coordinator::spawn_with_env(None, env).await.unwrap();
        Self {
            url: coord.url.clone(),
            coord,
            http: reqwest::Client::new(),
        }
    }

    /// Kills the process (connections drop at once) and starts it again on the same port
    /// and database.
    async fn restart(&mut self) {
        self.coord.kill();
        self.coord.start().await.unwrap();
    }

    fn path(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    async fn enqueue(&self, queue: &str, kind: &str, tenant: Option<&str>) -> Value {
        let mut request = self
            .http
            .post(self.path("/v1/jobs"))
            .json(&json!({"queue": queue, "kind": kind, "payload": {"n": 1}}));
        if let Some(t) = tenant {
            request = request.header("leasehold-tenant", t);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.http.get(self.path(path)).send().await.unwrap();
        assert!(response.status().is_success(), "GET {path}");
        response.json().await.unwrap()
    }

    /// Runs `leasehold <args>` against this server.
    async fn cli(&self, args: &[&str]) -> Run {
        cli(&self.url, args, &[]).await
    }
}

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "leasehold-{label}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a CLI invocation produced.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    #[track_caller]
    fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "{self:#?}");
        self
    }
}

/// `leasehold --url <url> <args>` with a clean environment plus `env`.
async fn cli(url: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let output: Output = tokio::process::Command::new(BIN)
        .args(args)
        .env("LEASEHOLD_URL", url)
        .env_remove("LEASEHOLD_API_KEY")
        .env_remove("ORCHESTRATOR_API_KEY")
        .env_remove("LEASEHOLD_TENANT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn id_of(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Sends SIGINT, as Ctrl-C in a terminal would.
fn interrupt(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
}
