//! The inbox in the application's own database: its own migration history beside the
//! application's sqlx migrations (in either order), the application's pool, a Postgres schema of
//! its own, an inbox of an earlier release adopted, a changed or newer history refused.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

mod common;

use suki_ambient_inbox::conformance::delivery;
use suki_ambient_inbox::{Inbox, StoreError, store::Dialect, store::migrations};

/// The history of an inbox of this version: every migration, the first `adopted` adopted.
fn expected_history(dialect: Dialect, adopted: i64) -> Vec<(i64, bool)> {
    migrations(dialect)
        .iter()
        .map(|m| (m.version, m.version <= adopted))
        .collect()
}

/// What the application's `_sqlx_migrations` holds: only its own versions.
const APP_VERSIONS: &str = "SELECT version FROM _sqlx_migrations ORDER BY version";

/// What releases before 0.2 did: the inbox's versions 1-4 through sqlx's migrator, recorded in
/// `_sqlx_migrations`.
fn earlier_release(dialect: suki_ambient_inbox::store::Dialect) -> sqlx::migrate::Migrator {
    let migrations = suki_ambient_inbox::store::migrations(dialect)[..4]
        .iter()
        .map(|m| {
            sqlx::migrate::Migration::new(
                m.version,
                m.description.into(),
                sqlx::migrate::MigrationType::Simple,
                m.sql.into(),
                false,
            )
        })
        .collect::<Vec<_>>();
    sqlx::migrate::Migrator {
        migrations: migrations.into(),
        ..sqlx::migrate::Migrator::DEFAULT
    }
}

/// The inbox stores and hands out a delivery.
async fn works(inbox: &Inbox, key: &str) {
    inbox.ingest(delivery(key)).await.expect("ingest");
    let status = inbox.status().await.expect("status");
    assert_eq!(status.counts.pending, 1, "{key}");
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
    use suki_ambient_inbox::MigrateError;

    async fn app_versions(pool: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar(APP_VERSIONS)
            .fetch_all(pool)
            .await
            .expect("the application's history")
    }

    async fn app_pool(dir: &std::path::Path) -> SqlitePool {
        let options = SqliteConnectOptions::new()
            .filename(dir.join("app.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        SqlitePool::connect_with(options).await.expect("app pool")
    }

    #[tokio::test]
    async fn the_application_migrates_before_and_after_the_inbox() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = app_pool(dir.path()).await;
        let app = sqlx::migrate!("tests/app_migrations/sqlite");
        app.run(&pool).await.expect("the application's migrations");
        let inbox = Inbox::from_pool(pool.clone()).await.expect("inbox");
        app.run(&pool)
            .await
            .expect("the application's migrations again");
        assert_eq!(app_versions(&pool).await, [1, 2]);
        let history: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, adopted FROM suki_inbox_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .expect("inbox history");
        assert_eq!(history, expected_history(Dialect::Sqlite, 0));
        works(&inbox, "s/completed").await;
        // The application's tables are untouched and usable.
        sqlx::query("INSERT INTO app_patients (id, name) VALUES (1, 'x')")
            .execute(&pool)
            .await
            .expect("app table");
    }

    #[tokio::test]
    async fn the_inbox_first_then_the_application() {
        let dir = tempfile::tempdir().expect("dir");
        let url = common::sqlite_url(dir.path(), "app.db");
        let inbox = Inbox::connect(&url).await.expect("inbox");
        let pool = app_pool(dir.path()).await;
        sqlx::migrate!("tests/app_migrations/sqlite")
            .run(&pool)
            .await
            .expect("the application's migrations after the inbox's");
        assert_eq!(app_versions(&pool).await, [1, 2]);
        // Reconnecting migrates nothing and fails nothing.
        let again = Inbox::connect(&url).await.expect("inbox again");
        works(&again, "s/completed").await;
        drop(inbox);
    }

    #[tokio::test]
    async fn a_pool_that_is_not_durable_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("app.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
        let pool = SqlitePool::connect_with(options).await.expect("pool");
        let err = Inbox::from_pool(pool)
            .await
            .expect_err("synchronous=NORMAL");
        assert!(matches!(err, StoreError::NotDurable(_)), "{err}");
        let pool = app_pool(dir.path()).await;
        let err = Inbox::pool_builder(pool)
            .schema("suki")
            .connect()
            .await
            .expect_err("a schema on SQLite");
        assert!(matches!(err, StoreError::Unsupported(_)), "{err}");
    }

    #[tokio::test]
    async fn an_inbox_of_an_earlier_release_is_adopted() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = app_pool(dir.path()).await;
        // What earlier releases did: the inbox's versions 1-4 in `_sqlx_migrations`.
        earlier_release(suki_ambient_inbox::store::Dialect::Sqlite)
            .run(&pool)
            .await
            .expect("the earlier release's migrations");
        sqlx::query(
            "INSERT INTO suki_inbox_deliveries (dedup_key, source, kind, generated_at, \
             received_at, body, run_after, updated_at) VALUES ('old/completed', 'webhook', \
             'completed', 1, 1, x'7b7d', 1, 1)",
        )
        .execute(&pool)
        .await
        .expect("an old row");
        let inbox = Inbox::from_pool(pool.clone()).await.expect("adopted");
        let history: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, adopted FROM suki_inbox_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .expect("inbox history");
        assert_eq!(history, expected_history(Dialect::Sqlite, 4));
        assert_eq!(inbox.status().await.expect("status").counts.pending, 1);
    }

    #[tokio::test]
    async fn a_changed_or_newer_history_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let url = common::sqlite_url(dir.path(), "inbox.db");
        Inbox::connect(&url).await.expect("inbox");
        let conn = SqlitePool::connect(&url).await.expect("pool");
        sqlx::query("UPDATE suki_inbox_migrations SET checksum = 'x' WHERE version = 2")
            .execute(&conn)
            .await
            .expect("tamper");
        let err = Inbox::connect(&url).await.expect_err("changed");
        assert!(
            matches!(
                err,
                StoreError::Migrate(MigrateError::Changed { version: 2 })
            ),
            "{err}"
        );
        sqlx::query("UPDATE suki_inbox_migrations SET checksum = $1 WHERE version = 2")
            .bind(
                suki_ambient_inbox::store::migrations(suki_ambient_inbox::store::Dialect::Sqlite)
                    [1]
                .checksum(),
            )
            .execute(&conn)
            .await
            .expect("untamper");
        Inbox::connect(&url).await.expect("the history restored");
        sqlx::query("INSERT INTO suki_inbox_migrations VALUES (99, 'future', 'x', 0, FALSE)")
            .execute(&conn)
            .await
            .expect("a newer version");
        let err = Inbox::connect(&url).await.expect_err("newer");
        let latest = migrations(Dialect::Sqlite).last().map(|m| m.version);
        assert!(
            matches!(
                err,
                StoreError::Migrate(MigrateError::TooNew { found: 99, known })
                    if Some(known) == latest
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn migrate_false_leaves_the_schema_to_you() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = app_pool(dir.path()).await;
        let inbox = Inbox::pool_builder(pool.clone())
            .migrate(false)
            .connect()
            .await
            .expect("inbox without migrating");
        let tables: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'suki_inbox_%'")
                .fetch_one(&pool)
                .await
                .expect("tables");
        assert_eq!(tables, 0);
        inbox.migrate().await.expect("migrate");
        inbox.migrate().await.expect("migrate twice");
        works(&inbox, "s/completed").await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use sqlx::PgPool;
    use suki_ambient_inbox::{InboxWorker, PostgresStore};

    async fn app_versions(pool: &PgPool) -> Vec<i64> {
        sqlx::query_scalar(APP_VERSIONS)
            .fetch_all(pool)
            .await
            .expect("the application's history")
    }

    #[tokio::test]
    #[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
    async fn the_application_migrates_before_and_after_the_inbox() {
        let url = common::fresh_postgres().await;
        let pool = PgPool::connect(&url).await.expect("app pool");
        let app = sqlx::migrate!("tests/app_migrations/postgres");
        app.run(&pool).await.expect("the application's migrations");
        let inbox = Inbox::from_pool(pool.clone()).await.expect("inbox");
        app.run(&pool)
            .await
            .expect("the application's migrations again");
        assert_eq!(app_versions(&pool).await, [1, 2]);
        works(&inbox, "s/completed").await;

        // And the other order, in another database.
        let url = common::fresh_postgres().await;
        let first = Inbox::builder(&url)
            .max_connections(2)
            .connect()
            .await
            .expect("inbox first");
        let pool = PgPool::connect(&url).await.expect("app pool");
        app.run(&pool)
            .await
            .expect("the application's after the inbox's");
        assert_eq!(app_versions(&pool).await, [1, 2]);
        works(&first, "s/completed").await;
        let versions: Vec<(i64,)> =
            sqlx::query_as("SELECT version FROM suki_inbox_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .expect("inbox history");
        assert_eq!(versions.len(), migrations(Dialect::Postgres).len());
    }

    #[tokio::test]
    #[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
    async fn a_schema_of_its_own_used_through_a_pool_that_points_elsewhere() {
        let url = common::fresh_postgres().await;
        // The application's pool searches `public` only.
        let pool = PgPool::connect(&url).await.expect("app pool");
        let inbox = Inbox::pool_builder(pool.clone())
            .schema("suki")
            .connect()
            .await
            .expect("inbox in schema suki");
        let (in_schema, in_public): (bool, bool) = sqlx::query_as(
            "SELECT to_regclass('suki.suki_inbox_deliveries') IS NOT NULL, \
                    to_regclass('public.suki_inbox_deliveries') IS NOT NULL",
        )
        .fetch_one(&pool)
        .await
        .expect("where");
        assert!(in_schema && !in_public);
        // The triggers (counts, expectations) find their tables from a connection whose search
        // path does not name the schema.
        works(&inbox, "s/completed").await;
        let worker = InboxWorker::builder(inbox.clone(), |_e, _m| async {
            Ok::<(), suki_ambient_core::HandlerError>(())
        })
        .poll_interval(std::time::Duration::from_millis(20))
        .build()
        .spawn();
        for _ in 0..200 {
            if inbox.status().await.expect("status").counts.done == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        worker.shutdown().await.expect("shutdown");
        assert_eq!(inbox.status().await.expect("status").counts.done, 1);
        // Two inboxes in two schemas of one database are apart.
        let other = Inbox::pool_builder(pool.clone())
            .schema("suki_other")
            .connect()
            .await
            .expect("second schema");
        assert_eq!(other.status().await.expect("status").counts.done, 0);
        let err = Inbox::pool_builder(pool)
            .schema("x\"; DROP TABLE y; --")
            .connect()
            .await
            .expect_err("a bad name");
        assert!(matches!(err, StoreError::InvalidSchema { .. }), "{err}");
    }

    #[tokio::test]
    #[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
    async fn a_schema_store_passes_the_conformance_suite() {
        suki_ambient_inbox::conformance::run(|| async {
            let pool = PgPool::connect(&common::fresh_postgres().await)
                .await
                .expect("pool");
            PostgresStore::from_pool_in_schema(pool, "suki_conformance")
                .await
                .expect("store")
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
    async fn concurrent_starts_migrate_once() {
        let url = common::fresh_postgres().await;
        let starts: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Inbox::connect(&url).await.map(|_| ()) })
            })
            .collect();
        for start in starts {
            start.await.expect("task").expect("connect");
        }
        let pool = PgPool::connect(&url).await.expect("pool");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM suki_inbox_migrations")
            .fetch_one(&pool)
            .await
            .expect("history");
        assert_eq!(n, migrations(Dialect::Postgres).len() as i64);
    }

    #[tokio::test]
    #[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
    async fn an_inbox_of_an_earlier_release_is_adopted() {
        let url = common::fresh_postgres().await;
        let pool = PgPool::connect(&url).await.expect("pool");
        earlier_release(suki_ambient_inbox::store::Dialect::Postgres)
            .run(&pool)
            .await
            .expect("the earlier release's migrations");
        let inbox = Inbox::from_pool(pool.clone()).await.expect("adopted");
        let history: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, adopted FROM suki_inbox_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .expect("inbox history");
        assert_eq!(history, expected_history(Dialect::Postgres, 4));
        works(&inbox, "s/completed").await;
    }

    #[tokio::test]
    #[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
    async fn the_transactional_handler_works_however_the_inbox_was_built() {
        let url = common::fresh_postgres().await;
        let store = PostgresStore::connect(&url).await.expect("store");
        let inbox = Inbox::from_store(store);
        assert!(InboxWorker::transactional(inbox, Noop).is_ok());
        let dir = tempfile::tempdir().expect("dir");
        let sqlite = Inbox::connect(&common::sqlite_url(dir.path(), "x.db"))
            .await
            .expect("sqlite");
        // A Postgres handler on a SQLite inbox is refused when the worker is built.
        assert!(matches!(
            InboxWorker::transactional(sqlite, Noop).map(|_| ()),
            Err(StoreError::ConnectionMismatch { store, handler })
                if store.contains("Sqlite") && handler.contains("PgConnection")
        ));
    }

    struct Noop;

    #[async_trait::async_trait]
    impl suki_ambient_inbox::TransactionalHandler<sqlx::PgConnection> for Noop {
        async fn handle(
            &self,
            _event: suki_ambient_core::WebhookEvent,
            _meta: suki_ambient_inbox::InboxMeta,
            _tx: &mut sqlx::PgConnection,
        ) -> Result<(), suki_ambient_core::HandlerError> {
            Ok(())
        }
    }
}
