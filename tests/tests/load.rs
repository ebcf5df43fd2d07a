//! Load and fault test, sized for 2 cores: 10,000 deliveries to each adapter's ready-made
//! endpoint, 64 concurrent keep-alive connections, 60% valid, 25% tampered/stale/malformed, 15%
//! duplicates of valid ones. Every valid event reaches the handler exactly once, every invalid one
//! gets its documented 4xx, no 5xx, and afterwards the process holds (counted by a global
//! allocator, exactly) less than half the volume of the bodies it read: keeping them would hold
//! all of it. Then two receiver instances sharing the Redis guard: still exactly once.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use integration_tests::http1::{Conn, post};
use suki_ambient::{
    EventHandler, HandlerError, SignedHeaders, UnixMillis, Verifier, WebhookEndpoint, WebhookEvent,
    WebhookMeta, WebhookSecret, async_trait, testing,
};

/// Counts the bytes this test binary holds, in every thread (the receivers run in-process), so
/// that memory is measured exactly, without the allocator's and the test's own noise.
#[global_allocator]
static ALLOCATOR: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// The tests of this binary run one at a time, so that each measures only itself.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Bytes allocated and not freed so far.
fn live_bytes() -> i64 {
    let stats = ALLOCATOR.stats();
    stats.bytes_allocated as i64 - stats.bytes_deallocated as i64
}

const SECRET: &str = "load-test-secret";
const TOTAL: usize = 10_000;
const CONCURRENCY: usize = 64;

/// Counts handler calls per session.
#[derive(Default, Clone)]
struct Tally(Arc<Mutex<HashMap<String, usize>>>);

#[async_trait]
impl EventHandler for Tally {
    async fn handle(&self, event: WebhookEvent, _meta: WebhookMeta) -> Result<(), HandlerError> {
        let id = event
            .session_id()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        *self.0.lock().unwrap().entry(id).or_default() += 1;
        Ok(())
    }
}

/// One delivery of the mix and the answer it must get.
struct Case {
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: Option<&'static str>,
    session: Option<String>,
    duplicate: bool,
}

fn mix(tag: &str, seed: u64) -> Vec<Case> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let now = UnixMillis::now();
    let secret = WebhookSecret::from(SECRET);
    let signed = |at: UnixMillis, body: &[u8]| {
        let h = SignedHeaders::new(&secret, at, body);
        vec![("generated-at", h.generated_at), ("X-API-Key", h.signature)]
    };
    let valid_n = TOTAL * 60 / 100;
    let dup_n = TOTAL * 15 / 100;
    let invalid_n = TOTAL - valid_n - dup_n;
    let mut cases = Vec::with_capacity(TOTAL);
    for i in 0..valid_n {
        let session = format!("{tag}-{i}");
        let body = testing::completed(&session, "load-encounter").to_vec();
        cases.push(Case {
            headers: signed(now, &body),
            body,
            status: 200,
            code: None,
            session: Some(session),
            duplicate: false,
        });
    }
    for _ in 0..dup_n {
        let original = &cases[rng.usize(..valid_n)];
        let dup = Case {
            headers: original.headers.clone(),
            body: original.body.clone(),
            status: 200,
            code: None,
            session: original.session.clone(),
            duplicate: true,
        };
        cases.push(dup);
    }
    for i in 0..invalid_n {
        let session = format!("{tag}-bad-{i}");
        let body = testing::completed(&session, "load-encounter").to_vec();
        let case = match i % 5 {
            0 => {
                let headers = signed(now, &body);
                let mut tampered = body.clone();
                let at = tampered.len() / 2;
                tampered[at] ^= 0x01;
                Case {
                    headers,
                    body: tampered,
                    status: 401,
                    code: Some("mismatch"),
                    session: None,
                    duplicate: false,
                }
            }
            1 => Case {
                headers: signed(UnixMillis(now.0 - 3_600_000), &body),
                body,
                status: 401,
                code: Some("stale"),
                session: None,
                duplicate: false,
            },
            2 => {
                let mut headers = signed(now, &body);
                headers[0].1 = "17659777484.32".into();
                Case {
                    headers,
                    body,
                    status: 400,
                    code: Some("malformed_timestamp"),
                    session: None,
                    duplicate: false,
                }
            }
            3 => {
                let mut headers = signed(now, &body);
                headers[1].1.truncate(40);
                Case {
                    headers,
                    body,
                    status: 401,
                    code: Some("malformed_signature"),
                    session: None,
                    duplicate: false,
                }
            }
            _ => {
                let headers = signed(now, &body).into_iter().take(1).collect();
                Case {
                    headers,
                    body,
                    status: 401,
                    code: Some("missing_signature"),
                    session: None,
                    duplicate: false,
                }
            }
        };
        cases.push(case);
    }
    rng.shuffle(&mut cases);
    cases
}

#[derive(Default, Debug)]
struct Report {
    sent: usize,
    accepted: usize,
    duplicates_acknowledged: usize,
    rejected: HashMap<String, usize>,
    server_errors: usize,
    wrong: Vec<String>,
}

/// Sends `cases` over `CONCURRENCY` connections spread over `targets` (round robin).
async fn drive(targets: &[SocketAddr], cases: Vec<Case>) -> Report {
    let queue = Arc::new(Mutex::new(
        cases.into_iter().enumerate().collect::<VecDeque<_>>(),
    ));
    let report = Arc::new(Mutex::new(Report::default()));
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|worker| {
            let addr = targets[worker % targets.len()];
            let queue = Arc::clone(&queue);
            let report = Arc::clone(&report);
            tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                loop {
                    let Some((i, case)) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    let headers: Vec<(&str, &str)> =
                        case.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                    let request = post(addr, "/webhooks/suki", &headers, &case.body);
                    let (status, body) = conn.send(&request).await.expect("the receiver answers");
                    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let mut r = report.lock().unwrap();
                    r.sent += 1;
                    if status >= 500 {
                        r.server_errors += 1;
                    }
                    if status != case.status {
                        r.wrong
                            .push(format!("case {i}: expected {}, got {status}", case.status));
                        continue;
                    }
                    match case.code {
                        Some(code) => {
                            if json["error"] != code {
                                r.wrong.push(format!(
                                    "case {i}: expected {code}, got {}",
                                    json["error"]
                                ));
                            }
                            *r.rejected.entry(code.to_owned()).or_default() += 1;
                        }
                        None if json["status"] == "duplicate" => r.duplicates_acknowledged += 1,
                        None => r.accepted += 1,
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(report).ok().unwrap().into_inner().unwrap()
}

fn check(label: &str, cases_sessions: &[Option<String>], report: &Report, tally: &Tally) {
    let calls = tally.0.lock().unwrap();
    let unique: std::collections::HashSet<&String> = cases_sessions.iter().flatten().collect();
    let invocations: usize = calls.values().sum();
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr().lock(),
        "{label}: sent {}, processed {}, duplicates acknowledged {}, rejected {:?}, handler invocations {invocations}, 5xx {}",
        report.sent,
        report.accepted,
        report.duplicates_acknowledged,
        report.rejected,
        report.server_errors
    );
    assert!(
        report.wrong.is_empty(),
        "{label}: {} wrong answers, e.g. {:?}",
        report.wrong.len(),
        &report.wrong[..report.wrong.len().min(5)]
    );
    assert_eq!(report.server_errors, 0, "{label}: 5xx answers");
    assert_eq!(report.sent, TOTAL, "{label}");
    for session in &unique {
        assert_eq!(
            calls.get(*session).copied().unwrap_or(0),
            1,
            "{label}: {session} not processed exactly once"
        );
    }
    assert_eq!(invocations, unique.len(), "{label}: no other handler calls");
    assert_eq!(
        report.accepted,
        unique.len(),
        "{label}: one processed answer per event"
    );
}

fn verifier() -> Verifier {
    Verifier::builder().secret(SECRET).build().unwrap()
}

/// Serves the axum ready-made endpoint for `endpoint` on its own thread; returns the address.
fn serve_axum_endpoint(endpoint: WebhookEndpoint<Tally>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app =
                axum::Router::new().nest("/webhooks/suki", suki_ambient::axum::router(endpoint));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_deliveries_per_adapter() {
    let _serial = SERIAL.lock().await;
    for (n, framework) in integration_tests::FRAMEWORKS.into_iter().enumerate() {
        // What the process holds from here on, the receiver included: if it kept the bodies it
        // read (every one of the 10,000), it would grow by at least their volume.
        let before = live_bytes();
        let cases = mix(framework, 42 + n as u64);
        let volume: usize = cases.iter().map(|c| c.body.len()).sum();
        let sessions: Vec<Option<String>> = cases
            .iter()
            .map(|c| if c.duplicate { None } else { c.session.clone() })
            .collect();
        let tally = Tally::default();
        let url = start_tally_receiver(framework, tally.clone());
        let addr: SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches("/webhooks/suki")
            .parse()
            .unwrap();
        let report = drive(&[addr], cases).await;
        check(framework, &sessions, &report, &tally);
        drop((report, sessions));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let held = live_bytes() - before;
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "{framework}: {} KiB held after {} KiB of bodies",
            held / 1024,
            volume / 1024
        );
        assert!(
            held < (volume / 2) as i64,
            "{framework}: {} KiB still held after {} KiB of bodies: bodies are being kept",
            held / 1024,
            volume / 1024
        );
    }
}

fn start_tally_receiver(framework: &str, tally: Tally) -> String {
    integration_tests::start_receiver_with(framework, verifier(), tally)
}

#[ignore = "needs SUKI_REDIS_URL (bash .ci/run starts one)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_the_redis_guard_process_each_event_once() {
    let _serial = SERIAL.lock().await;
    let url = std::env::var("SUKI_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .expect("needs SUKI_REDIS_URL (bash .ci/run starts a redis-server)");
    let prefix = format!("suki-load:{}:", std::process::id());
    let tally = Tally::default();
    let instance = |tally: Tally| {
        let guard = suki_ambient::redis::RedisReplayGuard::new(&url)
            .unwrap()
            .prefix(prefix.clone());
        serve_axum_endpoint(WebhookEndpoint::new(verifier(), tally).replay_guard(guard))
    };
    let a = instance(tally.clone());
    let b = instance(tally.clone());
    let cases = mix("fleet", 7);
    let sessions: Vec<Option<String>> = cases
        .iter()
        .map(|c| if c.duplicate { None } else { c.session.clone() })
        .collect();
    let report = drive(&[a, b], cases).await;
    check("two axum instances + Redis", &sessions, &report, &tally);
}
