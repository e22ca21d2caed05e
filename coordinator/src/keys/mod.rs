//! Who is calling, and what they may do: API keys bound to a tenant and scopes.
//!
//! Three ways a coordinator can run (docs/SECURITY.md):
//! - **keyless** — no `ORCHESTRATOR_API_KEY` and no key created: every caller may do everything,
//!   and the `Leasehold-Tenant` header picks the tenant (a local, single-user coordinator);
//! - **single key** — `ORCHESTRATOR_API_KEY`, the mode of the systems Leasehold replaces: that key
//!   acts for tenant `default` with every scope, and may manage the keys of every tenant;
//! - **per-tenant keys** — created with `leasehold keys create` (or `POST /v1/keys`): each acts
//!   for its one tenant with its scopes. Once one exists, every protected route needs a key.
//!
//! A token is `lhk_<id>_<secret>`: the id finds the key, the SHA-256 of the whole token is
//! compared in constant time with the stored one. Only that digest is stored.

mod ring;
mod scope;

pub use ring::{KeyRing, REFRESH, Verdict};
pub use scope::{Scope, Scopes};

use leasehold_proto::DEFAULT_TENANT;
use sha2::{Digest, Sha256};

use crate::blobs::hex;

/// The caller, as its key (or the lack of one) makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No key is configured or created: everything is allowed, the header picks the tenant.
    Open,
    /// `ORCHESTRATOR_API_KEY`: tenant `default`, every scope, every tenant's keys.
    Root,
    /// A key created through `/v1/keys`.
    Key(Grant),
}

/// What a created key grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The key's id.
    pub id: String,
    /// The key's label.
    pub name: String,
    /// The one tenant it acts for.
    pub tenant: String,
    /// What it may do.
    pub scopes: Scopes,
}

impl Principal {
    /// The tenant the caller is bound to; `None` when the request may name one (keyless).
    pub fn bound_tenant(&self) -> Option<&str> {
        match self {
            Self::Open => None,
            Self::Root => Some(DEFAULT_TENANT),
            Self::Key(grant) => Some(&grant.tenant),
        }
    }

    /// Whether the caller acts for the whole coordinator rather than one tenant: the
    /// coordinator's own key, or anyone on a keyless coordinator. Only such a caller may act on
    /// what every tenant shares (the ledger archive, a sweep of every tenant).
    pub fn is_operator(&self) -> bool {
        matches!(self, Self::Open | Self::Root)
    }

    /// Whether the caller holds at least one of `needed` (an empty list needs none).
    pub fn allows(&self, needed: &[Scope]) -> bool {
        match self {
            Self::Open | Self::Root => true,
            Self::Key(grant) => needed.is_empty() || needed.iter().any(|s| grant.scopes.has(*s)),
        }
    }

    /// Whether the caller may create, list and revoke the keys of `tenant`.
    pub fn manages(&self, tenant: &str) -> bool {
        match self {
            Self::Open | Self::Root => true,
            Self::Key(grant) => grant.scopes.has(Scope::Admin) && grant.tenant == tenant,
        }
    }

    /// Who did it, for audit records: the key's id and name, `root`, or `anonymous`.
    pub fn actor(&self) -> (String, String) {
        match self {
            Self::Open => ("anonymous".into(), String::new()),
            Self::Root => ("root".into(), "ORCHESTRATOR_API_KEY".into()),
            Self::Key(grant) => (grant.id.clone(), grant.name.clone()),
        }
    }
}

/// The prefix of every created token.
pub const TOKEN_PREFIX: &str = "lhk_";

/// A new key's id and token, from the operating system's random source.
pub fn new_token() -> std::io::Result<(String, String)> {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id).map_err(std::io::Error::other)?;
    getrandom::fill(&mut secret).map_err(std::io::Error::other)?;
    let id = format!("k_{}", hex(&id));
    let token = format!("{TOKEN_PREFIX}{id}_{}", hex(&secret));
    Ok((id, token))
}

/// The id a token names, if it has the shape of a created token.
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.rsplit_once('_')?;
    let well_formed = id.len() == 14
        && id.starts_with("k_")
        && id[2..].bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 64;
    well_formed.then_some(id)
}

/// The digest a token is stored and compared as.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_id_and_differ_every_time() {
        let (id, token) = new_token().expect("random");
        assert_eq!(token_id(&token), Some(id.as_str()));
        assert_eq!(token.len(), 4 + 14 + 1 + 64);
        let (_, other) = new_token().expect("random");
        assert_ne!(token, other);
        assert_eq!(token_id("lhk_k_123_abc"), None);
        assert_eq!(token_id("a-shared-key-of-the-old-kind"), None);
        assert_eq!(token_id(&token.replace("lhk_", "LHK_")), None);
    }

    #[test]
    fn a_key_acts_for_its_tenant_with_its_scopes() {
        let grant = Grant {
            id: "k_000000000001".into(),
            name: "ci".into(),
            tenant: "alpha".into(),
            scopes: Scopes::parse(["worker", "jobs:read"]).expect("scopes"),
        };
        let key = Principal::Key(grant);
        assert_eq!(key.bound_tenant(), Some("alpha"));
        assert!(key.allows(&[Scope::Worker]));
        assert!(key.allows(&[Scope::JobsWrite, Scope::JobsRead]));
        assert!(!key.allows(&[Scope::Admin]));
        assert!(!key.manages("alpha"), "no admin scope");
        assert_eq!(Principal::Root.bound_tenant(), Some("default"));
        assert!(Principal::Root.manages("beta"));
        assert_eq!(Principal::Open.bound_tenant(), None);
    }
}
