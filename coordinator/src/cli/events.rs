//! `leasehold events tail`, and the resumable SSE follower that `run stream` shares: it reads
//! `GET /v1/events`, and when the connection drops it reconnects with `Last-Event-ID` so that
//! no event is lost or repeated.

use std::time::Duration;

use clap::{Args, Subcommand};
use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::ACCEPT;
use serde_json::Value;
use uuid::Uuid;

use super::client::Api;
use super::error::{CliError, CliResult};
use super::output;
use super::sse::{SseEvent, SseItem, SseParser};
use super::{Ctx, GlobalArgs};

/// No byte for this long (the server sends keep-alive comments far more often): the
/// connection is presumed dead and is replaced.
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// First reconnection delay unless the server's `retry:` says otherwise.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Longest delay between reconnection attempts.
const MAX_RETRY: Duration = Duration::from_secs(10);
/// Give up after failing to reconnect for this long.
const RECONNECT_PATIENCE: Duration = Duration::from_secs(120);

/// `leasehold events …`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: EventsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// Follow the event feed until Ctrl-C, one line per event (`--json`: the raw event JSON).
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Only events of this run.
    #[arg(long = "run")]
    run_id: Option<Uuid>,
    /// Only events of this job.
    #[arg(long = "job")]
    job_id: Option<Uuid>,
    /// Only events of jobs on this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only events of these types, comma-separated (`enqueued`, `leased`, `succeeded`,
    /// `run_status`, …).
    #[arg(long = "type")]
    kind: Option<String>,
    /// Start after this event id. Without it the feed starts at the first event of the ledger
    /// and then follows live.
    #[arg(long)]
    after: Option<i64>,
}

pub(crate) async fn run(ctx: &Ctx, command: EventsCommand) -> CliResult {
    let EventsCommand::Tail(args) = command;
    let mut query: Vec<(&'static str, String)> = Vec::new();
    if let Some(r) = args.run_id {
        query.push(("run_id", r.to_string()));
    }
    if let Some(j) = args.job_id {
        query.push(("job_id", j.to_string()));
    }
    if let Some(q) = args.queue {
        query.push(("queue", q));
    }
    if let Some(t) = args.kind {
        query.push(("type", t));
    }
    let json = ctx.json;
    let follow = follow(&ctx.api, query, args.after, |event| {
        print_event(event, json, false)?;
        Ok(Flow::Continue)
    });
    tokio::select! {
        result = follow => result,
        _ = tokio::signal::ctrl_c() => Err(CliError::Interrupted),
    }
}

/// What the follower does after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading.
    Continue,
    /// Stop and return `Ok`.
    Stop,
}

/// Follows `GET /v1/events?query…` (starting after `after`, when given), calling `on_event` for
/// every event until it answers [`Flow::Stop`]. Dropped connections are resumed with
/// `Last-Event-ID`; a coordinator that cannot be reached at the start, or for
/// [`RECONNECT_PATIENCE`] later, ends the follow with the error.
pub(crate) async fn follow<F>(
    api: &Api,
    query: Vec<(&'static str, String)>,
    after: Option<i64>,
    mut on_event: F,
) -> CliResult
where
    F: FnMut(&SseEvent) -> CliResult<Flow>,
{
    let mut last_id: Option<String> = None;
    let mut connected_once = false;
    let mut retry = FIRST_RETRY;
    let mut server_retry: Option<Duration> = None;
    let mut failing_since: Option<tokio::time::Instant> = None;
    loop {
        let mut request = api
            .stream_request(Method::GET, "/v1/events")
            .header(ACCEPT, "text/event-stream")
            .query(&query);
        match &last_id {
            // Resuming: the header says where; a stale `after` must not compete with it.
            Some(id) => request = request.header("Last-Event-ID", id.as_str()),
            None => {
                if let Some(after) = after {
                    request = request.query(&[("after", after)]);
                }
            }
        }
        let response = match api.send(request).await {
            Ok(r) => r,
            Err(err) => {
                let transient = match &err {
                    CliError::Connect { .. } => true,
                    CliError::Api { status, .. } | CliError::Http { status, .. } => {
                        matches!(status, 429 | 502 | 503 | 504)
                    }
                    _ => false,
                };
                let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                if !connected_once || !transient || since.elapsed() > RECONNECT_PATIENCE {
                    return Err(err);
                }
                eprintln!("event stream: {err}; retrying in {retry:?}");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
                continue;
            }
        };
        connected_once = true;
        failing_since = None;
        retry = server_retry.unwrap_or(FIRST_RETRY);
        let mut parser = SseParser::new();
        let mut body = response.bytes_stream();
        let ended = loop {
            let chunk = match tokio::time::timeout(IDLE_TIMEOUT, body.next()).await {
                Err(_) => break format!("no data for {}s", IDLE_TIMEOUT.as_secs()),
                Ok(None) => break "the server closed the stream".to_owned(),
                Ok(Some(Err(e))) => break super::error::error_chain(&e),
                Ok(Some(Ok(chunk))) => chunk,
            };
            for item in parser.feed(&chunk) {
                match item {
                    SseItem::Comment(_) => {}
                    SseItem::Retry(ms) => {
                        let delay = Duration::from_millis(ms).min(MAX_RETRY);
                        server_retry = Some(delay);
                        retry = delay;
                    }
                    SseItem::Event(event) => {
                        if let Some(id) = &event.id {
                            last_id = Some(id.clone());
                        }
                        if event.event == "resync" {
                            // We read too slowly for the live fan-out; the server carries on
                            // from the ledger after the last event we got, so nothing is lost.
                            eprintln!(
                                "event stream: fell behind the live feed; the server continues from the ledger after event {}",
                                last_id.as_deref().unwrap_or("0")
                            );
                            continue;
                        }
                        if event.data.is_empty() {
                            continue;
                        }
                        if on_event(&event)? == Flow::Stop {
                            return Ok(());
                        }
                    }
                }
            }
        };
        eprintln!(
            "event stream: {ended}; reconnecting after event {}",
            last_id.as_deref().unwrap_or("0")
        );
        tokio::time::sleep(retry).await;
    }
}

/// Prints one event: its raw JSON with `--json`, else a human line (without the run id when
/// `one_run`: every event of a run's stream names the same run).
pub(crate) fn print_event(event: &SseEvent, json: bool, one_run: bool) -> CliResult {
    if json {
        return match serde_json::from_str::<Value>(&event.data) {
            Ok(v) if event.data.contains('\n') => output::print_json_line(&v),
            Ok(_) => output::print(&event.data),
            // Not JSON: still one JSON line, so that `--json` output always parses.
            Err(_) => output::print_json_line(&serde_json::json!({
                "id": event.id, "type": event.event, "data": event.data,
            })),
        };
    }
    output::print(&event_line(event, one_run))
}

/// `2026-11-22T15:07:35Z  #42  succeeded  job=… run=… queue=emails kind=send worker=w-1  {…}`.
pub(crate) fn event_line(event: &SseEvent, one_run: bool) -> String {
    let Ok(Value::Object(v)) = serde_json::from_str::<Value>(&event.data) else {
        return output::clean(&format!("{}: {}", event.event, event.data));
    };
    let text = |key: &str| v.get(key).and_then(Value::as_str);
    let at = text("at")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(
            || "-".to_owned(),
            |t| output::time(t.with_timezone(&chrono::Utc)),
        );
    let id = v
        .get("id")
        .map(|i| i.to_string())
        .or_else(|| event.id.clone())
        .unwrap_or_else(|| "-".to_owned());
    let kind = text("type").unwrap_or(&event.event);
    let mut line = format!("{at}  #{id}  {kind}");
    for (label, key) in [
        ("job", "job_id"),
        ("run", "run_id"),
        ("queue", "queue"),
        ("kind", "job_kind"),
        ("worker", "worker_id"),
    ] {
        if one_run && key == "run_id" {
            continue;
        }
        if let Some(value) = text(key) {
            line.push_str(&format!(" {label}={value}"));
        }
    }
    match v.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) if o.is_empty() => {}
        Some(data) => {
            line.push_str("  ");
            line.push_str(&data.to_string());
        }
    }
    output::clean(&line)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn human_lines_name_the_essentials() {
        let event = SseEvent {
            id: Some("42".into()),
            event: "succeeded".into(),
            data: r#"{"id":42,"type":"succeeded","job_id":"j","run_id":null,"tenant":"default","queue":"emails","job_kind":"send","worker_id":"w-1","at":"2026-11-22T15:07:35.5Z","data":{"from":"leased"}}"#.into(),
        };
        assert_eq!(
            event_line(&event, false),
            r#"2026-11-22T15:07:35Z  #42  succeeded job=j queue=emails kind=send worker=w-1  {"from":"leased"}"#
        );
        let in_run = SseEvent {
            data: event.data.replace(r#""run_id":null"#, r#""run_id":"r""#),
            ..event.clone()
        };
        assert!(event_line(&in_run, false).contains(" run=r "));
        assert!(!event_line(&in_run, true).contains("run="));
        let other = SseEvent {
            id: None,
            event: "hello".into(),
            data: "hi\nthere".into(),
        };
        assert_eq!(event_line(&other, false), "hello: hi there");
    }
}
