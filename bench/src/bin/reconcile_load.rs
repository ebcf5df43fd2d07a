//! The reconciler recovering `N` expected sessions, all due and all completed, against the
//! sandbox in a child process (so only the reconciler's CPU is counted): status requests per
//! session (the sandbox counts them), total time and CPU per session, next to a baseline measured
//! in the same run: the same status GETs with plain `reqwest` at the same concurrency, each
//! decoded with `serde_json`, with no store, lease, inbox insert or bookkeeping.
//!
//! ```sh
//! cargo run --release -p bench --bin reconcile_load -- [SESSIONS] [CONCURRENCY] [sqlite|POSTGRES_URL]
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use suki_ambient::UnixMillis;
use suki_ambient::client::AmbientClient;
use suki_ambient::inbox::{ExpectedSession, Inbox, Reconciler};
use tokio::sync::Semaphore;

/// With `PERF_CTL_FIFO` set (to `perf record --control=fifo:PATH -D -1`'s FIFO), profiles the
/// reconciler's pass only.
fn perf_control(command: &str) {
    if let Ok(path) = std::env::var("PERF_CTL_FIFO") {
        let _ = std::fs::write(path, format!("{command}\n"));
    }
}

/// Child: a sandbox with `n` completed sessions (their webhooks never sent); prints the base
/// URL, a token and the ids, then answers each `count` line on stdin with the number of API
/// requests it has served.
fn serve(n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let sandbox = bench::serve_completed_sessions(n).await;
        // The server runs on this runtime while a blocking thread answers the parent.
        let _ = tokio::task::spawn_blocking(move || {
            for _ in std::io::stdin().lines().map_while(Result::ok) {
                println!("{}", sandbox.requests("/api/"));
            }
        })
        .await;
    });
}

struct Run {
    elapsed: Duration,
    cpu: Duration,
    requests: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        serve(args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000));
        return;
    }
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let concurrency: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
    let backend = args.get(3).cloned().unwrap_or_else(|| "sqlite".to_owned());
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .args(["serve", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("child");
    let mut ask = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map(|l| l.expect("line"));
    let bench::Served {
        base,
        token,
        sessions,
    } = bench::read_served(&mut lines);
    let mut requests = move || {
        writeln!(ask, "count").expect("ask");
        lines
            .next()
            .expect("count")
            .parse::<u64>()
            .expect("a number")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = AmbientClient::builder()
        .base_url(&base)
        .token(token.clone())
        .build()
        .expect("client");

    // One round of the reconciler: a fresh inbox, every session expected (not timed), then one
    // `check_due` pass (timed).
    let mut sdk = |round: usize| {
        let dir = tempfile::tempdir().expect("dir");
        let url = if backend == "sqlite" {
            format!("sqlite://{}", dir.path().join("inbox.db").display())
        } else {
            backend.clone()
        };
        let before = requests();
        let run = rt.block_on(async {
            let inbox = Inbox::connect(&url).await.expect("inbox");
            let reconciler = Reconciler::builder(client.clone(), inbox.clone())
                .grace(Duration::ZERO)
                .concurrency(concurrency)
                .build();
            let ended = UnixMillis::now();
            for (session_id, encounter_id) in &sessions {
                reconciler
                    .register(ExpectedSession::ambient(
                        session_id.clone(),
                        encounter_id.clone(),
                        ended,
                    ))
                    .await
                    .expect("expect");
            }
            perf_control("enable");
            let cpu0 = bench::cpu_time();
            let started = Instant::now();
            let report = reconciler.check_due().await.expect("check");
            perf_control("disable");
            let run = Run {
                elapsed: started.elapsed(),
                cpu: bench::cpu_time() - cpu0,
                requests: 0,
            };
            assert_eq!(
                report.recovered as usize,
                sessions.len(),
                "round {round}: {report:?}"
            );
            assert_eq!(
                inbox.status().await.expect("status").counts.pending as usize,
                sessions.len()
            );
            run
        });
        Run {
            requests: requests() - before,
            ..run
        }
    };
    let raw = |count: usize| {
        let http = reqwest::Client::new();
        rt.block_on(async {
            let limit = Arc::new(Semaphore::new(concurrency as usize));
            let cpu0 = bench::cpu_time();
            let started = Instant::now();
            let mut tasks = Vec::new();
            for (session_id, encounter_id) in sessions.iter().take(count) {
                // The status link a webhook would carry, from the route table.
                let links = suki_ambient::Links::for_session(session_id, encounter_id);
                let status = links
                    .iter()
                    .find(|(kind, _)| *kind == suki_ambient::LinkKind::Status)
                    .map(|(_, link)| link.href.clone())
                    .expect("a status link");
                let url = format!("{}{status}", base.trim_end_matches('/'));
                let http = http.clone();
                let token = token.clone();
                let permit = Arc::clone(&limit).acquire_owned().await.expect("semaphore");
                tasks.push(tokio::spawn(async move {
                    let r = http
                        .get(url)
                        .header("sdp_suki_token", token)
                        .send()
                        .await
                        .expect("send");
                    assert!(r.status().is_success());
                    let body = r.bytes().await.expect("body");
                    drop(permit);
                    serde_json::from_slice::<suki_ambient::api::StatusResponse>(&body).is_ok()
                }));
            }
            for t in tasks {
                assert!(t.await.expect("task"));
            }
            Run {
                elapsed: started.elapsed(),
                cpu: bench::cpu_time() - cpu0,
                requests: 0,
            }
        })
    };
    // The SDK's client alone: the same status calls through `AmbientClient` (its retries,
    // metrics, size cap and decoding), nothing stored: where the reconciler's cost splits.
    let through_client = || {
        rt.block_on(async {
            let limit = Arc::new(Semaphore::new(concurrency as usize));
            let cpu0 = bench::cpu_time();
            let mut tasks = Vec::new();
            for (session_id, _) in &sessions {
                let client = client.clone();
                let id = session_id.clone();
                let permit = Arc::clone(&limit).acquire_owned().await.expect("semaphore");
                tasks.push(tokio::spawn(async move {
                    let ok = client.session_status(&id).await.is_ok();
                    drop(permit);
                    ok
                }));
            }
            for t in tasks {
                assert!(t.await.expect("task"));
            }
            (bench::cpu_time() - cpu0).as_secs_f64() * 1e6 / sessions.len() as f64
        })
    };
    if backend != "sqlite" {
        eprintln!("note: a Postgres URL must name an empty database, used by one round only");
    }
    const ROUNDS: usize = if cfg!(debug_assertions) { 1 } else { 3 };
    let _ = raw(500);
    let mut rounds = Vec::new();
    let mut client_cpu = Vec::new();
    for round in 0..(if backend == "sqlite" { ROUNDS } else { 1 }) {
        let s = sdk(round);
        let r = raw(sessions.len());
        client_cpu.push(through_client());
        rounds.push((s, r));
    }
    let client_cpu = bench::median(client_cpu);
    let median = bench::median;
    let per_s = |run: &Run| sessions.len() as f64 / run.elapsed.as_secs_f64();
    let cpu_per = |run: &Run| run.cpu.as_secs_f64() * 1e6 / sessions.len() as f64;
    let requests_per = rounds
        .iter()
        .map(|(s, _)| s.requests as f64 / sessions.len() as f64)
        .fold(0.0, f64::max);
    let total = median(
        rounds
            .iter()
            .map(|(s, _)| s.elapsed.as_secs_f64())
            .collect(),
    );
    let raw_total = median(
        rounds
            .iter()
            .map(|(_, r)| r.elapsed.as_secs_f64())
            .collect(),
    );
    let sdk_cpu = median(rounds.iter().map(|(s, _)| cpu_per(s)).collect());
    let raw_cpu = median(rounds.iter().map(|(_, r)| cpu_per(r)).collect());
    let ratio_time = median(
        rounds
            .iter()
            .map(|(s, r)| s.elapsed.as_secs_f64() / r.elapsed.as_secs_f64())
            .collect(),
    );
    let ratio_cpu = median(
        rounds
            .iter()
            .map(|(s, r)| cpu_per(s) / cpu_per(r))
            .collect(),
    );
    let rate = median(rounds.iter().map(|(s, _)| per_s(s)).collect());
    let label = if backend == "sqlite" {
        "SQLite"
    } else {
        "Postgres"
    };
    println!(
        "reconciler: {} expected sessions, all due and completed, concurrency {concurrency}, {label} inbox, sandbox in a child process; medians of {} rounds",
        sessions.len(),
        rounds.len()
    );
    println!(
        "status requests per session: {requests_per:.3} (worst round); total {total:.2} s ({rate:.0} sessions/s), {sdk_cpu:.0} µs CPU per session (claim, poll, inbox insert, resolve)"
    );
    println!(
        "baseline (the same status GETs with reqwest + serde, nothing stored): {raw_total:.2} s, {raw_cpu:.0} µs CPU per session"
    );
    println!(
        "of which the SDK client's status call alone (AmbientClient, nothing stored): {client_cpu:.0} µs CPU per session; the bookkeeping: {:.0} µs",
        sdk_cpu - client_cpu
    );
    println!("ratio reconciler/baseline: time {ratio_time:.2}x, CPU per session {ratio_cpu:.2}x");
    let _ = child.kill();
    let _ = child.wait();
}
