//! Response bodies are read with a cap: a hostile or misconfigured API answering 1 GiB bodies
//! (with or without a `Content-Length`, as a success or as an error) cannot take the process's
//! memory. One test in this binary, so that its memory readings see only it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use suki_ambient_client::{AmbientClient, ClientError, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GIB: u64 = 1 << 30;
const CAP: u64 = 4 << 20;

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A server answering every request with `status` and a 1 GiB body of spaces (valid JSON
/// whitespace), declared by `Content-Length` or chunked; counts the requests.
async fn huge_server(status: u16, declared: bool) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&requests);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut head = vec![0u8; 8192];
                let _ = socket.read(&mut head).await;
                counted.fetch_add(1, Ordering::SeqCst);
                let framing = if declared {
                    format!("Content-Length: {GIB}")
                } else {
                    "Transfer-Encoding: chunked".to_owned()
                };
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
                );
                if socket.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0;
                while sent < GIB {
                    let written = if declared {
                        socket.write_all(&chunk).await
                    } else {
                        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                        framed.extend_from_slice(&chunk);
                        framed.extend_from_slice(b"\r\n");
                        socket.write_all(&framed).await
                    };
                    if written.is_err() {
                        return; // the client stopped reading
                    }
                    sent += chunk.len() as u64;
                }
            });
        }
    });
    (url, requests)
}

fn client(base: &str) -> AmbientClient {
    AmbientClient::builder()
        .base_url(base)
        .token("tok")
        .max_response_bytes(CAP)
        .retry(
            RetryPolicy::default()
                .max_attempts(2)
                .base_delay(Duration::from_millis(1)),
        )
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigabyte_answers_stop_at_the_cap_and_memory_stays_bounded() {
    let before = rss();
    for (status, declared) in [(200, false), (200, true), (503, false)] {
        let (url, requests) = huge_server(status, declared).await;
        let client = client(&url);
        // Four at once, as the inbox worker fetches.
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..4 {
            let client = client.clone();
            calls.spawn(async move { client.session_status(&format!("s{i}").into()).await });
        }
        while let Some(result) = calls.join_next().await {
            let err = result.unwrap().unwrap_err();
            if status == 200 {
                assert!(
                    matches!(err, ClientError::ResponseTooLarge { limit: CAP }),
                    "{err:?}"
                );
                assert!(!err.is_retryable());
            } else {
                assert_eq!(err.status(), Some(503), "{err:?}");
            }
        }
        let expected = if status == 200 { 4 } else { 8 };
        assert_eq!(
            requests.load(Ordering::SeqCst),
            expected,
            "a body too large is not retried; a 503 is, within the policy"
        );
    }
    let grown = rss().saturating_sub(before);
    // Four calls at a time, each holding at most the cap (and one chunk): a small multiple of
    // the cap, where reading the bodies whole would take 4 GiB.
    assert!(
        grown < 16 * CAP,
        "resident memory grew by {} MiB",
        grown >> 20
    );
}
