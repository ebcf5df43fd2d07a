//! Health tells the truth: red (503, `store_unwritable`) while the store cannot commit (a full
//! disk, a database locked by another process, a database file deleted under the receiver, a
//! Postgres table locked), and green again by itself once it can, with no restart.
#![cfg(feature = "sqlite")]

mod common;

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::SqliteConnectOptions;
use suki_ambient_core::UnixMillis;
use suki_ambient_inbox::store::NewDelivery;
use suki_ambient_inbox::{Health, HealthThresholds, Inbox, SqliteStore};

/// Probes at every check, and gives up on a probe after 1 s.
fn eager() -> HealthThresholds {
    HealthThresholds {
        write_probe_every: Duration::ZERO,
        write_probe_timeout: Duration::from_secs(1),
        ..HealthThresholds::default()
    }
}

/// A delivery received now.
fn delivery(key: &str) -> NewDelivery {
    let mut d = suki_ambient_inbox::conformance::delivery(key);
    d.received_at = UnixMillis::now();
    d
}

fn unwritable(health: &Health) -> bool {
    !health.is_healthy()
        && !health.store_writable
        && health
            .problems
            .contains(&suki_ambient_inbox::ops::Problem::StoreUnwritable)
}

/// Checks health until `pred` holds (a few seconds at most); the last answer.
#[cfg(any(feature = "axum", feature = "postgres"))]
async fn until(inbox: &Inbox, pred: impl Fn(&Health) -> bool) -> Health {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health = inbox.health(&eager()).await;
        if pred(&health) || tokio::time::Instant::now() > deadline {
            return health;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Serves `inbox`'s health routes at `/healthz` on loopback, checking at every request; the
/// URL of `/healthz` and the server's task.
#[cfg(feature = "axum")]
async fn serve_health(inbox: &Inbox) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let route = format!("http://{}/healthz", listener.local_addr().expect("addr"));
    let app = axum::Router::new().nest(
        "/healthz",
        suki_ambient_inbox::health_router(
            inbox.clone(),
            HealthThresholds {
                counts_max_age: Duration::ZERO,
                ..eager()
            },
        ),
    );
    (
        route,
        tokio::spawn(async move { axum::serve(listener, app).await }),
    )
}

#[cfg(feature = "axum")] // also asks the health route
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_another_process_turns_health_red_then_green() {
    let dir = tempfile::tempdir().expect("dir");
    let url = common::sqlite_url(dir.path(), "inbox.db");
    let inbox = Inbox::connect(&url).await.expect("inbox");
    assert!(inbox.health(&eager()).await.is_healthy());

    // Another process takes the write lock and keeps it.
    let mut other = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .expect("lock");
    let health = until(&inbox, unwritable).await;
    assert!(unwritable(&health), "{health:?}");
    assert!(health.store_reachable, "reads still work: {health:?}");
    let json = serde_json::to_string(&health).expect("json");
    assert!(
        json.contains(r#""problems":["store_unwritable"]"#),
        "{json}"
    );
    // The route a load balancer asks: 503, so it stops sending Suki's traffic here.
    let (route, server) = serve_health(&inbox).await;
    let ready = format!("{route}/ready");
    let answer = reqwest::get(&ready).await.expect("get");
    assert_eq!(answer.status(), 503, "it cannot store: not ready");
    assert!(
        answer
            .text()
            .await
            .expect("body")
            .contains("store_unwritable")
    );
    let answer = reqwest::get(&route).await.expect("get");
    assert_eq!(answer.status(), 503);
    assert!(
        answer
            .text()
            .await
            .expect("body")
            .contains("store_unwritable")
    );

    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("unlock");
    let health = until(&inbox, Health::is_healthy).await;
    assert!(health.is_healthy(), "green again, no restart: {health:?}");
    assert_eq!(reqwest::get(&route).await.expect("get").status(), 200);
    assert_eq!(reqwest::get(&ready).await.expect("get").status(), 200);
    server.abort();
}

/// Suki sends each webhook once: a receiver that can store stays ready whatever waits behind
/// it (an EHR down for an hour), and only health (for alerting) turns red; readiness fails
/// when the process shuts down.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_turns_health_red_but_never_readiness() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    // A row received long ago and still pending: the backlog is far past 15 minutes.
    inbox
        .ingest(suki_ambient_inbox::conformance::delivery("old"))
        .await
        .expect("stored");
    let (base, server) = serve_health(&inbox).await;
    for path in ["", "/status"] {
        let answer = reqwest::get(format!("{base}{path}")).await.expect("get");
        assert_eq!(answer.status(), 503, "{path}");
        let body = answer.text().await.expect("body");
        assert!(body.contains("oldest_unfinished_too_old"), "{body}");
    }
    let answer = reqwest::get(format!("{base}/ready")).await.expect("get");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.text().await.expect("body"),
        r#"{"ready":true,"problems":[]}"#
    );
    inbox.shutting_down();
    let answer = reqwest::get(format!("{base}/ready")).await.expect("get");
    assert_eq!(answer.status(), 503);
    assert!(answer.text().await.expect("body").contains("shutting_down"));
    // Still storing what is sent meanwhile.
    inbox.ingest(delivery("late")).await.expect("stored");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_turns_health_red_and_freed_space_green() {
    let dir = tempfile::tempdir().expect("dir");
    let url = common::sqlite_url(dir.path(), "inbox.db");
    // A database that may grow to 300 pages: SQLite answers SQLITE_FULL ("database or disk is
    // full") past it, exactly as on a full disk.
    let options = SqliteConnectOptions::from_str(&url)
        .expect("url")
        .create_if_missing(true)
        .pragma("max_page_count", "300");
    let store = SqliteStore::connect_with(options).await.expect("store");
    let inbox = Inbox::from_store(store.clone());
    assert!(inbox.health(&eager()).await.is_healthy());

    let mut stored = 0;
    let full = loop {
        let mut d = delivery(&format!("big-{stored}"));
        d.body = vec![b'x'; 64 * 1024].into();
        match inbox.ingest(d).await {
            Ok(_) => stored += 1,
            Err(err) => break err,
        }
        assert!(stored < 100, "the database never filled up");
    };
    assert!(full.to_string().contains("full"), "{full}");
    let health = inbox.health(&eager()).await;
    assert!(
        unwritable(&health),
        "red while deliveries cannot be stored: {health:?}"
    );

    // Space freed (an operator deleted rows): the next delivery is stored, and health is green.
    sqlx::query("DELETE FROM suki_inbox_deliveries")
        .execute(store.pool())
        .await
        .expect("delete");
    inbox.ingest(delivery("after")).await.expect("stored again");
    let health = inbox.health(&eager()).await;
    assert!(health.is_healthy(), "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_file_deleted_under_the_receiver_is_detected() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("inbox.db");
    let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    assert!(inbox.health(&eager()).await.is_healthy());
    std::fs::remove_file(&path).expect("delete");
    // SQLite itself keeps writing to the unlinked file: the probe notices.
    let health = inbox.health(&eager()).await;
    assert!(unwritable(&health), "{health:?}");
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn a_locked_postgres_table_turns_health_red_then_green() {
    let url = common::fresh_postgres().await;
    let inbox = Inbox::connect(&url).await.expect("inbox");
    assert!(inbox.health(&eager()).await.is_healthy());
    let mut other = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut other)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE suki_inbox_probe IN ACCESS EXCLUSIVE MODE")
        .execute(&mut other)
        .await
        .expect("lock");
    let health = until(&inbox, unwritable).await;
    assert!(unwritable(&health), "{health:?}");
    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("unlock");
    let health = until(&inbox, Health::is_healthy).await;
    assert!(health.is_healthy(), "{health:?}");
}

/// A check answers within its bound however the store fails: with the probe's table and the
/// counts locked by another session (a server that does not answer), health answers red
/// (unwritable and unreachable) instead of waiting for the store. (It once took the pool's
/// acquire timeout plus the probe's, one after the other; with the counts locked it waited for
/// as long as the lock was held.)
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn health_answers_while_the_store_does_not() {
    let url = common::fresh_postgres().await;
    let inbox = Inbox::connect(&url).await.expect("inbox");
    assert!(inbox.health(&eager()).await.is_healthy());
    let mut other = sqlx::PgConnection::connect(&url).await.expect("connect");
    for statement in [
        "BEGIN",
        "LOCK TABLE suki_inbox_probe IN ACCESS EXCLUSIVE MODE",
        "LOCK TABLE suki_inbox_counts IN ACCESS EXCLUSIVE MODE",
    ] {
        sqlx::query(statement)
            .execute(&mut other)
            .await
            .expect(statement);
    }
    let thresholds = HealthThresholds {
        write_probe_every: Duration::ZERO,
        counts_max_age: Duration::ZERO,
        ..HealthThresholds::default()
    };
    // A guard against a hang, far above the bound (1 s): not a measurement.
    let health = tokio::time::timeout(Duration::from_secs(60), inbox.health(&thresholds))
        .await
        .expect("health answers while the store is locked");
    assert!(unwritable(&health), "{health:?}");
    assert!(
        health
            .problems
            .contains(&suki_ambient_inbox::ops::Problem::StoreUnreachable),
        "{health:?}"
    );
    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("unlock");
    let health = until(&inbox, Health::is_healthy).await;
    assert!(health.is_healthy(), "{health:?}");
}

/// A flood of health checks costs the store one probe write per interval, however many
/// checks run at once (the benchmark `inbox_health` measures what they cost at 10^6 rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_checks_probes_the_store_once_per_interval() {
    let dir = tempfile::tempdir().expect("dir");
    let url = common::sqlite_url(dir.path(), "inbox.db");
    let inbox = Inbox::connect(&url).await.expect("inbox");
    // Count the probe's writes with a trigger of the test's own.
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query(
        "CREATE TABLE probe_log (at INTEGER); \
         CREATE TRIGGER probe_logged AFTER UPDATE ON suki_inbox_probe \
         BEGIN INSERT INTO probe_log VALUES (NEW.probed_at); END;",
    )
    .execute(&mut conn)
    .await
    .expect("trigger");
    let relaxed = HealthThresholds::default();
    let mut checks = Vec::new();
    for _ in 0..64 {
        let inbox = inbox.clone();
        checks.push(tokio::spawn(async move { inbox.health(&relaxed).await }));
    }
    for check in checks {
        assert!(check.await.expect("check").is_healthy());
    }
    let probes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM probe_log")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(probes, 1, "64 concurrent checks, one probe write");
    // With a probe due at every check, each one writes.
    for _ in 0..3 {
        assert!(inbox.health(&eager()).await.is_healthy());
    }
    let probes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM probe_log")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(probes, 4);
}
