//! The embedded store: SQLite (bundled), WAL, `synchronous=FULL`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreError;
use crate::sql::{CLAIM_EXPECTATIONS_SQLITE, CLAIM_SQLITE, sql_store};

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store: one file, for one host (several processes on that host may share it).
/// A delivery is on disk when its insert returns (WAL with `synchronous=FULL`).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The database file and its identity when opened (`None` in memory), so that the health
    /// probe notices a file deleted or replaced under the running process, which SQLite itself
    /// does not (it keeps writing to the unlinked file).
    file: Option<(PathBuf, FileId)>,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url` (`sqlite://path`,
    /// `sqlite::memory:`) and migrates its schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(SqliteConnectOptions::from_str(url)?.create_if_missing(true)).await
    }

    /// Opens the inbox at `url` only if it exists (the file is there and holds an inbox's
    /// tables), migrating it to this version's schema; [`StoreError::NotFound`] otherwise.
    /// Tools that read an inbox use this, so that a mistyped path creates nothing.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let not_found = || StoreError::NotFound {
            url: crate::inbox::redact_url(url),
        };
        let options = SqliteConnectOptions::from_str(url)?.create_if_missing(false);
        if is_memory(url) || !options.get_filename().is_file() {
            return Err(not_found());
        }
        // Look before migrating: a file that is not an inbox is left as it is.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'suki_inbox_deliveries'",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        if tables == 0 {
            return Err(not_found());
        }
        Self::connect_with(options).await
    }

    /// Opens with your own connect options (e.g. another busy timeout, or
    /// `.pragma("max_page_count", …)` to bound the file), migrating the schema. WAL and
    /// `synchronous=FULL` are set on top of them: the inbox's durability depends on them.
    pub async fn connect_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let memory = options.get_filename().as_os_str().is_empty()
            || options
                .get_filename()
                .to_string_lossy()
                .contains(":memory:");
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        // An in-memory database exists once per connection: keep it to one.
        let max = if memory { 1 } else { 4 };
        let path = options.get_filename().to_path_buf();
        let pool = SqlitePoolOptions::new()
            // A ping before each use would double the round trips of every statement; a
            // broken connection fails its statement instead, which the callers handle.
            .test_before_acquire(false)
            .max_connections(max)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        let file = if memory {
            None
        } else {
            FileId::of(&path).map(|id| (path, id))
        };
        Ok(Self { pool, file })
    }

    /// [`StoreError::FileGone`] when the database file is no longer the one opened.
    fn check_file(&self) -> Result<(), StoreError> {
        match &self.file {
            Some((path, id)) if FileId::of(path).as_ref() != Some(id) => Err(StoreError::FileGone),
            _ => Ok(()),
        }
    }

    /// The connection pool (e.g. to read the table from your own code).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn is_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// What identifies a file (device and inode on Unix; elsewhere only that it exists).
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileId(u64, u64);

impl FileId {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            Some(Self(meta.dev(), meta.ino()))
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Some(Self(0, 0))
        }
    }
}

// Claims take the write lock at once (`BEGIN IMMEDIATE`), so two claimers never read the same
// due rows.
sql_store!(
    SqliteStore,
    SqlitePool,
    claim = CLAIM_SQLITE,
    claim_expectations = CLAIM_EXPECTATIONS_SQLITE,
    begin = "BEGIN IMMEDIATE"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{CLAIM_SQLITE, LIST_DEAD, LIST_RETRYING, OLDEST_UNFINISHED};

    /// SQLite plans without statistics: each frequent query must reach its own partial index,
    /// not a scan of the table or of every row of a state (a claim once sorted every due row).
    #[tokio::test]
    async fn frequent_queries_use_their_indexes() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("plan.db").display());
        let store = SqliteStore::connect(&url).await.expect("store");
        for (query, index) in [
            (CLAIM_SQLITE, "suki_inbox_deliveries_unfinished "),
            (OLDEST_UNFINISHED, "suki_inbox_deliveries_unfinished_age"),
            (LIST_RETRYING, "suki_inbox_deliveries_retrying"),
            (LIST_DEAD, "suki_inbox_deliveries_dead"),
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
