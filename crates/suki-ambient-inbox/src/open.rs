//! How an [`Inbox`] is opened: from a URL or a pool of yours, with settings
//! ([`InboxBuilder`]), on the built-in stores.

use std::sync::Arc;
use std::time::Duration;

use crate::settings::Settings;
use crate::{Inbox, StoreError, seam::Store};

impl Inbox {
    /// Opens the inbox at `url` and creates or migrates its schema: `sqlite://path` (feature
    /// `sqlite`, the default; the file is created if missing) or `postgres://…` (feature
    /// `postgres`). [`builder`](Self::builder) takes settings (pool size, Postgres schema, …).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// Opens an **existing** inbox at `url` only (migrating it to this version's schema), and
    /// never creates one: a mistyped path, database or schema is [`StoreError::NotFound`]
    /// (`no inbox at sqlite://typo.db`). For tools that read an inbox, like the CLI;
    /// applications create theirs with [`connect`](Self::connect).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).open().await
    }

    /// An inbox at `url` with settings: pool size, acquire timeout, Postgres schema, and
    /// whether to migrate.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), suki_ambient_inbox::StoreError> {
    /// use std::time::Duration;
    /// let inbox = suki_ambient_inbox::Inbox::builder("postgres://app@db/app")
    ///     .max_connections(8)
    ///     .acquire_timeout(Duration::from_secs(2))
    ///     .schema("suki_inbox")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(url: impl Into<String>) -> InboxBuilder {
        InboxBuilder {
            target: Target::Url(url.into()),
            settings: Settings::default(),
        }
    }

    /// The inbox in your application's own pool ([`sqlx::SqlitePool`] or [`sqlx::PgPool`]),
    /// sharing its connections, its tables beside yours; migrated in the inbox's own history
    /// table (`suki_inbox_migrations`), never in `_sqlx_migrations`.
    /// [`pool_builder`](Self::pool_builder) takes a schema or `migrate(false)`.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub async fn from_pool(pool: impl Into<InboxPool>) -> Result<Self, StoreError> {
        Self::pool_builder(pool).connect().await
    }

    /// [`from_pool`](Self::from_pool) with settings (a Postgres schema, `migrate(false)`; the
    /// pool's own size and timeouts are yours).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn pool_builder(pool: impl Into<InboxPool>) -> InboxBuilder {
        InboxBuilder {
            target: Target::Pool(pool.into()),
            settings: Settings::default(),
        }
    }
}

/// How an [`Inbox`] is built: [`Inbox::builder`] (a URL) or [`Inbox::pool_builder`] (your
/// pool).
#[derive(Debug)]
#[must_use = "an InboxBuilder does nothing until .connect() or .open()"]
pub struct InboxBuilder {
    target: Target,
    settings: Settings,
}

#[derive(Debug)]
enum Target {
    Url(String),
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    Pool(InboxPool),
}

/// A pool of your application's that the inbox can share ([`Inbox::from_pool`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub enum InboxPool {
    /// A SQLite pool (WAL, `synchronous=FULL`).
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    /// A Postgres pool.
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

#[cfg(feature = "sqlite")]
impl From<sqlx::SqlitePool> for InboxPool {
    fn from(pool: sqlx::SqlitePool) -> Self {
        Self::Sqlite(pool)
    }
}

#[cfg(feature = "postgres")]
impl From<sqlx::PgPool> for InboxPool {
    fn from(pool: sqlx::PgPool) -> Self {
        Self::Postgres(pool)
    }
}

impl InboxBuilder {
    /// The most connections the inbox's own pool opens (SQLite 4, Postgres 16 by default).
    /// Not for a pool of yours ([`Inbox::pool_builder`]): size that one yourself.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.settings.max_connections = Some(n.max(1));
        self
    }

    /// How long a statement waits for a free connection of the inbox's own pool before it
    /// fails (SQLite 30 s, Postgres 5 s by default).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.settings.acquire_timeout = Some(timeout);
        self
    }

    /// Postgres: keeps the inbox's tables, functions and migration history in `schema`
    /// (created if missing), rather than the connection's current schema. Letters, digits and
    /// `_`. A SQLite inbox refuses it ([`StoreError::Unsupported`]).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.settings.schema = Some(schema.into());
        self
    }

    /// Whether to create or upgrade the schema when connecting (default `true`). With `false`
    /// you apply the migrations yourself: [`Inbox::migrate`], or the `.sql` files with your own
    /// tool ([`migrations`](crate::store::migrations)).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.settings.migrate = migrate;
        self
    }

    /// Builds the inbox, creating its database (SQLite file) and schema if missing.
    pub async fn connect(self) -> Result<Inbox, StoreError> {
        self.build(true).await
    }

    /// Builds the inbox only if one exists there ([`Inbox::open`]).
    pub async fn open(self) -> Result<Inbox, StoreError> {
        self.build(false).await
    }

    async fn build(self, create: bool) -> Result<Inbox, StoreError> {
        let settings = &self.settings;
        // Without a store feature only the last arm is left.
        let _ = (create, settings);
        let store: Result<Arc<dyn Store>, StoreError> = match self.target {
            #[cfg(feature = "sqlite")]
            Target::Url(url) if url.starts_with("sqlite:") => Ok(Arc::new(
                crate::SqliteStore::with_settings(&url, create, settings).await?,
            )),
            #[cfg(feature = "postgres")]
            Target::Url(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => {
                Ok(Arc::new(
                    crate::PostgresStore::with_settings(&url, create, settings).await?,
                ))
            }
            #[cfg(feature = "sqlite")]
            Target::Pool(InboxPool::Sqlite(pool)) => Ok(Arc::new(
                crate::SqliteStore::from_pool_with(pool, settings).await?,
            )),
            #[cfg(feature = "postgres")]
            Target::Pool(InboxPool::Postgres(pool)) => Ok(Arc::new(
                crate::PostgresStore::from_pool_with(pool, settings).await?,
            )),
            Target::Url(_other) => Err(StoreError::UnsupportedUrl),
        };
        store.map(Inbox::with_store)
    }
}
