//! Defences for a coordinator a browser can reach: a web page must not be able to change state
//! through it, open a worker session on it, or read it through DNS rebinding. They matter most
//! on the keyless default (anything that reaches the port may call), and cost a well-behaved
//! client nothing: SDKs, the CLI and curl send no `Origin` and the right content type.
//!
//! - **Content type.** A request that changes state (any method but `GET`, `HEAD`, `OPTIONS`)
//!   and carries a body, or names a content type, must name the route's own:
//!   `application/json` (any `+json` type too), or `application/octet-stream` for artifact
//!   uploads. Anything else is 415 `unsupported_media_type`: an HTML form or a `text/plain`
//!   fetch — what a page may send cross-site without a CORS preflight — never reaches a
//!   handler. A body-less request with no content type (`curl -X POST …/pause`) is fine.
//! - **Origin.** A state-changing request or a WebSocket upgrade whose `Origin` is neither the
//!   coordinator's own (same scheme-less host and port as `Host`) nor one of `--cors-origins` is
//!   403 `forbidden` (`details.field: "origin"`). Browsers always send `Origin` on those.
//! - **Host.** While the coordinator has no key at all, a request whose `Host` is not an IP
//!   address, `localhost` (or a `*.localhost` name), this machine's host name or one of
//!   `--allowed-hosts` is 403 (`details.field: "host"`): a page whose own name was re-pointed at
//!   127.0.0.1 (DNS rebinding) cannot read the answers. With keys, such a page has no key.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leasehold_proto::ErrorCode;

use crate::error::ApiError;
use crate::keys::KeyRing;

/// What the cross-site checks accept.
#[derive(Debug, Clone, Default)]
pub(crate) struct SiteRules {
    /// `--cors-origins`: browser origins allowed besides the coordinator's own (`*`: any).
    pub(crate) origins: Vec<String>,
    /// `--allowed-hosts`: `Host` names accepted on a keyless coordinator besides IP addresses,
    /// `localhost` and this machine's name (`*`: any).
    pub(crate) hosts: Vec<String>,
    /// This machine's host name, when it can be read.
    pub(crate) own_name: Option<String>,
}

impl SiteRules {
    /// Rules with these origins and host names, and this machine's name.
    pub(crate) fn new(origins: Vec<String>, hosts: Vec<String>) -> Self {
        Self {
            origins,
            hosts,
            own_name: machine_name(),
        }
    }

    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        if self
            .origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        // Same origin: the origin's authority is the Host the request was sent to.
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        if name.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name == "localhost"
            || name.ends_with(".localhost")
            || self.own_name.as_deref() == Some(name.as_str())
            || self
                .hosts
                .iter()
                .any(|h| h == "*" || h.trim_end_matches('.').eq_ignore_ascii_case(&name))
    }
}

/// The name part of a `Host` value (`[::1]:7070` → `::1`, `a.b:80` → `a.b`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// This machine's host name (Linux), lowercased.
fn machine_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

/// The content type a state-changing request to `path` must carry.
fn expected_type(method: &Method, path: &str) -> &'static str {
    if *method == Method::PUT && path.starts_with("/v1/artifacts/") {
        "application/octet-stream"
    } else {
        "application/json"
    }
}

fn is_json(essence: &str) -> bool {
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// Why a state-changing request's content type is refused, if it is.
fn content_type_refusal(method: &Method, path: &str, headers: &HeaderMap) -> Option<ApiError> {
    let expected = expected_type(method, path);
    let given = headers.get(header::CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    let fine = match &given {
        // An upload without a type (`curl -T`) is taken as bytes: browsers preflight a PUT.
        // A POST body without a type is what a page's `fetch` sends for a Blob: refused.
        None => !has_body(headers) || expected == "application/octet-stream",
        Some(essence) if expected == "application/json" => is_json(essence),
        Some(essence) => essence == expected,
    };
    (!fine).then(|| {
        let named = given.as_deref().unwrap_or("none");
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("this route takes Content-Type: {expected} (the request's was {named}); nothing was done"),
        )
        .with_details(serde_json::json!({"field": "content-type", "expected": expected}))
    })
}

fn refused(field: &str, message: String) -> Response {
    ApiError::new(ErrorCode::Forbidden, message)
        .with_details(serde_json::json!({"field": field}))
        .into_response()
}

/// What the middleware needs: the rules, and the keys (the Host check applies while there are
/// none).
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub(crate) rules: Arc<SiteRules>,
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) keyed: bool,
}

/// The middleware (see the module docs).
pub(crate) async fn check(State(site): State<Site>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let keyless = !site.keyed && site.keys.is_empty();
    // No Host at all is no browser's request (browsers always send one): nothing to check.
    if keyless && host.is_some_and(|h| !site.rules.host_allowed(h)) {
        return refused(
            "host",
            format!(
                "requests to this coordinator must name it by IP address, localhost, its machine name or a name in --allowed-hosts (Host was {})",
                host.unwrap_or_default()
            ),
        );
    }
    let method = req.method();
    let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if (!reads || upgrade)
        && let Some(origin) = headers.get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("null");
        if !site.rules.origin_allowed(origin, host) {
            return refused(
                "origin",
                format!(
                    "a page from {origin} may not call this coordinator (add it to --cors-origins to allow it)"
                ),
            );
        }
    }
    if !reads && let Some(err) = content_type_refusal(method, req.uri().path(), headers) {
        return err.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rules() -> SiteRules {
        SiteRules {
            origins: vec!["https://console.example".into()],
            hosts: vec!["leasehold.internal".into()],
            own_name: Some("buildbox".into()),
        }
    }

    #[test]
    fn hosts_a_rebinding_page_cannot_use() {
        let r = rules();
        for ok in [
            "127.0.0.1:7070",
            "[::1]:7070",
            "localhost:7070",
            "LOCALHOST",
            "app.localhost:1",
            "buildbox:7070",
            "leasehold.internal",
            "10.0.0.5",
        ] {
            assert!(r.host_allowed(ok), "{ok}");
        }
        for no in [
            "evil.example:7070",
            "evil.example",
            "localhost.evil.example",
            "",
        ] {
            assert!(!r.host_allowed(no), "{no}");
        }
    }

    #[test]
    fn origins_are_the_coordinators_own_or_configured() {
        let r = rules();
        assert!(r.origin_allowed("http://127.0.0.1:7070", Some("127.0.0.1:7070")));
        assert!(r.origin_allowed("https://console.example", Some("127.0.0.1:7070")));
        assert!(!r.origin_allowed("http://evil.example", Some("127.0.0.1:7070")));
        assert!(!r.origin_allowed("null", Some("127.0.0.1:7070")));
        assert!(!r.origin_allowed("http://127.0.0.1:7071", Some("127.0.0.1:7070")));
    }

    #[test]
    fn content_types_a_form_or_a_simple_fetch_would_send_are_refused() {
        let mut h = HeaderMap::new();
        let post = Method::POST;
        assert!(content_type_refusal(&post, "/v1/queues/q/pause", &h).is_none());
        h.insert(header::CONTENT_LENGTH, "2".parse().unwrap());
        assert!(content_type_refusal(&post, "/v1/jobs", &h).is_some());
        for (ty, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
        ] {
            h.insert(header::CONTENT_TYPE, ty.parse().unwrap());
            assert_eq!(
                content_type_refusal(&post, "/v1/jobs", &h).is_none(),
                ok,
                "{ty}"
            );
        }
        h.insert(
            header::CONTENT_TYPE,
            "application/octet-stream".parse().unwrap(),
        );
        assert!(content_type_refusal(&Method::PUT, "/v1/artifacts/sha256:ab", &h).is_none());
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(content_type_refusal(&Method::PUT, "/v1/artifacts/sha256:ab", &h).is_some());
        // A body-less form post still names its type: refused.
        let mut form = HeaderMap::new();
        form.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        form.insert(header::CONTENT_LENGTH, "0".parse().unwrap());
        assert!(content_type_refusal(&post, "/v1/queues/q/pause", &form).is_some());
    }
}
