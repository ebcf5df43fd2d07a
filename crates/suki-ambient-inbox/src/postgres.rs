//! The fleet store: Postgres, claims with `FOR UPDATE SKIP LOCKED`, and the transactional
//! handler that commits the application's writes with the row's completion.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::StoreError;
use crate::sql::{CLAIM_EXPECTATIONS_POSTGRES, CLAIM_POSTGRES, sql_store};

/// The Postgres store: many receivers and workers on one database; deduplication is
/// fleet-wide. A delivery is on disk when its insert returns (`synchronous_commit` as the
/// server sets it: `on` by default).
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`) and migrates the schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = Self::pool_for(url).await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Connects to `url` only if the database exists and holds an inbox, migrating it to this
    /// version's schema; [`StoreError::NotFound`] otherwise. Tools that read an inbox use this.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let not_found = || StoreError::NotFound {
            url: crate::inbox::redact_url(url),
        };
        let pool = match Self::pool_for(url).await {
            Ok(pool) => pool,
            // 3D000 invalid_catalog_name: no such database.
            Err(StoreError::Database(sqlx::Error::Database(e)))
                if e.code().as_deref() == Some("3D000") =>
            {
                return Err(not_found());
            }
            Err(e) => return Err(e),
        };
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('suki_inbox_deliveries') IS NOT NULL")
                .fetch_one(&pool)
                .await?;
        if !exists {
            pool.close().await;
            return Err(not_found());
        }
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    async fn pool_for(url: &str) -> Result<PgPool, StoreError> {
        Ok(PgPoolOptions::new()
            // A ping before each use would double the round trips of every statement; a
            // broken connection fails its statement instead, which the callers handle.
            .test_before_acquire(false)
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?)
    }

    /// Nothing to check: a Postgres server has no file that can vanish under the process.
    #[expect(
        clippy::unused_self,
        reason = "the SQL store macro calls it on every store"
    )]
    fn check_file(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The connection pool (the transactional handler's transactions come from it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

sql_store!(
    PostgresStore,
    PgPool,
    claim = CLAIM_POSTGRES,
    claim_expectations = CLAIM_EXPECTATIONS_POSTGRES,
    begin = "BEGIN"
);

/// A handler that writes in the transaction that completes the row: its writes and the
/// completion commit together, or neither does. A worker that lost its lease (another worker
/// took the row over) finds the fencing token changed at completion and rolls back, so each
/// stored event's effect happens exactly once.
///
/// Keep the transaction short: the row is locked from the completion to the commit.
#[async_trait::async_trait]
pub trait TransactionalHandler: Send + Sync + 'static {
    /// Processes one event, writing through `tx` (do not commit it: the worker does).
    async fn handle(
        &self,
        event: suki_ambient_core::WebhookEvent,
        meta: crate::InboxMeta,
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), suki_ambient_core::HandlerError>;
}

/// One attempt of the transactional runner: begin, the handler's writes, the fenced
/// completion, commit.
pub(crate) async fn attempt(
    handler: &dyn TransactionalHandler,
    pool: &PgPool,
    event: suki_ambient_core::WebhookEvent,
    meta: crate::InboxMeta,
    lease: crate::Lease,
    now: suki_ambient_core::UnixMillis,
) -> crate::worker::Outcome {
    use crate::worker::{Failure, Outcome};
    use futures_util::FutureExt as _;
    let store_failed = |err: sqlx::Error| {
        tracing::warn!(error = %err, "suki inbox transaction failed");
        Outcome::Failed(Failure::retryable("store_error"))
    };
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(err) => return store_failed(err),
    };
    let run = std::panic::AssertUnwindSafe(handler.handle(event, meta, &mut tx)).catch_unwind();
    match run.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            let _ = tx.rollback().await;
            return Outcome::Failed(Failure::classify(&err));
        }
        Err(_) => {
            let _ = tx.rollback().await;
            return Outcome::Failed(Failure::retryable("handler_panicked"));
        }
    }
    // Last, so the row is locked only from here to the commit; a claim that took the row over
    // changed the token, and this matches nothing.
    let completed = sqlx::query(crate::sql::COMPLETE)
        .bind(lease.id)
        .bind(lease.fence)
        .bind(crate::sql::stored(now))
        .execute(&mut *tx)
        .await;
    match completed {
        Ok(done) if done.rows_affected() == 1 => match tx.commit().await {
            Ok(()) => Outcome::Committed,
            Err(err) => store_failed(err),
        },
        Ok(_) => {
            let _ = tx.rollback().await;
            Outcome::Fenced
        }
        Err(err) => {
            let _ = tx.rollback().await;
            store_failed(err)
        }
    }
}
