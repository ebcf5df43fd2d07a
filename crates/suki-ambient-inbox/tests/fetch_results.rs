//! The whole flow against the sandbox over HTTP: the sandbox delivers a signed webhook to an axum
//! receiver with the inbox; the worker fetches the session's results; a 503 burst longer than
//! the client's own retries makes the row retry later instead of losing the note.
#![cfg(feature = "sqlite")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use suki_ambient_client::{AmbientClient, RetryPolicy, SessionResults};
use suki_ambient_core::LinkKind;
use suki_ambient_core::{EventKind, HandlerError, SessionCompleted, SessionEnded, SessionFailed};
use suki_ambient_inbox::{
    FetchResults, Inbox, InboxMeta, InboxWorker, LinkNeeds, ResultsHandler, Selection, State,
};
use suki_ambient_sandbox::{Fault, Sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_burst_longer_than_the_clients_retries_is_recovered_by_the_worker() {
    let dir = tempfile::tempdir().expect("dir");
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    let server = common::serve_inbox(&sandbox, &inbox).await;

    let session = sandbox.create_session(None);
    let delivery = sandbox
        .complete(&session.session_id)
        .await
        .expect("deliver");
    assert_eq!(
        (delivery.status, delivery.body.as_str()),
        (200, r#"{"status":"accepted"}"#)
    );
    let failing = sandbox.create_session(None);
    assert_eq!(
        sandbox
            .fail(&failing.session_id)
            .await
            .expect("deliver")
            .status,
        200
    );

    // Six links, two client attempts each: twelve 503s outlast the client's retries.
    sandbox.inject(Fault::status(503).times(12));
    let client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .retry(
            RetryPolicy::default()
                .max_attempts(2)
                .base_delay(Duration::from_millis(1)),
        )
        .build()
        .expect("client");
    let seen = Arc::new(Seen::default());
    let worker = InboxWorker::builder(inbox.clone(), FetchResults::new(client, Arc::clone(&seen)))
        .backoff(Duration::from_millis(1), Duration::from_millis(10))
        .build();
    let attempts = worker.drain(Duration::from_secs(10)).await.expect("drain");
    assert_eq!(
        attempts, 3,
        "completed twice (503 burst, then fine), failed once"
    );
    {
        let results = seen.results.lock().expect("lock");
        assert_eq!(results.len(), 1);
        assert!(results[0].is_ok(), "every link fetched");
    }
    assert_eq!(seen.failed.load(Ordering::SeqCst), 1);
    let rows = inbox.list(Some(State::Done), 10).await.expect("list");
    assert_eq!(rows.len(), 2);
    let completed = rows
        .iter()
        .find(|r| r.kind == suki_ambient_core::EventKind::Completed)
        .expect("completed row");
    assert_eq!(
        completed.attempts, 1,
        "Suki's outage spent no attempt: the row waited for it"
    );
    assert_eq!(completed.last_error, None, "done: no stale error");
    let trace = inbox
        .trace(completed.session_id.as_ref().expect("session").as_str())
        .await
        .expect("trace");
    let waited = trace
        .events
        .iter()
        .find(|e| e.event == "waiting")
        .expect("the wait is in the timeline");
    let error = waited
        .code
        .as_deref()
        .expect("the burst's error is kept in the timeline");
    assert!(
        error.starts_with("fetch_") && error.contains("503"),
        "{error}"
    );
    // The row's timeline names what each attempt fetched, link by link.
    let trace = inbox
        .trace(session.session_id.as_str())
        .await
        .expect("trace");
    let events: Vec<(&str, &str)> = trace
        .events
        .iter()
        .map(|e| (e.event.as_str(), e.detail.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].0, "waiting");
    assert!(events[0].1.contains("contents 503"), "{events:?}");
    assert_eq!(events[1].0, "done");
    assert!(
        events[1].1.contains("contents ok") && !events[1].1.contains("503"),
        "{events:?}"
    );
    server.abort();
    sandbox.shutdown().await;
}

/// What the handler of the tests below saw, by kind.
#[derive(Default)]
struct Seen {
    results: std::sync::Mutex<Vec<SessionResults>>,
    failed: AtomicU32,
    timed_out: AtomicU32,
    cancelled: AtomicU32,
    needs: Option<LinkNeeds>,
}

#[async_trait]
impl ResultsHandler for Seen {
    async fn on_results(
        &self,
        _event: SessionCompleted,
        results: SessionResults,
        _meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        self.results.lock().expect("lock").push(results);
        Ok(())
    }

    async fn on_failed(&self, _event: SessionFailed, _meta: InboxMeta) -> Result<(), HandlerError> {
        self.failed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn on_ended(
        &self,
        kind: EventKind,
        _event: SessionEnded,
        _meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        let counter = match kind {
            EventKind::TimedOut => &self.timed_out,
            _ => &self.cancelled,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn links(&self) -> Option<LinkNeeds> {
        self.needs.clone()
    }
}

fn client_for(sandbox: &suki_ambient_sandbox::SandboxHandle, token: String) -> AmbientClient {
    AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(token)
        .retry(
            RetryPolicy::default()
                .max_attempts(2)
                .base_delay(Duration::from_millis(1)),
        )
        .build()
        .expect("client")
}

/// The README's static-token set-up after the token was revoked: the note is never fetched, so
/// the row is a dead letter naming the link and the answer, never `done`; with a new token,
/// `retry --dead` processes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_a_dead_letter_and_retry_dead_recovers_it() {
    let dir = tempfile::tempdir().expect("dir");
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    let server = common::serve_inbox(&sandbox, &inbox).await;
    let revoked = client_for(&sandbox, sandbox.issue_token(None));
    sandbox.expire_tokens();
    let session = sandbox.create_session(None);
    assert_eq!(
        sandbox
            .complete(&session.session_id)
            .await
            .expect("deliver")
            .status,
        200
    );

    let seen = Arc::new(Seen::default());
    let worker = InboxWorker::builder(inbox.clone(), FetchResults::new(revoked, Arc::clone(&seen)))
        .backoff(Duration::from_millis(1), Duration::from_millis(10))
        .build();
    assert_eq!(
        worker.drain(Duration::from_secs(5)).await.expect("drain"),
        1,
        "dead at once"
    );
    assert!(
        seen.results.lock().expect("lock").is_empty(),
        "no note, no on_results"
    );
    let dead = inbox.list(Some(State::Dead), 10).await.expect("list");
    assert_eq!(dead.len(), 1, "a dead letter, not done");
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("fetch_contents_401_invalid_sdp_token")
    );
    assert_eq!(inbox.status().await.expect("status").counts.done, 0);

    // The cause fixed (a new token): one retry of the dead letters brings the note.
    assert_eq!(inbox.retry(Selection::Dead).await.expect("retry"), 1);
    let fresh = client_for(&sandbox, sandbox.issue_token(None));
    let worker =
        InboxWorker::builder(inbox.clone(), FetchResults::new(fresh, Arc::clone(&seen))).build();
    worker.drain(Duration::from_secs(5)).await.expect("drain");
    {
        let results = seen.results.lock().expect("lock");
        assert_eq!(results.len(), 1);
        assert!(results[0].is_ok() && results[0].contents.is_some());
    }
    assert_eq!(inbox.status().await.expect("status").counts.done, 1);
    server.abort();
    sandbox.shutdown().await;
}

/// A 404 for a required link is a dead letter; an optional link's failure is the handler's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_link_is_a_dead_letter_unless_it_is_optional() {
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    for optional in [false, true] {
        let dir = tempfile::tempdir().expect("dir");
        let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
            .await
            .expect("inbox");
        let server = common::serve_inbox(&sandbox, &inbox).await;
        let session = sandbox.create_session(None);
        sandbox
            .complete(&session.session_id)
            .await
            .expect("deliver");
        sandbox.inject(
            Fault::status(404)
                .on(format!(
                    "/api/v1/ambient/session/{}/transcript",
                    session.session_id
                ))
                .times(100),
        );
        let seen = Arc::new(Seen::default());
        let client = client_for(&sandbox, sandbox.issue_token(None));
        let mut fetch = FetchResults::new(client, Arc::clone(&seen));
        if optional {
            fetch = fetch.optional(LinkKind::Transcripts);
        }
        InboxWorker::builder(inbox.clone(), fetch)
            .build()
            .drain(Duration::from_secs(5))
            .await
            .expect("drain");
        let row = inbox.list(None, 1).await.expect("list").remove(0);
        let results = seen.results.lock().expect("lock");
        if optional {
            assert_eq!(row.state, State::Done);
            assert_eq!(results.len(), 1);
            let transcript = results[0].transcript.as_ref().expect("fetched");
            assert_eq!(
                transcript.as_ref().err().and_then(|e| e.status()),
                Some(404)
            );
            assert!(results[0].contents.as_ref().is_some_and(Result::is_ok));
        } else {
            assert_eq!(row.state, State::Dead);
            let error = row.last_error.as_deref().expect("code");
            assert!(error.starts_with("fetch_transcripts_404"), "{error}");
            assert!(results.is_empty());
        }
        sandbox.clear_faults();
        server.abort();
    }
    sandbox.shutdown().await;
}

/// A handler that declares the links it reads gets only those: a transcript answering 404 is
/// never asked for and cannot hold the note back; a declared optional link's failure is the
/// handler's, a declared required one's holds the row back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_links_a_handler_declares_are_fetched() {
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    let server = common::serve_inbox(&sandbox, &inbox).await;
    let session = sandbox.create_session(None);
    sandbox
        .complete(&session.session_id)
        .await
        .expect("deliver");
    let transcript = format!("/api/v1/ambient/session/{}/transcript", session.session_id);
    let structured = format!(
        "/api/v1/ambient/session/{}/structured-data",
        session.session_id
    );
    sandbox.inject(Fault::status(404).on(transcript.clone()).times(100));
    sandbox.inject(Fault::status(404).on(structured.clone()).times(100));
    let seen = Arc::new(Seen {
        needs: Some(
            LinkNeeds::required(&[LinkKind::Contents]).optional(&[LinkKind::StructuredData]),
        ),
        ..Seen::default()
    });
    let client = client_for(&sandbox, sandbox.issue_token(None));
    InboxWorker::builder(inbox.clone(), FetchResults::new(client, Arc::clone(&seen)))
        .build()
        .drain(Duration::from_secs(5))
        .await
        .expect("drain");
    let row = inbox.list(None, 1).await.expect("list").remove(0);
    assert_eq!(row.state, State::Done, "{:?}", row.last_error);
    assert_eq!(
        sandbox.requests(&transcript),
        0,
        "the transcript is not fetched"
    );
    {
        let results = seen.results.lock().expect("lock");
        assert_eq!(results.len(), 1);
        assert!(results[0].transcript.is_none());
        assert!(results[0].status.is_none());
        assert!(results[0].contents.as_ref().is_some_and(Result::is_ok));
        let structured = results[0].structured_data.as_ref().expect("fetched");
        assert_eq!(
            structured.as_ref().err().and_then(|e| e.status()),
            Some(404)
        );
    }
    sandbox.clear_faults();

    // The note declared required: its 404 is a dead letter naming it.
    let other = sandbox.create_session(None);
    sandbox.complete(&other.session_id).await.expect("deliver");
    sandbox.inject(
        Fault::status(404)
            .on(format!(
                "/api/v1/ambient/session/{}/content",
                other.session_id
            ))
            .times(100),
    );
    let client = client_for(&sandbox, sandbox.issue_token(None));
    InboxWorker::builder(inbox.clone(), FetchResults::new(client, Arc::clone(&seen)))
        .build()
        .drain(Duration::from_secs(5))
        .await
        .expect("drain");
    let dead = inbox.list(Some(State::Dead), 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    let error = dead[0].last_error.as_deref().expect("code");
    assert!(error.starts_with("fetch_contents_404"), "{error}");
    server.abort();
    sandbox.shutdown().await;
}

/// Failed, timed-out and cancelled sessions reach their handlers; an unknown status is stored
/// (200), never completed unseen: a dead letter `unknown_status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_is_handled_on_purpose_and_an_unknown_status_is_a_dead_letter() {
    let dir = tempfile::tempdir().expect("dir");
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    let server = common::serve_inbox(&sandbox, &inbox).await;
    let (a, b, c) = (
        sandbox.create_session(None),
        sandbox.create_session(None),
        sandbox.create_session(None),
    );
    sandbox.fail(&a.session_id).await.expect("deliver");
    sandbox.time_out(&b.session_id).await.expect("deliver");
    sandbox.cancel(&c.session_id).await.expect("deliver");
    let unknown = suki_ambient_core::WebhookEvent::from_slice(
        br#"{"status":"on_hold_forever","session_id":"s-unknown","encounter_id":"e"}"#,
    )
    .expect("parse");
    let delivery = sandbox.deliver(&unknown).await.expect("deliver");
    assert_eq!(
        (delivery.status, delivery.body.as_str()),
        (200, r#"{"status":"accepted"}"#)
    );

    let seen = Arc::new(Seen::default());
    let client = client_for(&sandbox, sandbox.issue_token(None));
    InboxWorker::builder(inbox.clone(), FetchResults::new(client, Arc::clone(&seen)))
        .build()
        .drain(Duration::from_secs(5))
        .await
        .expect("drain");
    assert_eq!(seen.failed.load(Ordering::SeqCst), 1);
    assert_eq!(seen.timed_out.load(Ordering::SeqCst), 1);
    assert_eq!(seen.cancelled.load(Ordering::SeqCst), 1);
    let dead = inbox.list(Some(State::Dead), 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, suki_ambient_core::EventKind::Unknown);
    assert_eq!(dead[0].last_error.as_deref(), Some("unknown_status"));
    assert_eq!(inbox.status().await.expect("status").counts.done, 3);
    server.abort();
    sandbox.shutdown().await;
}

/// A handler that fails after the links were fetched (an EHR down): what the attempt fetched is
/// kept with the row, sealed like its body (the note's text appears nowhere in the database
/// files), and the next attempt, after `retry --dead`, is answered from it without fetching
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_failed_attempt_fetched_is_kept_sealed_and_not_fetched_again() {
    const MARKER: &str = "KEPT-NOTE-MARKER-5c1e";
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox")
        .with_keys(
            suki_ambient_inbox::Keys::new([suki_ambient_inbox::BodyKey::new([7; 32])])
                .expect("keys"),
        );
    let server = common::serve_inbox(&sandbox, &inbox).await;
    let session = sandbox.create_session(None);
    let note: suki_ambient_core::api::NoteContent = serde_json::from_value(serde_json::json!({
        "summary": [{"title": "HPI", "content": MARKER}]
    }))
    .expect("note");
    sandbox
        .complete(&session.session_id)
        .await
        .expect("deliver");
    sandbox
        .set_results(
            &session.session_id,
            note,
            suki_ambient_core::api::StructuredData::default(),
        )
        .expect("results");
    let content = format!("/api/v1/ambient/session/{}/content", session.session_id);

    /// Fetches the note, then fails as an EHR that is down would, permanently (so that the row
    /// waits, dead, with what it fetched).
    struct EhrDown;
    #[async_trait]
    impl ResultsHandler for EhrDown {
        async fn on_results(
            &self,
            _event: SessionCompleted,
            results: SessionResults,
            _meta: InboxMeta,
        ) -> Result<(), HandlerError> {
            assert!(results.contents.as_ref().is_some_and(Result::is_ok));
            Err(Box::new(suki_ambient_inbox::Permanent("ehr_down")))
        }
        async fn on_failed(&self, _: SessionFailed, _: InboxMeta) -> Result<(), HandlerError> {
            Ok(())
        }
        async fn on_ended(
            &self,
            _: EventKind,
            _: SessionEnded,
            _: InboxMeta,
        ) -> Result<(), HandlerError> {
            Ok(())
        }
        fn links(&self) -> Option<LinkNeeds> {
            Some(LinkNeeds::required(&[LinkKind::Contents]))
        }
    }
    let client = client_for(&sandbox, sandbox.issue_token(None));
    InboxWorker::builder(inbox.clone(), FetchResults::new(client.clone(), EhrDown))
        .build()
        .drain(Duration::from_secs(5))
        .await
        .expect("drain");
    assert_eq!(
        inbox.list(Some(State::Dead), 10).await.expect("list").len(),
        1
    );
    assert_eq!(sandbox.requests(&content), 1);
    // Read by `grep` in another process: this process opening and closing the database file
    // would drop the POSIX locks SQLite holds on it.
    for file in ["inbox.db", "inbox.db-wal"] {
        let path = dir.path().join(file);
        let found = path.exists()
            && std::process::Command::new("grep")
                .args(["-a", "-F", "-q", MARKER])
                .arg(&path)
                .status()
                .expect("grep")
                .success();
        assert!(!found, "{file} holds the kept note in clear");
    }

    // The EHR is back: the row runs again on what it kept.
    inbox
        .act(
            &suki_ambient_inbox::Actor::application(),
            suki_ambient_inbox::Action::Retry(Selection::Dead),
        )
        .await
        .expect("retry");
    let seen = Arc::new(Seen {
        needs: Some(LinkNeeds::required(&[LinkKind::Contents])),
        ..Seen::default()
    });
    InboxWorker::builder(inbox.clone(), FetchResults::new(client, Arc::clone(&seen)))
        .build()
        .drain(Duration::from_secs(5))
        .await
        .expect("drain");
    let row = inbox.list(None, 1).await.expect("list").remove(0);
    assert_eq!(row.state, State::Done, "{:?}", row.last_error);
    assert_eq!(sandbox.requests(&content), 1, "not fetched again");
    {
        let results = seen.results.lock().expect("lock");
        let note = results[0]
            .contents
            .as_ref()
            .expect("answered")
            .as_ref()
            .expect("ok");
        assert_eq!(note.summary[0].content.as_deref(), Some(MARKER));
    }
    let trace = inbox
        .trace(session.session_id.as_str())
        .await
        .expect("trace");
    assert!(
        trace.events.iter().any(|e| e
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("kept from an earlier attempt"))),
        "the timeline says so"
    );
    server.abort();
    sandbox.shutdown().await;
}
