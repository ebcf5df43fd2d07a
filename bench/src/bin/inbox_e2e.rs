//! End to end under load, with the defaults: a receiver on an embedded SQLite inbox whose Suki
//! API answers in 20 ms, sessions arriving at a fixed rate: from the webhook's send to the
//! handler holding the session's results (`FetchResults::on_results`: note, structured data and
//! transcript fetched), p50/p99/max at 20 and at 100 sessions/s; and, as the baseline of the same
//! run, the same 100 sessions/s with the worker concurrency of earlier releases (4).
//! Target: p99 ≤ 1 s at 100 sessions/s with the defaults.
//!
//! Everything runs in this process (sandbox, receiver, worker, load), on loopback.
//!
//! ```sh
//! cargo run --release -p bench --bin inbox_e2e -- [SECONDS_PER_RATE]
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use suki_ambient::client::{AmbientClient, SessionResults};
use suki_ambient::inbox::{FetchResults, Inbox, InboxMeta, InboxWorker, ResultsHandler};
use suki_ambient::sandbox::{Fault, Sandbox, SandboxHandle};
use suki_ambient::{
    EventKind, HandlerError, SessionCompleted, SessionEnded, SessionFailed, WebhookEndpoint,
    WebhookEvent,
};

/// When each session's results reached the handler.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<HashMap<String, Instant>>>);

#[async_trait::async_trait]
impl ResultsHandler for Recorder {
    async fn on_results(
        &self,
        event: SessionCompleted,
        results: SessionResults,
        _meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        assert!(results.contents.is_some(), "the note was fetched");
        self.0
            .lock()
            .expect("lock")
            .insert(event.session_id.as_str().to_owned(), Instant::now());
        Ok(())
    }
    async fn on_failed(&self, _e: SessionFailed, _m: InboxMeta) -> Result<(), HandlerError> {
        Ok(())
    }
    async fn on_ended(
        &self,
        _k: EventKind,
        _e: SessionEnded,
        _m: InboxMeta,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// One run: `rate` sessions/s for `seconds`, a fresh inbox and worker (`concurrency`: `None`
/// for the default). The latencies, sorted.
async fn run(
    sandbox: &SandboxHandle,
    dir: &std::path::Path,
    rate: u32,
    seconds: u32,
    concurrency: Option<usize>,
) -> Vec<Duration> {
    let n = (rate * seconds) as usize;
    let events: Vec<WebhookEvent> = (0..n)
        .map(|_| {
            let s = sandbox.create_session(None);
            sandbox.complete_silently(&s.session_id).expect("complete")
        })
        .collect();
    let url = format!(
        "sqlite://{}",
        dir.join(format!("e2e-{rate}-{concurrency:?}.db")).display()
    );
    let inbox = Inbox::connect(&url).await.expect("inbox");
    let verifier = sandbox.verifier_builder().build().expect("verifier");
    let endpoint = WebhookEndpoint::inbox(verifier, inbox.clone());
    let app = axum::Router::new().nest("/webhooks/suki", suki_ambient::axum::router(endpoint));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    sandbox.set_webhook_url(Some(format!("http://{addr}/webhooks/suki")));

    let client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .build()
        .expect("client");
    let recorder = Recorder::default();
    let mut worker =
        InboxWorker::builder(inbox.clone(), FetchResults::new(client, recorder.clone()));
    if let Some(c) = concurrency {
        worker = worker.concurrency(c);
    }
    let worker = worker.build().spawn();

    let start = Instant::now();
    let every = Duration::from_secs(1) / rate;
    let mut sent = HashMap::with_capacity(n);
    let mut sends = tokio::task::JoinSet::new();
    for (i, event) in events.into_iter().enumerate() {
        let at = start + every * u32::try_from(i).expect("i");
        tokio::time::sleep_until(at.into()).await;
        let id = event.session_id().expect("session").as_str().to_owned();
        sent.insert(id, at);
        let control = sandbox.control();
        sends.spawn(async move {
            let delivery = control.deliver(&event).await.expect("delivered");
            assert!(delivery.acknowledged(), "the receiver answered 200");
        });
    }
    while let Some(done) = sends.join_next().await {
        done.expect("send task");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while recorder.0.lock().expect("lock").len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await.expect("shutdown");
    server.abort();
    let handled = recorder.0.lock().expect("lock").clone();
    assert_eq!(handled.len(), n, "every session reached the handler");
    let mut latencies: Vec<Duration> = sent
        .iter()
        .map(|(id, at)| handled[id].saturating_duration_since(*at))
        .collect();
    latencies.sort();
    latencies
}

fn line(label: &str, l: &[Duration]) -> Duration {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p99 = bench::percentile(l, 0.99);
    println!(
        "{label:<44} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  ({} sessions)",
        ms(bench::percentile(l, 0.5)),
        ms(p99),
        ms(l[l.len() - 1]),
        l.len()
    );
    p99
}

#[tokio::main]
async fn main() {
    let seconds: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    // Suki's API answers in 20 ms.
    sandbox.inject(Fault::latency(Duration::from_millis(20)).share(1.0));
    let dir = tempfile::tempdir().expect("dir");
    println!(
        "end to end, webhook sent → handler with results (API latency 20 ms, SQLite, {seconds} s per rate):"
    );
    line(
        "20 sessions/s, defaults",
        &run(&sandbox, dir.path(), 20, seconds, None).await,
    );
    let defaults = line(
        "100 sessions/s, defaults",
        &run(&sandbox, dir.path(), 100, seconds, None).await,
    );
    let baseline = line(
        "100 sessions/s, concurrency 4 (earlier default)",
        &run(&sandbox, dir.path(), 100, seconds, Some(4)).await,
    );
    // Headroom: twice the target rate.
    let headroom = line(
        "200 sessions/s, defaults",
        &run(&sandbox, dir.path(), 200, seconds, None).await,
    );
    let headroom_baseline = line(
        "200 sessions/s, concurrency 4 (earlier default)",
        &run(&sandbox, dir.path(), 200, seconds, Some(4)).await,
    );
    println!(
        "p99 at 200 sessions/s: defaults {:.3}× the earlier default's",
        headroom.as_secs_f64() / headroom_baseline.as_secs_f64()
    );
    println!(
        "p99 at 100 sessions/s: defaults {:.3}× the earlier default's (target p99 ≤ 1 s: {})",
        defaults.as_secs_f64() / baseline.as_secs_f64(),
        if defaults <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
    sandbox.shutdown().await;
}
