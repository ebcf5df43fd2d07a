//! `fetch_results` throughput and CPU per fetched result against the sandbox (in a child
//! process, so only the client's CPU is counted), next to a fair baseline measured in the same
//! run: plain `reqwest` GETs of the same six URLs with the same concurrency, each decoded with
//! `serde_json` into the same model types, but with no auth logic, retries, link checks, spans or
//! PHI-safe error handling.
//!
//! ```sh
//! cargo run --release -p bench --bin client_load -- [EVENTS] [CONCURRENCY]
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use suki_ambient::client::AmbientClient;
use suki_ambient::{LinkKind, Links, SessionCompleted};
use tokio::sync::Semaphore;

/// Child: a sandbox with `events` completed sessions; prints the base URL, a token and the ids.
fn serve(events: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let _sandbox = bench::serve_completed_sessions(events).await;
        std::future::pending::<()>().await;
    });
}

/// Open sockets of this process (its pooled connections; the sandbox runs in another process).
fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Decodes a body into the model of its link kind, as the SDK does.
fn decode(kind: LinkKind, body: &[u8]) -> bool {
    use suki_ambient::api::{NoteContent, StatusResponse, StructuredData, Transcript};
    match kind {
        LinkKind::Status => serde_json::from_slice::<StatusResponse>(body).is_ok(),
        LinkKind::Contents | LinkKind::EncounterContent => {
            serde_json::from_slice::<NoteContent>(body).is_ok()
        }
        LinkKind::StructuredData | LinkKind::EncounterStructuredData => {
            serde_json::from_slice::<StructuredData>(body).is_ok()
        }
        LinkKind::Transcripts => serde_json::from_slice::<Transcript>(body).is_ok(),
        _ => false,
    }
}

struct Run {
    elapsed: Duration,
    cpu: Duration,
    results: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        serve(args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000));
        return;
    }
    let events: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let concurrency: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(32);
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .args(["serve", &events.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("child");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map(|l| l.expect("line"));
    let bench::Served {
        base,
        token,
        sessions,
    } = bench::read_served(&mut lines);
    let sessions: Vec<SessionCompleted> = sessions
        .into_iter()
        .map(|(session_id, encounter_id)| SessionCompleted {
            links: Links::for_session(&session_id, &encounter_id),
            session_id,
            encounter_id,
            sessions: Vec::new(),
            additional_info: None,
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sessions = Arc::new(sessions);

    let sdk = |rounds: usize| {
        let client = AmbientClient::builder()
            .base_url(&base)
            .token(token.clone())
            .build()
            .expect("client");
        let sessions = Arc::clone(&sessions);
        rt.block_on(async move {
            let limit = Arc::new(Semaphore::new(concurrency));
            let cpu0 = bench::cpu_time();
            let started = Instant::now();
            let mut tasks = Vec::new();
            for i in 0..rounds {
                let done = sessions[i % sessions.len()].clone();
                let client = client.clone();
                let permit = Arc::clone(&limit).acquire_owned().await.expect("semaphore");
                tasks.push(tokio::spawn(async move {
                    let r = client.fetch_results(&done).await;
                    drop(permit);
                    assert!(r.is_ok(), "{:?}", r.errors());
                    r.fetched()
                }));
            }
            let mut results = 0;
            for t in tasks {
                results += t.await.expect("task");
            }
            let conns = open_sockets();
            (
                Run {
                    elapsed: started.elapsed(),
                    cpu: bench::cpu_time() - cpu0,
                    results,
                },
                conns,
            )
        })
    };
    let raw = |rounds: usize| {
        let http = reqwest::Client::new();
        let sessions = Arc::clone(&sessions);
        let base = base.clone();
        let token = token.clone();
        rt.block_on(async move {
            let limit = Arc::new(Semaphore::new(concurrency));
            let cpu0 = bench::cpu_time();
            let started = Instant::now();
            let mut tasks = Vec::new();
            for i in 0..rounds {
                let done = sessions[i % sessions.len()].clone();
                let http = http.clone();
                let base = base.clone();
                let token = token.clone();
                let permit = Arc::clone(&limit).acquire_owned().await.expect("semaphore");
                tasks.push(tokio::spawn(async move {
                    let mut n = 0;
                    let gets = done.links.iter().map(|(kind, link)| {
                        let url = format!("{}{}", base.trim_end_matches('/'), link.href);
                        let http = http.clone();
                        let token = token.clone();
                        async move {
                            let r = http
                                .get(url)
                                .header("sdp_suki_token", token)
                                .send()
                                .await
                                .expect("send");
                            assert!(r.status().is_success());
                            decode(kind, &r.bytes().await.expect("body"))
                        }
                    });
                    for decoded in futures_util::future::join_all(gets).await {
                        n += usize::from(decoded);
                    }
                    drop(permit);
                    n
                }));
            }
            let mut results = 0;
            for t in tasks {
                results += t.await.expect("task");
            }
            Run {
                elapsed: started.elapsed(),
                cpu: bench::cpu_time() - cpu0,
                results,
            }
        })
    };
    // First an SDK run in a fresh process, to count the connections its pool opened; then warm
    // up the baseline and alternate the two, ROUNDS times: the ratio reported is the median of
    // the rounds' ratios (each round measures both under the same conditions), with the spread.
    const ROUNDS: usize = 9;
    let (first, pooled) = sdk(events);
    let _ = raw(200);
    let per_s = |run: &Run| run.results as f64 / 6.0 / run.elapsed.as_secs_f64();
    let cpu_per = |run: &Run| run.cpu.as_secs_f64() * 1e6 / run.results as f64;
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let (s, _) = sdk(events);
        let r = raw(events);
        rounds.push((s, r));
    }
    let median = bench::spread;
    let (tp, tp_lo, tp_hi) = median(rounds.iter().map(|(s, r)| per_s(s) / per_s(r)).collect());
    let (cpu, _, _) = median(
        rounds
            .iter()
            .map(|(s, r)| cpu_per(s) / cpu_per(r))
            .collect(),
    );
    let (sdk_rate, _, _) = median(rounds.iter().map(|(s, _)| per_s(s)).collect());
    let (raw_rate, _, _) = median(rounds.iter().map(|(_, r)| per_s(r)).collect());
    let (sdk_cpu, _, _) = median(rounds.iter().map(|(s, _)| cpu_per(s)).collect());
    let (raw_cpu, _, _) = median(rounds.iter().map(|(_, r)| cpu_per(r)).collect());
    println!(
        "client: {events} fetch_results (6 links each), concurrency {concurrency}, sandbox in a child process; medians of {ROUNDS} alternating rounds"
    );
    println!(
        "sdk fetch_results: {sdk_rate:.0} events/s, {sdk_cpu:.1} µs CPU per fetched result; first run: {} results over {pooled} pooled connections",
        first.results
    );
    println!(
        "raw reqwest GETs + serde decode: {raw_rate:.0} events/s, {raw_cpu:.1} µs CPU per fetched result"
    );
    println!(
        "ratio sdk/raw: throughput {tp:.3}x (rounds {tp_lo:.3}..{tp_hi:.3}), CPU per result {cpu:.3}x"
    );
    let _ = child.kill();
    let _ = child.wait();
}
