//! The embedded store: SQLite (bundled), WAL, `synchronous=FULL`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreError;
use crate::settings::Settings;
use crate::sql::{Db as _, FileId, SqlStore, SqliteDialect};

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store: one file, for one host (several processes on that host may share it).
/// A delivery is on disk when its insert returns (WAL with `synchronous=FULL`).
pub type SqliteStore = SqlStore<SqliteDialect>;

impl SqlStore<SqliteDialect> {
    /// Opens (creating it if missing) the database at `url` (`sqlite://path`,
    /// `sqlite::memory:`) and migrates its schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::with_settings(url, true, &Settings::default()).await
    }

    /// Opens the inbox at `url` only if it exists (the file is there and holds an inbox's
    /// tables), migrating it to this version's schema; [`StoreError::NotFound`] otherwise.
    /// Tools that read an inbox use this, so that a mistyped path creates nothing.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::with_settings(url, false, &Settings::default()).await
    }

    pub(crate) async fn with_settings(
        url: &str,
        create: bool,
        settings: &Settings,
    ) -> Result<Self, StoreError> {
        settings.schema_for(crate::migrate::Dialect::Sqlite)?;
        let options = SqliteConnectOptions::from_str(url)
            .db()?
            .create_if_missing(create);
        if !create {
            let not_found = || StoreError::NotFound {
                url: crate::settings::redact_url(url),
            };
            if is_memory(url) || !options.get_filename().is_file() {
                return Err(not_found());
            }
            // Look before migrating: a file that is not an inbox is left as it is.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .db()?;
            let tables: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'suki_inbox_deliveries'",
            )
            .fetch_one(&pool)
            .await
            .db()?;
            pool.close().await;
            if tables == 0 {
                return Err(not_found());
            }
        }
        Self::connect_options(options, settings).await
    }

    /// Opens with your own connect options (e.g. another busy timeout, or
    /// `.pragma("max_page_count", …)` to bound the file), migrating the schema. WAL and
    /// `synchronous=FULL` are set on top of them: the inbox's durability depends on them.
    pub async fn connect_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        Self::connect_options(options, &Settings::default()).await
    }

    async fn connect_options(
        options: SqliteConnectOptions,
        settings: &Settings,
    ) -> Result<Self, StoreError> {
        let memory = options.get_filename().as_os_str().is_empty()
            || options
                .get_filename()
                .to_string_lossy()
                .contains(":memory:");
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            // What is deleted or replaced (an erased body, a purged row, a body re-sealed) is
            // overwritten with zeros in the file, not left in its free pages.
            .pragma("secure_delete", "ON")
            .busy_timeout(BUSY_TIMEOUT);
        // An in-memory database exists once per connection: keep it to one.
        let max = if memory {
            1
        } else {
            settings.max_connections.unwrap_or(4)
        };
        let path = options.get_filename().to_path_buf();
        let pool = SqlitePoolOptions::new()
            // A ping before each use would double the round trips of every statement; a
            // broken connection fails its statement instead, which the callers handle.
            .test_before_acquire(false)
            .max_connections(max)
            .acquire_timeout(settings.acquire_timeout.unwrap_or(Duration::from_secs(30)))
            .connect_with(options)
            .await
            .db()?;
        let mut store = Self::new(pool, None);
        if settings.migrate {
            crate::seam::Store::migrate(&store).await?;
        }
        if !memory {
            store.file = FileId::of(&path).map(|id| (path, id));
        }
        Ok(store)
    }

    /// The inbox in your application's own pool (its tables beside yours, in the same file),
    /// migrated to this version's schema in the inbox's own history table.
    ///
    /// The inbox promises that a delivery is on disk before the 200: the pool must use WAL and
    /// `synchronous=FULL` (or `EXTRA`), which sqlx's defaults for a file do; a pool that does
    /// not is refused with [`StoreError::NotDurable`] (one of its connections is checked).
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        Self::from_pool_with(pool, &Settings::default()).await
    }

    pub(crate) async fn from_pool_with(
        pool: SqlitePool,
        settings: &Settings,
    ) -> Result<Self, StoreError> {
        settings.schema_for(crate::migrate::Dialect::Sqlite)?;
        let mut conn = pool.acquire().await.db()?;
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .db()?;
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .db()?;
        let file: Option<String> =
            sqlx::query_as::<_, (i64, String, Option<String>)>("PRAGMA database_list")
                .fetch_all(&mut *conn)
                .await
                .db()?
                .into_iter()
                .find(|(_, name, _)| name == "main")
                .and_then(|(_, _, file)| file)
                .filter(|f| !f.is_empty());
        drop(conn);
        if file.is_some() && !journal.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotDurable(
                "its journal mode is not WAL (set .journal_mode(SqliteJournalMode::Wal))",
            ));
        }
        if synchronous < 2 {
            return Err(StoreError::NotDurable(
                "its connections do not use synchronous=FULL (set .synchronous(SqliteSynchronous::Full))",
            ));
        }
        let mut store = Self::new(pool, None);
        if settings.migrate {
            crate::seam::Store::migrate(&store).await?;
        }
        if let Some(file) = file {
            let path = std::path::PathBuf::from(file);
            store.file = FileId::of(&path).map(|id| (path, id));
        }
        Ok(store)
    }
}

fn is_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite plans without statistics: each frequent query must reach its own partial index,
    /// not a scan of the table or of every row of a state (a claim once sorted every due row).
    #[tokio::test]
    async fn frequent_queries_use_their_indexes() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("plan.db").display());
        let store = SqliteStore::connect(&url).await.expect("store");
        let sql = &store.sql;
        for (query, index) in [
            (&sql.queue.claim, "suki_inbox_deliveries_unfinished "),
            (
                &sql.read.oldest_unfinished,
                "suki_inbox_deliveries_unfinished_age",
            ),
            (&sql.read.list_retrying, "suki_inbox_deliveries_retrying"),
            (&sql.read.list_dead, "suki_inbox_deliveries_dead"),
        ] {
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {query}"))
                    .bind("w")
                    .bind(0_i64)
                    .bind(0_i64)
                    .bind(1_i64)
                    .fetch_all(store.pool())
                    .await
                    .expect("plan");
            let plan: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
            let plan = plan.join(" | ");
            assert!(
                plan.contains(&format!("USING INDEX {index}"))
                    || plan.contains(&format!("USING COVERING INDEX {index}")),
                "{query}\n→ {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{query}\n→ {plan}");
        }
    }
}
