//! The inbox end to end on SQLite: ingest through the endpoint, the worker's retries, dead
//! letters, back-off, graceful shutdown, a store that goes down, and FetchResults against the
//! sandbox during a 503 burst.
#![cfg(feature = "sqlite")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use suki_ambient_core::testing::completed;
use suki_ambient_core::{
    Bytes, FixedClock, HandlerError, SignedHeaders, Stored, UnixMillis, Verifier, WebhookEndpoint,
    WebhookEvent, WebhookSecret,
};
use suki_ambient_inbox::{
    DeliveryRecord, Inbox, InboxMeta, InboxWorker, Permanent, RetryAfter, Selection, SqliteStore,
    State, StoreError, ops::Counts, store::Claim, store::ClaimRequest, store::DeliveryQueue,
    store::ExpectationRecord, store::Expectations, store::FailedAttempt, store::FinishedCheck,
    store::Lease, store::NewDelivery, store::NewExpectation, store::Next, store::ReadModel,
    store::Store, store::backoff,
};

const SECRET: &str = "inbox-test-secret";

fn verifier() -> Verifier {
    Verifier::builder()
        .secret(SECRET)
        .build()
        .expect("verifier")
}

fn signed(body: &[u8]) -> suki_ambient_core::HeaderMap {
    SignedHeaders::new(&WebhookSecret::from(SECRET), UnixMillis::now(), body).to_header_map()
}

async fn sqlite_inbox(dir: &tempfile::TempDir) -> Inbox {
    Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("open inbox")
}

/// Posts a completed event for `session` through the endpoint; the answer's status and body.
async fn post(
    endpoint: &WebhookEndpoint<suki_ambient_core::NoopHandler>,
    session: &str,
) -> (u16, String) {
    let body = completed(session, "enc").to_vec();
    let answer = endpoint.handle(&signed(&body), Bytes::from(body)).await;
    (
        answer.status.as_u16(),
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

#[tokio::test]
async fn the_endpoint_stores_before_answering_and_dedupes() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = sqlite_inbox(&dir).await;
    let endpoint = WebhookEndpoint::inbox(verifier(), inbox.clone());
    assert_eq!(
        post(&endpoint, "s-1").await,
        (200, r#"{"status":"accepted"}"#.to_owned())
    );
    assert_eq!(
        post(&endpoint, "s-1").await,
        (200, r#"{"status":"duplicate"}"#.to_owned())
    );
    let rows = inbox.list(None, 10).await.expect("list");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].dedup_key, "s-1/completed");
    assert_eq!(rows[0].state, State::Pending);
    assert_eq!(rows[0].session_id.as_ref().map(|s| s.as_str()), Some("s-1"));
    // A bad signature is refused before anything is stored.
    let body = completed("s-2", "enc").to_vec();
    let mut headers = signed(&body);
    headers.insert("x-api-key", "0".repeat(64).parse().expect("header"));
    assert_eq!(
        endpoint.handle(&headers, Bytes::from(body)).await.status,
        401
    );
    assert_eq!(inbox.list(None, 10).await.expect("list").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_are_all_stored_once() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = sqlite_inbox(&dir).await;
    let endpoint = WebhookEndpoint::inbox(verifier(), inbox.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let endpoint = endpoint.clone();
        // 50 sessions, each delivered four times at once.
        tasks.spawn(async move { post(&endpoint, &format!("s-{}", i % 50)).await });
    }
    let (mut accepted, mut duplicate) = (0, 0);
    while let Some(answer) = tasks.join_next().await {
        match answer.expect("task") {
            (200, body) if body.contains("accepted") => accepted += 1,
            (200, body) if body.contains("duplicate") => duplicate += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((accepted, duplicate), (50, 150));
    assert_eq!(inbox.status().await.expect("status").counts.pending, 50);
}

/// Counts calls per dedup key; fails the first `fail_first` attempts of each.
#[derive(Default)]
struct Counting {
    calls: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl Counting {
    fn record(&self, meta: &InboxMeta) -> u32 {
        let mut calls = self.calls.lock().expect("lock");
        let n = calls.entry(meta.dedup_key.clone()).or_default();
        *n += 1;
        *n
    }
    fn total(&self) -> u32 {
        self.calls.lock().expect("lock").values().sum()
    }
}

#[tokio::test]
async fn the_worker_processes_each_row_once_and_retries_failures() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = sqlite_inbox(&dir).await;
    let endpoint = WebhookEndpoint::inbox(verifier(), inbox.clone());
    for s in ["a", "b", "c"] {
        post(&endpoint, s).await;
    }
    let counting = Arc::new(Counting::default());
    let handler = {
        let counting = Arc::clone(&counting);
        move |event: WebhookEvent, meta: InboxMeta| {
            let counting = Arc::clone(&counting);
            async move {
                let n = counting.record(&meta);
                assert_eq!(meta.attempt, n, "the attempt number");
                assert_eq!(meta.source(), suki_ambient_inbox::ops::Source::Webhook);
                // Session b fails twice (retryably), then succeeds.
                if event.session_id().map(|s| s.as_str()) == Some("b") && n <= 2 {
                    return Err::<(), HandlerError>("temporary".into());
                }
                Ok(())
            }
        }
    };
    let attempts = InboxWorker::builder(inbox.clone(), handler)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .drain(Duration::from_secs(10))
        .await
        .expect("drain");
    assert_eq!(attempts, 5, "a, c once; b three times");
    let status = inbox.status().await.expect("status");
    assert_eq!(
        (
            status.counts.done,
            status.counts.pending,
            status.counts.dead
        ),
        (3, 0, 0)
    );
    let b = inbox
        .list(Some(State::Done), 10)
        .await
        .expect("list")
        .into_iter()
        .find(|r| r.dedup_key == "b/completed")
        .expect("b");
    assert_eq!(b.attempts, 3);
    assert_eq!(b.last_error, None, "done: no stale error");
    let codes: Vec<_> = inbox
        .trace(b.session_id.as_ref().expect("session").as_str())
        .await
        .expect("trace")
        .events
        .into_iter()
        .filter(|e| e.delivery_id == b.id)
        .filter_map(|e| e.code)
        .collect();
    assert_eq!(
        codes,
        ["handler_failed", "handler_failed"],
        "the timeline keeps the code, never the error text"
    );
    assert_eq!(counting.total(), 5);
}

#[tokio::test]
async fn permanent_errors_and_the_last_attempt_go_dead_and_can_be_retried() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = sqlite_inbox(&dir).await;
    let endpoint = WebhookEndpoint::inbox(verifier(), inbox.clone());
    post(&endpoint, "permanent").await;
    post(&endpoint, "flaky").await;
    let healed = Arc::new(AtomicBool::new(false));
    let handler = {
        let healed = Arc::clone(&healed);
        move |event: WebhookEvent, _meta: InboxMeta| {
            let healed = healed.load(Ordering::SeqCst);
            async move {
                if healed {
                    return Ok(());
                }
                match event.session_id().map(|s| s.as_str()) {
                    Some("permanent") => {
                        Err::<(), HandlerError>(Box::new(Permanent("unknown_provider")))
                    }
                    _ => Err("still failing".into()),
                }
            }
        }
    };
    let worker = || {
        InboxWorker::builder(inbox.clone(), handler.clone())
            .max_attempts(3)
            .backoff(Duration::from_millis(1), Duration::from_millis(2))
            .build()
    };
    assert_eq!(
        worker()
            .drain(Duration::from_secs(10))
            .await
            .expect("drain"),
        1 + 3,
        "permanent once, flaky three times"
    );
    let dead = inbox.list(Some(State::Dead), 10).await.expect("list");
    assert_eq!(dead.len(), 2);
    let by_key = |key: &str| {
        dead.iter()
            .find(|r| r.dedup_key == key)
            .expect("row")
            .clone()
    };
    assert_eq!(
        by_key("permanent/completed").last_error.as_deref(),
        Some("unknown_provider")
    );
    assert_eq!(by_key("permanent/completed").attempts, 1);
    assert_eq!(by_key("flaky/completed").attempts, 3);
    // Retried while still failing: a new round of three attempts, the count going on (4, 5,
    // 6), then dead again.
    let flaky = by_key("flaky/completed").id;
    assert_eq!(inbox.retry(Selection::Id(flaky)).await.expect("retry"), 1);
    assert_eq!(
        worker()
            .drain(Duration::from_secs(10))
            .await
            .expect("drain"),
        3
    );
    let row = inbox.get(flaky).await.expect("get").expect("row");
    assert_eq!(
        (row.state, row.attempts, row.round_start),
        (State::Dead, 6, 3)
    );
    let timeline: Vec<(String, Option<u32>)> = inbox
        .trace("flaky")
        .await
        .expect("trace")
        .events
        .into_iter()
        .map(|e| (e.event, e.attempt))
        .collect();
    let expected: Vec<(String, Option<u32>)> = [
        ("retry", Some(1)),
        ("retry", Some(2)),
        ("dead", Some(3)),
        ("retried", None),
        ("retry", Some(4)),
        ("retry", Some(5)),
        ("dead", Some(6)),
    ]
    .into_iter()
    .map(|(e, a)| (e.to_owned(), a))
    .collect();
    assert_eq!(timeline, expected, "retry keeps the history");
    healed.store(true, Ordering::SeqCst);
    assert_eq!(inbox.retry(Selection::Dead).await.expect("retry"), 2);
    assert_eq!(
        worker()
            .drain(Duration::from_secs(10))
            .await
            .expect("drain"),
        2
    );
    assert_eq!(inbox.status().await.expect("status").counts.done, 2);
}

#[tokio::test]
async fn retry_after_and_backoff_schedule_the_next_attempt() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = FixedClock::new(UnixMillis(1_800_000_000_000));
    let inbox = sqlite_inbox(&dir).await.with_clock(clock.clone());
    let endpoint = WebhookEndpoint::inbox(verifier(), inbox.clone());
    post(&endpoint, "later").await;
    let handler = |_event: WebhookEvent, _meta: InboxMeta| async {
        Err::<(), HandlerError>(Box::new(RetryAfter {
            after: Duration::from_secs(120),
            code: "rate_limited",
        }))
    };
    let worker = || {
        InboxWorker::builder(inbox.clone(), handler)
            .backoff(Duration::from_secs(1), Duration::from_secs(600))
            .build()
    };
    assert_eq!(
        worker().drain(Duration::ZERO).await.expect("drain"),
        1,
        "not due again at once"
    );
    let row = inbox.list(None, 1).await.expect("list").remove(0);
    assert_eq!(row.state, State::Pending);
    assert!(
        row.run_after.0 >= 1_800_000_000_000 + 120_000,
        "Retry-After honoured"
    );
    assert!(
        row.run_after.0 <= 1_800_000_000_000 + 600_000,
        "within the cap"
    );
    assert_eq!(row.last_error.as_deref(), Some("rate_limited"));
    clock.advance(Duration::from_secs(119));
    assert_eq!(worker().drain(Duration::ZERO).await.expect("drain"), 0);
    clock.advance(Duration::from_secs(600));
    assert_eq!(
        worker().drain(Duration::ZERO).await.expect("drain"),
        1,
        "due after the delay"
    );
}

#[test]
fn backoff_is_full_jitter_capped_and_honours_retry_after() {
    let base = Duration::from_secs(1);
    let cap = Duration::from_secs(30 * 60);
    for attempt in 1..=40 {
        let bound = (base * 2u32.saturating_pow(attempt - 1)).min(cap);
        for _ in 0..50 {
            let d = backoff(attempt, base, cap, None);
            assert!(d <= bound, "attempt {attempt}: {d:?} > {bound:?}");
        }
    }
    // Full jitter: early attempts spread over [0, bound].
    let spread: Vec<_> = (0..200).map(|_| backoff(5, base, cap, None)).collect();
    assert!(spread.iter().any(|d| *d < Duration::from_secs(4)));
    assert!(spread.iter().any(|d| *d > Duration::from_secs(12)));
    // A server's huge Retry-After is capped; a small one is a floor.
    assert_eq!(backoff(1, base, cap, Some(Duration::MAX)), cap);
    assert!(backoff(1, base, cap, Some(Duration::from_secs(90))) >= Duration::from_secs(90));
    assert!(backoff(u32::MAX, Duration::MAX, cap, None) <= cap);
}

#[tokio::test]
async fn a_row_left_by_a_crashed_worker_is_taken_over_after_its_lease() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = FixedClock::new(UnixMillis(1_800_000_000_000));
    let inbox = sqlite_inbox(&dir).await.with_clock(clock.clone());
    let endpoint = WebhookEndpoint::inbox(verifier(), inbox.clone());
    post(&endpoint, "orphan").await;
    // A worker (another process: its own store on the same file) claims the row and dies (no
    // heartbeat, no completion).
    let crashed =
        suki_ambient_inbox::SqliteStore::connect(&common::sqlite_url(dir.path(), "inbox.db"))
            .await
            .expect("store");
    let claim = crashed
        .claim(suki_ambient_inbox::store::ClaimRequest {
            owner: "crashed",
            now: clock.now_millis(),
            lease: Duration::from_secs(60),
            limit: 1,
            paused: &[],
        })
        .await
        .expect("claim")
        .remove(0);
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = Arc::clone(&calls);
        move |_e: WebhookEvent, meta: InboxMeta| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_eq!(meta.attempt, 2, "the crashed attempt counts");
                Ok::<(), HandlerError>(())
            }
        }
    };
    let worker = || {
        InboxWorker::builder(inbox.clone(), handler.clone())
            .lease(Duration::from_secs(60))
            .build()
    };
    assert_eq!(
        worker().drain(Duration::ZERO).await.expect("drain"),
        0,
        "held by the dead worker's lease"
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        worker().drain(Duration::ZERO).await.expect("drain"),
        1,
        "taken over"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The crashed worker coming back cannot overwrite the result.
    assert!(
        !crashed
            .fail(suki_ambient_inbox::store::FailedAttempt {
                lease: claim.lease(),
                now: clock.now_millis(),
                next: Next::Dead,
                error: "late",
                detail: None,
                waiting_for: None,
            })
            .await
            .expect("fail")
    );
    assert_eq!(
        inbox.list(None, 1).await.expect("list")[0].state,
        State::Done
    );
}

trait NowMillis {
    fn now_millis(&self) -> UnixMillis;
}

impl NowMillis for FixedClock {
    fn now_millis(&self) -> UnixMillis {
        suki_ambient_core::Clock::now(self)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_what_is_still_running() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = sqlite_inbox(&dir).await;
    let endpoint = WebhookEndpoint::inbox(verifier(), inbox.clone());
    let started = Arc::new(tokio::sync::Notify::new());
    let handler = {
        let started = Arc::clone(&started);
        move |_e: WebhookEvent, _m: InboxMeta| {
            started.notify_one();
            async {
                std::future::pending::<()>().await;
                Ok::<(), HandlerError>(())
            }
        }
    };
    let running = InboxWorker::builder(inbox.clone(), handler)
        .shutdown_grace(Duration::from_millis(50))
        .build()
        .spawn();
    post(&endpoint, "stuck").await;
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the worker picked the row up at once (woken by the ingest)");
    running.shutdown().await.expect("shutdown");
    let row = inbox.list(None, 1).await.expect("list").remove(0);
    assert_eq!(row.state, State::Pending, "released");
    assert_eq!(row.attempts, 0, "the interrupted attempt is not counted");
    assert_eq!(row.lease_owner, None);
}

/// A real SQLite store that can be switched off: every call fails while `down`.
struct Switchable {
    inner: SqliteStore,
    down: Arc<AtomicBool>,
    /// The next insert takes 300 ms (a writer that is mid-write when its request goes away).
    slow_once: Arc<AtomicBool>,
}

impl Switchable {
    /// On a new SQLite file in `dir`, up and fast.
    async fn open(dir: &tempfile::TempDir) -> Self {
        Self {
            inner: SqliteStore::connect(&common::sqlite_url(dir.path(), "inbox.db"))
                .await
                .expect("open"),
            down: Arc::default(),
            slow_once: Arc::default(),
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Database(
                suki_ambient_inbox::store::DatabaseError::new(sqlx::Error::PoolTimedOut)
                    .with_kind(suki_ambient_inbox::store::DatabaseErrorKind::PoolTimeout),
            ))
        } else {
            Ok(())
        }
    }
}

impl Store for Switchable {}

#[async_trait]
impl DeliveryQueue for Switchable {
    async fn insert(&self, batch: &[NewDelivery]) -> Result<Vec<Stored>, StoreError> {
        self.check()?;
        if self.slow_once.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.inner.insert(batch).await
    }
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<Claim>, StoreError> {
        self.check()?;
        self.inner.claim(request).await
    }
    async fn heartbeat(&self, lease: Lease, until: UnixMillis) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.heartbeat(lease, until).await
    }
    async fn complete(
        &self,
        lease: Lease,
        now: UnixMillis,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.complete(lease, now, detail).await
    }
    async fn fail(&self, attempt: FailedAttempt<'_>) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.fail(attempt).await
    }
    async fn release(&self, lease: Lease, now: UnixMillis) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.release(lease, now).await
    }
    async fn release_owner(&self, owner: &str, now: UnixMillis) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.release_owner(owner, now).await
    }
    async fn purge(&self, before: UnixMillis) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.purge(before).await
    }
    async fn erase_bodies(&self, before: UnixMillis, now: UnixMillis) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.erase_bodies(before, now).await
    }
    async fn probe(&self, now: UnixMillis) -> Result<(), StoreError> {
        self.check()?;
        self.inner.probe(now).await
    }
}

#[async_trait]
impl Expectations for Switchable {
    async fn register(&self, new: NewExpectation<'_>) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.register(new).await
    }
    async fn claim_expectations(
        &self,
        request: ClaimRequest<'_>,
    ) -> Result<Vec<ExpectationRecord>, StoreError> {
        self.check()?;
        self.inner.claim_expectations(request).await
    }
    async fn finish_checks(
        &self,
        now: UnixMillis,
        checks: &[FinishedCheck],
    ) -> Result<Vec<bool>, StoreError> {
        self.check()?;
        self.inner.finish_checks(now, checks).await
    }
    async fn sweep(&self, since: UnixMillis, now: UnixMillis) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.sweep(since, now).await
    }
}

#[async_trait]
impl ReadModel for Switchable {
    async fn counts(&self) -> Result<Counts, StoreError> {
        self.check()?;
        self.inner.counts().await
    }
    async fn retrying(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.check()?;
        self.inner.retrying(limit).await
    }
    async fn list(
        &self,
        state: Option<State>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.check()?;
        self.inner.list(state, limit).await
    }
    async fn get(&self, id: i64) -> Result<Option<DeliveryRecord>, StoreError> {
        self.check()?;
        self.inner.get(id).await
    }
    async fn expectation(
        &self,
        session_id: &suki_ambient_core::SessionId,
    ) -> Result<Option<ExpectationRecord>, StoreError> {
        self.check()?;
        self.inner.expectation(session_id).await
    }
    async fn expectations(&self, limit: u32) -> Result<Vec<ExpectationRecord>, StoreError> {
        self.check()?;
        self.inner.expectations(limit).await
    }

    async fn hourly(
        &self,
        since: suki_ambient_core::UnixMillis,
    ) -> Result<Vec<suki_ambient_inbox::ops::HourCount>, StoreError> {
        self.check()?;
        self.inner.hourly(since).await
    }

    async fn expectation_counts(
        &self,
    ) -> Result<suki_ambient_inbox::ops::ExpectationCounts, StoreError> {
        self.check()?;
        self.inner.expectation_counts().await
    }

    async fn trace(
        &self,
        id: &str,
        limit: u32,
    ) -> Result<suki_ambient_inbox::ops::Trace, StoreError> {
        self.check()?;
        self.inner.trace(id, limit).await
    }

    async fn dead_groups(
        &self,
        limit: u32,
    ) -> Result<Vec<suki_ambient_inbox::ops::DeadGroup>, StoreError> {
        self.check()?;
        self.inner.dead_groups(limit).await
    }

    async fn pauses(&self) -> Result<Vec<suki_ambient_inbox::ops::Pause>, StoreError> {
        self.check()?;
        self.inner.pauses().await
    }

    async fn audit(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<suki_ambient_inbox::ops::AuditEntry>, StoreError> {
        self.check()?;
        self.inner.audit(since, limit).await
    }

    async fn key_counts(&self) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        self.check()?;
        self.inner.key_counts().await
    }

    async fn bodies(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<suki_ambient_inbox::store::StoredBody>, StoreError> {
        self.check()?;
        self.inner.bodies(after, limit).await
    }
}

#[async_trait]
impl suki_ambient_inbox::store::Operations for Switchable {
    async fn act(&self, act: suki_ambient_inbox::store::Act<'_>) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.act(act).await
    }

    async fn preview(
        &self,
        action: &suki_ambient_inbox::Action,
        now: UnixMillis,
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.preview(action, now).await
    }

    async fn reseal(
        &self,
        bodies: &[suki_ambient_inbox::store::Resealed],
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.reseal(bodies).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_down_gets_503_and_the_worker_resumes_when_it_returns() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Switchable::open(&dir).await;
    let down = Arc::clone(&store.down);
    let inbox = Inbox::from_store(store);
    let endpoint = WebhookEndpoint::inbox(verifier(), inbox.clone());
    let processed = Arc::new(AtomicU32::new(0));
    let handler = {
        let processed = Arc::clone(&processed);
        move |_e: WebhookEvent, _m: InboxMeta| {
            processed.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), HandlerError>(()) }
        }
    };
    let running = InboxWorker::builder(inbox.clone(), handler)
        .poll_interval(Duration::from_millis(20))
        .build()
        .spawn();
    assert_eq!(post(&endpoint, "before").await.0, 200);
    down.store(true, Ordering::SeqCst);
    let (status, body) = post(&endpoint, "during").await;
    assert_eq!(status, 503, "never a 200 for a delivery that is not stored");
    assert!(body.contains("inbox_unavailable"), "{body}");
    tokio::time::sleep(Duration::from_millis(100)).await; // the worker's claims fail meanwhile
    down.store(false, Ordering::SeqCst);
    assert_eq!(post(&endpoint, "after").await.0, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while processed.load(Ordering::SeqCst) < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.shutdown().await.expect("shutdown");
    assert_eq!(
        processed.load(Ordering::SeqCst),
        2,
        "before and after; during was refused"
    );
    let keys: Vec<_> = inbox
        .list(None, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.dedup_key)
        .collect();
    assert!(!keys.contains(&"during/completed".to_owned()));

    // A worker stopped while its store is down says so.
    let running = InboxWorker::builder(inbox.clone(), |_e: WebhookEvent, _m: InboxMeta| async {
        Ok::<(), HandlerError>(())
    })
    .poll_interval(Duration::from_millis(20))
    .build()
    .spawn();
    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = running.shutdown().await;
    assert!(
        matches!(stopped, Err(StoreError::Database(ref e)) if e.is_pool_timeout()),
        "{stopped:?}"
    );
}

#[test]
fn debug_output_never_shows_the_body() {
    let d = suki_ambient_inbox::conformance::delivery("secretish");
    let shown = format!("{d:?}");
    assert!(!shown.contains("status"), "{shown}");
    assert!(shown.contains("body_len"));
}

#[tokio::test]
async fn unknown_urls_are_a_typed_error() {
    assert!(matches!(
        Inbox::connect("mysql://localhost/x").await,
        Err(StoreError::UnsupportedUrl)
    ));
}

#[tokio::test]
async fn the_inbox_status_reports_the_oldest_unfinished_age() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = FixedClock::new(UnixMillis(1_800_000_000_000));
    let inbox = sqlite_inbox(&dir).await.with_clock(clock.clone());
    let endpoint = WebhookEndpoint::inbox(verifier(), inbox.clone());
    assert_eq!(
        inbox.status().await.expect("status").oldest_unfinished_age,
        None
    );
    post(&endpoint, "waiting").await;
    clock.advance(Duration::from_secs(90));
    let status = inbox.status().await.expect("status");
    assert_eq!(status.oldest_unfinished_age, Some(Duration::from_secs(90)));
    assert_eq!(
        status.counts,
        Counts {
            pending: 1,
            oldest_unfinished_received_at: Some(UnixMillis(1_800_000_000_000)),
            ..Counts::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_group_commit_leaves_no_delivery_behind() {
    // A store whose next insert takes a while, so that the first caller is mid-write when
    // cancelled.
    let dir = tempfile::tempdir().expect("dir");
    let store = Switchable::open(&dir).await;
    let slow = Arc::clone(&store.slow_once);
    slow.store(true, Ordering::SeqCst);
    let inbox = Inbox::from_store(store);
    let endpoint = WebhookEndpoint::inbox(verifier(), inbox.clone());
    // The first request becomes the writer and is then dropped (its client went away).
    let first = tokio::spawn({
        let endpoint = endpoint.clone();
        async move { post(&endpoint, "abandoned").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The second waits for the writer, then finds its delivery not written and writes both.
    let second = tokio::spawn({
        let endpoint = endpoint.clone();
        async move { post(&endpoint, "waiting").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.abort();
    let answer = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second request is answered")
        .expect("task");
    assert_eq!(answer, (200, r#"{"status":"accepted"}"#.to_owned()));
    let keys: Vec<_> = inbox
        .list(None, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.dedup_key)
        .collect();
    assert!(keys.contains(&"waiting/completed".to_owned()), "{keys:?}");
    assert!(
        keys.contains(&"abandoned/completed".to_owned()),
        "the abandoned delivery was put back and stored: {keys:?}"
    );
    assert!(!slow.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_panicking_handler_fails_its_attempt_and_is_retried() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = sqlite_inbox(&dir).await;
    let endpoint = WebhookEndpoint::inbox(verifier(), inbox.clone());
    post(&endpoint, "panics-once").await;
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = Arc::clone(&calls);
        move |_e: WebhookEvent, _m: InboxMeta| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(n > 0, "the handler panics on its first attempt");
                Ok::<(), HandlerError>(())
            }
        }
    };
    let attempts = InboxWorker::builder(inbox.clone(), handler)
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .build()
        .drain(Duration::from_secs(10))
        .await
        .expect("drain");
    assert_eq!(attempts, 2);
    let row = inbox.list(None, 1).await.expect("list").remove(0);
    assert_eq!((row.state, row.attempts), (State::Done, 2));
    assert_eq!(row.last_error, None, "done: no stale error");
    let codes: Vec<_> = inbox
        .trace(row.session_id.as_ref().expect("session").as_str())
        .await
        .expect("trace")
        .events
        .into_iter()
        .filter_map(|e| e.code)
        .collect();
    assert_eq!(codes, ["handler_panicked"], "the timeline keeps it");
}

/// A transactional handler needs a store with transactions: a store of one's own without them
/// is refused when the worker is built, not at the first row.
#[tokio::test]
async fn a_transactional_worker_on_a_store_without_transactions_is_refused() {
    struct Writes;
    #[async_trait]
    impl suki_ambient_inbox::TransactionalHandler<sqlx::SqliteConnection> for Writes {
        async fn handle(
            &self,
            _event: WebhookEvent,
            _meta: InboxMeta,
            _tx: &mut sqlx::SqliteConnection,
        ) -> Result<(), HandlerError> {
            Ok(())
        }
    }
    let dir = tempfile::tempdir().expect("dir");
    let inbox = Inbox::from_store(Switchable::open(&dir).await);
    assert!(matches!(
        InboxWorker::transactional(inbox, Writes).map(|_| ()),
        Err(StoreError::NoTransactions)
    ));
}
