//! The client CPU of writing a session to the EHR one resource at a time (`PerResource`: nine
//! creates with `If-None-Exist`, then the Provenance naming the ids the server gave) against
//! writing it as one transaction, in the same run: the typical 16 KiB session (four
//! Conditions, two MedicationRequests: nine resources) written to the sandbox's FHIR server in
//! a child process, so that only the client's CPU is counted (this process's threads, from
//! `/proc/self/task/*/schedstat`). Blocks of the two strategies take turns (ABBA); every write
//! is a first write (new session ids: all creates). Target: per-resource ≤ 1.5× the
//! transaction.
//!
//! A third block in each round is the floor of any one-request-per-resource write: ten bare
//! exchanges a session (a read of an id that does not exist: no body sent, a 404 of a few bytes
//! back) with the same HTTP client library, keep-alive and bearer header, nothing mapped or
//! parsed. Its ratio to the transaction says what no change to the SDK's own code can go below.
//!
//! The write-back records each write's outcome in the inbox row (every resource's EHR id and
//! what happened to it: `TransactionResult`'s `Display`, kept to printable ASCII): its CPU is
//! measured in the same run over every result written, and printed as a share of the writes'.
//! Target: ≤ 5 %.
//!
//! ```sh
//! cargo run --release -p bench --bin fhir_write -- [BLOCKS] [SESSIONS_PER_BLOCK]
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use suki_ambient::api::{NoteContent, StructuredData};
use suki_ambient::fhir::{
    BearerToken, EhrContext, FhirClient, Mapping, Reference, SessionNote, TransactionBundle,
    TransactionResult, WriteStrategy, transaction,
};
use suki_ambient::sandbox::{MAX_FHIR_RESOURCES, Sandbox};
use suki_ambient::{SessionId, UnixMillis};

const CONTENT: &str = include_str!("../../../testdata/fhir/session-content-typical.json");
const STRUCTURED: &str =
    include_str!("../../../testdata/fhir/session-structured-data-typical.json");

/// CPU time of every thread of this process (ns precision).
fn threads_cpu() -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

fn serve() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let sandbox = Sandbox::builder().start().await.expect("sandbox");
        println!("{}", sandbox.fhir_base_url());
        println!("{}", sandbox.fhir_token());
        println!("{}", h2c_not_found().await);
        // Until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await;
        sandbox.shutdown().await;
    });
}

/// A bare HTTP/2 server (prior knowledge, no TLS) that answers every request 404 with a few
/// bytes: the floor of ten exchanges over one multiplexed connection.
async fn h2c_not_found() -> String {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    let mut answer = hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"{\"resourceType\":\"OperationOutcome\"}"),
                    ));
                    *answer.status_mut() = hyper::StatusCode::NOT_FOUND;
                    Ok::<_, std::convert::Infallible>(answer)
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    url
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        serve();
        return;
    }
    let blocks: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(8);
    let per_block: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    // Nine resources a session, both strategies, within the sandbox's bound.
    assert!(
        blocks * per_block * 9 < MAX_FHIR_RESOURCES,
        "at most {} sessions in all",
        MAX_FHIR_RESOURCES / 9
    );
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("child");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map(|l| l.expect("line"));
    let base = lines.next().expect("base URL");
    let token = lines.next().expect("token");
    let h2c = lines.next().expect("h2c URL");

    let content: NoteContent = serde_json::from_str(CONTENT).expect("content");
    let structured: StructuredData = serde_json::from_str(STRUCTURED).expect("structured data");
    let ehr = EhrContext::new(Reference::parse("Patient/p-1").expect("patient"))
        .encounter(Reference::parse("Encounter/e-1").expect("encounter"));
    let mapping = Mapping::default();
    let bundle = |session: &str| -> TransactionBundle {
        let session = SessionId::from(session);
        let note = SessionNote::new(&session, &content, UnixMillis(1_764_460_800_000))
            .structured_data(&structured);
        transaction(&note, &ehr, &mapping).expect("maps")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = |strategy| {
        FhirClient::builder(base.as_str())
            .auth(BearerToken::new(token.as_str()))
            .strategy(strategy)
            .build()
            .expect("client")
    };
    let transaction_client = client(WriteStrategy::Transaction);
    let per_resource = client(WriteStrategy::PerResource);
    // Warm both (connections, the per-resource client's CapabilityStatement).
    rt.block_on(async {
        transaction_client
            .write(&bundle("warm-t"))
            .await
            .expect("write");
        per_resource.write(&bundle("warm-p")).await.expect("write");
    });

    let bare = reqwest::Client::new();
    let missing = format!("{base}/DocumentReference/bench-none");
    let floor = |sessions: usize| {
        rt.block_on(async {
            let cpu = threads_cpu();
            for _ in 0..sessions * 10 {
                let answer = bare
                    .get(&missing)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("read");
                assert_eq!(answer.status(), 404);
                let _ = answer.bytes().await.expect("body");
            }
            threads_cpu() - cpu
        })
    };
    let _ = floor(2);
    // The same over HTTP/2, the four middle requests of each ten concurrent as the SDK sends
    // its creates (the note, 4 + 4, the Provenance).
    let bare_h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2 client");
    let missing_h2 = format!("{h2c}/fhir/DocumentReference/bench-none");
    let floor_h2 = |sessions: usize| {
        rt.block_on(async {
            let one = || async {
                let answer = bare_h2
                    .get(&missing_h2)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("read");
                assert_eq!(answer.status(), 404);
                let _ = answer.bytes().await.expect("body");
            };
            let cpu = threads_cpu();
            for _ in 0..sessions {
                one().await;
                tokio::join!(one(), one(), one(), one());
                tokio::join!(one(), one(), one(), one());
                one().await;
            }
            threads_cpu() - cpu
        })
    };
    let _ = floor_h2(2);

    let mut next = 0usize;
    let mut outcomes: Vec<TransactionResult> = Vec::new();
    let mut run = |fhir: &FhirClient, outcomes: &mut Vec<TransactionResult>| {
        let bundles: Vec<TransactionBundle> = (0..per_block)
            .map(|_| {
                next += 1;
                bundle(&format!("bench-{next}"))
            })
            .collect();
        rt.block_on(async {
            let cpu = threads_cpu();
            let started = Instant::now();
            for b in &bundles {
                let written = fhir.write(b).await.expect("write");
                assert_eq!(written.created(), 9);
                outcomes.push(written);
            }
            (threads_cpu() - cpu, started.elapsed())
        })
    };
    let (mut t_cpu, mut p_cpu, mut t_wall, mut p_wall) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let mut ratios = Vec::new();
    let mut f_cpu = Duration::ZERO;
    let mut f2_cpu = Duration::ZERO;
    for block in 0..blocks {
        // ABBA: transaction first in even pairs, per-resource first in odd ones.
        let order = if (block / 2) % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        let mut pair = [Duration::ZERO; 2];
        for per in order {
            let (cpu, wall) = run(
                if per {
                    &per_resource
                } else {
                    &transaction_client
                },
                &mut outcomes,
            );
            if per {
                p_cpu += cpu;
                p_wall += wall;
                pair[1] = cpu;
            } else {
                t_cpu += cpu;
                t_wall += wall;
                pair[0] = cpu;
            }
        }
        ratios.push(pair[1].as_secs_f64() / pair[0].as_secs_f64());
        f_cpu += floor(per_block);
        f2_cpu += floor_h2(per_block);
    }
    drop(child.stdin.take());
    let _ = child.wait();
    // The outcome record of every write above, as the write-back makes it (its text, kept to
    // printable ASCII and 2,000 characters), measured over all of them at once.
    let cpu = threads_cpu();
    let mut kept = 0usize;
    for result in &outcomes {
        let text: String = result
            .to_string()
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
            .take(2_000)
            .collect();
        kept += std::hint::black_box(text).len();
    }
    let o_cpu = threads_cpu() - cpu;
    assert!(kept > 0);
    let n = (blocks * per_block) as f64;
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
    let (median, p10, p90) = bench::spread(ratios); // median, min, max
    println!(
        "typical session (9 resources), {} sessions per strategy, client CPU per write:",
        blocks * per_block
    );
    println!(
        "  transaction   {:8.1} µs CPU  {:8.1} µs wall",
        us(t_cpu),
        us(t_wall)
    );
    println!(
        "  per-resource  {:8.1} µs CPU  {:8.1} µs wall",
        us(p_cpu),
        us(p_wall)
    );
    println!(
        "  ratio per-resource / transaction (client CPU): {:.3} (blocks: median {median:.3}, min {p10:.3}, max {p90:.3}); target <= 1.5",
        p_cpu.as_secs_f64() / t_cpu.as_secs_f64()
    );
    println!(
        "  outcome record {:8.2} µs CPU per write = {:.2} % of the writes' CPU (target <= 5 %)",
        o_cpu.as_secs_f64() * 1e6 / (2.0 * n),
        100.0 * o_cpu.as_secs_f64() / (t_cpu + p_cpu).as_secs_f64()
    );
    println!(
        "  floor: ten bare exchanges {:8.1} µs CPU = {:.3}x the transaction's whole write",
        us(f_cpu),
        f_cpu.as_secs_f64() / t_cpu.as_secs_f64()
    );
    println!(
        "  floor over HTTP/2 (h2c, 1 + 4 + 4 + 1 concurrent) {:8.1} µs CPU = {:.3}x the transaction's whole write",
        us(f2_cpu),
        f2_cpu.as_secs_f64() / t_cpu.as_secs_f64()
    );
}
