//! Health, `status()` and the console's counts on a large inbox, and webhook ingest under a
//! health-check flood, each against a baseline measured in the same run on the same database:
//!
//! - `status()` and `health()` (median of 200 calls) on an inbox of `ROWS` rows (default 10^6:
//!   98.9 % done, 1 % pending, 0.1 % dead), against the same calls on the same inbox at 10^3 rows
//!   and against what `status()` cost before the counts were kept (a count by state over the
//!   whole table): targets ≤ 5 ms each;
//! - `trace()` of one session (its rows, timelines and expectations, by index) on the same
//!   inboxes (target ≤ 50 ms at 10^6), and of an encounter that every row names;
//! - webhook ingest over HTTP at concurrency 1 (verify, store, durable commit, 200) while 8
//!   connections flood the unauthenticated `/healthz` route of the same server, against ingest
//!   without the flood, in alternating rounds: p99 ratio, target ≤ 1.2×; and, as the floor of
//!   what any flood costs on this machine, ingest under the same flood of a route that does
//!   nothing (404). The flood comes from a child process at `nice 19`, so that what is measured
//!   is what the receiver spends on it, not what its load generator spends on the same cores.
//!
//! SQLite always (a temporary folder); Postgres too when `SUKI_POSTGRES_URL` names a server (a
//! fresh database is created on it).
//!
//! ```sh
//! cargo run --release -p bench --bin inbox_health -- [ROWS] [REQUESTS_PER_ROUND]   # 0 requests: reads only
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use suki_ambient::inbox::sqlx;
use suki_ambient::inbox::{HealthThresholds, Inbox};
use suki_ambient::{UnixMillis, Verifier, WebhookEndpoint};

const SECRET: &str = "inbox-health-bench-secret";
const ROUNDS: usize = 5;
const FLOODERS: usize = 8;
const CALLS: usize = 200;

/// Fills a SQLite inbox with `rows` rows in one statement (the counting triggers run per row).
const FILL_SQLITE: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
     INSERT INTO suki_inbox_deliveries (dedup_key, source, kind, session_id, encounter_id, \
         generated_at, received_at, body, state, attempts, run_after, fence, updated_at, completed_at) \
     SELECT 'fill-' || (i + $3), 'webhook', 'completed', 'fill-' || (i + $3), 'fill-encounter', $2, $2, \
         zeroblob(300), \
         CASE WHEN i % 1000 = 0 THEN 'dead' WHEN i % 100 = 0 THEN 'pending' ELSE 'done' END, \
         1, $2, 1, $2, $2 FROM n";

/// The same on Postgres.
const FILL_POSTGRES: &str = "INSERT INTO suki_inbox_deliveries (dedup_key, source, kind, session_id, \
         encounter_id, generated_at, received_at, body, state, attempts, run_after, fence, \
         updated_at, completed_at) \
     SELECT 'fill-' || (i + $3), 'webhook', 'completed', 'fill-' || (i + $3), 'fill-encounter', $2, $2, \
         convert_to(repeat('x', 300), 'UTF8'), \
         CASE WHEN i % 1000 = 0 THEN 'dead' WHEN i % 100 = 0 THEN 'pending' ELSE 'done' END, \
         1, $2, 1, $2, $2 FROM generate_series(1, $1::bigint) AS i";

/// What `status()` read before migration 0004 kept the counts.
const SCAN: &str = "SELECT state, COUNT(*) FROM suki_inbox_deliveries GROUP BY state";

/// The median time of `CALLS` calls of `f`.
async fn median_of<F, Fut>(f: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

/// Sends `n` signed webhooks one after another; their sorted latencies.
async fn ingest(http: &reqwest::Client, url: &str, round: &str, n: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let (headers, body) = bench::signed(SECRET, &format!("ingest-{round}-{i}"));
        let mut request = http.post(url).body(body);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let t = Instant::now();
        let answer = request.send().await.expect("send");
        let status = answer.status();
        let _ = answer.bytes().await;
        latencies.push(t.elapsed());
        assert_eq!(status, 200, "ingest");
    }
    latencies.sort();
    latencies
}

/// Child side: `FLOODERS` tasks asking `url` as fast as they can until standard input closes;
/// then prints how many answers came.
async fn flood_child(url: String) {
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let http = reqwest::Client::new();
    for _ in 0..FLOODERS {
        let (http, url, stop, answered) = (
            http.clone(),
            url.clone(),
            Arc::clone(&stop),
            Arc::clone(&answered),
        );
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(answer) = http.get(&url).send().await {
                    let _ = answer.bytes().await;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    println!("{}", answered.load(Ordering::Relaxed));
}

/// Parent side: a flood of `url` from a child process at the lowest CPU priority (`nice 19`), so
/// that what the receiver spends on the flood is measured, not what the load generator spends
/// beside it on the same two cores.
struct Flood(std::process::Child, Instant);

impl Flood {
    fn start(url: &str) -> Self {
        let exe = std::env::current_exe().expect("exe");
        let child = std::process::Command::new("nice")
            .args(["-n", "19"])
            .arg(exe)
            .args(["--flood", url])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("flood child (needs `nice`)");
        Self(child, Instant::now())
    }

    /// Stops it; the checks it got answered per second.
    fn stop(mut self) -> f64 {
        drop(self.0.stdin.take());
        let out = self.0.wait_with_output().expect("flood child");
        let n: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0.0);
        n / self.1.elapsed().as_secs_f64()
    }
}

/// The database under the inbox, for what the benchmark writes and reads around it.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn open(url: &str) -> Self {
        if url.starts_with("sqlite:") {
            let store = suki_ambient::inbox::SqliteStore::connect(url)
                .await
                .expect("sqlite");
            Self::Sqlite(store.pool().clone())
        } else {
            let store = suki_ambient::inbox::PostgresStore::connect(url)
                .await
                .expect("postgres");
            Self::Postgres(store.pool().clone())
        }
    }

    /// `rows` more rows received now (the counting triggers run as they are inserted); the
    /// number their sessions' ids start after (`fill-<offset + 1>` …).
    async fn fill(&self, rows: u64) -> u64 {
        static FILLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let offset = FILLED.fetch_add(rows, Ordering::Relaxed);
        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
        let now = i64::try_from(UnixMillis::now().0).unwrap_or(i64::MAX);
        match self {
            Self::Sqlite(pool) => {
                sqlx::query(FILL_SQLITE)
                    .bind(rows)
                    .bind(now)
                    .bind(i64::try_from(offset).unwrap_or(0))
                    .execute(pool)
                    .await
                    .expect("fill");
            }
            Self::Postgres(pool) => {
                sqlx::query(FILL_POSTGRES)
                    .bind(rows)
                    .bind(now)
                    .bind(i64::try_from(offset).unwrap_or(0))
                    .execute(pool)
                    .await
                    .expect("fill");
                sqlx::query("VACUUM ANALYZE suki_inbox_deliveries")
                    .execute(pool)
                    .await
                    .expect("analyze");
            }
        }
        offset
    }

    /// The count by state over the whole table.
    async fn scan(&self) {
        let _: Vec<(String, i64)> = match self {
            Self::Sqlite(pool) => sqlx::query_as(SCAN).fetch_all(pool).await,
            Self::Postgres(pool) => sqlx::query_as(SCAN).fetch_all(pool).await,
        }
        .expect("scan");
    }
}

/// The medians of `status()` and of an uncached `health()`.
async fn reads(inbox: &Inbox) -> (Duration, Duration) {
    let uncached = HealthThresholds {
        counts_max_age: Duration::ZERO,
        write_probe_every: Duration::ZERO,
        ..HealthThresholds::default()
    };
    let status = median_of(|| async {
        inbox.status().await.expect("status");
    })
    .await;
    let health = median_of(|| async {
        let _ = inbox.health(&uncached).await;
    })
    .await;
    (status, health)
}

async fn measure(label: &str, url: &str, rows: u64, requests: usize) {
    let inbox = Inbox::connect(url).await.expect("inbox");
    let raw = Raw::open(url).await;
    // The same reads on a small inbox first (10^3 rows), as the baseline of this run.
    let small = rows.min(1_000);
    let first = raw.fill(small).await;
    let (small_status, small_health) = reads(&inbox).await;
    let one = format!("fill-{}", first + small / 2);
    let small_trace = median_of(|| async {
        let trace = inbox.trace(&one).await.expect("trace");
        assert_eq!(trace.deliveries.len(), 1);
    })
    .await;
    let t = Instant::now();
    let next = raw.fill(rows - small).await;
    let counts = inbox.status().await.expect("status").counts;
    println!(
        "\n{label}: {rows} rows filled in {:.1} s ({} done, {} pending, {} dead)",
        t.elapsed().as_secs_f64(),
        counts.done,
        counts.pending,
        counts.dead
    );

    // Reads: the kept counts against the scan they replaced, and against a small inbox.
    let scan = median_of(|| raw.scan()).await;
    let (status, health_uncached) = reads(&inbox).await;
    let thresholds = HealthThresholds::default();
    let health = median_of(|| async {
        let _ = inbox.health(&thresholds).await;
    })
    .await;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  status()  {:>9.3} ms  (target ≤ 5 ms)   at {small} rows {:>7.3} ms: ratio {:.2}x   baseline: count by state over the table {:>9.3} ms: ratio {:.4}x",
        ms(status),
        ms(small_status),
        status.as_secs_f64() / small_status.as_secs_f64(),
        ms(scan),
        status.as_secs_f64() / scan.as_secs_f64()
    );
    let middle = format!("fill-{}", next + (rows - small) / 2);
    let trace = median_of(|| async {
        let trace = inbox.trace(&middle).await.expect("trace");
        assert_eq!(trace.deliveries.len(), 1);
    })
    .await;
    let crowded = median_of(|| async {
        let trace = inbox.trace("fill-encounter").await.expect("trace");
        assert_eq!(trace.deliveries.len(), 100);
    })
    .await;
    println!(
        "  trace(session)  {:>9.3} ms  (target ≤ 50 ms)   at {small} rows {:>7.3} ms: ratio {:.2}x   an encounter of every row (the first 100 shown) {:>7.3} ms",
        ms(trace),
        ms(small_trace),
        trace.as_secs_f64() / small_trace.as_secs_f64(),
        ms(crowded)
    );
    println!(
        "  health()  {:>9.3} ms  (target ≤ 5 ms)   at {small} rows {:>7.3} ms: ratio {:.2}x   (uncached: counts, oldest unfinished and a write probe, each call)",
        ms(health_uncached),
        ms(small_health),
        health_uncached.as_secs_f64() / small_health.as_secs_f64()
    );
    println!(
        "  health()  {:>9.3} ms                    as served (counts read at most once a second, a probe at most every 5 s)",
        ms(health)
    );
    if requests == 0 {
        return;
    }

    // Ingest with and without a /healthz flood, on one server, alternating.
    let verifier = Verifier::builder()
        .secret(SECRET)
        .build()
        .expect("verifier");
    let endpoint = WebhookEndpoint::inbox(verifier, inbox.clone());
    let app = axum::Router::new()
        .nest("/webhooks/suki", suki_ambient::axum::router(endpoint))
        .nest(
            "/healthz",
            suki_ambient::inbox::health_router(inbox.clone(), thresholds),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let webhook = format!("http://{addr}/webhooks/suki");
    let healthz = format!("http://{addr}/healthz");
    let http = reqwest::Client::new();
    let _ = ingest(&http, &webhook, "warm-up", 50).await;
    let nothing = format!("http://{addr}/nothing-here");
    let (mut quiet_p99, mut flood_p99, mut floor_p99) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ratios, mut floor_ratios, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    let mut marginal = Vec::new();
    for round in 0..ROUNDS {
        // Without a flood; under a /healthz flood; under the same flood of a route that does
        // nothing (404): what any flood of this server costs on this machine.
        let quiet = ingest(&http, &webhook, &format!("quiet-{round}"), requests).await;
        let flood = Flood::start(&healthz);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let flooded = ingest(&http, &webhook, &format!("flood-{round}"), requests).await;
        rates.push(flood.stop());
        let flood = Flood::start(&nothing);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let floored = ingest(&http, &webhook, &format!("floor-{round}"), requests).await;
        let _ = flood.stop();
        let p99 = |l: &[Duration]| bench::percentile(l, 0.99).as_secs_f64() * 1e3;
        let (q, f, n) = (p99(&quiet), p99(&flooded), p99(&floored));
        quiet_p99.push(q);
        flood_p99.push(f);
        floor_p99.push(n);
        ratios.push(f / q);
        floor_ratios.push(n / q);
        marginal.push(f / n);
    }
    server.abort();
    let shown = |r: &[f64]| {
        r.iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  ingest p99 without a flood {:.2} ms; under a /healthz flood ({FLOODERS} connections from a child at nice 19, {:.0} checks/s) {:.2} ms: ratio {:.2}x (target ≤ 1.2x; rounds {})",
        bench::median(quiet_p99),
        bench::median(rates),
        bench::median(flood_p99),
        bench::median(ratios.clone()),
        shown(&ratios)
    );
    println!(
        "  floor: the same flood of a route that does nothing (404): {:.2} ms, ratio {:.2}x (rounds {})",
        bench::median(floor_p99),
        bench::median(floor_ratios.clone()),
        shown(&floor_ratios)
    );
    println!(
        "  the health route's own cost: ingest p99 under the /healthz flood / under the 404 flood: {:.2}x (rounds {})",
        bench::median(marginal.clone()),
        shown(&marginal)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    if std::env::args().nth(1).as_deref() == Some("--flood") {
        return flood_child(std::env::args().nth(2).expect("url")).await;
    }
    let rows: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let requests: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    println!(
        "inbox health: reads at {rows} rows (medians of {CALLS} calls); ingest c=1 over HTTP, {requests} per round, {ROUNDS} rounds with and without a /healthz flood"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    measure("SQLite (WAL, synchronous=FULL)", &url, rows, requests).await;
    match std::env::var("SUKI_POSTGRES_URL") {
        Ok(admin) => {
            let url = bench::fresh_database(&admin).await;
            measure("Postgres 15 (synchronous_commit on)", &url, rows, requests).await;
        }
        Err(_) => println!("\nPostgres: skipped (set SUKI_POSTGRES_URL to a server's URL)"),
    }
}
