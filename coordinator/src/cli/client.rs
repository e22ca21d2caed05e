//! The HTTP side of the CLI: one reqwest client carrying the API key and tenant, and the mapping
//! of every answer to either a decoded body or a [`CliError`].

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::error::{CliError, CliResult};

/// Environment variables that may hold the API key, in the order they are read.
pub(crate) const API_KEY_VARS: [&str; 2] = ["LEASEHOLD_API_KEY", "ORCHESTRATOR_API_KEY"];
/// Request header naming the tenant.
const TENANT_HEADER: &str = "leasehold-tenant";
/// Longest an ordinary (non-streaming) request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A coordinator to talk to.
#[derive(Clone)]
pub(crate) struct Api {
    base: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Api {
    // The default headers hold the API key: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish()
    }
}

/// A decoded success together with its status (some calls answer 200 or 201 with the same body).
#[derive(Debug)]
pub(crate) struct Answer<T> {
    /// HTTP status.
    pub(crate) status: StatusCode,
    /// The decoded body.
    pub(crate) body: T,
}

impl Api {
    /// A client for `base` (`http://host:port`), with the API key from the environment and
    /// the tenant, when given.
    pub(crate) fn new(base: &str, tenant: Option<&str>) -> CliResult<Self> {
        let api_key = API_KEY_VARS
            .iter()
            .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()));
        Self::with_key(base, tenant, api_key.as_deref())
    }

    /// A client with an explicit key (or none).
    pub(crate) fn with_key(
        base: &str,
        tenant: Option<&str>,
        api_key: Option<&str>,
    ) -> CliResult<Self> {
        let base = base.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base).map_err(|e| {
            let hint = if base.contains("://") {
                String::new()
            } else {
                format!(" (did you mean http://{base}?)")
            };
            CliError::usage(format!("--url {base:?} is not a URL: {e}{hint}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(CliError::usage(format!(
                "--url {base:?} must be an http:// or https:// URL with a host"
            )));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("leasehold-cli/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(key) = api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                CliError::usage("the API key holds characters that cannot go in a header")
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        if let Some(tenant) = tenant.filter(|t| !t.is_empty()) {
            let value = HeaderValue::from_str(tenant)
                .map_err(|_| CliError::usage(format!("tenant {tenant:?} cannot go in a header")))?;
            headers.insert(TENANT_HEADER, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| CliError::usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { base, http })
    }

    /// `base + path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the ordinary timeout.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .timeout(REQUEST_TIMEOUT)
            .header(ACCEPT, "application/json")
    }

    /// A request without an overall timeout, for streams.
    pub(crate) fn stream_request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// Sends `request` and returns the response if its status is a success; an error status
    /// becomes [`CliError::Api`] (or [`CliError::Http`] without an envelope), a transport
    /// failure [`CliError::Connect`].
    pub(crate) async fn send(&self, request: RequestBuilder) -> CliResult<Response> {
        let request = request
            .build()
            .map_err(|e| CliError::usage(format!("cannot build the request: {e}")))?;
        let url = redact_query(request.url());
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| CliError::connect(&url, &e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error_from(response, &url).await)
        }
    }

    /// Sends `request` and decodes a JSON success.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> CliResult<Answer<T>> {
        let response = self.send(request).await?;
        let status = response.status();
        let url = redact_query(response.url());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CliError::connect(&url, &e))?;
        let body = serde_json::from_slice(&bytes).map_err(|e| {
            CliError::Protocol(format!(
                "the answer from {url} is not what the API promises: {e}: {}",
                snippet(&bytes)
            ))
        })?;
        Ok(Answer { status, body })
    }

    /// `GET path` decoded.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        Ok(self.call(self.request(Method::GET, path)).await?.body)
    }

    /// `POST path` with no body, decoded.
    pub(crate) async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        Ok(self.call(self.request(Method::POST, path)).await?.body)
    }

    /// `PUT path` with a JSON body, decoded.
    pub(crate) async fn put_json<T: DeserializeOwned, B: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> CliResult<T> {
        Ok(self
            .call(self.request(Method::PUT, path).json(body))
            .await?
            .body)
    }
}

/// The URL without its query string's values, for messages (queries never carry secrets from
/// this CLI, but keep messages short and uniform).
fn redact_query(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.to_string()
}

/// The error for a non-success answer.
async fn error_from(response: Response, url: &str) -> CliError {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Body,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        request_id: String,
        #[serde(default)]
        details: serde_json::Value,
    }
    let status = response.status().as_u16();
    let header_request_id = response
        .headers()
        .get(leasehold_proto::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<Envelope>(&bytes) {
        Ok(Envelope { error }) => CliError::Api {
            status,
            code: error.code,
            message: error.message,
            request_id: if error.request_id.is_empty() {
                header_request_id
            } else {
                error.request_id
            },
            details: match error.details {
                serde_json::Value::Object(o) if !o.is_empty() => Some(serde_json::Value::Object(o)),
                _ => None,
            },
        },
        Err(_) => CliError::Http {
            status,
            url: url.to_owned(),
            body: snippet(&bytes),
        },
    }
}

/// The first line of a body, at most 200 characters.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next().unwrap_or_default().trim();
    let mut out: String = line.chars().take(200).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    out
}

/// `s`, percent-encoded for one path segment.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("emails"), "emails");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("q:1.x"), "q:1.x");
    }

    #[test]
    fn bad_urls_are_usage_errors() {
        for bad in ["localhost:7070", "ftp://x", "not a url", "http://"] {
            let err = Api::with_key(bad, None, None).unwrap_err();
            assert!(matches!(err, CliError::Usage(_)), "{bad}: {err}");
        }
        assert!(Api::with_key("http://127.0.0.1:7070/", None, None).is_ok());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let api = Api::with_key("http://x:1", None, Some("s3cret")).unwrap();
        assert!(!format!("{api:?}").contains("s3cret"));
    }
}
