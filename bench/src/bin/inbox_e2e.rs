//! End to end under load, with the defaults: a receiver on an embedded SQLite inbox whose Suki
//! API answers in 20 ms, sessions arriving at a fixed rate: from the webhook's send to the
//! handler holding the session's results (`FetchResults::on_results`: note, structured data and
//! transcript fetched), p50/p99/max at 20 and at 100 sessions/s; and, as the baseline of the same
//! run, the same 100 sessions/s with the worker concurrency of earlier releases (4).
//! Target: p99 ≤ 1 s at 100 sessions/s with the defaults.
//!
//! Then the same load written to an EHR (`FhirWriteBack`): a FHIR stand-in answering every
//! request in 150 ms, Suki's API in 20 ms; from the webhook's send to the note written, at 100
//! sessions/s, one create per resource and one transaction per session, with the defaults (the
//! adaptive concurrency) and, as the baseline, the earlier fixed 16; then with the EHR down 2 s
//! of every 10 (p99 target: outage + 2 s; refused requests per session ≤ 1); then a 6-hour EHR
//! outage on a clock running 720 times faster (0 dead letters).
//!
//! Everything runs in this process (sandbox, stand-in, receiver, worker, load), on loopback.
//!
//! ```sh
//! cargo run --release -p bench --bin inbox_e2e -- [SECONDS_PER_RATE] [ehr]   # BENCH_DEBUG=1: latency by send time
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::ehr_standin::EhrStandIn;
use suki_ambient::client::{AmbientClient, SessionResults};
use suki_ambient::fhir::{
    BearerToken, EhrContext, FhirClient, FhirWriteBack, Reference, SessionRef,
};
use suki_ambient::inbox::{FetchResults, Inbox, InboxMeta, InboxWorker, LinkNeeds, ResultsHandler};
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

/// `n` completed sessions whose webhooks the bench sends itself.
fn completed(sandbox: &SandboxHandle, n: usize) -> Vec<WebhookEvent> {
    (0..n)
        .map(|_| {
            let s = sandbox.create_session(None);
            sandbox.complete_silently(&s.session_id).expect("complete")
        })
        .collect()
}

/// A receiver storing `sandbox`'s webhooks into `inbox`, made the sandbox's webhook URL.
async fn receiver(
    sandbox: &SandboxHandle,
    inbox: &Inbox,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let verifier = sandbox.verifier_builder().build().expect("verifier");
    let endpoint = WebhookEndpoint::inbox(verifier, inbox.clone());
    let app = axum::Router::new().nest("/webhooks/suki", suki_ambient::axum::router(endpoint));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    sandbox.set_webhook_url(Some(format!("http://{addr}/webhooks/suki")));
    tokio::spawn(async move { axum::serve(listener, app).await })
}

/// Sends `events` at `rate` a second from `start`, each acknowledged; when each was sent.
async fn send(
    sandbox: &SandboxHandle,
    events: Vec<WebhookEvent>,
    rate: u32,
    start: Instant,
) -> HashMap<String, Instant> {
    let every = Duration::from_secs(1) / rate;
    let mut sent = HashMap::with_capacity(events.len());
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
    sent
}

/// Waits (up to `within`) until `recorder` holds `n` sessions.
async fn until_recorded(recorder: &Recorder, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while recorder.0.lock().expect("lock").len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    let events = completed(sandbox, n);
    let url = format!(
        "sqlite://{}",
        dir.join(format!("e2e-{rate}-{concurrency:?}.db")).display()
    );
    let inbox = Inbox::connect(&url).await.expect("inbox");
    let server = receiver(sandbox, &inbox).await;

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

    let sent = send(sandbox, events, rate, Instant::now()).await;
    until_recorded(&recorder, n, Duration::from_secs(120)).await;
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

/// A `FhirWriteBack` that also notes when each session's note was written.
struct Written<R> {
    inner: FhirWriteBack<R>,
    at: Recorder,
}

#[async_trait::async_trait]
impl<R: suki_ambient::fhir::EhrResolver> ResultsHandler for Written<R> {
    async fn on_results(
        &self,
        event: SessionCompleted,
        results: SessionResults,
        meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        let id = event.session_id.as_str().to_owned();
        self.inner.on_results(event, results, meta).await?;
        self.at.0.lock().expect("lock").insert(id, Instant::now());
        Ok(())
    }
    async fn on_failed(&self, e: SessionFailed, m: InboxMeta) -> Result<(), HandlerError> {
        self.inner.on_failed(e, m).await
    }
    async fn on_ended(
        &self,
        k: EventKind,
        e: SessionEnded,
        m: InboxMeta,
    ) -> Result<(), HandlerError> {
        self.inner.on_ended(k, e, m).await
    }
    fn links(&self) -> Option<LinkNeeds> {
        self.inner.links()
    }
}

async fn place(_session: SessionRef) -> Result<EhrContext, HandlerError> {
    Ok(EhrContext::new(Reference::parse("Patient/p-1")?))
}

/// What one write-back run measured.
struct EhrRun {
    latencies: Vec<Duration>,
    refused: u64,
    requests: u64,
    dead: u64,
    most_attempts: u32,
}

/// A clock running `factor` times faster than the wall clock, from now.
struct Scaled {
    start: Instant,
    unix: u64,
    factor: u32,
}

impl suki_ambient::Clock for Scaled {
    fn now(&self) -> suki_ambient::UnixMillis {
        let elapsed = self.start.elapsed().as_millis() as u64;
        suki_ambient::UnixMillis(self.unix + elapsed * u64::from(self.factor))
    }
}

/// The load of [`run`], written to an EHR stand-in answering in 150 ms (declaring
/// transactions when `transactions`), with the client's default strategy:
/// `rate` sessions/s for `seconds`; `concurrency` fixed or (`None`) adaptive; the EHR down
/// `outage.1` of every `outage.0`; the inbox's clock `scale` times the wall clock's.
#[expect(
    clippy::too_many_arguments,
    reason = "one bench run's knobs, named at each call"
)]
async fn run_ehr(
    sandbox: &SandboxHandle,
    dir: &std::path::Path,
    rate: u32,
    seconds: u32,
    transactions: bool,
    concurrency: Option<usize>,
    outage: Option<(Duration, Duration)>,
    down_for: Option<Duration>,
    scale: u32,
) -> EhrRun {
    // The defaults: `WriteStrategy::Auto` writes one transaction when the EHR declares them,
    // else one conditional create per resource.
    let (base, ehr) = EhrStandIn::start(Duration::from_millis(150), transactions).await;
    let n = (rate * seconds) as usize;
    let events = completed(sandbox, n);
    let url = format!(
        "sqlite://{}",
        dir.join(format!("ehr-{}.db", fastrand::u32(..))).display()
    );
    let mut inbox = Inbox::connect(&url).await.expect("inbox");
    if scale > 1 {
        inbox = inbox.with_clock(Scaled {
            start: Instant::now(),
            unix: suki_ambient::UnixMillis::now().0,
            factor: scale,
        });
    }
    let server = receiver(sandbox, &inbox).await;
    let suki = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .build()
        .expect("client");
    let fhir = FhirClient::builder(base)
        .auth(BearerToken::new("bench"))
        .build()
        .expect("fhir client");
    fhir.plan().await.expect("the stand-in's statement");
    let at = Recorder::default();
    let handler = Written {
        inner: FhirWriteBack::new(fhir, place),
        at: at.clone(),
    };
    let mut worker = InboxWorker::builder(inbox.clone(), FetchResults::new(suki, handler));
    if let Some(c) = concurrency {
        worker = worker.concurrency(c);
    }
    if scale > 1 {
        // In scaled time: a lease of an hour is 5 s of wall clock.
        worker = worker.lease(Duration::from_secs(3_600));
    }
    let worker = worker.build().spawn();
    if down_for.is_some() {
        ehr.set_down(true);
    }

    let start = Instant::now();
    let flapping = outage.map(|(every, length)| {
        let ehr = Arc::clone(&ehr);
        tokio::spawn(async move {
            let mut next = start + every - length;
            loop {
                tokio::time::sleep_until(next.into()).await;
                ehr.set_down(true);
                tokio::time::sleep(length).await;
                ehr.set_down(false);
                next += every;
            }
        })
    });
    let sent = send(sandbox, events, rate, start).await;
    if let Some(down) = down_for {
        tokio::time::sleep_until((start + down).into()).await;
        ehr.set_down(false);
    }
    until_recorded(&at, n, Duration::from_secs(180)).await;
    if let Some(flapping) = flapping {
        flapping.abort();
    }
    worker.shutdown().await.expect("shutdown");
    server.abort();
    let status = inbox.status().await.expect("status");
    let rows = inbox
        .list(Some(suki_ambient::inbox::State::Done), 100_000)
        .await
        .expect("rows");
    let handled = at.0.lock().expect("lock").clone();
    assert_eq!(
        handled.len(),
        n,
        "every note written ({} dead)",
        status.counts.dead
    );
    let mut latencies: Vec<Duration> = sent
        .iter()
        .map(|(id, at)| handled[id].saturating_duration_since(*at))
        .collect();
    latencies.sort();
    if std::env::var("BENCH_DEBUG").is_ok() {
        let mut buckets: std::collections::BTreeMap<u128, (Duration, u128)> = Default::default();
        for (id, at) in &sent {
            let offset = at.duration_since(start).as_millis() % 10_000 / 250 * 250;
            let l = handled[id].saturating_duration_since(*at);
            let b = buckets.entry(offset).or_default();
            b.0 = b.0.max(l);
            b.1 = handled[id].duration_since(start).as_millis() % 10_000;
        }
        for (offset, (max, done)) in buckets {
            println!("  sent at +{offset} ms: max {max:?} (one done at +{done})");
        }
    }
    EhrRun {
        latencies,
        refused: ehr.refused(),
        requests: ehr.requests(),
        dead: status.counts.dead,
        most_attempts: rows.iter().map(|r| r.attempts).max().unwrap_or(0),
    }
}

/// The write-back runs.
async fn ehr_runs(sandbox: &SandboxHandle, dir: &std::path::Path, seconds: u32) {
    println!(
        "\nend to end, webhook sent → note written to the EHR (Suki 20 ms, EHR 150 ms, SQLite, {seconds} s per run):"
    );
    let per_resource = |concurrency, outage| {
        run_ehr(
            sandbox,
            dir,
            100,
            seconds,
            false,
            concurrency,
            outage,
            None,
            1,
        )
    };
    let defaults = per_resource(None, None).await;
    let p99 = line(
        "100/s, one create per resource, defaults",
        &defaults.latencies,
    );
    let fixed = per_resource(Some(16), None).await;
    let baseline = line(
        "100/s, one create per resource, fixed 16 (earlier default)",
        &fixed.latencies,
    );
    let transaction = run_ehr(sandbox, dir, 100, seconds, true, None, None, None, 1).await;
    let tx_p99 = line(
        "100/s, one transaction per session, defaults",
        &transaction.latencies,
    );
    println!(
        "p99 per resource: defaults {:.3}× the fixed 16's; target p99 ≤ 1 s: per resource {}, transaction {}",
        p99.as_secs_f64() / baseline.as_secs_f64(),
        if p99 <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        },
        if tx_p99 <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        },
    );
    let flapping = per_resource(
        None,
        Some((Duration::from_secs(10), Duration::from_secs(2))),
    )
    .await;
    let flap_p99 = line(
        "100/s, per resource, EHR down 2 s of every 10",
        &flapping.latencies,
    );
    let sessions = flapping.latencies.len() as f64;
    println!(
        "outage bursts: p99 {:.2} s (target ≤ outage + 2 s = 4 s: {}), refused requests per session {:.3} (target ≤ 1), {} requests per session, {} dead",
        flap_p99.as_secs_f64(),
        if flap_p99 <= Duration::from_secs(4) {
            "met"
        } else {
            "NOT met"
        },
        flapping.refused as f64 / sessions,
        flapping.requests as f64 / sessions,
        flapping.dead,
    );
    // Six hours down on a clock 720 times faster: 30 s of wall clock.
    let long = run_ehr(
        sandbox,
        dir,
        10,
        10,
        false,
        None,
        None,
        Some(Duration::from_secs(30)),
        720,
    )
    .await;
    println!(
        "6-hour EHR outage (clock ×720): {} notes written after it, {} dead letters (target 0), most attempts of a row {}, {} requests refused in 6 h (probes)",
        long.latencies.len(),
        long.dead,
        long.most_attempts,
        long.refused,
    );
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
    if std::env::args().nth(2).as_deref() == Some("ehr") {
        ehr_runs(&sandbox, dir.path(), seconds).await;
        sandbox.shutdown().await;
        return;
    }
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
    ehr_runs(&sandbox, dir.path(), seconds).await;
    sandbox.shutdown().await;
}
