//! The reconciler against the sandbox over HTTP: 200 sessions, 30 % of their webhooks lost and
//! about 10 % held back past the first poll; every session is processed exactly once by the
//! handler, expectations are resolved `webhook` or `poll` as it happened, and a session that
//! never ends is given up after the give-up age.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use suki_ambient_client::AmbientClient;
use suki_ambient_core::api::SessionStatus;
use suki_ambient_core::{Clock, EventKind, FixedClock, HandlerError, UnixMillis, WebhookEvent};
use suki_ambient_inbox::{
    ExpectedSession, Inbox, InboxMeta, InboxWorker, Reconciler, Resolution, SessionKind, Source,
    polled_kind,
};
use suki_ambient_sandbox::{Fate, Sandbox, WebhookFault};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_and_late_webhooks_are_recovered_and_each_session_is_processed_once() {
    let dir = tempfile::tempdir().expect("dir");
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let clock = FixedClock::new(UnixMillis::now());
    let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox")
        .with_clock(clock.clone());
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
    let reconciler = Reconciler::new(client, inbox.clone())
        .concurrency(8)
        .on_gave_up({
            let gave_up = Arc::clone(&gave_up);
            move |e| gave_up.lock().expect("lock").push(e.session_id.clone())
        });

    let started = std::time::Instant::now();
    let mut fates: HashMap<String, Fate> = HashMap::new();
    for _ in 0..200 {
        let session = sandbox.create_session(None);
        reconciler
            .expect(ExpectedSession {
                session_id: session.session_id.clone(),
                encounter_id: session.encounter_id.clone(),
                provider_id: None,
                kind: SessionKind::Ambient,
                ended_at: clock.now(),
            })
            .await
            .expect("expect");
        let delivery = sandbox
            .complete(&session.session_id)
            .await
            .expect("deliver");
        fates.insert(session.session_id.to_string(), delivery.fate);
    }
    let never_ends = sandbox.create_session(None);
    reconciler
        .expect(ExpectedSession {
            session_id: never_ends.session_id.clone(),
            encounter_id: never_ends.encounter_id.clone(),
            provider_id: None,
            kind: SessionKind::Ambient,
            ended_at: clock.now(),
        })
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
    assert!(
        started.elapsed() < LATE,
        "the first poll must come before the late webhooks (took {:?})",
        started.elapsed()
    );
    assert_eq!(first.recovered as usize, lost + late, "{first:?}");
    assert_eq!(first.again, 1, "the session that never ends");

    // The late webhooks arrive after the poll: duplicates.
    tokio::time::sleep((LATE + Duration::from_millis(700)).saturating_sub(started.elapsed())).await;

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
            .expectation(session)
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
            }
        }
    }

    // The session that never ends is given up after the give-up age, once.
    clock.advance(Duration::from_secs(25 * 60 * 60));
    let last = reconciler.check_due().await.expect("check");
    assert_eq!((last.checked, last.gave_up), (1, 1));
    assert_eq!(
        *gave_up.lock().expect("lock"),
        vec![never_ends.session_id.to_string()]
    );
    let record = inbox
        .store()
        .expectation(never_ends.session_id.as_str())
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
    let reconciler = Reconciler::new(client, inbox.clone()).grace(Duration::ZERO);
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
        .expect(ExpectedSession {
            session_id: session.session_id.clone(),
            encounter_id: session.encounter_id.clone(),
            provider_id: None,
            kind: SessionKind::Ambient,
            ended_at: UnixMillis::now(),
        })
        .await
        .expect("expect");
    let running = reconciler.spawn(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let record = inbox
            .store()
            .expectation(session.session_id.as_str())
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
