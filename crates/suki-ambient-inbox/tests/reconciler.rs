//! The reconciler against the sandbox over HTTP: 200 sessions, 30 % of their webhooks lost and
//! about 10 % held back past the first poll; every session is processed exactly once by the
//! handler, expectations are resolved `webhook` or `poll` as it happened, and a session that
//! never ends is given up after the give-up age.
#![cfg(feature = "sqlite")]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use suki_ambient_client::{AmbientClient, PartnerLogin, RetryPolicy};
use suki_ambient_core::api::SessionStatus;
use suki_ambient_core::{
    Clock, EncounterId, EventKind, FixedClock, HandlerError, SessionId, UnixMillis, WebhookEvent,
};
use suki_ambient_inbox::{
    ExpectedSession, Inbox, InboxMeta, InboxWorker, Reconciler, ops::Resolution, ops::Source,
    ops::polled_kind,
};
use suki_ambient_sandbox::{
    DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN, Fate, Fault, Sandbox, WebhookFault,
};

#[test]
fn statuses_map_to_events_as_documented() {
    let cases = [
        ("completed", Some(EventKind::Completed)),
        ("COMPLETED", Some(EventKind::Completed)),
        ("failed", Some(EventKind::Failed)),
        ("aborted", Some(EventKind::Cancelled)),
        ("cancelled", Some(EventKind::Cancelled)),
        ("canceled", Some(EventKind::Cancelled)),
        ("cancel", Some(EventKind::Cancelled)),
        ("timeout", Some(EventKind::TimedOut)),
        ("timed_out", Some(EventKind::TimedOut)),
        ("TimedOut", Some(EventKind::TimedOut)),
        ("time_out", Some(EventKind::TimedOut)),
        ("created", None),
        ("ready", None),
        ("running", None),
        ("paused", None),
        ("skipped", None),
        ("staged", None),
        ("something-new", None),
    ];
    for (status, kind) in cases {
        assert_eq!(polled_kind(&SessionStatus::from(status)), kind, "{status}");
    }
}

/// A sandbox, and a SQLite inbox in `dir` on a fixed clock.
async fn sandbox_and_inbox(
    dir: &std::path::Path,
) -> (suki_ambient_sandbox::SandboxHandle, FixedClock, Inbox) {
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let clock = FixedClock::new(UnixMillis::now());
    let inbox = Inbox::connect(&common::sqlite_url(dir, "inbox.db"))
        .await
        .expect("inbox")
        .with_clock(clock.clone());
    (sandbox, clock, inbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_and_late_webhooks_are_recovered_and_each_session_is_processed_once() {
    let dir = tempfile::tempdir().expect("dir");
    let (sandbox, clock, inbox) = sandbox_and_inbox(dir.path()).await;
    let server = common::serve_inbox(&sandbox, &inbox).await;
    sandbox.inject_webhook(WebhookFault::lose().share(0.3));
    // Held back long enough to arrive after the first poll, however slow this machine is.
    const LATE: Duration = Duration::from_secs(4);
    sandbox.inject_webhook(WebhookFault::delay(LATE).share(0.15));

    let client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .build()
        .expect("client");
    let gave_up = Arc::new(Mutex::new(Vec::new()));
    let reconciler = Reconciler::builder(client, inbox.clone())
        .concurrency(8)
        .on_gave_up({
            let gave_up = Arc::clone(&gave_up);
            move |e| gave_up.lock().expect("lock").push(e.session_id.clone())
        })
        .build();

    // When the first webhook was held back: its timer runs from there.
    let mut first_late: Option<std::time::Instant> = None;
    let mut last_late = std::time::Instant::now();
    let mut fates: HashMap<String, Fate> = HashMap::new();
    for _ in 0..200 {
        let session = sandbox.create_session(None);
        reconciler
            .register(ExpectedSession::ambient(
                session.session_id.clone(),
                session.encounter_id.clone(),
                clock.now(),
            ))
            .await
            .expect("expect");
        let delivery = sandbox
            .complete(&session.session_id)
            .await
            .expect("deliver");
        if matches!(delivery.fate, Fate::Delayed(_)) {
            last_late = std::time::Instant::now();
            first_late.get_or_insert(last_late);
        }
        fates.insert(session.session_id.to_string(), delivery.fate);
    }
    let never_ends = sandbox.create_session(None);
    reconciler
        .register(ExpectedSession::ambient(
            never_ends.session_id.clone(),
            never_ends.encounter_id.clone(),
            clock.now(),
        ))
        .await
        .expect("expect");
    let lost = fates.values().filter(|f| **f == Fate::Lost).count();
    let late = fates
        .values()
        .filter(|f| matches!(f, Fate::Delayed(_)))
        .count();
    assert!(lost > 20 && late > 5, "lost {lost}, late {late}");

    // Nothing is checked within the grace period.
    let early = reconciler.check_due().await.expect("check");
    assert_eq!(early.checked, 0);
    // Past it: the lost and the late ones are polled, found completed, and stored.
    clock.advance(Duration::from_secs(6 * 60));
    let first = reconciler.check_due().await.expect("check");
    let started = first_late.expect("a late webhook");
    assert!(
        started.elapsed() < LATE,
        "the first poll must come before the late webhooks (took {:?})",
        started.elapsed()
    );
    assert_eq!(first.recovered as usize, lost + late, "{first:?}");
    assert_eq!(first.again, 1, "the session that never ends");

    // The late webhooks arrive after the poll: duplicates.
    tokio::time::sleep((LATE + Duration::from_millis(700)).saturating_sub(last_late.elapsed()))
        .await;

    let calls: Arc<Mutex<HashMap<String, (u32, Source)>>> = Arc::default();
    let handler = {
        let calls = Arc::clone(&calls);
        move |event: WebhookEvent, meta: InboxMeta| {
            let calls = Arc::clone(&calls);
            async move {
                let id = event.session_id().expect("session").to_string();
                let mut calls = calls.lock().expect("lock");
                let entry = calls.entry(id).or_insert((0, meta.source()));
                entry.0 += 1;
                Ok::<(), HandlerError>(())
            }
        }
    };
    InboxWorker::builder(inbox.clone(), handler)
        .build()
        .drain(Duration::ZERO)
        .await
        .expect("drain");
    let calls = calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 200, "every ended session processed");
    assert!(calls.values().all(|(n, _)| *n == 1), "exactly once each");
    for (session, fate) in &fates {
        let expectation = inbox
            .store()
            .expectation(&SessionId::from(session.as_str()))
            .await
            .expect("get")
            .expect("row");
        let (_, source) = calls[session];
        match fate {
            Fate::Sent => {
                assert_eq!(expectation.resolution, Some(Resolution::Webhook));
                assert_eq!(source, Source::Webhook);
            }
            _ => {
                assert_eq!(expectation.resolution, Some(Resolution::Poll), "{fate:?}");
                assert_eq!(source, Source::Poll, "the handler can tell a polled event");
                // Resolved and released by the insert of its polled event alone.
                assert_eq!(expectation.last_status.as_deref(), Some("completed"));
                assert!(expectation.resolved_at.is_some() && expectation.lease_owner.is_none());
            }
        }
    }

    // The session that never ends is given up after the give-up age, once.
    clock.advance(Duration::from_secs(25 * 60 * 60));
    let last = reconciler.check_due().await.expect("check");
    assert_eq!((last.checked, last.gave_up), (1, 1));
    assert_eq!(
        *gave_up.lock().expect("lock"),
        vec![never_ends.session_id.clone()]
    );
    let record = inbox
        .store()
        .expectation(&never_ends.session_id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(record.resolution, Some(Resolution::GaveUp));
    assert_eq!(record.last_status.as_deref(), Some("running"));
    assert_eq!(reconciler.check_due().await.expect("check").checked, 0);
    // A sweep reopens it; it still has not ended.
    let swept = reconciler
        .sweep(Duration::from_secs(48 * 60 * 60))
        .await
        .expect("sweep");
    assert_eq!((swept.checked, swept.gave_up), (1, 1));
    server.abort();
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_reconciler_recovers_a_lost_webhook_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().expect("dir");
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    let client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .build()
        .expect("client");
    // No receiver at all: the webhook is lost; a zero grace makes it due at once.
    sandbox.inject_webhook(WebhookFault::lose());
    let reconciler = Reconciler::builder(client, inbox.clone())
        .grace(Duration::ZERO)
        .build();
    let session = sandbox.create_session(None);
    sandbox.set_webhook_url(Some("http://127.0.0.1:9/unused".into()));
    assert_eq!(
        sandbox
            .complete(&session.session_id)
            .await
            .expect("complete")
            .fate,
        Fate::Lost
    );
    reconciler
        .register(ExpectedSession::ambient(
            session.session_id.clone(),
            session.encounter_id.clone(),
            UnixMillis::now(),
        ))
        .await
        .expect("expect");
    let running = reconciler.spawn(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let record = inbox
            .store()
            .expectation(&session.session_id)
            .await
            .expect("get")
            .expect("row");
        if record.resolution == Some(Resolution::Poll) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not recovered in time: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("shutdown is prompt");
    let rows = inbox.list(None, 10).await.expect("list");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].source, rows[0].kind.as_str()),
        (Source::Poll, "completed")
    );
    sandbox.shutdown().await;
}

/// Expects `n` completed sessions whose webhooks were lost, due at once (zero grace).
async fn lost_sessions(
    sandbox: &suki_ambient_sandbox::SandboxHandle,
    reconciler: &Reconciler,
    now: UnixMillis,
    n: usize,
) -> Vec<SessionId> {
    sandbox.inject_webhook(WebhookFault::lose());
    sandbox.set_webhook_url(Some("http://127.0.0.1:9/unused".into()));
    let mut ids = Vec::new();
    for _ in 0..n {
        let session = sandbox.create_session(None);
        reconciler
            .register(ExpectedSession::ambient(
                session.session_id.clone(),
                session.encounter_id.clone(),
                now,
            ))
            .await
            .expect("expect");
        let fate = sandbox
            .complete(&session.session_id)
            .await
            .expect("complete")
            .fate;
        assert_eq!(fate, Fate::Lost);
        ids.push(session.session_id.clone());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_answered_503_or_429_back_off_and_resume_and_a_401_logs_in_again() {
    let dir = tempfile::tempdir().expect("dir");
    let (sandbox, clock, inbox) = sandbox_and_inbox(dir.path()).await;
    let login = Arc::new(PartnerLogin::new(DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN));
    let client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .auth_shared(login.clone())
        // Every failed poll reaches the reconciler (the client's own retries are tested apart).
        .retry(RetryPolicy::none())
        .build()
        .expect("client");
    let reconciler = Reconciler::builder(client, inbox.clone())
        .grace(Duration::ZERO)
        .backoff(Duration::from_secs(30), Duration::from_secs(15 * 60))
        .build();
    let ids = lost_sessions(&sandbox, &reconciler, clock.now(), 3).await;
    let status_route = "/api/v1/ambient/session/";

    // Suki unavailable: each session is checked once in this pass and put off, not hammered.
    sandbox.inject(Fault::status(503).on(status_route).times(3));
    let report = reconciler.check_due().await.expect("check");
    assert_eq!((report.checked, report.again, report.recovered), (3, 3, 0));
    let now = clock.now().0;
    for id in &ids {
        let record = inbox
            .store()
            .expectation(id)
            .await
            .expect("get")
            .expect("row");
        assert_eq!(record.last_status.as_deref(), Some("503"));
        assert_eq!(record.checks, 1);
        assert!(
            (now + 1_000..=now + 30_000).contains(&record.next_check.0),
            "first back-off within [1 s, base]: {}",
            record.next_check.0 - now
        );
        assert_eq!(record.resolution, None);
    }
    assert_eq!(
        reconciler.check_due().await.expect("check").checked,
        0,
        "not due yet"
    );

    // Rate limited next time: put off again, with a longer bound.
    clock.advance(Duration::from_secs(31));
    sandbox.inject(
        Fault::status(429)
            .retry_after("1")
            .on(status_route)
            .times(3),
    );
    let report = reconciler.check_due().await.expect("check");
    assert_eq!((report.checked, report.again), (3, 3));
    let now = clock.now().0;
    for id in &ids {
        let record = inbox
            .store()
            .expectation(id)
            .await
            .expect("get")
            .expect("row");
        assert_eq!(record.last_status.as_deref(), Some("429"));
        assert!(record.next_check.0 > now && record.next_check.0 <= now + 60_000);
    }

    // Suki is back, and the token was revoked meanwhile: one new login, then every session is
    // recovered.
    assert_eq!(login.logins(), 1);
    sandbox.expire_tokens();
    clock.advance(Duration::from_secs(61));
    let report = reconciler.check_due().await.expect("check");
    assert_eq!((report.checked, report.recovered), (3, 3), "{report:?}");
    assert_eq!(login.logins(), 2, "a 401 logs in again, once");
    for id in &ids {
        let record = inbox
            .store()
            .expectation(id)
            .await
            .expect("get")
            .expect("row");
        assert_eq!(record.resolution, Some(Resolution::Poll));
        assert_eq!(record.checks, 3);
    }
    assert_eq!(inbox.list(None, 10).await.expect("list").len(), 3);
    sandbox.shutdown().await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn two_reconcilers_on_one_postgres_never_check_the_same_session_at_once() {
    let url = common::fresh_postgres().await;
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    // Slow answers, so that the two reconcilers' passes overlap for their whole length.
    sandbox.inject(
        Fault::latency(Duration::from_millis(15))
            .on("/api/v1/ambient/session/")
            .times(u64::MAX),
    );
    let client = || {
        AmbientClient::builder()
            .base_url(sandbox.base_url())
            .token(sandbox.issue_token(None))
            .build()
            .expect("client")
    };
    let first = Reconciler::builder(client(), Inbox::connect(&url).await.expect("inbox"))
        .grace(Duration::ZERO)
        .concurrency(8)
        .build();
    let second = Reconciler::builder(client(), Inbox::connect(&url).await.expect("inbox"))
        .grace(Duration::ZERO)
        .concurrency(8)
        .build();
    let ids = lost_sessions(&sandbox, &first, UnixMillis::now(), 300).await;

    let (a, b) = tokio::join!(first.check_due(), second.check_due());
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a.checked + b.checked, 300, "{a:?} {b:?}");
    assert!(
        a.checked > 0 && b.checked > 0,
        "both took part: {a:?} {b:?}"
    );
    assert_eq!(a.recovered + b.recovered, 300);
    // A completed session's first check resolves it, so one status request per session means
    // no session was ever checked by both.
    for id in &ids {
        assert_eq!(
            sandbox.requests(&format!("/api/v1/ambient/session/{id}/status")),
            1,
            "{id}"
        );
    }
    sandbox.shutdown().await;
}

/// A status from the API is outside text: one with terminal escape sequences and 5 MB long is
/// kept (in `last_status`, and so the CLI's lines) cleaned and cut to 64 characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_status_is_stored_cleaned_and_short() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    let hostile = format!("\u{1b}]0;pwned\u{7}\u{1b}[2J{}", "x".repeat(5_000_000));
    let body = serde_json::json!({ "status": hostile }).to_string();
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { ([("content-type", "application/json")], body) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = AmbientClient::builder()
        .base_url(base)
        .token("t")
        .build()
        .expect("client");
    let reconciler = Reconciler::builder(client, inbox.clone())
        .grace(Duration::ZERO)
        .build();
    reconciler
        .register(ExpectedSession::ambient(
            SessionId::from("s-hostile"),
            EncounterId::from("e"),
            UnixMillis::now(),
        ))
        .await
        .expect("expect");
    let report = reconciler.check_due().await.expect("check");
    assert_eq!(report.again, 1, "not an ended status: checked again later");
    let row = inbox
        .store()
        .expectation(&SessionId::from("s-hostile"))
        .await
        .expect("read")
        .expect("row");
    let status = row.last_status.expect("status");
    assert!(!status.chars().any(char::is_control), "{status:?}");
    assert!(status.starts_with("\\u{1b}]0;pwned\\u{7}"), "{status:?}");
    assert!(
        status.chars().count() <= 65,
        "{} characters",
        status.chars().count()
    );
    server.abort();
}

/// A client with the default retry policy (which waits out a `Retry-After`).
fn waiting_client(sandbox: &suki_ambient_sandbox::SandboxHandle) -> AmbientClient {
    AmbientClient::builder()
        .base_url(sandbox.base_url())
        .auth_shared(Arc::new(PartnerLogin::new(
            DEFAULT_PARTNER_ID,
            DEFAULT_PARTNER_TOKEN,
        )))
        .build()
        .expect("client")
}

/// A session answering 429 with `Retry-After: 30` is checked once and rescheduled, not waited
/// on (the client's own policy would wait 30 s, twice, holding the pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_session_is_rescheduled_not_waited_on() {
    let dir = tempfile::tempdir().expect("dir");
    let (sandbox, clock, inbox) = sandbox_and_inbox(dir.path()).await;
    let reconciler = Reconciler::builder(waiting_client(&sandbox), inbox.clone())
        .grace(Duration::ZERO)
        .build();
    let ids = lost_sessions(&sandbox, &reconciler, clock.now(), 1).await;
    let route = format!("/api/v1/ambient/session/{}/status", ids[0]);
    sandbox.inject(
        Fault::status(429)
            .retry_after("30")
            .on(route.as_str())
            .times(10),
    );
    let report = reconciler.check_due().await.expect("check");
    assert_eq!((report.checked, report.again), (1, 1), "{report:?}");
    assert_eq!(sandbox.requests(&route), 1, "one request: rescheduled");
    let record = inbox
        .store()
        .expectation(&ids[0])
        .await
        .expect("get")
        .expect("row");
    assert_eq!(record.last_status.as_deref(), Some("429"));
    assert!(record.next_check > clock.now());
    sandbox.shutdown().await;
}

/// The sessions a pass recovers are stored as their checks end: a check that takes long does
/// not hold back the events found meanwhile (a pass of 512 once stored nothing for 90 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_check_holds_back_no_recovered_event() {
    let dir = tempfile::tempdir().expect("dir");
    let (sandbox, clock, inbox) = sandbox_and_inbox(dir.path()).await;
    let reconciler = Reconciler::builder(waiting_client(&sandbox), inbox.clone())
        .grace(Duration::ZERO)
        .concurrency(4)
        .build();
    let ids = lost_sessions(&sandbox, &reconciler, clock.now(), 4).await;
    sandbox.inject(
        Fault::latency(Duration::from_secs(30))
            .on(format!("/api/v1/ambient/session/{}/status", ids[0]).as_str())
            .times(1),
    );
    let recovered = async {
        loop {
            let rows = inbox.list(None, 10).await.expect("list");
            if rows.len() == 3 {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        report = reconciler.check_due() => {
            panic!("the pass ended before its recovered events were seen: {report:?}")
        }
        rows = recovered => {
            assert!(rows.iter().all(|r| r.source == Source::Poll));
            assert!(rows
                .iter()
                .all(|r| r.session_id.as_ref() != Some(&ids[0])));
        }
    }
    sandbox.shutdown().await;
}
