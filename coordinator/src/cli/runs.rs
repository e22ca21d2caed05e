//! `leasehold run plan|start|list|get|cancel|stream`: runs are DAGs of jobs submitted together.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use leasehold_proto::{NewRun, Run, RunList, RunPlan};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use super::error::{CliError, CliResult};
use super::events::{self, Flow};
use super::output::{self, Table};
use super::sse::SseEvent;
use super::{Ctx, GlobalArgs};

/// `leasehold run …`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: RunCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RunCommand {
    /// Validate a DAG file and print its jobs in topological order; creates nothing.
    Plan {
        /// The DAG: a JSON file holding `{"jobs": [{"key", "kind", "depends_on", …}]}`
        /// (`-` reads stdin).
        dag: PathBuf,
    },
    /// Submit a DAG file as a run; prints the run id and status.
    Start {
        /// The DAG file (`-` reads stdin).
        dag: PathBuf,
        /// Idempotency token: submitting the same token again returns the first run.
        #[arg(long)]
        token: Option<String>,
    },
    /// List runs, newest first, with their status and their jobs counted by state.
    List(Box<ListArgs>),
    /// Show a run, its status and its jobs.
    Get {
        /// Run id.
        id: Uuid,
    },
    /// Cancel a run and every job of it not yet ended (idempotent).
    Cancel {
        /// Run id.
        id: Uuid,
    },
    /// Print the run's events as they happen until it ends (or Ctrl-C).
    Stream {
        /// Run id.
        id: Uuid,
    },
}

pub(crate) async fn run(ctx: &Ctx, command: RunCommand) -> CliResult {
    match command {
        RunCommand::Plan { dag } => {
            let body = load_dag(&dag, None)?;
            let request = ctx.api.request(Method::POST, "/v1/runs/plan").json(&body);
            let plan: RunPlan = ctx.api.call(request).await?.body;
            if ctx.json {
                return output::print_json(&plan);
            }
            output::print(&plan_text(&plan))
        }
        RunCommand::Start { dag, token } => {
            let body = load_dag(&dag, token.as_deref())?;
            let request = ctx.api.request(Method::POST, "/v1/runs").json(&body);
            let answer = ctx.api.call::<Run>(request).await?;
            let run = answer.body;
            if ctx.json {
                return output::print_json(&run);
            }
            let text = if answer.status == StatusCode::CREATED {
                format!(
                    "run {} started: {} ({})",
                    run.id,
                    run.status.as_str(),
                    jobs(run.jobs.len())
                )
            } else {
                format!(
                    "run {} already submitted with token {}: {} ({})",
                    run.id,
                    output::opt(run.run_token.as_deref()),
                    run.status.as_str(),
                    jobs(run.jobs.len())
                )
            };
            output::print(&text)?;
            eprintln!("follow it with: leasehold run stream {}", run.id);
            Ok(())
        }
        RunCommand::List(args) => list(ctx, *args).await,
        RunCommand::Get { id } => {
            let run: Run = ctx.api.get(&format!("/v1/runs/{id}")).await?;
            if ctx.json {
                return output::print_json(&run);
            }
            output::print(&run_text(&run))
        }
        RunCommand::Cancel { id } => {
            let run: Run = ctx.api.post_empty(&format!("/v1/runs/{id}/cancel")).await?;
            if ctx.json {
                return output::print_json(&run);
            }
            output::print(&format!("run {} is {}", run.id, run.status.as_str()))
        }
        RunCommand::Stream { id } => stream(ctx, id).await,
    }
}

/// `leasehold run list`'s filters.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only runs in this status.
    #[arg(long, value_parser = ["pending", "running", "succeeded", "failed", "cancelled"])]
    status: Option<String>,
    /// Only runs of this name.
    #[arg(long)]
    name: Option<String>,
    /// Only runs of this project.
    #[arg(long)]
    project: Option<String>,
    /// Only runs with this correlation id.
    #[arg(long)]
    correlation_id: Option<String>,
    /// Only runs submitted since then: a time ago (`24h`, `7d`) or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only runs submitted before then: a time ago or an RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    /// Runs per page (1 to 500).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    limit: u32,
    /// Follow `next_cursor` to the last page.
    #[arg(long)]
    all: bool,
    /// Start after this cursor (the `next_cursor` of an earlier page).
    #[arg(long, conflicts_with = "all")]
    cursor: Option<String>,
}

async fn list(ctx: &Ctx, args: ListArgs) -> CliResult {
    let now = chrono::Utc::now();
    let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    for (name, value) in [
        ("status", &args.status),
        ("name", &args.name),
        ("project", &args.project),
        ("correlation_id", &args.correlation_id),
    ] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    if let Some(raw) = &args.since {
        query.push(("since", super::audit::time_ago("--since", raw, now)?));
    }
    if let Some(raw) = &args.until {
        query.push(("until", super::audit::time_ago("--until", raw, now)?));
    }
    let mut cursor = args.cursor.clone();
    let mut runs = Vec::new();
    let next_cursor = loop {
        let mut request = ctx.api.request(Method::GET, "/v1/runs").query(&query);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let page: RunList = ctx.api.call(request).await?.body;
        runs.extend(page.runs);
        match page.next_cursor {
            Some(next) if args.all => cursor = Some(next),
            other => break other,
        }
    };
    if ctx.json {
        return output::print_json(&RunList { runs, next_cursor });
    }
    let mut table = Table::new(&["ID", "NAME", "STATUS", "JOBS", "CREATED"]);
    for run in &runs {
        let counts: Vec<String> = run.jobs.iter().map(|(s, n)| format!("{n} {s}")).collect();
        table.row(vec![
            run.id.to_string(),
            output::opt(run.name.as_deref().map(output::clean).as_deref()),
            run.status.as_str().to_owned(),
            counts.join(", "),
            output::time(run.created_at),
        ]);
    }
    if table.is_empty() {
        eprintln!("no runs match");
        return Ok(());
    }
    output::print(&table.render())?;
    if let Some(next) = next_cursor {
        eprintln!("more runs: rerun with --all, or with --cursor {next}");
    }
    Ok(())
}

/// Reads and checks a DAG file locally (bad file or JSON → exit 2 before any request), then
/// returns it as sent: the file's own JSON, with `run_token` set when `token` is given.
fn load_dag(path: &Path, token: Option<&str>) -> CliResult<Value> {
    let stdin = path == Path::new("-");
    let shown = if stdin {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    };
    let text = if stdin {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::usage(format!("cannot read the DAG from stdin: {e}")))?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("cannot read {shown}: {e}")))?
    };
    let mut value: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::usage(format!("{shown} is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(CliError::usage(format!(
            "{shown} must hold a JSON object with a \"jobs\" array"
        )));
    }
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize::<_, NewRun>(de).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." {
            String::new()
        } else {
            format!(" at {at}")
        };
        CliError::usage(format!("{shown} is not a run{at}: {}", e.inner()))
    })?;
    if let (Some(token), Some(obj)) = (token, value.as_object_mut()) {
        obj.insert("run_token".to_owned(), Value::String(token.to_owned()));
    }
    Ok(value)
}

fn plan_text(plan: &RunPlan) -> String {
    let mut table = Table::new(&["#", "KEY", "KIND", "QUEUE", "DEPENDS ON"]);
    for (i, key) in plan.order.iter().enumerate() {
        let spec = plan.jobs.iter().find(|j| &j.key == key);
        table.row(vec![
            (i + 1).to_string(),
            key.clone(),
            spec.map_or_else(|| "-".to_owned(), |s| s.kind.clone()),
            spec.map_or_else(|| "-".to_owned(), |s| s.queue.clone()),
            spec.map_or_else(|| "-".to_owned(), |s| depends(&s.depends_on)),
        ]);
    }
    format!(
        "valid DAG: {}, in this order (nothing was created)\n\n{}",
        jobs(plan.order.len()),
        table.render()
    )
}

/// `1 job`, `4 jobs`.
fn jobs(n: usize) -> String {
    if n == 1 {
        "1 job".to_owned()
    } else {
        format!("{n} jobs")
    }
}

fn depends(keys: &[String]) -> String {
    if keys.is_empty() {
        "-".to_owned()
    } else {
        keys.join(",")
    }
}

fn run_text(run: &Run) -> String {
    let mut pairs = vec![
        ("run", run.id.to_string()),
        ("status", run.status.as_str().to_owned()),
    ];
    for (key, value) in [
        ("name", &run.name),
        ("token", &run.run_token),
        ("project", &run.project),
        ("correlation id", &run.correlation_id),
        ("mode", &run.mode),
    ] {
        if value.is_some() {
            pairs.push((key, output::opt(value.as_deref())));
        }
    }
    pairs.extend([
        ("tenant", output::clean(&run.tenant)),
        ("created", output::time(run.created_at)),
        ("started", output::opt_time(run.started_at)),
        ("finished", output::opt_time(run.finished_at)),
    ]);
    if run.cancelled_at.is_some() {
        pairs.push(("cancelled", output::opt_time(run.cancelled_at)));
    }
    if let Some(d) = run.duration_seconds {
        pairs.push(("duration", format!("{d:.3}s")));
    }
    let mut table = Table::new(&[
        "KEY",
        "JOB",
        "KIND",
        "QUEUE",
        "STATE",
        "ATTEMPT",
        "DEPENDS ON",
        "NOTE",
    ]);
    for job in &run.jobs {
        table.row(vec![
            job.key.clone(),
            job.job_id.to_string(),
            job.kind.clone(),
            job.queue.clone(),
            job.state.to_string(),
            job.attempt.to_string(),
            depends(&job.depends_on),
            job.cancel_reason.clone().unwrap_or_default(),
        ]);
    }
    format!("{}\n{}", output::fields(&pairs), table.render())
}

/// The run status an event announces, when it is the `run_status` event of a finished run.
fn terminal_status(event: &SseEvent) -> Option<String> {
    let v: Value = serde_json::from_str(&event.data).ok()?;
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or(&event.event);
    if kind != "run_status" {
        return None;
    }
    let status = v
        .get("data")
        .and_then(|d| d.get("status"))
        .or_else(|| v.get("status"))
        .and_then(Value::as_str)?;
    matches!(status, "succeeded" | "failed" | "cancelled").then(|| status.to_owned())
}

/// `run stream`: checks the run exists, then prints its events from the first one on until a
/// `run_status` event says it ended.
async fn stream(ctx: &Ctx, id: Uuid) -> CliResult {
    let run: Run = ctx.api.get(&format!("/v1/runs/{id}")).await?;
    if !ctx.json {
        eprintln!("following run {id} ({}); Ctrl-C stops", run.status.as_str());
    }
    let json = ctx.json;
    let mut ended: Option<String> = None;
    let follow = events::follow(
        &ctx.api,
        vec![("run_id", id.to_string())],
        Some(0),
        |event| {
            events::print_event(event, json, true)?;
            if let Some(status) = terminal_status(event) {
                ended = Some(status);
                return Ok(Flow::Stop);
            }
            Ok(Flow::Continue)
        },
    );
    let result = tokio::select! {
        result = follow => result,
        _ = tokio::signal::ctrl_c() => Err(CliError::Interrupted),
    };
    result?;
    if !json && let Some(status) = ended {
        output::print(&format!("run {id} ended: {status}"))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event(data: &str) -> SseEvent {
        SseEvent {
            id: Some("1".into()),
            event: "message".into(),
            data: data.into(),
        }
    }

    #[test]
    fn terminal_run_status_is_recognised() {
        let done = event(r#"{"id":1,"type":"run_status","data":{"status":"failed"}}"#);
        assert_eq!(terminal_status(&done).as_deref(), Some("failed"));
        let running = event(r#"{"id":1,"type":"run_status","data":{"status":"running"}}"#);
        assert_eq!(terminal_status(&running), None);
        let other = event(r#"{"id":1,"type":"succeeded","data":{"status":"succeeded"}}"#);
        assert_eq!(terminal_status(&other), None);
    }

    #[test]
    fn dag_files_are_checked_locally() {
        let dir = std::env::temp_dir().join(format!("lh-cli-dag-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(&good, r#"{"jobs": [{"key": "a", "kind": "k"}]}"#).unwrap();
        let body = load_dag(&good, Some("t-1")).unwrap();
        assert_eq!(body["run_token"], "t-1");
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"jobs": [{"key": "a"}]}"#).unwrap();
        let err = load_dag(&bad, None).unwrap_err().to_string();
        assert!(err.contains("jobs[0]") && err.contains("kind"), "{err}");
        let err = load_dag(&dir.join("missing.json"), None).unwrap_err();
        assert!(matches!(err, CliError::Usage(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
