//! The client CPU of writing a session to the EHR one resource at a time (`PerResource`: nine
//! creates with `If-None-Exist`, then the Provenance naming the ids the server gave) against
//! writing it as one transaction, in the same run: the typical 16 KiB session (four
//! Conditions, two MedicationRequests: nine resources) written to a stub EHR in a child process
//! (it answers each create `201` with a fresh id and stores nothing: the sandbox's FHIR server
//! takes transactions only, and a real server's growing store is not what is measured here),
//! so that only the client's CPU is counted (this process's threads, from
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
        let base = stub_ehr().await;
        println!("{base}");
        println!("{STUB_TOKEN}");
        println!("{}", h2c_not_found().await);
        // Until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await;
    });
}

/// The stub EHR's bearer token (it does not check it: nothing is at stake).
const STUB_TOKEN: &str = "bench-token";

/// A stub FHIR server for the measurement: a CapabilityStatement with transactions and
/// conditional create; `POST /fhir` answers a transaction with `201 Created` and a fresh id for
/// each entry; `POST /fhir/{type}` answers `201` with a fresh `Location` (no body under
/// `Prefer: return=minimal`, else the resource as sent); anything else is `404`. Every write is
/// a first write, so nothing needs storing or matching. Its base URL.
async fn stub_ehr() -> String {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Clone)]
    struct Stub {
        base: Arc<str>,
        ids: Arc<AtomicU64>,
    }
    const TYPES: [&str; 5] = [
        "DocumentReference",
        "Composition",
        "Condition",
        "MedicationRequest",
        "Provenance",
    ];
    let fhir_json = |status: StatusCode, body: String| {
        (
            status,
            [(header::CONTENT_TYPE, "application/fhir+json")],
            body,
        )
            .into_response()
    };
    let metadata = move || async move {
        let resources: Vec<serde_json::Value> = TYPES
            .iter()
            .map(|kind| {
                serde_json::json!({
                    "type": kind,
                    "interaction": [{"code": "create"}, {"code": "read"}, {"code": "search-type"}],
                    "conditionalCreate": true,
                })
            })
            .collect();
        fhir_json(
            StatusCode::OK,
            serde_json::json!({
                "resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
                "fhirVersion": "4.0.1", "format": ["json"],
                "rest": [{"mode": "server", "interaction": [{"code": "transaction"}], "resource": resources}],
            })
            .to_string(),
        )
    };
    let transaction = move |State(stub): State<Stub>, body: bytes::Bytes| async move {
        let bundle: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let entries: Vec<serde_json::Value> = bundle["entry"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|entry| {
                let id = stub.ids.fetch_add(1, Ordering::Relaxed);
                let kind = entry["request"]["url"].as_str().unwrap_or("Basic");
                serde_json::json!({"response": {
                    "status": "201 Created",
                    "location": format!("{kind}/{id}/_history/1"),
                }})
            })
            .collect();
        fhir_json(
            StatusCode::OK,
            serde_json::json!({"resourceType": "Bundle", "type": "transaction-response", "entry": entries})
                .to_string(),
        )
    };
    let create = move |State(stub): State<Stub>,
                       Path(kind): Path<String>,
                       headers: HeaderMap,
                       body: bytes::Bytes| async move {
        let id = stub.ids.fetch_add(1, Ordering::Relaxed);
        let location = format!("{}/{kind}/{id}/_history/1", stub.base);
        let minimal = headers
            .get("prefer")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("return=minimal"));
        let mut answer = if minimal {
            StatusCode::CREATED.into_response()
        } else {
            fhir_json(
                StatusCode::CREATED,
                String::from_utf8_lossy(&body).into_owned(),
            )
        };
        if let Ok(value) = location.parse() {
            answer.headers_mut().insert(header::LOCATION, value);
        }
        answer
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/fhir", listener.local_addr().expect("addr"));
    let stub = Stub {
        base: Arc::from(base.as_str()),
        ids: Arc::new(AtomicU64::new(1)),
    };
    let app = axum::Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir", post(transaction))
        .route("/fhir/{kind}", post(create))
        .with_state(stub);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
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
