//! `/console`: the web console, a single page served from files embedded in the binary
//! (`console/assets/`, listed by `build.rs`). The pages hold no data: they call the same API
//! as any client, with the key the operator typed, so the console is open to anyone who can
//! reach the port (like `/health`) and every answer it shows went through the usual guard.
//!
//! Any `/console/...` path that is not an asset answers the page itself: the page reads its
//! own URL, so each view has a URL that can be shared. `LEASEHOLD_CONSOLE_DIR` serves the
//! files from a folder instead, read on each request, for work on the console without a rebuild.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::error::ApiError;

/// The embedded files: path under `console/assets/`, contents.
static ASSETS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// The page every console URL answers.
const PAGE: &str = "index.html";

/// What every console response carries: nothing but the coordinator itself may be loaded or
/// called, no other site may frame it, and no URL (which may name a job) leaks as a referrer.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

/// `/`, `/console` and everything under it.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            routing::get(|| async { Redirect::temporary("/console") }),
        )
        .route("/console", routing::get(page))
        .route("/console/", routing::get(page))
        .route("/console/{*rest}", routing::get(route))
}

/// True for the paths this module serves: the guard lets them through without a key.
pub(crate) fn is_console(path: &str) -> bool {
    path == "/" || path == "/console" || path.starts_with("/console/")
}

async fn page(headers: HeaderMap) -> Response {
    serve(PAGE, &headers)
}

async fn route(Path(rest): Path<String>, headers: HeaderMap) -> Response {
    match rest.strip_prefix("assets/") {
        Some(asset) => serve(asset, &headers),
        // A view of the page (`/console/jobs/…`): the page routes itself.
        None => serve(PAGE, &headers),
    }
}

/// One file, with its type, an `ETag` (so a reload costs a 304) and the security headers.
fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some((body, etag)) = lookup(name) else {
        return ApiError::not_found(format!("the console has no file {name:?}")).into_response();
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = body.into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime(name)));
        r
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // Revalidate each time: a new binary must never run with the old script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (name, value) in SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The file's bytes and its entity tag: from `LEASEHOLD_CONSOLE_DIR` when set, else embedded.
fn lookup(name: &str) -> Option<(Vec<u8>, String)> {
    // Only plain relative paths: no `..`, no absolute path, no backslash.
    if name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return None;
    }
    if let Some(dir) = dev_dir() {
        let bytes = std::fs::read(dir.join(name)).ok()?;
        let etag = tag(&bytes);
        return Some((bytes, etag));
    }
    let (bytes, etag) = embedded().get(name)?;
    Some((bytes.to_vec(), etag.clone()))
}

fn dev_dir() -> Option<&'static std::path::Path> {
    static DIR: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::var_os("LEASEHOLD_CONSOLE_DIR")
            .filter(|d| !d.is_empty())
            .map(Into::into)
    })
    .as_deref()
}

fn embedded() -> &'static HashMap<&'static str, (&'static [u8], String)> {
    static TABLE: OnceLock<HashMap<&'static str, (&'static [u8], String)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(name, bytes)| (*name, (*bytes, tag(bytes))))
            .collect()
    })
}

fn tag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", crate::blobs::hex(&digest[..12]))
}

fn mime(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_looked_up() {
        for bad in [
            "",
            "/etc/passwd",
            "../Cargo.toml",
            "a/../../b",
            "a//b",
            "./x",
            "a\\b",
        ] {
            assert!(lookup(bad).is_none(), "{bad:?} must not be served");
        }
    }

    #[test]
    fn the_page_is_embedded() {
        assert!(
            embedded().contains_key(PAGE),
            "console/assets/index.html is missing"
        );
    }
}
