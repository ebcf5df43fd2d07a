//! The fleet store: Postgres, claims with `FOR UPDATE SKIP LOCKED`, and the transactional
//! handler that commits the application's writes with the row's completion.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::StoreError;
use crate::settings::Settings;
use crate::sql::{Db as _, PostgresDialect, SqlStore};

/// The Postgres store: many receivers and workers on one database; deduplication is
/// fleet-wide. A delivery is on disk when its insert returns (`synchronous_commit` as the
/// server sets it: `on` by default).
pub type PostgresStore = SqlStore<PostgresDialect>;

impl SqlStore<PostgresDialect> {
    /// Connects to `url` (`postgres://user@host:port/db`) and migrates the schema (in the
    /// connection's current schema; [`Inbox::builder`](crate::Inbox::builder) picks another).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::with_settings(url, true, &Settings::default()).await
    }

    /// Connects to `url` only if the database exists and holds an inbox, migrating it to this
    /// version's schema; [`StoreError::NotFound`] otherwise. Tools that read an inbox use this.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::with_settings(url, false, &Settings::default()).await
    }

    /// The inbox in your application's own pool (its tables beside yours, in the connections'
    /// current schema), migrated to this version's schema in the inbox's own history table.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        Self::from_pool_with(pool, &Settings::default()).await
    }

    /// [`from_pool`](Self::from_pool) with the inbox's tables, functions and history in
    /// `schema` (created if missing), whatever search path the pool's connections use.
    pub async fn from_pool_in_schema(pool: PgPool, schema: &str) -> Result<Self, StoreError> {
        let settings = Settings {
            schema: Some(schema.to_owned()),
            ..Settings::default()
        };
        Self::from_pool_with(pool, &settings).await
    }

    pub(crate) async fn from_pool_with(
        pool: PgPool,
        settings: &Settings,
    ) -> Result<Self, StoreError> {
        let schema = settings.schema_for(crate::migrate::Dialect::Postgres)?;
        let store = Self::new(pool, schema);
        if settings.migrate {
            crate::seam::Store::migrate(&store).await?;
        }
        Ok(store)
    }

    pub(crate) async fn with_settings(
        url: &str,
        create: bool,
        settings: &Settings,
    ) -> Result<Self, StoreError> {
        let schema = settings.schema_for(crate::migrate::Dialect::Postgres)?;
        let pool = match PgPoolOptions::new()
            // A ping before each use would double the round trips of every statement; a
            // broken connection fails its statement instead, which the callers handle.
            .test_before_acquire(false)
            .max_connections(settings.max_connections.unwrap_or(16))
            .acquire_timeout(settings.acquire_timeout.unwrap_or(Duration::from_secs(5)))
            .connect(url)
            .await
            .db()
        {
            Ok(pool) => pool,
            // 3D000 invalid_catalog_name: no such database.
            Err(StoreError::Database(e)) if !create && e.code() == Some("3D000") => {
                return Err(StoreError::NotFound {
                    url: crate::settings::redact_url(url),
                });
            }
            Err(e) => return Err(e),
        };
        if !create {
            let table = crate::sql::Tables::new(schema).deliveries;
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(table)
                .fetch_one(&pool)
                .await
                .db()?;
            if !exists {
                pool.close().await;
                return Err(StoreError::NotFound {
                    url: crate::settings::redact_url(url),
                });
            }
        }
        Self::from_pool_with(pool, settings).await
    }
}
