//! The whole flow against the sandbox over HTTP: the sandbox delivers a signed webhook to an axum
//! receiver with the inbox; the worker fetches the session's results; a 503 burst longer than
//! the client's own retries makes the row retry later instead of losing the note.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use suki_ambient_client::{AmbientClient, RetryPolicy, SessionResults};
use suki_ambient_core::{EventKind, HandlerError, SessionCompleted, SessionEnded, SessionFailed};
use suki_ambient_inbox::{FetchResults, Inbox, InboxMeta, InboxWorker, ResultsHandler, State};
use suki_ambient_sandbox::{Fault, Sandbox};

#[derive(Default)]
struct Notes {
    complete: AtomicU32,
    other: AtomicU32,
}

#[async_trait]
impl ResultsHandler for Notes {
    async fn on_results(
        &self,
        event: SessionCompleted,
        results: SessionResults,
        meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        assert!(results.is_ok(), "every link fetched");
        assert_eq!(results.session_id, event.session_id);
        assert_eq!(meta.attempt, 2, "the first attempt met the 503 burst");
        self.complete.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn on_failed(&self, _event: SessionFailed, _meta: InboxMeta) -> Result<(), HandlerError> {
        self.other.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn on_ended(
        &self,
        _kind: EventKind,
        _event: SessionEnded,
        _meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        self.other.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

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
    let notes = Arc::new(Notes::default());
    let worker = InboxWorker::builder(inbox.clone(), FetchResults::new(client, Arc::clone(&notes)))
        .backoff(Duration::from_millis(1), Duration::from_millis(10))
        .build();
    let attempts = worker.drain(Duration::from_secs(10)).await.expect("drain");
    assert_eq!(
        attempts, 3,
        "completed twice (503 burst, then fine), failed once"
    );
    assert_eq!(notes.complete.load(Ordering::SeqCst), 1);
    assert_eq!(notes.other.load(Ordering::SeqCst), 1);
    let rows = inbox.list(Some(State::Done), 10).await.expect("list");
    assert_eq!(rows.len(), 2);
    let completed = rows
        .iter()
        .find(|r| r.kind == "completed")
        .expect("completed row");
    assert_eq!(completed.attempts, 2);
    let error = completed
        .last_error
        .as_deref()
        .expect("the burst's error is kept");
    assert!(
        error.starts_with("fetch_") && error.contains("503"),
        "{error}"
    );
    server.abort();
    sandbox.shutdown().await;
}
