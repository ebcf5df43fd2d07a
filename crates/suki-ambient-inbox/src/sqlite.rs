//! The embedded store: SQLite (bundled), WAL, `synchronous=FULL`.

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
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url` (`sqlite://path`,
    /// `sqlite::memory:`) and migrates its schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        // An in-memory database exists once per connection: keep it to one.
        let max = if url.contains(":memory:") || url.contains("mode=memory") {
            1
        } else {
            4
        };
        let pool = SqlitePoolOptions::new()
            // A ping before each use would double the round trips of every statement; a
            // broken connection fails its statement instead, which the callers handle.
            .test_before_acquire(false)
            .max_connections(max)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The connection pool (e.g. to read the table from your own code).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
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
