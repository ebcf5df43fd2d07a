//! A fleet on one real Postgres: two receivers and four workers, 10,000 deliveries with 15 %
//! duplicates, workers killed mid-run: every unique event's effect happens exactly once with the
//! transactional handler.
#![cfg(feature = "postgres")]

mod common;

use std::time::Duration;

use async_trait::async_trait;
use suki_ambient_core::testing::completed;
use suki_ambient_core::{
    Bytes, HandlerError, SignedHeaders, UnixMillis, Verifier, WebhookEndpoint, WebhookEvent,
    WebhookSecret,
};
use suki_ambient_inbox::sqlx::{self, PgConnection};
use suki_ambient_inbox::{Inbox, InboxMeta, InboxWorker, TransactionalHandler};

const SECRET: &str = "fleet-secret";
const UNIQUE: usize = 10_000;

/// Writes the effect in the worker's transaction.
struct Effects;

#[async_trait]
impl TransactionalHandler<PgConnection> for Effects {
    async fn handle(
        &self,
        _event: WebhookEvent,
        meta: InboxMeta,
        tx: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO effects (dedup_key) VALUES ($1)")
            .bind(&meta.dedup_key)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// A pool on `url` with the `effects` table (no unique key: a double effect shows as a count of
/// 2, not as an error), and the verifier.
async fn effects_and_verifier(url: &str) -> (sqlx::PgPool, Verifier) {
    let pool = sqlx::PgPool::connect(url).await.expect("pool");
    sqlx::query("CREATE TABLE effects (dedup_key TEXT NOT NULL)")
        .execute(&pool)
        .await
        .expect("effects table");
    let verifier = Verifier::builder()
        .secret(SECRET)
        .build()
        .expect("verifier");
    (pool, verifier)
}

fn worker(inbox: Inbox, name: &str) -> suki_ambient_inbox::WorkerHandle {
    InboxWorker::transactional(inbox, Effects)
        .expect("a Postgres inbox")
        .owner(name)
        .concurrency(4)
        .lease(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(20))
        .build()
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn a_fleet_processes_every_unique_event_exactly_once_despite_kills() {
    let url = common::fresh_postgres().await;
    let receivers = [
        Inbox::connect(&url).await.expect("receiver 1"),
        Inbox::connect(&url).await.expect("receiver 2"),
    ];
    let (pool, verifier) = effects_and_verifier(&url).await;
    let endpoints: Vec<_> = receivers
        .iter()
        .map(|inbox| WebhookEndpoint::inbox(verifier.clone(), inbox.clone()))
        .collect();

    let mut workers: Vec<_> = (0..4)
        .map(|i| {
            let inbox = receivers[i % 2].clone();
            worker(inbox, &format!("w{i}"))
        })
        .collect();

    // 10,000 sessions, 15 % of them delivered a second time, to either receiver, 64 at once.
    let duplicates = UNIQUE * 15 / 100;
    let deliveries: Vec<usize> = (0..UNIQUE).chain(0..duplicates).collect();
    let mut sent = 0;
    let mut killed = false;
    for chunk in deliveries.chunks(64) {
        let mut tasks = tokio::task::JoinSet::new();
        for (j, &session) in chunk.iter().enumerate() {
            let endpoint = endpoints[(session + j) % 2].clone();
            tasks.spawn(async move {
                let body = completed(&format!("s-{session}"), "e").to_vec();
                let headers =
                    SignedHeaders::new(&WebhookSecret::from(SECRET), UnixMillis::now(), &body)
                        .to_header_map();
                endpoint.handle(&headers, Bytes::from(body)).await.status
            });
        }
        while let Some(status) = tasks.join_next().await {
            assert_eq!(status.expect("task"), 200);
        }
        sent += chunk.len();
        if !killed && sent >= deliveries.len() / 2 {
            // Kill two workers mid-run (no release: their leases must expire), start two more.
            killed = true;
            for handle in workers.drain(..2) {
                handle.kill();
            }
            workers.push(worker(receivers[0].clone(), "w4"));
            workers.push(worker(receivers[1].clone(), "w5"));
        }
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done = receivers[0].status().await.expect("status").counts.done;
        if done == UNIQUE as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {done} of {UNIQUE} done in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for handle in workers {
        handle.shutdown().await.expect("shutdown");
    }
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT dedup_key) FROM effects")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(distinct, UNIQUE as i64, "every unique event has its effect");
    assert_eq!(rows, UNIQUE as i64, "and only once");
}

/// Waits for a signal before writing its effect.
struct Slow {
    started: std::sync::Arc<tokio::sync::Notify>,
    go: std::sync::Arc<tokio::sync::Notify>,
}

#[async_trait]
impl TransactionalHandler<PgConnection> for Slow {
    async fn handle(
        &self,
        event: WebhookEvent,
        meta: InboxMeta,
        tx: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        Effects.handle(event, meta, &mut *tx).await?;
        self.started.notify_one();
        self.go.notified().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn a_worker_that_lost_its_lease_commits_nothing() {
    use std::sync::Arc;
    let url = common::fresh_postgres().await;
    let inbox = Inbox::connect(&url).await.expect("inbox");
    let (pool, verifier) = effects_and_verifier(&url).await;
    let endpoint = WebhookEndpoint::inbox(verifier, inbox.clone());
    let body = completed("taken-over", "e").to_vec();
    let headers =
        SignedHeaders::new(&WebhookSecret::from(SECRET), UnixMillis::now(), &body).to_header_map();
    assert_eq!(
        endpoint.handle(&headers, Bytes::from(body)).await.status,
        200
    );

    let (started, go) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let slow = Slow {
        started: Arc::clone(&started),
        go: Arc::clone(&go),
    };
    let running = InboxWorker::transactional(inbox.clone(), slow)
        .expect("postgres")
        .build()
        .spawn();
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the handler started");
    // Another worker takes the row over (what a claim after an expired lease does).
    sqlx::query("UPDATE suki_inbox_deliveries SET fence = fence + 1, lease_owner = 'other'")
        .execute(&pool)
        .await
        .expect("take over");
    go.notify_one();
    running.shutdown().await.expect("shutdown");
    let effects: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM effects")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        effects, 0,
        "the fenced-out worker's writes were rolled back"
    );
    let row = inbox.list(None, 1).await.expect("list").remove(0);
    assert_eq!(
        row.state,
        suki_ambient_inbox::State::Running,
        "left to the new holder"
    );
    assert_eq!(row.lease_owner.as_deref(), Some("other"));
}

/// Receiver A stores; an idle worker of receiver B (another `Inbox`, as another process) is
/// handed the row. Returns once B's handler ran, or panics after `within`.
async fn stored_by_a_handled_by_b(
    url: &str,
    b_worker: suki_ambient_inbox::InboxWorkerBuilder,
    handled: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    key: &str,
    within: Duration,
) {
    let a = Inbox::connect(url).await.expect("receiver A");
    let worker = b_worker.build().spawn();
    // Idle first: the delivery must reach B while it waits.
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.ingest(suki_ambient_inbox::conformance::delivery(key))
        .await
        .expect("ingest");
    let got = tokio::time::timeout(within, handled.recv())
        .await
        .unwrap_or_else(|_| panic!("{key}: B's worker was not handed the row within {within:?}"));
    assert_eq!(got.as_deref(), Some(key));
    worker.shutdown().await.expect("shutdown");
}

fn recording_worker(
    inbox: Inbox,
) -> (
    suki_ambient_inbox::InboxWorkerBuilder,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let builder = InboxWorker::builder(inbox, move |_e: WebhookEvent, meta: InboxMeta| {
        let _ = tx.send(meta.dedup_key.clone());
        async { Ok::<(), HandlerError>(()) }
    });
    (builder, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn a_delivery_stored_by_another_receiver_wakes_an_idle_worker_at_once() {
    let url = common::fresh_postgres().await;
    let b = Inbox::connect(&url).await.expect("receiver B");
    // A poll of ten minutes: only the notification can hand the row over within the bound.
    let (builder, mut handled) = recording_worker(b);
    let builder = builder.poll_interval(Duration::from_secs(600));
    stored_by_a_handled_by_b(
        &url,
        builder,
        &mut handled,
        "notified",
        Duration::from_secs(20),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn a_lost_notification_costs_one_poll_interval() {
    let url = common::fresh_postgres().await;
    let b = Inbox::connect(&url).await.expect("receiver B");
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    // No listener: what a notification lost with its connection leaves is the poll.
    let (builder, mut handled) = recording_worker(b.clone());
    let builder = builder
        .listen(false)
        .poll_interval(Duration::from_millis(300));
    stored_by_a_handled_by_b(
        &url,
        builder,
        &mut handled,
        "polled",
        Duration::from_secs(20),
    )
    .await;
    // The listener's connection killed under a running worker: it subscribes again, and the
    // delivery stored meanwhile is still handed over.
    let (builder, mut handled) = recording_worker(b);
    let worker = builder
        .poll_interval(Duration::from_millis(300))
        .build()
        .spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(&pool)
    .await
    .expect("terminate the listener");
    assert_eq!(killed, 1, "one listening connection");
    let a = Inbox::connect(&url).await.expect("receiver A");
    a.ingest(suki_ambient_inbox::conformance::delivery("after-loss"))
        .await
        .expect("ingest");
    let got = tokio::time::timeout(Duration::from_secs(20), handled.recv())
        .await
        .expect("handed over after the listener's connection was lost");
    assert_eq!(got.as_deref(), Some("after-loss"));
    worker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn one_worker_of_a_fleet_does_the_maintenance() {
    let url = common::fresh_postgres().await;
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let url = url.clone();
            async move {
                let inbox = Inbox::connect(&url).await.expect("inbox");
                InboxWorker::builder(inbox, |_e: WebhookEvent, _m: InboxMeta| async {
                    Ok::<(), HandlerError>(())
                })
                .owner(format!("worker-{i}"))
                .build()
                .spawn()
            }
        })
        .collect();
    let workers = futures_util::future::join_all(workers).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    let (owner, expires): (Option<String>, i64) = sqlx::query_as(
        "SELECT owner, expires_at FROM suki_inbox_leases WHERE name = 'maintenance'",
    )
    .fetch_one(&pool)
    .await
    .expect("lease");
    let owner = owner.expect("one worker leads");
    assert!(owner.starts_with("worker-"), "{owner}");
    assert!(expires > 0);
    for w in workers {
        w.shutdown().await.expect("shutdown");
    }
}

/// A pause made through one receiver holds for the workers of another (the fleet): they claim
/// nothing while it lasts, and resume when it is lifted, with the actions in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn a_pause_holds_for_every_worker_of_the_fleet() {
    use suki_ambient_inbox::{Action, Actor};
    let url = common::fresh_postgres().await;
    let a = Inbox::connect(&url).await.expect("receiver A");
    let b = Inbox::connect(&url).await.expect("receiver B");
    let operator = Actor::new("ops", "test");
    let pause = Action::Pause {
        kind: None,
        reason: Some("EHR down".into()),
    };
    assert_eq!(a.act(&operator, pause).await.expect("pause"), 1);
    let (builder, mut handled) = recording_worker(b.clone());
    let worker = builder
        .poll_interval(Duration::from_millis(50))
        .build()
        .spawn();
    a.ingest(suki_ambient_inbox::conformance::delivery("held"))
        .await
        .expect("stored while paused");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), handled.recv())
            .await
            .is_err(),
        "B's worker claimed while the fleet was paused"
    );
    let health = b.health(&Default::default()).await;
    assert_eq!(health.status, suki_ambient_inbox::HealthStatus::Paused);
    a.act(&operator, Action::Resume { kind: None })
        .await
        .expect("resume");
    let got = tokio::time::timeout(Duration::from_secs(20), handled.recv())
        .await
        .expect("handled after the resume");
    assert_eq!(got.as_deref(), Some("held"));
    worker.shutdown().await.expect("shutdown");
    let audit = b.audit(UnixMillis(0), 10).await.expect("audit");
    let actions: Vec<_> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["resume", "pause"], "newest first");
}
