//! Scopes: what a key may do. The route table that says which scope each route needs is
//! `http/scopes.rs`; the list for people is in docs/SECURITY.md.

use std::fmt;

/// One scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read jobs, queues and artifacts.
    JobsRead,
    /// Enqueue, cancel and retry jobs.
    JobsWrite,
    /// Lease jobs and report on them (HTTP and WebSocket), upload artifacts.
    Worker,
    /// Submit, read and cancel runs (and the replaced systems' run surfaces).
    Runs,
    /// Read the event streams and the ledger.
    Events,
    /// Manage keys, queues' settings, pauses and retention.
    Admin,
    /// Change quotas (with a reason and a ticket).
    OrchQuota,
    /// Replay and backfill (with a reason and a ticket).
    OrchBackfill,
}

impl Scope {
    /// Every scope, in the order the docs list them.
    pub const ALL: [Scope; 8] = [
        Scope::JobsRead,
        Scope::JobsWrite,
        Scope::Worker,
        Scope::Runs,
        Scope::Events,
        Scope::Admin,
        Scope::OrchQuota,
        Scope::OrchBackfill,
    ];

    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::JobsRead => "jobs:read",
            Scope::JobsWrite => "jobs:write",
            Scope::Worker => "worker",
            Scope::Runs => "runs",
            Scope::Events => "events",
            Scope::Admin => "admin",
            Scope::OrchQuota => "orch:quota",
            Scope::OrchBackfill => "orch:backfill",
        }
    }

    /// The scope named `name`.
    pub fn parse(name: &str) -> Option<Scope> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key's scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Parses names; `Err` carries the first unknown one. Duplicates are dropped, order kept
    /// as in [`Scope::ALL`].
    pub fn parse<I, S>(names: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for name in names {
            let name = name.as_ref();
            let scope = Scope::parse(name).ok_or_else(|| name.to_owned())?;
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        out.sort();
        Ok(Self(out))
    }

    /// Whether it holds `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, in [`Scope::ALL`] order.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|s| s.as_str().to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_by_name_and_refuse_a_typo() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        let scopes = Scopes::parse(["worker", "jobs:read", "worker"]).expect("known");
        assert_eq!(scopes.names(), ["jobs:read", "worker"]);
        assert_eq!(Scopes::parse(["jobs:raed"]), Err("jobs:raed".to_owned()));
        assert_eq!(
            Scope::ALL.map(Scope::as_str),
            leasehold_proto::SCOPES,
            "the wire list and the enum agree"
        );
    }
}
