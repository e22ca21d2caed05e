//! `leasehold keys create|list|revoke`: API keys bound to a tenant and scopes (scope `admin`;
//! with `ORCHESTRATOR_API_KEY`, any tenant's).

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use leasehold_proto::{ApiKey, ApiKeyList, CreatedApiKey, NewApiKey};
use reqwest::Method;

use super::client::{Api, segment};
use super::error::{CliError, CliResult};
use super::output::{self, Table};
use super::{Ctx, DEFAULT_URL, When};

/// `leasehold keys …`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Coordinator base URL.
    #[arg(long, global = true, env = "LEASEHOLD_URL", default_value = DEFAULT_URL, help_heading = "Global options")]
    pub(crate) url: String,
    /// Machine output: JSON on stdout instead of tables.
    #[arg(long, global = true, help_heading = "Global options")]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key for a tenant; prints its token once (it is never shown again).
    Create {
        /// The tenant it acts for (default: the caller's own; another tenant needs the
        /// coordinator's own key, `ORCHESTRATOR_API_KEY`).
        #[arg(long)]
        tenant: Option<String>,
        /// Its scopes, comma-separated: jobs:read, jobs:write, worker, runs, events, admin,
        /// orch:quota, orch:backfill.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// When it stops working: a time from now (`90d`, `12h`) or an RFC 3339 time
        /// (default: never).
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        /// A label for people: who holds it, what for.
        #[arg(long)]
        name: Option<String>,
    },
    /// Keys (revoked ones included), newest first.
    List {
        /// Only this tenant's keys (the coordinator's own key sees every tenant's).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by id: it is refused from then on.
    Revoke {
        /// The key's id (`k_…`).
        id: String,
    },
}

/// When `--expires` says, counted from `now` (a span too long to count: never).
fn expires_at(raw: &str, now: DateTime<Utc>) -> CliResult<Option<DateTime<Utc>>> {
    match super::when(raw, now, true) {
        Ok(When::At(at)) => Ok(Some(at)),
        Ok(When::Never | When::OutOfRange) => Ok(None),
        Err(e) => Err(CliError::usage(format!(
            "--expires {e}; give a time from now (90d, 12h, 30m) or an RFC 3339 time"
        ))),
    }
}

pub(crate) async fn run(args: KeysArgs) -> CliResult {
    let ctx = Ctx {
        api: Api::new(&args.url, None)?,
        json: args.json,
    };
    match args.command {
        KeysCommand::Create {
            tenant,
            scopes,
            expires,
            name,
        } => {
            let expires_at = match expires {
                Some(raw) => expires_at(&raw, Utc::now())?,
                None => None,
            };
            let body = NewApiKey {
                tenant,
                name,
                scopes,
                expires_at,
            };
            let created: CreatedApiKey = ctx
                .api
                .call(ctx.api.request(Method::POST, "/v1/keys").json(&body))
                .await?
                .body;
            if ctx.json {
                return output::print_json(&created);
            }
            eprintln!(
                "created key {} for tenant {}: store its token now, it is not shown again",
                created.key.id,
                output::clean(&created.key.tenant)
            );
            output::print(&created.token)
        }
        KeysCommand::List { tenant } => {
            let path = match &tenant {
                Some(t) => format!("/v1/keys?tenant={}", segment(t)),
                None => "/v1/keys".to_owned(),
            };
            let list: ApiKeyList = ctx.api.get(&path).await?;
            if ctx.json {
                return output::print_json(&list);
            }
            if list.keys.is_empty() {
                eprintln!("no keys yet");
                return Ok(());
            }
            output::print(&table(&list.keys))
        }
        KeysCommand::Revoke { id } => {
            let key: ApiKey = ctx
                .api
                .call(
                    ctx.api
                        .request(Method::DELETE, &format!("/v1/keys/{}", segment(&id))),
                )
                .await?
                .body;
            if ctx.json {
                return output::print_json(&key);
            }
            output::print(&format!(
                "key {} revoked\n\n{}",
                key.id,
                table(std::slice::from_ref(&key))
            ))
        }
    }
}

fn table(keys: &[ApiKey]) -> String {
    let mut table = Table::new(&[
        "ID",
        "TENANT",
        "NAME",
        "SCOPES",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "STATE",
    ]);
    let now = Utc::now();
    for k in keys {
        let state = if k.revoked_at.is_some() {
            "revoked"
        } else if k.expires_at.is_some_and(|at| at <= now) {
            "expired"
        } else {
            "active"
        };
        table.row(vec![
            k.id.clone(),
            output::clean(&k.tenant),
            output::clean(&k.name),
            k.scopes.join(","),
            output::time(k.created_at),
            output::opt_time(k.expires_at),
            output::opt_time(k.last_used_at),
            state.to_owned(),
        ]);
    }
    table.render()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_a_time_from_now_or_a_timestamp() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            expires_at("90d", now).unwrap().unwrap().to_rfc3339(),
            "2027-03-05T00:00:00+00:00"
        );
        assert_eq!(
            expires_at("2027-01-01T00:00:00Z", now)
                .unwrap()
                .unwrap()
                .to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(expires_at("off", now).unwrap(), None);
        assert!(expires_at("soon", now).is_err());
    }
}
