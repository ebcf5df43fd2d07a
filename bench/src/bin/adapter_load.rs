//! Verification overhead of each adapter under load, against a bare endpoint in the same
//! process: both routes read the same 2 KiB body; the verifying one also checks the signature and
//! parses the event (the `SukiWebhook` extractor/filter). Prints requests/s, p50 and p99 for each
//! and the ratios.
//!
//! ```sh
//! cargo run --release -p bench --bin adapter_load -- [SECONDS_PER_RUN] [CONNECTIONS]
//! ```
//!
//! The server runs on one runtime thread (actix: one worker) and the load generator on another,
//! so each has one of the machine's cores. Runs alternate bare/verified three times; the best
//! run of each is reported.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use suki_ambient::testing::http1::Conn;
use suki_ambient::{SignedHeaders, UnixMillis, Verifier, WebhookSecret};

const SECRET: &str = "load-test-secret";
const BODY_SIZE: usize = 2048;

fn body() -> Vec<u8> {
    let event = suki_ambient::testing::completed("load-session", "load-encounter").to_vec();
    // Pad the documented shape to 2 KiB with an extra field (ignored by the parser).
    let mut text = String::from_utf8(event).expect("JSON is UTF-8");
    text.pop(); // closing brace
    let pad = BODY_SIZE - text.len() - r#","pad":""}"#.len();
    text.push_str(&format!(r#","pad":"{}"}}"#, "x".repeat(pad)));
    assert_eq!(text.len(), BODY_SIZE);
    text.into_bytes()
}

fn verifier() -> Verifier {
    Verifier::builder()
        .secret(SECRET)
        .tolerance(Duration::from_secs(3600))
        .build()
        .expect("valid config")
}

/// Starts `framework`'s server with `/bare` and `/verified` routes; returns its address.
fn start(framework: &str) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    let framework = framework.to_owned();
    std::thread::spawn(move || match framework.as_str() {
        "axum" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use axum::routing::post;
                async fn bare(body: axum::body::Bytes) -> &'static str {
                    std::hint::black_box(body.len());
                    "ok"
                }
                async fn verified(webhook: suki_ambient::axum::SukiWebhook) -> &'static str {
                    std::hint::black_box(webhook.event.kind());
                    "ok"
                }
                async fn verify_only(body: suki_ambient::axum::VerifiedBody) -> &'static str {
                    std::hint::black_box(body.meta.secret_index);
                    "ok"
                }
                let app = axum::Router::new()
                    .route("/bare", post(bare))
                    .route("/verify", post(verify_only))
                    .route("/verified", post(verified))
                    .with_state(verifier());
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        }
        "warp" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use warp::Filter;
                let bare =
                    warp::path!("bare")
                        .and(warp::body::bytes())
                        .map(|b: suki_ambient::Bytes| {
                            std::hint::black_box(b.len());
                            "ok"
                        });
                let verified = warp::path!("verified")
                    .and(suki_ambient::warp::suki_webhook(verifier()))
                    .map(|w: suki_ambient::warp::SukiWebhook| {
                        std::hint::black_box(w.event.kind());
                        "ok"
                    })
                    .recover(suki_ambient::warp::recover);
                let verify_only = warp::path!("verify")
                    .and(suki_ambient::warp::verified_body(verifier()))
                    .map(|b: suki_ambient::warp::VerifiedBody| {
                        std::hint::black_box(b.meta.secret_index);
                        "ok"
                    })
                    .recover(suki_ambient::warp::recover);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                warp::serve(warp::post().and(bare.or(verify_only).or(verified)))
                    .incoming(listener)
                    .run()
                    .await;
            });
        }
        "actix" => {
            actix_web::rt::System::new().block_on(async move {
                use actix_web::{App, HttpServer, web};
                async fn bare(body: web::Bytes) -> &'static str {
                    std::hint::black_box(body.len());
                    "ok"
                }
                async fn verified(webhook: suki_ambient::actix::SukiWebhook) -> &'static str {
                    std::hint::black_box(webhook.event.kind());
                    "ok"
                }
                async fn verify_only(body: suki_ambient::actix::VerifiedBody) -> &'static str {
                    std::hint::black_box(body.meta.secret_index);
                    "ok"
                }
                let v = verifier();
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(web::Data::new(v.clone()))
                        .route("/bare", web::post().to(bare))
                        .route("/verify", web::post().to(verify_only))
                        .route("/verified", web::post().to(verified))
                })
                .workers(1)
                .bind(("127.0.0.1", 0))
                .unwrap();
                tx.send(server.addrs()[0]).unwrap();
                server.run().await.unwrap();
            });
        }
        other => panic!("unknown framework {other}"),
    });
    rx.recv().expect("server started")
}

struct Run {
    requests: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

impl Run {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// One keep-alive connection sending `request` until `stop`; returns latencies and errors.
async fn connection(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    stop: Arc<AtomicBool>,
) -> (Vec<Duration>, u64) {
    let mut latencies = Vec::with_capacity(100_000);
    let mut errors = 0;
    let mut conn = Conn::new(addr);
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let (status, _) = conn.send(&request).await.expect("an answer");
        if status != 200 {
            errors += 1;
        }
        latencies.push(start.elapsed());
    }
    (latencies, errors)
}

fn load(addr: SocketAddr, path: &str, seconds: u64, connections: usize) -> Run {
    let body = body();
    let signed = SignedHeaders::new(&WebhookSecret::from(SECRET), UnixMillis::now(), &body);
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\ngenerated-at: {}\r\nx-api-key: {}\r\n\r\n",
        body.len(),
        signed.generated_at,
        signed.signature
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let request = Arc::new(request);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(connection(addr, Arc::clone(&request), Arc::clone(&stop))))
            .collect();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let (lat, err) = task.await.expect("connection task");
            all.extend(lat);
            errors += err;
        }
        let elapsed = started.elapsed();
        all.sort_unstable();
        let pct = |p: f64| {
            all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        Run {
            requests: all.len() as u64,
            elapsed,
            p50: pct(0.50),
            p99: pct(0.99),
            errors,
        }
    })
}

/// Mean time of `f` over many runs, in nanoseconds.
fn time_ns(mut f: impl FnMut()) -> f64 {
    for _ in 0..10_000 {
        f();
    }
    let runs = 200_000;
    let start = Instant::now();
    for _ in 0..runs {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(runs)
}

/// What one verified request costs in the core, measured here, in ns: (HMAC alone, check_head +
/// verify + meta, parse).
fn core_costs() -> (f64, f64, f64) {
    use suki_ambient::HeaderMap;
    let body = body();
    let signed = SignedHeaders::new(&WebhookSecret::from(SECRET), UnixMillis::now(), &body);
    let headers: HeaderMap = signed.to_header_map();
    let v = verifier();
    let hmac = time_ns(|| {
        std::hint::black_box(suki_ambient::sign(
            &WebhookSecret::from(SECRET),
            &signed.generated_at,
            std::hint::black_box(&body),
        ));
    });
    let verify = time_ns(|| {
        std::hint::black_box(
            v.verify(&headers, std::hint::black_box(&body[..]))
                .unwrap()
                .meta,
        );
    });
    let parse = time_ns(|| {
        std::hint::black_box(
            suki_ambient::WebhookEvent::from_slice(std::hint::black_box(&body)).unwrap(),
        );
    });
    (hmac, verify, parse)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let connections: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    println!(
        "adapter load: {BODY_SIZE} B signed deliveries, {connections} keep-alive connections, {seconds} s per run, medians of 7 alternating rounds"
    );
    let (hmac, verify, parse) = core_costs();
    println!(
        "core, per 2 KiB request: HMAC alone {hmac:.0} ns (keying included), check_head+verify {verify:.0} ns, parse {parse:.0} ns"
    );
    println!(
        "{:<6} {:<7} {:>10} {:>8} {:>9} {:>9} {:>7} {:>8} {:>9}",
        "", "route", "req/s", "ratio", "p50", "p99", "p99 x", "ceiling", "of ceil."
    );
    for framework in ["axum", "actix", "warp"] {
        let addr = start(framework);
        let paths = ["/bare", "/verify", "/verified"];
        for path in paths {
            load(addr, path, 1, connections); // warm-up
        }
        // ROUNDS alternating rounds; each reports its ratios to the bare route of the same round,
        // and the table shows their medians (a noisy machine moves whole rounds, not ratios).
        const ROUNDS: usize = 7;
        let mut rounds: Vec<Vec<Run>> = Vec::new();
        for _ in 0..ROUNDS {
            let round: Vec<Run> = paths
                .into_iter()
                .map(|path| {
                    let run = load(addr, path, seconds, connections);
                    assert_eq!(run.errors, 0, "{framework} {path}: non-200 answers");
                    run
                })
                .collect();
            rounds.push(round);
        }
        let median = bench::median;
        let bare_rps = median(rounds.iter().map(|r| r[0].rps()).collect());
        // The best ratio any verifier could reach here: the bare request's cost plus one HMAC.
        let ceiling = 1.0 / (1.0 + hmac * 1e-9 * bare_rps);
        for (i, path) in paths.iter().enumerate() {
            let label = match *path {
                "/bare" => "bare",
                "/verify" => "verify",
                _ => "+parse",
            };
            let rps = median(rounds.iter().map(|r| r[i].rps()).collect());
            let ratio = median(rounds.iter().map(|r| r[i].rps() / r[0].rps()).collect());
            let p50 = median(rounds.iter().map(|r| r[i].p50.as_secs_f64()).collect());
            let p99 = median(rounds.iter().map(|r| r[i].p99.as_secs_f64()).collect());
            let p99x = median(
                rounds
                    .iter()
                    .map(|r| r[i].p99.as_secs_f64() / r[0].p99.as_secs_f64())
                    .collect(),
            );
            println!(
                "{framework:<6} {label:<7} {rps:>10.0} {ratio:>7.3}x {:>9.2?} {:>9.2?} {p99x:>6.2}x {ceiling:>7.3}x {:>9.3}",
                Duration::from_secs_f64(p50),
                Duration::from_secs_f64(p99),
                ratio / ceiling,
            );
        }
    }
}
