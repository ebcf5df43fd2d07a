//! What mapping a session to its FHIR transaction Bundle costs, against what fetching that
//! session's results costs, in the same run: the typical 16 KiB session
//! (`testdata/fhir/session-content-typical.json` and its structured data) served by the sandbox
//! and fetched with `fetch_results` (every link, as the inbox's worker does), then mapped with
//! `transaction` and serialized to the JSON that is posted. Target: mapping ≤ 10 % of a fetch.
//!
//! ```sh
//! cargo run --release -p bench --bin fhir_map -- [ROUNDS]
//! ```

use std::time::{Duration, Instant};

use suki_ambient::WebhookEvent;
use suki_ambient::api::{NoteContent, StructuredData};
use suki_ambient::client::AmbientClient;
use suki_ambient::fhir::{EhrContext, Mapping, Reference, SessionNote, transaction};
use suki_ambient::sandbox::Sandbox;

const CONTENT: &str = include_str!("../../../testdata/fhir/session-content-typical.json");
const STRUCTURED: &str =
    include_str!("../../../testdata/fhir/session-structured-data-typical.json");
/// Fetches and maps per round.
const FETCHES: u32 = 200;
const MAPS: u32 = 2_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let session = sandbox.create_session(None);
    let event = sandbox
        .complete_silently(&session.session_id)
        .expect("complete");
    let WebhookEvent::Completed(done) = event else {
        panic!("a completed event");
    };
    let note: NoteContent = serde_json::from_str(CONTENT).expect("content");
    let structured: StructuredData = serde_json::from_str(STRUCTURED).expect("structured data");
    sandbox
        .set_results(&session.session_id, note, structured)
        .expect("set results");
    let client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .build()
        .expect("client");
    let ehr = EhrContext::new(Reference::parse("Patient/p-1").expect("patient"))
        .encounter(Reference::parse("Encounter/e-1").expect("encounter"));
    let mapping = Mapping::default();

    // One fetch, to check what is mapped is what was fetched.
    let results = client.fetch_results(&done).await;
    assert!(results.is_ok(), "every link fetched");
    let content = match &results.contents {
        Some(Ok(content)) => content.clone(),
        _ => panic!("the note"),
    };
    let structured = match &results.structured_data {
        Some(Ok(structured)) => structured.clone(),
        _ => panic!("the structured data"),
    };
    let bytes = serde_json::to_vec(&content).expect("json").len()
        + serde_json::to_vec(&structured).expect("json").len();
    let map = || {
        let note = SessionNote::new(&done.session_id, &content, suki_ambient::UnixMillis(1))
            .structured_data(&structured);
        let bundle = transaction(&note, &ehr, &mapping).expect("maps");
        bundle.to_json()
    };
    let bundle_bytes = map().len();

    let mut ratios = Vec::new();
    let (mut fetch_times, mut map_times) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..FETCHES {
            std::hint::black_box(client.fetch_results(&done).await);
        }
        let fetch = start.elapsed() / FETCHES;
        let start = Instant::now();
        for _ in 0..MAPS {
            std::hint::black_box(map());
        }
        let mapped = start.elapsed() / MAPS;
        ratios.push(mapped.as_secs_f64() / fetch.as_secs_f64());
        fetch_times.push(fetch.as_secs_f64());
        map_times.push(mapped.as_secs_f64());
    }
    let (ratio, low, high) = bench::spread(ratios);
    println!(
        "fhir mapping of a typical session ({bytes} B of note and structured data → {bundle_bytes} B Bundle, {} entries)",
        transaction(
            &SessionNote::new(&done.session_id, &content, suki_ambient::UnixMillis(1))
                .structured_data(&structured),
            &ehr,
            &mapping
        )
        .expect("maps")
        .len()
    );
    println!(
        "  fetch_results (6 links, sandbox on loopback) {:>9.1?}   transaction + to_json {:>9.1?}   ratio {ratio:.4} (target <= 0.10; rounds {low:.4}–{high:.4}, {rounds} rounds)",
        Duration::from_secs_f64(bench::median(fetch_times)),
        Duration::from_secs_f64(bench::median(map_times)),
    );
    sandbox.shutdown().await;
}
