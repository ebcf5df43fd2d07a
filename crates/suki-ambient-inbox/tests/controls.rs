//! The operators' controls as a worker obeys them: pauses (whole inbox, one kind), snoozes
//! (bounded), the rate limit.
#![cfg(feature = "sqlite")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use suki_ambient_core::{EventKind, HandlerError, UnixMillis, WebhookEvent};
use suki_ambient_inbox::conformance::delivery;
use suki_ambient_inbox::{Action, Actor, Inbox, InboxMeta, InboxWorker, Snooze, State};

async fn inbox(dir: &tempfile::TempDir) -> Inbox {
    Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox")
}

fn operator() -> Actor {
    Actor::new("tester", "test")
}

/// The sessions a handler was called for.
type Seen = Arc<Mutex<Vec<String>>>;

/// A handler that records the session of each call.
fn recorder() -> (Seen, impl suki_ambient_inbox::InboxHandler) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = Arc::clone(&seen);
        move |event: WebhookEvent, _meta: InboxMeta| {
            let id = event.session_id().map(|s| s.as_str().to_owned());
            seen.lock().expect("lock").push(id.unwrap_or_default());
            std::future::ready(Ok(()))
        }
    };
    (seen, handler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_inbox_stores_but_no_worker_claims_until_resumed() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = inbox(&dir).await;
    let pause = Action::Pause {
        kind: None,
        reason: Some("EHR down".into()),
    };
    assert_eq!(inbox.act(&operator(), pause).await.expect("pause"), 1);
    inbox
        .ingest(delivery("a"))
        .await
        .expect("stored while paused");
    let (seen, handler) = recorder();
    let worker = InboxWorker::builder(inbox.clone(), handler)
        .poll_interval(Duration::from_millis(10))
        .build();
    assert_eq!(
        worker
            .drain(Duration::from_millis(200))
            .await
            .expect("drain"),
        0,
        "nothing claimed while paused"
    );
    assert!(seen.lock().expect("lock").is_empty());
    let health = inbox
        .health(&suki_ambient_inbox::HealthThresholds {
            max_oldest_unfinished: Duration::ZERO,
            ..Default::default()
        })
        .await;
    assert_eq!(
        (health.status, health.paused.as_slice()),
        (
            suki_ambient_inbox::HealthStatus::Paused,
            ["all".to_owned()].as_slice()
        ),
        "paused, not failing, though the row waits: {health:?}"
    );
    inbox
        .act(&operator(), Action::Resume { kind: None })
        .await
        .expect("resume");
    let (seen, handler) = recorder();
    let worker = InboxWorker::builder(inbox.clone(), handler)
        .poll_interval(Duration::from_millis(10))
        .build();
    assert_eq!(
        worker.drain(Duration::from_secs(5)).await.expect("drain"),
        1
    );
    assert_eq!(*seen.lock().expect("lock"), ["session-a"]);
    let actions: Vec<String> = inbox
        .audit(UnixMillis(0), 10)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["resume", "pause"], "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_stops_claiming_a_paused_kind_within_a_poll() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = inbox(&dir).await;
    let (seen, handler) = recorder();
    let running = InboxWorker::builder(inbox.clone(), handler)
        .poll_interval(Duration::from_millis(20))
        .build()
        .spawn();
    inbox
        .act(
            &operator(),
            Action::Pause {
                kind: Some(EventKind::Completed),
                reason: None,
            },
        )
        .await
        .expect("pause");
    // More than a poll interval: the worker has read the pause.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut failed = delivery("f");
    failed.kind = EventKind::Failed;
    failed.body = bytes::Bytes::from_static(
        br#"{"status":"failure","session_id":"session-f","encounter_id":"encounter","error_code":"x","error_detail":"y"}"#,
    );
    inbox.ingest(delivery("c")).await.expect("insert");
    inbox.ingest(failed).await.expect("insert");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().expect("lock").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the failed event");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        *seen.lock().expect("lock"),
        ["session-f"],
        "the paused kind waits"
    );
    inbox
        .act(
            &operator(),
            Action::Resume {
                kind: Some(EventKind::Completed),
            },
        )
        .await
        .expect("resume");
    while seen.lock().expect("lock").len() < 2 {
        assert!(std::time::Instant::now() < deadline, "resumed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snooze_spends_no_attempt_until_the_bound_then_counts() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = inbox(&dir).await;
    inbox.ingest(delivery("s")).await.expect("insert");
    let calls = Arc::new(Mutex::new(0u32));
    let handler = {
        let calls = Arc::clone(&calls);
        move |_event: WebhookEvent, _meta: InboxMeta| {
            let mut n = calls.lock().expect("lock");
            *n += 1;
            let answer: Result<(), HandlerError> = if *n <= 3 {
                Err(Box::new(Snooze::new(
                    Duration::from_secs(3600),
                    "encounter_not_open",
                )))
            } else {
                Ok(())
            };
            std::future::ready(answer)
        }
    };
    let worker = InboxWorker::builder(inbox.clone(), handler)
        .poll_interval(Duration::from_millis(5))
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        // Two snoozes free, each cut to 10 ms (the handler asked for an hour).
        .snooze_limits(2, Duration::from_millis(10))
        .build();
    worker.drain(Duration::from_secs(10)).await.expect("drain");
    let row = inbox.list(None, 1).await.expect("list").remove(0);
    assert_eq!(row.state, State::Done);
    assert_eq!(
        (row.snoozes, row.attempts),
        (2, 2),
        "two snoozes spent nothing; the third counted as an attempt"
    );
    let events: Vec<(String, Option<String>)> = inbox
        .trace("session-s")
        .await
        .expect("trace")
        .events
        .into_iter()
        .map(|e| (e.event, e.code))
        .collect();
    let code = Some("encounter_not_open".to_owned());
    assert_eq!(
        events,
        [
            ("snoozed".to_owned(), code.clone()),
            ("snoozed".to_owned(), code.clone()),
            ("retry".to_owned(), code),
            ("done".to_owned(), None),
        ]
    );
}

/// The limiter's spacing itself is tested on tokio's paused clock (`worker::tests`); here, a
/// rate-limited worker still processes everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_worker_processes_everything() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = inbox(&dir).await;
    let rows: Vec<_> = (0..6).map(|i| delivery(&format!("r{i}"))).collect();
    for row in rows {
        inbox.ingest(row).await.expect("insert");
    }
    let (seen, handler) = recorder();
    InboxWorker::builder(inbox.clone(), handler)
        .concurrency(6)
        .rate_limit(50)
        .build()
        .drain(Duration::from_secs(10))
        .await
        .expect("drain");
    assert_eq!(seen.lock().expect("lock").len(), 6);
    assert_eq!(inbox.status().await.expect("status").counts.done, 6);
}
