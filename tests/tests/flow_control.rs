//! Flow control, end to end: an EHR outage costs the notes no attempt (they wait for its
//! breaker, one probe per interval for the whole fleet, and are written as soon as it is back);
//! a `Retry-After` is honoured for the row; an EHR that refuses every token opens its breaker
//! instead of being hammered or dead-lettering the backlog.

use std::time::{Duration, Instant};

use suki_ambient::HandlerError;
use suki_ambient::client::AmbientClient;
use suki_ambient::fhir::{
    BearerToken, EhrContext, FhirClient, FhirWriteBack, Reference, SessionRef,
};
use suki_ambient::inbox::{FetchResults, Inbox, InboxWorker, InboxWorkerBuilder, State};
use suki_ambient::sandbox::{Fault, Sandbox, SandboxHandle};

async fn resolve(_session: SessionRef) -> Result<EhrContext, HandlerError> {
    Ok(EhrContext::new(Reference::parse("Patient/p-1")?))
}

/// A receiver storing `sandbox`'s webhooks into `inbox`, and a worker builder writing each
/// completed session to the sandbox's EHR with `token` (default clients: the SDK's retry
/// policy and budget).
async fn rig(
    sandbox: &SandboxHandle,
    inbox: &Inbox,
    token: &str,
) -> (
    tokio::task::JoinHandle<std::io::Result<()>>,
    FhirClient,
    impl Fn() -> InboxWorkerBuilder + use<>,
) {
    let server = integration_tests::serve_inbox(sandbox, inbox).await;
    let suki = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .build()
        .expect("suki client");
    let ehr = FhirClient::builder(sandbox.fhir_base_url())
        .auth(BearerToken::new(token))
        .build()
        .expect("fhir client");
    let (inbox, client) = (inbox.clone(), ehr.clone());
    let worker = move || {
        InboxWorker::builder(
            inbox.clone(),
            FetchResults::new(suki.clone(), FhirWriteBack::new(client.clone(), resolve)),
        )
        .poll_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(10), Duration::from_secs(60))
    };
    (server, ehr, worker)
}

/// Reads `read` every 20 ms until `done` holds of what it read, or 3 s have passed; the last
/// value read. (Counts are read between two probes: a probe's row runs for a moment.)
async fn settled<T, Fut: std::future::Future<Output = T>>(
    mut read: impl FnMut() -> Fut,
    done: impl Fn(&T) -> bool,
) -> T {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let value = read().await;
        if done(&value) || Instant::now() > until {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sqlite_inbox(dir: &tempfile::TempDir) -> Inbox {
    Inbox::connect(&format!("sqlite://{}", dir.path().join("i.db").display()))
        .await
        .expect("inbox")
}

/// Completes `n` sessions (their webhooks stored by the receiver).
async fn complete(sandbox: &SandboxHandle, n: usize) {
    for _ in 0..n {
        let session = sandbox.create_session(None);
        let delivery = sandbox
            .complete(&session.session_id)
            .await
            .expect("deliver");
        assert_eq!(delivery.status, 200);
    }
}

/// Waits (up to `within`) until the store records a destination down.
async fn until_down(
    inbox: &Inbox,
    within: Duration,
) -> suki_ambient::inbox::ops::DestinationRecord {
    let end = Instant::now() + within;
    loop {
        let down = inbox.destinations().await.expect("destinations");
        if let Some(d) = down.into_iter().find(|d| !d.up) {
            return d;
        }
        assert!(Instant::now() < end, "no destination went down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to `within`) until `n` rows are done; the rows.
async fn until_done(
    inbox: &Inbox,
    n: usize,
    within: Duration,
) -> Vec<suki_ambient::inbox::DeliveryRecord> {
    let end = Instant::now() + within;
    loop {
        let done = inbox.list(Some(State::Done), 1_000).await.expect("list");
        if done.len() >= n {
            return done;
        }
        assert!(
            Instant::now() < end,
            "{} of {n} done; status {:?}",
            done.len(),
            inbox.status().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 40's test: an EHR down for 30 s, `max_attempts = 3`: no dead letter, no attempt
/// spent, every note written within 5 s of the EHR's return, and at most
/// 30 s / probe interval + 2 requests sent to it during the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ehr_down_for_30_s_costs_no_attempt_and_is_probed_once_per_interval() {
    const SESSIONS: usize = 20;
    const OUTAGE: Duration = Duration::from_secs(30);
    const PROBE: Duration = Duration::from_secs(2);
    let dir = tempfile::tempdir().expect("dir");
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let inbox = sqlite_inbox(&dir).await;
    let (server, ehr, worker) = rig(&sandbox, &inbox, sandbox.fhir_token()).await;
    ehr.plan()
        .await
        .expect("the EHR's statement, read while it is up");
    let running = worker()
        .max_attempts(3)
        .breaker(1, PROBE, PROBE)
        .build()
        .spawn();

    let before = sandbox.requests("/fhir");
    let outage = Instant::now();
    sandbox.inject(Fault::status(503).on("/fhir").times(1_000_000));
    // The first note's write finds the EHR down and opens its breaker; the others arrive
    // while it is open.
    complete(&sandbox, 1).await;
    let down = until_down(&inbox, Duration::from_secs(10)).await;
    assert!(down.name.starts_with("ehr:127.0.0.1"), "{}", down.name);
    assert_eq!(down.reason.as_deref(), Some("fhir_503_unknown"));
    complete(&sandbox, SESSIONS - 1).await;
    let health = inbox.health(&Default::default()).await;
    assert!(
        health
            .problems
            .contains(&suki_ambient::inbox::ops::Problem::DestinationDown),
        "{health:?}"
    );
    assert!(
        inbox.readiness(&Default::default()).await.ready,
        "an open breaker is never a readiness failure"
    );
    tokio::time::sleep(OUTAGE.saturating_sub(outage.elapsed())).await;
    let status = inbox.status().await.expect("status");
    assert_eq!(status.counts.dead, 0, "no dead letter during the outage");
    // Between two probes every note waits (a probe's row runs for a moment): the count and
    // the health summary read together.
    let (waiting, summary) = settled(
        || async {
            let waiting = inbox.destinations().await.expect("destinations");
            let health = inbox.health(&Default::default()).await;
            (waiting, health.destinations[0].summary.clone())
        },
        |(waiting, summary)| {
            waiting[0].waiting == SESSIONS as u64 && summary.contains("20 notes waiting")
        },
    )
    .await;
    assert_eq!(waiting[0].waiting, SESSIONS as u64, "{waiting:?}");
    assert!(
        summary.contains("unreachable since") && summary.contains("20 notes waiting"),
        "{summary}"
    );

    // Back.
    let during = sandbox.requests("/fhir") - before;
    sandbox.clear_faults();
    let back = suki_ambient::UnixMillis::now();
    let done = until_done(&inbox, SESSIONS, Duration::from_secs(20)).await;
    let bound = OUTAGE.as_secs() / PROBE.as_secs() + 2;
    assert!(
        during <= bound,
        "{during} requests to the EHR during the outage (at most {bound})"
    );
    let latest = done
        .iter()
        .filter_map(|r| r.completed_at)
        .map(|at| at.0.saturating_sub(back.0))
        .max()
        .unwrap_or_default();
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr().lock(),
        "EHR down {OUTAGE:?}: {during} requests to it (bound {bound}), {SESSIONS} notes written at most {latest} ms after its return, 0 dead"
    );
    for row in &done {
        assert_eq!(row.attempts, 1, "the outage spent no attempt: {row:?}");
        let written = row.completed_at.expect("completed").0;
        assert!(
            written <= back.0 + 5_000,
            "written {} ms after the EHR came back",
            written.saturating_sub(back.0)
        );
    }
    let up = inbox.destinations().await.expect("destinations");
    assert!(up.iter().all(|d| d.up), "{up:?}");
    assert!(
        !inbox
            .health(&Default::default())
            .await
            .problems
            .contains(&suki_ambient::inbox::ops::Problem::DestinationDown)
    );
    running.shutdown().await.expect("shutdown");
    server.abort();
    sandbox.shutdown().await;
}

/// `Retry-After: 10` from the EHR: the row waits ten seconds (no request meanwhile, no
/// attempt spent) instead of the client sleeping or retrying at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ehr_retry_after_is_honoured_for_the_row() {
    let dir = tempfile::tempdir().expect("dir");
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let inbox = sqlite_inbox(&dir).await;
    let (server, ehr, worker) = rig(&sandbox, &inbox, sandbox.fhir_token()).await;
    ehr.plan().await.expect("statement");
    let running = worker().build().spawn();
    sandbox.inject(Fault::status(503).retry_after("10").on("/fhir").times(1));
    let before = sandbox.requests("/fhir");
    let asked = suki_ambient::UnixMillis::now();
    complete(&sandbox, 1).await;
    let end = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let rows = inbox.list(None, 10).await.expect("list");
        if let Some(row) = rows.into_iter().find(|r| r.waiting_for.is_some()) {
            break row;
        }
        assert!(Instant::now() < end, "the row never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(row.state, State::Pending);
    assert_eq!(row.attempts, 0, "no attempt spent");
    assert!(
        row.run_after.0 >= asked.0 + 9_000,
        "due {} ms after the 503, not 10 s",
        row.run_after.0.saturating_sub(asked.0)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sandbox.requests("/fhir") - before,
        1,
        "nothing sent to the EHR before its Retry-After"
    );
    until_done(&inbox, 1, Duration::from_secs(15)).await;
    running.shutdown().await.expect("shutdown");
    server.abort();
    sandbox.shutdown().await;
}

/// An EHR that refuses every token (401 forever) opens its breaker, named with the reason:
/// its rows wait (none dead by time alone), and it is probed, not hammered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ehr_refusing_every_token_opens_its_breaker() {
    const SESSIONS: usize = 10;
    let dir = tempfile::tempdir().expect("dir");
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let inbox = sqlite_inbox(&dir).await;
    let (server, ehr, worker) = rig(&sandbox, &inbox, "a-token-the-ehr-never-issued").await;
    ehr.plan().await.expect("the statement is public");
    let running = worker().max_attempts(2).build().spawn();
    let before = sandbox.requests("/fhir");
    complete(&sandbox, SESSIONS).await;
    let down = until_down(&inbox, Duration::from_secs(10)).await;
    assert_eq!(down.reason.as_deref(), Some("fhir_401"));
    let opened = sandbox.requests("/fhir") - before;
    let started = Instant::now();
    let mut timeline = Vec::new();
    let mut last = opened;
    while started.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sandbox.requests("/fhir") - before;
        if now != last {
            timeline.push((started.elapsed().as_millis(), now - last));
            last = now;
        }
    }
    let probes = sandbox.requests("/fhir") - before - opened;
    // Default breaker: a probe a second (jittered to 0.9–1 s) for the first four failed
    // probes, then every 2 s, 4 s…: at most 6 in 6 s, and one more already in flight.
    assert!(
        probes <= 7,
        "{probes} requests in 6 s while open: probed, not hammered (ms, requests: {timeline:?})"
    );
    assert!(
        opened <= SESSIONS as u64,
        "{opened} requests before it opened, for {SESSIONS} notes"
    );
    let status = inbox.status().await.expect("status");
    assert_eq!(status.counts.dead, 0, "no note dead by time alone");
    assert_eq!(status.counts.done, 0);
    // Between two probes every row is pending (a probe's row runs for a moment).
    let rows = settled(
        || async { inbox.list(Some(State::Pending), 100).await.expect("list") },
        |rows| rows.len() == SESSIONS,
    )
    .await;
    assert_eq!(rows.len(), SESSIONS);
    // Every row waits without an attempt spent, with the EHR's refusal as its last error (a
    // row whose attempt timed out on a loaded machine waits the same way, with that code).
    let seen: Vec<(u32, Option<&str>)> = rows
        .iter()
        .map(|r| (r.attempts, r.last_error.as_deref()))
        .collect();
    assert!(
        seen.iter().all(|&(attempts, error)| attempts == 0
            && matches!(error, Some("fhir_401" | "fhir_timeout"))),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|&(_, error)| error == Some("fhir_401")),
        "{seen:?}"
    );
    running.shutdown().await.expect("shutdown");
    server.abort();
    sandbox.shutdown().await;
}

/// Two workers on one Postgres inbox share the EHR's breaker: one probe per interval for the
/// fleet, not one per worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Postgres (SUKI_POSTGRES_URL; bash .ci/run starts one)"]
async fn two_workers_on_one_postgres_send_one_probe_per_interval() {
    const PROBE: Duration = Duration::from_secs(2);
    let url = std::env::var("SUKI_POSTGRES_URL").expect("SUKI_POSTGRES_URL (bash .ci/run)");
    let schema = format!("suki_flow_{:08x}", fastrand::u32(..));
    let inbox = Inbox::builder(url.as_str())
        .schema(schema.as_str())
        .connect()
        .await
        .expect("inbox");
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let (server, ehr, worker) = rig(&sandbox, &inbox, sandbox.fhir_token()).await;
    ehr.plan().await.expect("statement");
    let a = worker().owner("a").breaker(1, PROBE, PROBE).build().spawn();
    let b = worker().owner("b").breaker(1, PROBE, PROBE).build().spawn();
    sandbox.inject(Fault::status(503).on("/fhir").times(1_000_000));
    complete(&sandbox, 1).await;
    until_down(&inbox, Duration::from_secs(10)).await;
    complete(&sandbox, 9).await;
    // Both workers have seen it down (they read the store every poll).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = sandbox.requests("/fhir");
    let window = Duration::from_secs(12);
    tokio::time::sleep(window).await;
    let probes = sandbox.requests("/fhir") - before;
    let most = window.as_secs() / PROBE.as_secs() + 1;
    assert!(
        (1..=most).contains(&probes),
        "{probes} probes in {window:?} from two workers (one per {PROBE:?} for the fleet: at most {most})"
    );
    sandbox.clear_faults();
    until_done(&inbox, 10, Duration::from_secs(15)).await;
    assert_eq!(inbox.status().await.expect("status").counts.dead, 0);
    a.shutdown().await.expect("shutdown");
    b.shutdown().await.expect("shutdown");
    server.abort();
    sandbox.shutdown().await;
}
