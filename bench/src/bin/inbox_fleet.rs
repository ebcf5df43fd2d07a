//! The Postgres inbox as a fleet uses it, each figure against a baseline of the same run:
//!
//! - **Long run**: `ROWS` (default 100,000) due rows processed by one worker at concurrency 16
//!   with a handler that does nothing: the rate of the last 10 % of rows against the rate of the
//!   first 10 % (target ≥ 0.8×: the queue must not slow down as claimed rows pile up behind its
//!   head).
//! - **Wake-up**: a delivery stored by receiver A, claimed by a worker of receiver B (another
//!   `Inbox`, as another process would have): time from A's commit to B's handler, p50 and p99
//!   over `WAKES` deliveries, with LISTEN/NOTIFY (the default) against the poll alone (default
//!   poll interval, 1 s), alternating (target p50 ≤ 50 ms).
//!
//! ```sh
//! SUKI_POSTGRES_URL=postgres://… cargo run --release -p bench --bin inbox_fleet -- [ROWS] [WAKES]
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use suki_ambient::inbox::{Inbox, InboxMeta, InboxWorker, ops::Source, sqlx, store::NewDelivery};
use suki_ambient::{Bytes, HandlerError, UnixMillis, WebhookEvent};

/// Fills the inbox with `rows` pending rows, due now (the counting triggers run as usual).
const FILL: &str = "INSERT INTO suki_inbox_deliveries (dedup_key, source, kind, session_id, \
         encounter_id, generated_at, received_at, body, state, attempts, run_after, fence, \
         updated_at) \
     SELECT 'fill-' || i, 'webhook', 'completed', 'fill-' || i, 'fill-encounter', $2, $2, \
         convert_to($3, 'UTF8'), 'pending', 0, $2, 0, $2 FROM generate_series(1, $1::bigint) AS i";

fn body(session: &str) -> Bytes {
    Bytes::from(suki_ambient::testing::completed(session, "bench-encounter").to_vec())
}

async fn long_run(admin: &str, rows: usize) {
    let url = bench::fresh_database(admin).await;
    let inbox = Inbox::connect(&url).await.expect("inbox");
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    let text = String::from_utf8(body("fill").to_vec()).expect("utf-8");
    sqlx::query(FILL)
        .bind(i64::try_from(rows).expect("rows"))
        .bind(i64::try_from(UnixMillis::now().0).expect("now"))
        .bind(text)
        .execute(&pool)
        .await
        .expect("fill");
    sqlx::query("ANALYZE suki_inbox_deliveries")
        .execute(&pool)
        .await
        .expect("analyze");
    let done: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::with_capacity(rows)));
    let handler = {
        let done = Arc::clone(&done);
        move |_e: WebhookEvent, _m: InboxMeta| {
            done.lock().expect("lock").push(Instant::now());
            async { Ok::<(), HandlerError>(()) }
        }
    };
    let start = Instant::now();
    let worker = InboxWorker::builder(inbox.clone(), handler)
        .concurrency(16)
        .build()
        .spawn();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let counts = inbox.status().await.expect("status").counts;
        if counts.done as usize >= rows {
            break;
        }
    }
    worker.shutdown().await.expect("shutdown");
    let mut times = done.lock().expect("lock").clone();
    times.sort();
    let tenth = rows / 10;
    let first = times[tenth - 1].duration_since(start);
    let last = times[rows - 1].duration_since(times[rows - 1 - tenth]);
    let (first_rate, last_rate) = (
        tenth as f64 / first.as_secs_f64(),
        tenth as f64 / last.as_secs_f64(),
    );
    let total = times[rows - 1].duration_since(start);
    println!(
        "long run, {rows} rows at concurrency 16: {:.0} rows/s overall ({:.1} s); first 10 %: {first_rate:.0} rows/s, last 10 %: {last_rate:.0} rows/s → last/first {:.2}× (target ≥ 0.8×)",
        rows as f64 / total.as_secs_f64(),
        total.as_secs_f64(),
        last_rate / first_rate
    );
}

/// `WAKES` deliveries stored by A, each timed until B's handler starts; B's worker listens or
/// only polls.
async fn wake(url: &str, wakes: usize, listen: bool, round: usize) -> Vec<Duration> {
    let a = Inbox::connect(url).await.expect("receiver A");
    let b = Inbox::connect(url).await.expect("receiver B");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let worker = InboxWorker::builder(b, move |_e: WebhookEvent, _m: InboxMeta| {
        let _ = tx.send(Instant::now());
        async { Ok::<(), HandlerError>(()) }
    })
    .listen(listen)
    .build()
    .spawn();
    // Let the worker settle into its idle wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = Vec::with_capacity(wakes);
    for i in 0..wakes {
        let session = format!("wake-{round}-{listen}-{i}");
        let stored = a
            .ingest(NewDelivery {
                dedup_key: format!("{session}/completed"),
                source: Source::Webhook,
                kind: suki_ambient::EventKind::Completed,
                session_id: Some(suki_ambient::SessionId::from(session.as_str())),
                encounter_id: Some(suki_ambient::EncounterId::from("bench-encounter")),
                generated_at: UnixMillis::now(),
                received_at: UnixMillis::now(),
                body: body(&session),
                key_id: None,
            })
            .await;
        let committed = Instant::now();
        stored.expect("ingest");
        let handled = rx.recv().await.expect("handled");
        latencies.push(handled.saturating_duration_since(committed));
        // Stagger the next delivery within the poll interval, so the poll alone is measured
        // at every phase of its cycle.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(50..400))).await;
    }
    worker.shutdown().await.expect("shutdown");
    latencies
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let wakes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    let Ok(admin) = std::env::var("SUKI_POSTGRES_URL") else {
        eprintln!(
            "inbox_fleet needs SUKI_POSTGRES_URL (a Postgres server; a fresh database is created)"
        );
        std::process::exit(2);
    };
    long_run(&admin, rows).await;

    let url = bench::fresh_database(&admin).await;
    let (mut listening, mut polling) = (Vec::new(), Vec::new());
    for round in 0..2 {
        listening.extend(wake(&url, wakes / 2, true, round).await);
        polling.extend(wake(&url, wakes / 2, false, round).await);
    }
    listening.sort();
    polling.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (lp50, lp99) = (
        bench::percentile(&listening, 0.5),
        bench::percentile(&listening, 0.99),
    );
    let (pp50, pp99) = (
        bench::percentile(&polling, 0.5),
        bench::percentile(&polling, 0.99),
    );
    println!(
        "wake-up, stored by receiver A, handled by a worker of receiver B ({} each): LISTEN/NOTIFY p50 {:.1} ms, p99 {:.1} ms; poll only (1 s) p50 {:.1} ms, p99 {:.1} ms → p50 {:.3}× of the poll's (target p50 ≤ 50 ms)",
        listening.len(),
        ms(lp50),
        ms(lp99),
        ms(pp50),
        ms(pp99),
        lp50.as_secs_f64() / pp50.as_secs_f64()
    );
}
