//! Slow or stuck clients cannot exhaust the coordinator (`leasehold_coordinator::connections`),
//! over real sockets: headers that never finish, a stalled upload, and more connections than
//! the cap.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use leasehold_coordinator::connections::{ConnectionLimits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common;

async fn start(limits: ConnectionLimits) -> (SocketAddr, common::DirGuard) {
    let (store, dir) = common::sqlite_store().await;
    let (state, shutdown) = leasehold_coordinator::AppState::new(store, dir.0.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = leasehold_coordinator::app(state);
    tokio::spawn(async move {
        let _keep = shutdown;
        serve(listener, app, limits, std::future::pending()).await
    });
    (addr, dir)
}

/// Reads until the server closes the connection (or errs); how long that took.
async fn until_closed(tcp: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
}

async fn get_health(addr: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn headers_that_never_finish_are_cut_off() {
    let (addr, _dir) = start(ConnectionLimits {
        header_read_timeout: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let took = until_closed(&mut slow, Duration::from_secs(10))
        .await
        .expect("a connection whose headers never end is closed");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // One that sends nothing at all, too.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(
        until_closed(&mut silent, Duration::from_secs(10))
            .await
            .is_some()
    );
    assert!(get_health(addr).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_stalled_upload_is_closed_after_the_idle_timeout() {
    let (addr, _dir) = start(ConnectionLimits {
        idle_timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let digest = format!("sha256:{}", "0".repeat(64));
    tcp.write_all(
        format!(
            "PUT /v1/artifacts/{digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\npartial"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Artifact transfers have no request timeout; the idle timeout still ends this one.
    assert!(
        until_closed(&mut tcp, Duration::from_secs(10))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn past_the_cap_new_connections_wait_for_one_to_close() {
    let (addr, _dir) = start(ConnectionLimits {
        max_connections: 2,
        ..Default::default()
    })
    .await;
    let held: Vec<TcpStream> = vec![
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    // Give the server time to accept both.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn(get_health(addr));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection is not served yet"
    );
    drop(held);
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
