//! The inbox against its floors, on the same database in the same run:
//!
//! - ingest at concurrency 1 (verify, parse, store through the group commit, durable commit)
//!   against a bare single-row durable insert through sqlx into the same table: latency ratio
//!   (target ≤ 1.2×);
//! - ingest at concurrency 64 against a floor that inserts 64 rows per transaction: throughput
//!   ratio (target ≥ 0.8×), with the p99 acknowledgement latency;
//! - the worker with a no-op handler at concurrency 1, 4 and 16: rows per second;
//! - the worker at concurrency 16 with each attempt recorded in the row's timeline against the
//!   same database without the trigger that records it: throughput ratio (target ≥ 0.9×);
//! - ingest at concurrency 64 with bodies sealed (a key given) against in clear, two inboxes
//!   taking blocks of deliveries in turn: throughput ratio (target ≥ 0.95×); and what sealing
//!   and opening one body costs.
//!
//! SQLite always (a temporary folder); Postgres when `SUKI_POSTGRES_URL` names a server (a fresh
//! database is created on it).
//!
//! ```sh
//! cargo run --release -p bench --bin inbox_load -- [ROWS_C1] [ROWS_C64]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use suki_ambient::inbox::{Inbox, InboxMeta, InboxWorker, ops::Source, store::NewDelivery};
use suki_ambient::{
    Bytes, HandlerError, NoopHandler, UnixMillis, Verifier, WebhookEndpoint, WebhookEvent,
};

const SECRET: &str = "inbox-bench-secret";

/// A signed completed event for `session`: its headers and body.
fn signed(session: &str) -> (suki_ambient::HeaderMap, Bytes) {
    bench::signed(SECRET, session)
}

/// What the floors insert: the same row the inbox would.
fn row(key: &str, body: &Bytes) -> NewDelivery {
    NewDelivery {
        dedup_key: key.to_owned(),
        source: Source::Webhook,
        kind: suki_ambient::EventKind::Completed,
        session_id: Some(suki_ambient::SessionId::from(key)),
        encounter_id: Some(suki_ambient::EncounterId::from("bench-encounter")),
        generated_at: UnixMillis::now(),
        received_at: UnixMillis::now(),
        body: body.clone(),
        key_id: None,
    }
}

/// One backend's figures: medians over the rounds, each ratio taken within its round (the
/// disk's flush time moves whole rounds on a shared machine).
struct Figures {
    floor_c1: Duration,
    ingest_c1: Duration,
    ratio_c1: f64,
    store_c1: Duration,
    floor_c64_rps: f64,
    ingest_c64_rps: f64,
    ratio_c64: f64,
    ceiling_c64_rps: f64,
    of_ceiling_c64: f64,
    ingest_c64_p50: Duration,
    ingest_c64_p99: Duration,
    worker_rps: Vec<(usize, f64)>,
    history_rps: f64,
    no_history_rps: f64,
    history_ratio: f64,
    history_ratios: Vec<f64>,
    sealed_c64_rps: f64,
    clear_c64_rps: f64,
    sealed_ratio: f64,
    sealed_ratios: Vec<f64>,
}

const ROUNDS: usize = 5;
/// Rounds of the timeline's comparison: more, as a drain's rate moves with the disk's flushes.
const HISTORY_ROUNDS: usize = 9;
/// Blocks of sealed against clear ingest, taken in turn (ABBA); deliveries per block.
const SEAL_BLOCKS: usize = 128;
const SEAL_BLOCK: usize = 1_600;

/// Ingests `requests` through `endpoint` from 64 tasks; rows/s and the sorted latencies.
async fn ingest_c64(
    endpoint: &WebhookEndpoint<NoopHandler>,
    requests: &Arc<Vec<(suki_ambient::HeaderMap, Bytes)>>,
) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..64 {
        let endpoint = endpoint.clone();
        let requests = Arc::clone(requests);
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut i = t;
            while i < requests.len() {
                let (headers, body) = requests[i].clone();
                let sent = Instant::now();
                let answer = endpoint.handle(&headers, body).await;
                latencies.push(sent.elapsed());
                assert_eq!(answer.status, 200);
                i += 64;
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("task"));
    }
    let rps = requests.len() as f64 / start.elapsed().as_secs_f64();
    latencies.sort();
    (rps, latencies)
}

/// `open(tag)` opens a fresh, empty inbox for the measurement named `tag`.
async fn measure<F, Fut>(open: F, rows_c1: usize, rows_c64: usize) -> Figures
where
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = (Inbox, Box<dyn RawInsert>)>,
{
    let verifier = Verifier::builder()
        .secret(SECRET)
        .build()
        .expect("verifier");
    let (_, body) = signed("floor");
    let mut c1 = Vec::new();
    let mut c64 = Vec::new();
    let mut acks = Vec::new();
    for round in 0..ROUNDS {
        // Concurrency 1: the bare insert, the store's insert and the inbox's whole ingest, one
        // of each in turn (each on its own fresh database), so that all three meet the same
        // moments of the disk: its flush time drifts by tens of percent within seconds here.
        let (_, floor_db) = open("floor-c1").await;
        let (_, store_db) = open("store-c1").await;
        let (inbox, _) = open("ingest-c1").await;
        let endpoint = WebhookEndpoint::inbox(verifier.clone(), inbox);
        let requests: Vec<_> = (0..rows_c1)
            .map(|i| signed(&format!("c1-{round}-{i}")))
            .collect();
        let (mut floor, mut store, mut ingest) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for (i, (headers, request)) in requests.into_iter().enumerate() {
            // The order rotates: on Postgres the three databases share one WAL, and a flush
            // right after another one costs more.
            for step in 0..3 {
                match (i + step) % 3 {
                    0 => {
                        let one = row(&format!("floor-{round}-{i}"), &body);
                        let t = Instant::now();
                        floor_db.insert_one(&one).await;
                        floor += t.elapsed();
                    }
                    1 => {
                        let one = row(&format!("store-{round}-{i}"), &body);
                        let t = Instant::now();
                        store_db.insert_batch(std::slice::from_ref(&one)).await;
                        store += t.elapsed();
                    }
                    _ => {
                        let t = Instant::now();
                        let answer = endpoint.handle(&headers, request.clone()).await;
                        ingest += t.elapsed();
                        assert_eq!(answer.status, 200);
                    }
                }
            }
        }
        let n = u32::try_from(rows_c1).unwrap_or(u32::MAX);
        let (floor, store, ingest) = (floor / n, store / n, ingest / n);
        c1.push((floor, ingest, store));

        // Concurrency 64: the floor writes 64 rows per transaction; the ceiling writes them with
        // the store's own batch statement.
        let mut rates = [0.0; 2];
        for (k, tag) in ["floor-c64", "ceiling-c64"].into_iter().enumerate() {
            let (_, raw) = open(tag).await;
            let start = Instant::now();
            for chunk in 0..rows_c64 / 64 {
                let rows: Vec<_> = (0..64)
                    .map(|i| row(&format!("f64-{chunk}-{i}"), &body))
                    .collect();
                if k == 0 {
                    raw.insert_tx(&rows).await;
                } else {
                    raw.insert_batch(&rows).await;
                }
            }
            rates[k] = (rows_c64 / 64 * 64) as f64 / start.elapsed().as_secs_f64();
        }
        let [floor_rps, ceiling_rps] = rates;
        let (inbox, _) = open("ingest-c64").await;
        let endpoint = WebhookEndpoint::inbox(verifier.clone(), inbox.clone());
        let requests: Arc<Vec<_>> = Arc::new(
            (0..rows_c64)
                .map(|i| signed(&format!("c64-{round}-{i}")))
                .collect(),
        );
        let (rps, latencies) = ingest_c64(&endpoint, &requests).await;
        c64.push((floor_rps, rps, ceiling_rps));
        acks.push((
            bench::percentile(&latencies, 0.50),
            bench::percentile(&latencies, 0.99),
        ));
    }

    // The worker drains a filled inbox at each concurrency (one run each).
    let mut worker_rps = Vec::new();
    let requests: Arc<Vec<_>> = Arc::new(
        (0..rows_c64)
            .map(|i| signed(&format!("worker-{i}")))
            .collect(),
    );
    for concurrency in [1, 4, 16] {
        let (inbox, _) = open("worker").await;
        let endpoint = WebhookEndpoint::inbox(verifier.clone(), inbox.clone());
        ingest_c64(&endpoint, &requests).await;
        let noop = |_e: WebhookEvent, _m: InboxMeta| async { Ok::<(), HandlerError>(()) };
        let start = Instant::now();
        let attempts = InboxWorker::builder(inbox.clone(), noop)
            .concurrency(concurrency)
            .build()
            .drain(Duration::ZERO)
            .await
            .expect("drain");
        assert_eq!(attempts, rows_c64 as u64);
        worker_rps.push((concurrency, attempts as f64 / start.elapsed().as_secs_f64()));
    }

    // The timeline's cost: the worker (c=16, no-op handler, so the store is all there is)
    // with each attempt recorded against the same database without the trigger that records
    // it, in turn within each round.
    let mut history = Vec::new();
    for round in 0..HISTORY_ROUNDS {
        let mut pair = [0.0f64; 2];
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for recorded in order {
            let (inbox, raw) = open("history").await;
            if !recorded {
                raw.drop_history().await;
            }
            let endpoint = WebhookEndpoint::inbox(verifier.clone(), inbox.clone());
            ingest_c64(&endpoint, &requests).await;
            let noop = |_e: WebhookEvent, _m: InboxMeta| async { Ok::<(), HandlerError>(()) };
            let start = Instant::now();
            let attempts = InboxWorker::builder(inbox.clone(), noop)
                .concurrency(16)
                .build()
                .drain(Duration::ZERO)
                .await
                .expect("drain");
            assert_eq!(attempts, rows_c64 as u64);
            pair[usize::from(!recorded)] = attempts as f64 / start.elapsed().as_secs_f64();
        }
        history.push((pair[0], pair[1]));
    }

    // Encryption at rest: ingest at c=64 with bodies sealed (a key given) against in clear.
    // Two inboxes, opened once, take blocks of deliveries in turn (ABBA), so that both meet the
    // same moments of the disk: with a fresh database per measurement, single rounds moved by
    // ±15 % and the median of 21 by ±3 % from run to run.
    let (sealed, _) = open("sealed").await;
    let (clear, _) = open("clear").await;
    let endpoints = [
        WebhookEndpoint::inbox(
            verifier.clone(),
            sealed.with_keys(
                suki_ambient::inbox::Keys::new([suki_ambient::inbox::BodyKey::new([7; 32])])
                    .expect("keys"),
            ),
        ),
        WebhookEndpoint::inbox(verifier.clone(), clear),
    ];
    let mut took = [Duration::ZERO; 2];
    let mut block_rps = [0.0f64; 2];
    let mut sealing = Vec::new();
    for block in 0..SEAL_BLOCKS {
        let arm = (block % 2) ^ ((block / 2) % 2);
        let requests = Arc::new(
            (0..SEAL_BLOCK)
                .map(|i| signed(&format!("seal-{block}-{i}")))
                .collect::<Vec<_>>(),
        );
        let (rps, _) = ingest_c64(&endpoints[arm], &requests).await;
        took[arm] += Duration::from_secs_f64(SEAL_BLOCK as f64 / rps);
        block_rps[arm] = rps;
        if block % 2 == 1 {
            sealing.push(block_rps[0] / block_rps[1]);
        }
    }
    let per_arm = (SEAL_BLOCKS / 2 * SEAL_BLOCK) as f64;

    Figures {
        floor_c1: Duration::from_secs_f64(bench::median(
            c1.iter().map(|r| r.0.as_secs_f64()).collect(),
        )),
        ingest_c1: Duration::from_secs_f64(bench::median(
            c1.iter().map(|r| r.1.as_secs_f64()).collect(),
        )),
        ratio_c1: bench::median(
            c1.iter()
                .map(|r| r.1.as_secs_f64() / r.0.as_secs_f64())
                .collect(),
        ),
        store_c1: Duration::from_secs_f64(bench::median(
            c1.iter().map(|r| r.2.as_secs_f64()).collect(),
        )),
        floor_c64_rps: bench::median(c64.iter().map(|r| r.0).collect()),
        ingest_c64_rps: bench::median(c64.iter().map(|r| r.1).collect()),
        ratio_c64: bench::median(c64.iter().map(|r| r.1 / r.0).collect()),
        ceiling_c64_rps: bench::median(c64.iter().map(|r| r.2).collect()),
        of_ceiling_c64: bench::median(c64.iter().map(|r| r.1 / r.2).collect()),
        ingest_c64_p50: Duration::from_secs_f64(bench::median(
            acks.iter().map(|a| a.0.as_secs_f64()).collect(),
        )),
        ingest_c64_p99: Duration::from_secs_f64(bench::median(
            acks.iter().map(|a| a.1.as_secs_f64()).collect(),
        )),
        worker_rps,
        history_rps: bench::median(history.iter().map(|h| h.0).collect()),
        no_history_rps: bench::median(history.iter().map(|h| h.1).collect()),
        history_ratio: bench::median(history.iter().map(|h| h.0 / h.1).collect()),
        history_ratios: history.iter().map(|h| h.0 / h.1).collect(),
        sealed_c64_rps: per_arm / took[0].as_secs_f64(),
        clear_c64_rps: per_arm / took[1].as_secs_f64(),
        sealed_ratio: took[1].as_secs_f64() / took[0].as_secs_f64(),
        sealed_ratios: sealing,
    }
}

/// The floors: plain sqlx inserts into the inbox's own table on the same database, with the
/// same durability, and no request handling.
#[suki_ambient::async_trait]
trait RawInsert: Send + Sync {
    /// One row, one statement, autocommit: the c=1 floor.
    async fn insert_one(&self, row: &NewDelivery);
    /// `rows` as single-row INSERTs in one transaction: the c=64 floor.
    async fn insert_tx(&self, rows: &[NewDelivery]);
    /// `rows` through the store's own batch statement, no request handling: the ceiling.
    async fn insert_batch(&self, rows: &[NewDelivery]);
    /// Drops the trigger that records each attempt in the row's timeline: the baseline of the
    /// history's cost.
    async fn drop_history(&self);
}

const INSERT: &str = "INSERT INTO suki_inbox_deliveries (dedup_key, source, kind, session_id, \
     encounter_id, generated_at, received_at, body, state, attempts, run_after, fence, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $7, 0, $7) \
     ON CONFLICT (dedup_key) DO NOTHING RETURNING id";

/// The floor's single-row insert of `d`, bound.
macro_rules! bound {
    ($d:expr) => {{
        let d: &NewDelivery = $d;
        let at = i64::try_from(d.received_at.0).unwrap_or(i64::MAX);
        suki_ambient::inbox::sqlx::query_scalar::<_, i64>(INSERT)
            .bind(d.dedup_key.as_str())
            .bind(d.source.as_str())
            .bind(d.kind.as_str())
            .bind(d.session_id.as_ref().map(|s| s.as_str()))
            .bind(d.encounter_id.as_ref().map(|e| e.as_str()))
            .bind(i64::try_from(d.generated_at.0).unwrap_or(i64::MAX))
            .bind(at)
            .bind(&d.body[..])
    }};
}

macro_rules! raw_insert {
    ($store:ty, $drop_history:expr) => {
        #[suki_ambient::async_trait]
        impl RawInsert for $store {
            async fn insert_one(&self, d: &NewDelivery) {
                bound!(d).fetch_optional(self.pool()).await.expect("insert");
            }
            async fn insert_tx(&self, rows: &[NewDelivery]) {
                let mut tx = self.pool().begin().await.expect("begin");
                for d in rows {
                    bound!(d).fetch_optional(&mut *tx).await.expect("insert");
                }
                tx.commit().await.expect("commit");
            }
            async fn insert_batch(&self, rows: &[NewDelivery]) {
                suki_ambient::inbox::store::DeliveryQueue::insert(self, rows)
                    .await
                    .expect("insert");
            }
            async fn drop_history(&self) {
                suki_ambient::inbox::sqlx::query($drop_history)
                    .execute(self.pool())
                    .await
                    .expect("drop the history trigger");
            }
        }
    };
}

raw_insert!(
    suki_ambient::inbox::SqliteStore,
    "DROP TRIGGER suki_inbox_history_attempt"
);
raw_insert!(
    suki_ambient::inbox::PostgresStore,
    "DROP TRIGGER suki_inbox_history_attempt ON suki_inbox_deliveries"
);

fn report(name: &str, f: &Figures) {
    println!("\n{name}");
    println!(
        "  c=1   bare insert (autocommit) {:>9.2?}  ingest {:>9.2?}  latency ratio {:.3}x  (target <= 1.2x)",
        f.floor_c1, f.ingest_c1, f.ratio_c1
    );
    println!(
        "        of which the store's insert of one row {:>9.2?} (the rest: verify, parse, group commit)",
        f.store_c1
    );
    println!(
        "  c=64  floor (64 single-row INSERTs/tx) {:>8.0} rows/s  ingest {:>8.0} rows/s  ratio {:.3}x  (target >= 0.8x)  ack p50 {:.2?} p99 {:.2?}",
        f.floor_c64_rps, f.ingest_c64_rps, f.ratio_c64, f.ingest_c64_p50, f.ingest_c64_p99
    );
    println!(
        "        ceiling (the store's batch statement, no request handling) {:>8.0} rows/s  ingest at {:.3}x of it",
        f.ceiling_c64_rps, f.of_ceiling_c64
    );
    let workers: Vec<String> = f
        .worker_rps
        .iter()
        .map(|(c, rps)| format!("c={c}: {rps:.0} rows/s"))
        .collect();
    println!("  worker (no-op handler)  {}", workers.join("  "));
    let rounds: Vec<String> = f.history_ratios.iter().map(|r| format!("{r:.3}")).collect();
    println!(
        "  worker c=16 with each attempt in the timeline {:>8.0} rows/s  without {:>8.0} rows/s  ratio {:.3}x  (target >= 0.9x; rounds {})",
        f.history_rps,
        f.no_history_rps,
        f.history_ratio,
        rounds.join(" ")
    );
    let mut pairs = f.sealed_ratios.clone();
    pairs.sort_by(f64::total_cmp);
    let at = |q: usize| pairs.get(pairs.len() * q / 10).copied().unwrap_or(f64::NAN);
    println!(
        "  c=64  ingest with bodies sealed {:>8.0} rows/s  in clear {:>8.0} rows/s  ratio {:.3}x  (target >= 0.95x; {} blocks of {SEAL_BLOCK} each, in turn; pairs p10 {:.3} p50 {:.3} p90 {:.3})",
        f.sealed_c64_rps,
        f.clear_c64_rps,
        f.sealed_ratio,
        SEAL_BLOCKS / 2,
        at(1),
        at(5),
        at(9)
    );
}

/// What sealing and opening one body costs (the worker opens each row once per attempt), in a
/// loop on this thread, against copying the same bytes.
fn crypto_costs() {
    let key = suki_ambient::inbox::BodyKey::new([7; 32]);
    let (_, body) = signed("crypto-cost");
    let aad = b"a953839a-ddcd-407d-b9b0-3ed4b6be4be2/completed";
    let n = 20_000u32;
    let sealed = key.seal(aad, &body);
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(key.seal(aad, std::hint::black_box(&body)));
    }
    let seal = start.elapsed() / n;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(key.open(aad, std::hint::black_box(&sealed)));
    }
    let open = start.elapsed() / n;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(std::hint::black_box(&body[..]).to_vec());
    }
    let copy = start.elapsed() / n;
    println!(
        "\nbody encryption ({} B body): seal {seal:.2?}, open (the worker's decrypt cost per row) {open:.2?}, against copying it {copy:.2?}",
        body.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rows_c1: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let rows_c64: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(6_400);
    println!(
        "inbox load: {rows_c1} sequential deliveries (c=1), {rows_c64} at 64 concurrent (c=64); durable commits; medians of {ROUNDS} rounds"
    );
    let _ = NoopHandler;

    crypto_costs();
    let dir = tempfile::tempdir().expect("temp dir");
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let sqlite = measure(
        |tag| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let url = format!(
                "sqlite://{}",
                dir.path().join(format!("{tag}-{n}.db")).display()
            );
            async move {
                let store = suki_ambient::inbox::SqliteStore::connect(&url)
                    .await
                    .expect("sqlite");
                let inbox = Inbox::connect(&url).await.expect("sqlite inbox");
                (inbox, Box::new(store) as Box<dyn RawInsert>)
            }
        },
        rows_c1,
        rows_c64,
    )
    .await;
    report("SQLite (WAL, synchronous=FULL)", &sqlite);

    match std::env::var("SUKI_POSTGRES_URL") {
        Ok(admin) => {
            let postgres = measure(
                |_tag| {
                    let admin = admin.clone();
                    async move {
                        let url = bench::fresh_database(&admin).await;
                        let store = suki_ambient::inbox::PostgresStore::connect(&url)
                            .await
                            .expect("postgres");
                        let inbox = Inbox::connect(&url).await.expect("postgres inbox");
                        (inbox, Box::new(store) as Box<dyn RawInsert>)
                    }
                },
                rows_c1,
                rows_c64,
            )
            .await;
            report("Postgres 15 (synchronous_commit on)", &postgres);
        }
        Err(_) => println!("\nPostgres: skipped (set SUKI_POSTGRES_URL to a server's URL)"),
    }
}
