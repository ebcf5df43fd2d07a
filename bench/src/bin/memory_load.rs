//! Peak memory of a receiver holding 1,000 concurrent 64 KiB deliveries: the verifying
//! endpoint against a bare one that only reads the body, each in its own child process (peak
//! RSS is per process). Each handler keeps its body for 300 ms, so all 1,000 are in memory at
//! once; the verifying path must hold one copy of each (target ratio ≤ 1.1).
//!
//! ```sh
//! cargo run --release -p bench --bin memory_load -- [CONNECTIONS]
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use suki_ambient::{SignedHeaders, UnixMillis, Verifier, WebhookSecret};

const SECRET: &str = "memory-bench-secret";
const BODY: usize = 64 * 1024;
const HOLD: Duration = Duration::from_millis(300);

fn body() -> Vec<u8> {
    let mut text =
        String::from_utf8(suki_ambient::testing::completed("mem", "mem").to_vec()).expect("UTF-8");
    text.pop();
    let pad = BODY - text.len() - r#","pad":""}"#.len();
    text.push_str(&format!(r#","pad":"{}"}}"#, "x".repeat(pad)));
    text.into_bytes()
}

/// Child: serve `route` (`bare` or `verify`) with axum on one thread; print the address.
fn serve(route: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let route = route.to_owned();
    rt.block_on(async move {
        use axum::routing::post;
        async fn bare(body: axum::body::Bytes) -> &'static str {
            tokio::time::sleep(HOLD).await;
            std::hint::black_box(body.len());
            "ok"
        }
        async fn verify(body: suki_ambient::axum::VerifiedBody) -> &'static str {
            tokio::time::sleep(HOLD).await;
            std::hint::black_box(body.body.len());
            "ok"
        }
        let verifier = Verifier::builder()
            .secret(SECRET)
            .tolerance(Duration::from_secs(3600))
            .build()
            .expect("config");
        let app = match route.as_str() {
            "bare" => axum::Router::new().route("/", post(bare)),
            _ => axum::Router::new().route("/", post(verify)),
        }
        .with_state(verifier);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        axum::serve(listener, app).await.expect("serve");
    });
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One delivery; a connection refused or reset before any answer (the accept queue overflowing
/// under 1,000 simultaneous connects) is tried again, up to three times.
async fn one(addr: SocketAddr, request: std::sync::Arc<Vec<u8>>) -> u16 {
    for _ in 0..3 {
        let status = once(addr, &request).await;
        if status != 0 {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    0
}

async fn once(addr: SocketAddr, request: &[u8]) -> u16 {
    suki_ambient::testing::http1::Conn::new(addr)
        .send(request)
        .await
        .map_or(0, |(status, _)| status)
}

/// Parent: start the child for `route`, send `connections` concurrent deliveries, return the
/// child's peak RSS (KiB) and its RSS at idle.
fn measure(route: &str, connections: usize) -> (u64, u64) {
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .args(["serve", route])
        .stdout(Stdio::piped())
        .spawn()
        .expect("child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address");
    let addr: SocketAddr = line.trim().parse().expect("address");
    let idle = peak_rss_kib(child.id());
    let body = body();
    let signed = SignedHeaders::new(&WebhookSecret::from(SECRET), UnixMillis::now(), &body);
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\ngenerated-at: {}\r\nx-api-key: {}\r\n\r\n",
        body.len(),
        signed.generated_at,
        signed.signature
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let request = std::sync::Arc::new(request);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let statuses: Vec<u16> = rt.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(one(addr, std::sync::Arc::clone(&request))))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or(0));
        }
        out
    });
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        ok, connections,
        "{route}: {ok} of {connections} answered 200"
    );
    let peak = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    (peak, idle)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        serve(args.get(2).map_or("verify", String::as_str));
        return;
    }
    let connections: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    println!(
        "memory: {connections} concurrent {} KiB deliveries, each held {HOLD:?} by the handler (axum, one thread)",
        BODY / 1024
    );
    let (bare_peak, bare_idle) = measure("bare", connections);
    let (verify_peak, verify_idle) = measure("verify", connections);
    let payload_mib = (connections * BODY) as f64 / 1_048_576.0;
    println!("bodies in flight: {payload_mib:.1} MiB");
    println!(
        "bare:   peak RSS {:.1} MiB (idle {:.1} MiB)",
        bare_peak as f64 / 1024.0,
        bare_idle as f64 / 1024.0
    );
    println!(
        "verify: peak RSS {:.1} MiB (idle {:.1} MiB)",
        verify_peak as f64 / 1024.0,
        verify_idle as f64 / 1024.0
    );
    println!(
        "ratio verify/bare: peak {:.3}x, above idle {:.3}x",
        verify_peak as f64 / bare_peak as f64,
        verify_peak.saturating_sub(verify_idle) as f64
            / bare_peak.saturating_sub(bare_idle).max(1) as f64
    );
}
