//! A web page cannot use a coordinator it can reach (docs/SECURITY.md, "Safe defaults"), over a
//! real socket with hand-written requests (a browser's headers, a rebinding page's `Host`): form
//! and `text/plain` posts are 415 and change nothing, foreign `Origin`s are 403 on writes and
//! WebSocket upgrades, and a keyless coordinator answers only to its own names.

use std::sync::Arc;

use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::keyed::{Coordinator, ROOT};

/// Sends `head` (request line and headers, without the blank line) and `body` on a fresh
/// connection; the status and the body.
async fn raw(c: &Coordinator, head: &str, body: &str) -> (u16, String) {
    let addr = c.served.url.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut request = head.replace("{addr}", &addr);
    if !body.is_empty() {
        request.push_str(&format!("\r\nContent-Length: {}", body.len()));
    }
    request.push_str("\r\nConnection: close\r\n\r\n");
    request.push_str(body);
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

async fn jobs(c: &Coordinator) -> usize {
    let (_, list) = c.call(None, Method::GET, "/v1/jobs", None, &[]).await;
    list["jobs"].as_array().unwrap().len()
}

fn code(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    json!([v["error"]["code"], v["error"]["details"]["field"]])
}

async fn pages_cannot_change_state_on_a_keyless_coordinator(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, None).await;
    let job = r#"{"queue":"q","kind":"k","payload":{}}"#;
    // What a page may send without a CORS preflight: text/plain, a form, a multipart form.
    for ty in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, body) = raw(
            &c,
            &format!("POST /v1/jobs HTTP/1.1\r\nHost: {{addr}}\r\nContent-Type: {ty}"),
            job,
        )
        .await;
        assert_eq!(status, 415, "{ty}: {body}");
        assert_eq!(
            code(&body),
            json!(["unsupported_media_type", "content-type"])
        );
    }
    // A body-less form post to pause a queue.
    let (status, _) = raw(
        &c,
        "POST /v1/queues/q/pause HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 0",
        "",
    )
    .await;
    assert_eq!(status, 415);
    // A JSON post from another origin (a page that got through a preflight elsewhere).
    let (status, body) = raw(
        &c,
        "POST /v1/jobs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nOrigin: http://evil.example",
        job,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(&body), json!(["forbidden", "origin"]));
    assert_eq!(jobs(&c).await, 0, "nothing was enqueued");
    let (_, queues) = c.call(None, Method::GET, "/v1/queues", None, &[]).await;
    assert!(
        !queues.to_string().contains("\"paused\":true"),
        "nothing was paused: {queues}"
    );
    // The coordinator's own origin, a JSON body, and curl's body-less post all work.
    let (status, body) = raw(
        &c,
        "POST /v1/jobs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json; charset=utf-8\r\nOrigin: http://{addr}",
        job,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = raw(&c, "POST /v1/queues/q/pause HTTP/1.1\r\nHost: {addr}", "").await;
    assert_eq!(status, 200, "{body}");
    // Reads stay open to any origin (CORS decides what a page may see).
    let (status, _) = raw(
        &c,
        "GET /v1/jobs HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example",
        "",
    )
    .await;
    assert_eq!(status, 200);
    // An artifact upload takes its own type only.
    let digest = format!("sha256:{}", "0".repeat(64));
    let (status, _) = raw(
        &c,
        &format!(
            "PUT /v1/artifacts/{digest} HTTP/1.1\r\nHost: {{addr}}\r\nContent-Type: text/plain"
        ),
        "x",
    )
    .await;
    assert_eq!(status, 415);
}

async fn websocket_upgrades_from_other_origins_are_refused(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, None).await;
    let upgrade = |origin: &str| {
        format!(
            "GET /v1/workers/connect HTTP/1.1\r\nHost: {{addr}}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}"
        )
    };
    for path in ["/v1/workers/connect", "/runs/stream"] {
        let head = upgrade("http://evil.example").replace("/v1/workers/connect", path);
        let (status, body) = raw(&c, &head.replace("\r\nConnection: Upgrade", ""), "").await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(code(&body), json!(["forbidden", "origin"]));
    }
    // Without an Origin (an SDK) or from its own origin, the handshake proceeds.
    let addr = c.served.url.trim_start_matches("http://").to_owned();
    let ws = format!("ws://{addr}/v1/workers/connect");
    assert!(tokio_tungstenite::connect_async(&ws).await.is_ok());
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut own = ws.clone().into_client_request().unwrap();
    own.headers_mut()
        .insert("origin", format!("http://{addr}").parse().unwrap());
    assert!(tokio_tungstenite::connect_async(own).await.is_ok());
    let mut evil = ws.into_client_request().unwrap();
    evil.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(evil).await.is_err());
}

async fn a_keyless_coordinator_answers_only_to_its_own_names(store: Arc<dyn Store>) {
    let c = Coordinator::start(store.clone(), None).await;
    for path in ["/v1/jobs", "/health", "/metrics"] {
        let (status, body) = raw(
            &c,
            &format!("GET {path} HTTP/1.1\r\nHost: rebound.evil.example:7070"),
            "",
        )
        .await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(code(&body), json!(["forbidden", "host"]));
    }
    for host in [
        "localhost:7070",
        "127.0.0.1",
        "[::1]:7070",
        "console.localhost",
    ] {
        let (status, _) = raw(&c, &format!("GET /v1/jobs HTTP/1.1\r\nHost: {host}"), "").await;
        assert_eq!(status, 200, "{host}");
    }
    // With a key, a rebinding page has nothing to present: the Host is not checked.
    let keyed = Coordinator::start(store, Some(ROOT)).await;
    let (status, _) = raw(
        &keyed,
        &format!(
            "GET /v1/jobs HTTP/1.1\r\nHost: leasehold.example.com\r\nAuthorization: Bearer {ROOT}"
        ),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = raw(
        &keyed,
        "GET /v1/jobs HTTP/1.1\r\nHost: leasehold.example.com",
        "",
    )
    .await;
    assert_eq!(status, 401);
}

crate::on_both_backends!(
    pages_cannot_change_state_on_a_keyless_coordinator,
    websocket_upgrades_from_other_origins_are_refused,
    a_keyless_coordinator_answers_only_to_its_own_names,
);
