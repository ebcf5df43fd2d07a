//! `Server`: the head limit is the documented 64 KiB (431 past it), and idle or half-sent
//! connections are closed after the header-read timeout.
#![cfg(feature = "serve")]

use std::time::Duration;

use suki_ambient_axum::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(server: Server) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(server.serve(listener, app, std::future::pending()));
    addr
}

/// Sends `head` and reads the answer's status line (empty when the server closed first).
async fn status_for(addr: std::net::SocketAddr, head: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(head).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn head_of(bytes: usize) -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".to_vec();
    let filler = bytes.saturating_sub(head.len() + 4 + 10);
    head.extend_from_slice(format!("X-Fill: {}\r\n\r\n", "a".repeat(filler)).as_bytes());
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_limit_is_the_documented_one() {
    let addr = start(Server::new()).await;
    assert!(status_for(addr, &head_of(1_000)).await.contains("200"));
    assert!(status_for(addr, &head_of(60 * 1024)).await.contains("200"));
    for size in [66 * 1024, 100 * 1024, 1024 * 1024] {
        let status = status_for(addr, &head_of(size)).await;
        assert!(status.contains("431"), "{size} bytes: {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed() {
    let addr = start(Server::new().header_read_timeout(Duration::from_millis(500))).await;
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for stream in [&mut idle, &mut half] {
        let mut buf = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "still open");
    }
}
