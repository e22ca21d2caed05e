//! `leasehold quota show|set|delete`: the tenant's quota (reading needs `jobs:read`; changing
//! it `orch:quota`, a reason and a ticket, recorded in the audit trail).

use clap::{ArgGroup, Args, Subcommand};
use leasehold_proto::{QuotaRequest, QuotaStatus, StoredQuota};
use reqwest::Method;

use super::error::CliResult;
use super::output::{self, Table};
use super::{Ctx, GlobalArgs};

/// `leasehold quota …`.
#[derive(Debug, Args)]
pub struct QuotaArgs {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: QuotaCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QuotaCommand {
    /// The tenant's quota and what counts against it now.
    Show,
    /// Set the tenant's quota. It is replaced whole: a limit left out is no limit, so name
    /// every limit you mean to keep. Needs the `orch:quota` scope, a reason and a ticket.
    #[command(group(ArgGroup::new("limits").required(true).multiple(true)))]
    Set {
        /// Most jobs waiting (queued or blocked) once an enqueue is stored; enqueues past it
        /// are refused (429 quota_exceeded).
        #[arg(long, value_name = "N", group = "limits")]
        max_queued: Option<u64>,
        /// Most jobs leased at once (enforced when leases are granted).
        #[arg(long, value_name = "N", group = "limits")]
        max_leased: Option<u64>,
        /// Why (recorded in the audit trail).
        #[arg(long, required = true)]
        reason: String,
        /// The change ticket (recorded in the audit trail).
        #[arg(long, required = true)]
        ticket: String,
    },
    /// Remove the tenant's quota (no limits). Needs the `orch:quota` scope, a reason and a
    /// ticket.
    Delete {
        /// Why (recorded in the audit trail).
        #[arg(long, required = true)]
        reason: String,
        /// The change ticket (recorded in the audit trail).
        #[arg(long, required = true)]
        ticket: String,
    },
}

pub(crate) async fn run(ctx: &Ctx, command: QuotaCommand) -> CliResult {
    match command {
        QuotaCommand::Show => {
            let status: QuotaStatus = ctx.api.get("/v1/quota").await?;
            if ctx.json {
                return output::print_json(&status);
            }
            let what = if status.quota.is_some() {
                "quota"
            } else {
                "has no quota (no limits)"
            };
            output::print(&format!(
                "tenant {} {what}\n\n{}",
                output::clean(&status.tenant),
                table(&status)
            ))
        }
        QuotaCommand::Set {
            max_queued,
            max_leased,
            reason,
            ticket,
        } => {
            let body = QuotaRequest {
                max_queued,
                max_leased,
                reason: Some(reason),
                ticket: Some(ticket),
            };
            let stored: StoredQuota = ctx.api.put_json("/v1/quota", &body).await?;
            if ctx.json {
                return output::print_json(&stored);
            }
            output::print(&format!(
                "quota set: max_queued {}, max_leased {}",
                limit(stored.max_queued),
                limit(stored.max_leased)
            ))
        }
        QuotaCommand::Delete { reason, ticket } => {
            let request = ctx
                .api
                .request(Method::DELETE, "/v1/quota")
                .query(&[("reason", reason), ("ticket", ticket)]);
            ctx.api.send(request).await?;
            if ctx.json {
                return output::print_json(&serde_json::json!({"deleted": true}));
            }
            output::print("quota removed: no limits")
        }
    }
}

fn limit(n: Option<u64>) -> String {
    n.map_or_else(|| "none".to_owned(), |n| n.to_string())
}

fn table(status: &QuotaStatus) -> String {
    let quota = status.quota.as_ref();
    let usage = &status.usage;
    let mut table = Table::new(&["QUOTA", "LIMIT", "NOW", "COUNTS"]);
    table.row(vec![
        "max_queued".to_owned(),
        limit(quota.and_then(|q| q.max_queued)),
        usage.waiting().to_string(),
        format!("queued {} + blocked {}", usage.queued, usage.blocked),
    ]);
    table.row(vec![
        "max_leased".to_owned(),
        limit(quota.and_then(|q| q.max_leased)),
        usage.leased.to_string(),
        "leased".to_owned(),
    ]);
    let mut text = table.render();
    if let Some(q) = quota {
        text.push_str(&format!("\nupdated {}", output::time(q.updated_at)));
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use leasehold_proto::QuotaUsage;

    #[test]
    fn the_table_shows_each_limit_beside_what_it_counts() {
        let status = QuotaStatus {
            tenant: "alpha".into(),
            quota: Some(StoredQuota {
                max_queued: Some(100),
                max_leased: None,
                updated_at: chrono::DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
                    .unwrap()
                    .with_timezone(&chrono::Utc),
            }),
            usage: QuotaUsage {
                queued: 40,
                blocked: 2,
                leased: 7,
            },
        };
        assert_eq!(
            table(&status),
            "QUOTA       LIMIT  NOW  COUNTS\n\
             max_queued  100    42   queued 40 + blocked 2\n\
             max_leased  none   7    leased\n\
             \nupdated 2026-12-05T10:00:00Z"
        );
    }
}
