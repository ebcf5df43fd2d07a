//! The transactional handler on SQLite: the handler's writes and the row's completion commit
//! together; a failed attempt's writes are rolled back with it; a handler for another
//! connection type is refused when the worker is built.
#![cfg(feature = "sqlite")]

mod common;

use std::time::Duration;

use async_trait::async_trait;
use suki_ambient_core::testing::completed;
use suki_ambient_core::{
    Bytes, HandlerError, SignedHeaders, UnixMillis, Verifier, WebhookEndpoint, WebhookEvent,
    WebhookSecret,
};
use suki_ambient_inbox::sqlx::{self, SqliteConnection};
use suki_ambient_inbox::{
    Inbox, InboxMeta, InboxWorker, SqliteStore, State, StoreError, TransactionalHandler,
};

const SECRET: &str = "transactional-secret";

/// Records each attempt's effect in the worker's transaction, then fails the first attempt of
/// every row: that attempt's effect must not survive.
struct Effects;

#[async_trait]
impl TransactionalHandler<SqliteConnection> for Effects {
    async fn handle(
        &self,
        _event: WebhookEvent,
        meta: InboxMeta,
        tx: &mut SqliteConnection,
    ) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO effects (dedup_key, attempt) VALUES ($1, $2)")
            .bind(&meta.dedup_key)
            .bind(i64::from(meta.attempt))
            .execute(&mut *tx)
            .await?;
        if meta.attempt == 1 {
            return Err("the first attempt fails after writing".into());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_commit_with_the_completion_and_roll_back_with_a_failure() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("store");
    sqlx::query("CREATE TABLE effects (dedup_key TEXT NOT NULL, attempt INTEGER NOT NULL)")
        .execute(store.pool())
        .await
        .expect("effects table");
    let inbox = Inbox::from_store(store.clone());
    let verifier = Verifier::builder()
        .secret(SECRET)
        .build()
        .expect("verifier");
    let endpoint = WebhookEndpoint::inbox(verifier, inbox.clone());
    for i in 0..20 {
        let body = completed(&format!("s-{i}"), "e").to_vec();
        let headers = SignedHeaders::new(&WebhookSecret::from(SECRET), UnixMillis::now(), &body)
            .to_header_map();
        assert_eq!(
            endpoint.handle(&headers, Bytes::from(body)).await.status,
            200
        );
    }

    let worker = InboxWorker::transactional(inbox.clone(), Effects)
        .expect("SQLite has transactions")
        .concurrency(4)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .poll_interval(Duration::from_millis(10))
        .build()
        .spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let counts = inbox.status().await.expect("status").counts;
        if counts.done == 20 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all done: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await.expect("shutdown");

    // Exactly one effect per row, from the attempt that completed it: the first attempts'
    // writes were rolled back with their failures.
    let effects: Vec<(String, i64)> =
        sqlx::query_as("SELECT dedup_key, attempt FROM effects ORDER BY dedup_key")
            .fetch_all(store.pool())
            .await
            .expect("effects");
    assert_eq!(effects.len(), 20, "{effects:?}");
    assert!(
        effects.iter().all(|(_, attempt)| *attempt == 2),
        "{effects:?}"
    );
    let rows = inbox.list(Some(State::Done), 100).await.expect("list");
    assert!(rows.iter().all(|r| r.attempts == 2));
}

/// A handler that takes a connection no built-in store hands out.
struct WrongConnection;

#[async_trait]
impl TransactionalHandler<String> for WrongConnection {
    async fn handle(
        &self,
        _event: WebhookEvent,
        _meta: InboxMeta,
        _tx: &mut String,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_handler_for_another_connection_type_is_refused_when_the_worker_is_built() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    let refused = InboxWorker::transactional(inbox, WrongConnection).map(|_| ());
    match refused {
        Err(StoreError::ConnectionMismatch { store, handler }) => {
            assert!(store.contains("SqliteConnection"), "{store}");
            assert_eq!(handler, "alloc::string::String");
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
}
