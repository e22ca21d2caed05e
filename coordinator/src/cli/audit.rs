//! `leasehold audit`: the tenant's audit trail (scope `admin`), oldest first.

use clap::Args;
use leasehold_proto::{AuditList, Event};

use super::error::{CliError, CliResult};
use super::output::{self, Table};
use super::{Ctx, GlobalArgs, When};

/// `leasehold audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    /// Only events at or after this: a time ago (`24h`, `7d`) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only events after this id (the last one seen).
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// At most this many events (1 to 500).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=500))]
    limit: u32,
}

/// The RFC 3339 time a flag such as `--since` names: a time ago (`24h`) or an RFC 3339 time.
pub(super) fn time_ago(
    flag: &str,
    raw: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> CliResult<String> {
    match super::when(raw, now, false) {
        Ok(When::At(at)) => Ok(at.to_rfc3339()),
        Ok(When::OutOfRange) => Err(CliError::usage(format!("{flag} is too far back"))),
        Ok(When::Never) | Err(_) => Err(CliError::usage(format!(
            "{flag} {raw:?}: give a time ago (24h, 7d) or an RFC 3339 time"
        ))),
    }
}

pub(crate) async fn run(ctx: &Ctx, args: AuditArgs) -> CliResult {
    let mut path = format!("/v1/audit?after={}&limit={}", args.after, args.limit);
    if let Some(raw) = &args.since {
        let from = time_ago("--since", raw, chrono::Utc::now())?;
        path.push_str(&format!("&from={}", super::client::segment(&from)));
    }
    let list: AuditList = ctx.api.get(&path).await?;
    if ctx.json {
        return output::print_json(&list);
    }
    if list.events.is_empty() {
        eprintln!("no audited actions");
        return Ok(());
    }
    let mut text = table(&list.events);
    if let Some(next) = list.next_after {
        text.push_str(&format!("\nmore: --after {next}"));
    }
    output::print(&text)
}

fn table(events: &[Event]) -> String {
    let mut table = Table::new(&["ID", "AT", "ACTION", "BY", "TARGET", "REASON", "TICKET"]);
    for e in events {
        let actor = &e.data["actor"];
        let by = match actor["kind"].as_str() {
            Some("key") => format!(
                "{} ({})",
                actor["key_id"].as_str().unwrap_or("?"),
                actor["key_name"].as_str().unwrap_or("")
            ),
            Some(kind) => kind.to_owned(),
            None => "?".to_owned(),
        };
        let text = |v: &serde_json::Value| output::clean(v.as_str().unwrap_or(""));
        table.row(vec![
            e.id.to_string(),
            output::time(e.at),
            text(&e.data["action"]),
            output::clean(&by),
            output::clean(&e.data["target"].to_string()),
            text(&e.data["reason"]),
            text(&e.data["ticket"]),
        ]);
    }
    table.render()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_time_ago_or_a_timestamp() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-05T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            time_ago("--since", "24h", now).unwrap(),
            "2026-12-04T00:00:00+00:00"
        );
        assert_eq!(
            time_ago("--since", "2026-12-01T10:00:00Z", now).unwrap(),
            "2026-12-01T10:00:00+00:00"
        );
        assert!(time_ago("--since", "yesterday", now).is_err());
    }
}
