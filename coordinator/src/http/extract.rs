//! Extractors that turn every malformed input into our error envelope: axum's own rejections
//! would answer in plain text. Syntax errors are 400, well-formed but wrong fields are 422 with
//! the field's path, oversized bodies are 413. Request bodies are strict: the v1 request types
//! refuse keys they do not know (`deny_unknown_fields`), and the 422 names the key.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use leasehold_proto::{DEFAULT_TENANT, ErrorCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;
use crate::keys::Principal;
use crate::validate;

/// A JSON body (request) or JSON response.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

/// Reads the body, mapping the length limit to 413 and anything else to 400.
pub(crate) async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "request body is over the size limit",
            )
        } else {
            ApiError::invalid_request(format!("could not read the request body: {rejection}"))
        }
    })
}

/// Parses JSON text into `T`, naming the failing field on type errors.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_request(
            "the request body must be a JSON document",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
    de.end()
        .map_err(|e| ApiError::invalid_request(format!("invalid JSON: {e}")))?;
    Ok(value)
}

/// Converts a parsed JSON value into `T`, naming the failing field on type errors.
pub(crate) fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(json_error)
}

fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let text = inner.to_string();
            // serde reports a missing or unknown field at its parent's path; name the field.
            let (named, unknown) = match quoted_after(&text, "missing field `") {
                Some(m) => (Some(m), false),
                None => (quoted_after(&text, "unknown field `"), true),
            };
            let field = match (path.as_str(), named) {
                (".", Some(m)) => m.to_owned(),
                (".", None) => "body".to_owned(),
                // An unknown key is usually in the path already; a missing one never is.
                (p, Some(m)) if p != m && !p.ends_with(&format!(".{m}")) => format!("{p}.{m}"),
                (p, _) => p.to_owned(),
            };
            if unknown && let Some(key) = named {
                return ApiError::validation(&field, unknown_field_message(&field, key, &text));
            }
            ApiError::validation(&field, format!("invalid field `{field}`: {inner}"))
        }
        _ => ApiError::invalid_request(format!("invalid JSON: {inner}")),
    }
}

/// The text between `prefix` and the next backtick, e.g. the field of "missing field `x`".
fn quoted_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    rest.split('`').next()
}

/// "unknown field `max_atempts` (did you mean `max_attempts`?); expected one of …": request
/// bodies are strict, so that a misspelt field is refused instead of silently not applied.
fn unknown_field_message(field: &str, key: &str, serde_text: &str) -> String {
    // serde lists the known fields as "expected one of `a`, `b`" (or "expected `a`").
    let known: Vec<&str> = serde_text
        .split_once("expected ")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let suggestion = known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    let expected = if known.is_empty() {
        String::new()
    } else {
        format!("; known fields: {}", known.join(", "))
    };
    format!("unknown field `{field}`{suggestion}{expected}")
}

/// Levenshtein distance, for suggesting the field a typo meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(err) => ApiError::new(ErrorCode::Internal, format!("serialization failed: {err}"))
                .into_response(),
        }
    }
}

/// An optional JSON body: empty (or JSON `null`, what the document's optional body allows)
/// means `T::default()`.
#[derive(Debug, Clone, Default)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
            return Ok(Self(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// The `{id}` path segment as a job id (400 when not a UUID).
#[derive(Debug, Clone, Copy)]
pub struct JobId(pub Uuid);

/// The first path parameter, raw.
async fn path_param(parts: &mut Parts) -> Result<String, ApiError> {
    let params = axum::extract::RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|e| ApiError::invalid_request(format!("bad path: {e}")))?;
    params
        .iter()
        .next()
        .map(|(_, v)| v.to_owned())
        .ok_or_else(|| ApiError::invalid_request("missing path parameter"))
}

impl<S: Send + Sync> FromRequestParts<S> for JobId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_param(parts).await?;
        Uuid::parse_str(&raw).map(JobId).map_err(|_| {
            ApiError::invalid_request(format!("id {raw:?} is not a UUID"))
                .with_details(serde_json::json!({"field": "id"}))
        })
    }
}

/// The `{name}` path segment as a queue name (422 when invalid).
#[derive(Debug, Clone)]
pub struct QueueName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for QueueName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_param(parts).await?;
        validate::name("queue", &raw)?;
        Ok(Self(raw))
    }
}

/// The `{digest}` path segment of an artifact (422 unless `sha256:<64 lowercase hex>`).
#[derive(Debug, Clone)]
pub struct ArtifactDigest(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ArtifactDigest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_param(parts).await?;
        if !validate::is_digest(&raw) {
            return Err(ApiError::validation(
                "digest",
                "digest must be sha256:<64 lowercase hex>",
            ));
        }
        Ok(Self(raw))
    }
}

/// The tenant a request acts for. A key decides it: a key created for tenant `alpha` acts for
/// `alpha`, `ORCHESTRATOR_API_KEY` for `default`, and a request naming another tenant (the
/// `Leasehold-Tenant` header, a body's `tenant`, a worker's `hello`) is refused with 403, never
/// obeyed. Only a keyless coordinator takes the tenant from the header (default `default`).
#[derive(Debug, Clone)]
pub struct Tenant(pub String, Binding);

/// Whether the tenant came from the caller's key or from what the request said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    /// The key decided it: a request naming another is refused.
    Key,
    /// The coordinator's own key: tenant `default`, and a request naming another is refused,
    /// but it may act for several tenants at once where a route allows it (a shared pool).
    Operator,
    /// Keyless: the request's header (or the default).
    Named,
}

/// Header naming the tenant.
pub const TENANT_HEADER: &str = "leasehold-tenant";

/// The refusal of a request naming a tenant its key does not act for.
fn not_yours(bound: &str, named: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!(
            "this API key acts for tenant `{bound}`; it cannot act for tenant `{named}` (leave the tenant out, or use that tenant's key)"
        ),
    )
    .with_details(serde_json::json!({"field": "tenant"}))
}

impl Tenant {
    /// Reconciles a body's `tenant` field with the header and the key: they must agree when
    /// set (422 when the body and the header differ, 403 when either names another tenant than
    /// the key's).
    pub fn merge(&self, body: Option<&str>, header_given: bool) -> Result<String, ApiError> {
        match body {
            Some(b) if self.1 != Binding::Named && b != self.0 => Err(not_yours(&self.0, b)),
            Some(b) if header_given && b != self.0 => Err(ApiError::validation(
                "tenant",
                "the body's tenant differs from the Leasehold-Tenant header",
            )),
            Some(b) => {
                validate::name("tenant", b)?;
                Ok(b.to_owned())
            }
            None => Ok(self.0.clone()),
        }
    }

    /// Whether the caller's key decided the tenant (false on a keyless coordinator).
    pub fn from_key(&self) -> bool {
        self.1 != Binding::Named
    }

    /// Whether the caller may act for every tenant (the coordinator's own key, or anyone on a
    /// keyless coordinator): only such a caller may run a worker pool shared by tenants.
    pub fn acts_for_all(&self) -> bool {
        self.1 != Binding::Key
    }
}

/// Whether the request named a tenant in its header.
pub fn tenant_header_given(parts: &axum::http::HeaderMap) -> bool {
    parts.contains_key(TENANT_HEADER)
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let named = match parts.headers.get(TENANT_HEADER) {
            None => None,
            Some(v) => {
                let s = v.to_str().map_err(|_| {
                    ApiError::validation("tenant", "the Leasehold-Tenant header must be ASCII")
                })?;
                validate::name("tenant", s)?;
                Some(s.to_owned())
            }
        };
        let Ok(principal) = Principal::from_request_parts(parts, state).await;
        match (principal.bound_tenant(), named) {
            (Some(bound), Some(named)) if named != bound => Err(not_yours(bound, &named)),
            (Some(bound), _) if principal.is_operator() => {
                Ok(Self(bound.to_owned(), Binding::Operator))
            }
            (Some(bound), _) => Ok(Self(bound.to_owned(), Binding::Key)),
            (None, named) => Ok(Self(
                named.unwrap_or_else(|| DEFAULT_TENANT.to_owned()),
                Binding::Named,
            )),
        }
    }
}

/// Query parameters, parsed by hand so that each bad value is a 422 naming its parameter and
/// unknown parameters are rejected instead of silently ignored.
#[derive(Debug, Clone, Default)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Rejects parameters outside `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for (k, _) in &self.0 {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::validation(
                    k,
                    format!(
                        "unknown query parameter `{k}`; allowed: {}",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The raw value of `name`, if present (the last one wins).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The time `name` names: an RFC 3339 time, or a span back from `now` (`90s`, `15m`, `1h`,
    /// `7d`), so that a shared URL such as `?since=1h` stays relative. 422 naming it otherwise.
    pub fn time(
        &self,
        name: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        self.get(name)
            .map(|raw| time_value(name, raw, now))
            .transpose()
    }

    /// Parses `name` with `FromStr`, 422 naming it when malformed.
    pub fn parse<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|raw| {
                raw.parse::<T>().map_err(|_| {
                    ApiError::validation(
                        name,
                        format!("query parameter `{name}` has an invalid value {raw:?}"),
                    )
                })
            })
            .transpose()
    }
}

/// `raw` as [`QueryParams::time`] reads it; `field` names it in the error. Bodies with a time
/// filter (`POST /v1/replays`, `POST /v1/cancellations`) read theirs the same way.
pub(crate) fn time_value(
    field: &str,
    raw: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&chrono::Utc));
    }
    let refused = || {
        ApiError::validation(
            field,
            format!(
                "{field} {raw:?} is neither an RFC 3339 time (2026-12-05T10:00:00Z) nor a span \
                 back from now (90s, 15m, 1h, 7d; at most 3650d)"
            ),
        )
    };
    match crate::validate::span_secs(raw) {
        Some(secs) if secs <= 3650 * 86_400 => Ok(now - chrono::Duration::seconds(secs as i64)),
        _ => Err(refused()),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map(QueryParams)
            .map_err(|e| ApiError::invalid_request(format!("malformed query string: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use leasehold_proto::{ClaimRequest, EnqueueBatchRequest, NewJob, OutcomesRequest};

    use super::*;

    fn refusal<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> (String, String) {
        let err = parse_json::<T>(body.as_bytes()).expect_err("must be refused");
        let body = err.into_body("r");
        let field = body.details["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (field, body.message)
    }

    #[test]
    fn unknown_fields_are_named_with_their_path_and_a_suggestion() {
        let (field, message) = refusal::<NewJob>(r#"{"queue":"q","kind":"k","max_atempts":5}"#);
        assert_eq!(field, "max_atempts");
        assert!(
            message.contains("did you mean `max_attempts`?"),
            "{message}"
        );

        let (field, _) =
            refusal::<EnqueueBatchRequest>(r#"{"jobs":[{"kind":"k"},{"kind":"k","prio":1}]}"#);
        assert_eq!(field, "jobs[1].prio");

        let (field, message) =
            refusal::<ClaimRequest>(r#"{"worker_id":"w","queues":["q"],"zzz":1}"#);
        assert_eq!(field, "zzz");
        assert!(!message.contains("did you mean"), "{message}");

        let (field, _) = refusal::<NewJob>(
            r#"{"kind":"k","backoff":{"initial_ms":1,"multiplier":2,"max_delay_ms":3,"jitter":true}}"#,
        );
        assert_eq!(field, "backoff.jitter");
    }

    #[test]
    fn outcomes_refuse_keys_of_another_outcome_and_unknown_keys() {
        let id = Uuid::nil();
        let (field, message) = refusal::<OutcomesRequest>(&format!(
            r#"{{"outcomes":[{{"job_id":"{id}","fencing_token":1,"outcome":"fail","error":{{}},"result":1}}]}}"#
        ));
        assert_eq!(field, "outcomes[0].result");
        assert!(message.contains("unknown field"), "{message}");
        let (field, _) = refusal::<OutcomesRequest>(&format!(
            r#"{{"outcomes":[{{"job_id":"{id}","fencing_token":1,"outcome":"complete","reslt":1}}]}}"#
        ));
        assert_eq!(field, "outcomes[0].reslt");
        let ok: OutcomesRequest = parse_json(
            format!(
                r#"{{"outcomes":[{{"job_id":"{id}","fencing_token":1,"outcome":"release"}}]}}"#
            )
            .as_bytes(),
        )
        .expect("a release outcome parses");
        assert_eq!(ok.outcomes.len(), 1);
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("max_atempts", "max_attempts"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kind", "kind"), 0);
    }
}
