//! Starts each example receiver binary and checks its answers over a real socket.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use suki_ambient::testing::{RawBody, send_raw};
use suki_ambient::{SignedHeaders, UnixMillis, WebhookSecret, testing};

const SECRET: &str = "example-test-secret";

struct Running {
    child: Child,
    url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(binary: &str) -> Running {
    let mut child = Command::new(binary)
        .env("SUKI_WEBHOOK_SECRET", SECRET)
        .env("BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{binary} printed {line:?}"))
        .to_owned();
    Running { child, url }
}

fn headers(at: UnixMillis, body: &[u8]) -> Vec<(&'static str, String)> {
    let h = SignedHeaders::new(&WebhookSecret::from(SECRET), at, body);
    vec![("generated-at", h.generated_at), ("X-API-Key", h.signature)]
}

async fn post(
    url: &str,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let response = send_raw(url, &refs, RawBody::Sized(body)).await.unwrap();
    (response.status, response.json())
}

async fn check(binary: &str) {
    let server = start(binary);
    let url = server.url.clone();
    let now = UnixMillis::now();

    let body = testing::completed("example-session", "example-encounter").to_vec();
    assert_eq!(
        post(&url, &headers(now, &body), body.clone()).await.0,
        200,
        "{binary}: valid"
    );

    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let (status, json) = post(&url, &headers(now, &body), tampered).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("mismatch")),
        "{binary}: tampered"
    );

    let stale = UnixMillis(now.0 - 10 * 60 * 1000);
    let (status, json) = post(&url, &headers(stale, &body), body.clone()).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("stale")),
        "{binary}: stale"
    );

    let big = vec![b' '; 1024 * 1024];
    let (status, _) = post(&url, &headers(now, &big), big).await;
    assert_eq!(status, 413, "{binary}: 1 MiB");

    let not_json = b"this is not json".to_vec();
    let (status, json) = post(&url, &headers(now, &not_json), not_json).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("invalid_payload")),
        "{binary}: not JSON"
    );

    let (status, _) = post(&url, &[], body).await;
    assert_eq!(status, 401, "{binary}: unsigned");
}

#[tokio::test]
async fn axum_receiver() {
    check(env!("CARGO_BIN_EXE_axum_receiver")).await;
}

#[tokio::test]
async fn actix_receiver() {
    check(env!("CARGO_BIN_EXE_actix_receiver")).await;
}

#[tokio::test]
async fn warp_receiver() {
    check(env!("CARGO_BIN_EXE_warp_receiver")).await;
}

#[test]
fn missing_secret_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_axum_receiver"))
        .env_remove("SUKI_WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SUKI_WEBHOOK_SECRET"));
}

#[test]
fn fetch_results_without_a_token_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_fetch_results"))
        .arg("session-1")
        .env_remove("SUKI_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SUKI_TOKEN"));
}

/// How long the server takes to close a connection that sends `opening` and then nothing more
/// (reading and keeping whatever it answers), or `None` if it is still open after `patience`.
async fn closed_after(
    addr: &str,
    opening: Vec<u8>,
    patience: Duration,
) -> (Option<Duration>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&opening).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read_until_closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(patience, read_until_closed)
        .await
        .is_ok();
    (closed.then(|| started.elapsed()), answer)
}

/// Idle, half-header, body-withheld and idle-after-a-request connections are all closed by the
/// server within its configured times (5 s for headers and idle keep-alive, 10 s for a body),
/// instead of being held open forever.
async fn slow_connections_are_closed(binary: &str) {
    const HEADERS: Duration = Duration::from_secs(5);
    const BODY: Duration = Duration::from_secs(10);
    const SLACK: Duration = Duration::from_secs(3);
    let server = start(binary);
    let addr = server
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let body = testing::completed("slow-session", "slow-encounter").to_vec();
    let signed = headers(UnixMillis::now(), &body);
    let head = |extra: &str, length: usize| {
        format!(
            "POST /webhooks/suki HTTP/1.1\r\nHost: {addr}\r\n{}: {}\r\n{}: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n",
            signed[0].0, signed[0].1, signed[1].0, signed[1].1
        )
    };
    let mut withheld = head("", body.len()).into_bytes();
    withheld.extend_from_slice(&body[..10]);
    let mut complete = head("", body.len()).into_bytes();
    complete.extend_from_slice(&body);
    let half_header = format!("POST /webhooks/suki HTTP/1.1\r\nHost: {addr}\r\ngenerated-at: 1");
    let patience = BODY + SLACK + SLACK;
    let (idle, half, body_withheld, kept_alive) = tokio::join!(
        closed_after(&addr, Vec::new(), patience),
        closed_after(&addr, half_header.into_bytes(), patience),
        closed_after(&addr, withheld, patience),
        closed_after(&addr, complete, patience),
    );
    for (name, (closed, _), limit) in [
        ("idle", &idle, HEADERS),
        ("half-header", &half, HEADERS),
        ("idle after a request", &kept_alive, HEADERS),
        ("body withheld", &body_withheld, BODY),
    ] {
        let closed = closed.unwrap_or_else(|| panic!("{binary}: {name} connection still open"));
        assert!(
            closed <= limit + SLACK,
            "{binary}: {name} connection closed after {closed:?}, limit {limit:?}"
        );
    }
    let answered = String::from_utf8_lossy(&body_withheld.1);
    assert!(
        answered.starts_with("HTTP/1.1 408") && answered.contains("body_timeout"),
        "{binary}: a withheld body is answered 408 body_timeout, got {answered:?}"
    );
    assert!(
        String::from_utf8_lossy(&kept_alive.1).starts_with("HTTP/1.1 200"),
        "{binary}: the complete request was answered"
    );
}

#[tokio::test]
async fn axum_receiver_closes_slow_connections() {
    slow_connections_are_closed(env!("CARGO_BIN_EXE_axum_receiver")).await;
}

#[tokio::test]
async fn actix_receiver_closes_slow_connections() {
    slow_connections_are_closed(env!("CARGO_BIN_EXE_actix_receiver")).await;
}

#[tokio::test]
async fn warp_receiver_closes_slow_connections() {
    slow_connections_are_closed(env!("CARGO_BIN_EXE_warp_receiver")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_with_a_client_fetches_every_completed_session() {
    use suki_ambient::sandbox::Sandbox;
    let sandbox = Sandbox::builder()
        .webhook_secret(SECRET)
        .start()
        .await
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_receiver_with_client"))
        .env("SUKI_WEBHOOK_SECRET", SECRET)
        .env("SUKI_TOKEN", sandbox.issue_token(None))
        .env("SUKI_API_BASE_URL", sandbox.base_url())
        .env("BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.strip_prefix("listening on ").unwrap().to_owned();
    sandbox.set_webhook_url(Some(url));
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let s = sandbox.create_session(None);
        assert!(
            sandbox
                .complete(&s.session_id)
                .await
                .unwrap()
                .acknowledged()
        );
        sessions.push(s.session_id.to_string());
    }
    let printed: Vec<String> = tokio::task::spawn_blocking(move || {
        let out: Vec<String> = lines.take(3).map(Result::unwrap).collect();
        let _ = child.kill();
        let _ = child.wait();
        out
    })
    .await
    .unwrap();
    for session in sessions {
        assert!(
            printed.contains(&format!("fetched {session} 6/6")),
            "{session} not fetched: {printed:?}"
        );
    }
}
