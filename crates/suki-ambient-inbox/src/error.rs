//! The inbox's errors: a store operation's ([`StoreError`]), the database's behind it
//! ([`DatabaseError`], opaque: no driver type in the API) and a migration run's
//! ([`MigrateError`]).

use std::fmt;
use std::time::Duration;

/// A store operation failed. Cheap to clone: a failed group commit gives every caller whose
/// delivery it held the same error, source included.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed or could not be reached (its message names no stored value).
    #[error("inbox database error: {0}")]
    Database(DatabaseError),
    /// The schema could not be created or migrated.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// A stored value is not one this version writes.
    #[error("inbox row is corrupt: {0}")]
    Corrupt(&'static str),
    /// The URL names no store this build supports.
    #[error(
        "unsupported inbox URL (expected sqlite://… or postgres://…, with the matching feature)"
    )]
    UnsupportedUrl,
    /// The Postgres schema name is not one the inbox accepts.
    #[error(
        "invalid inbox schema name {schema:?} (letters, digits and _, not starting with a digit, \
         at most 63 bytes)"
    )]
    InvalidSchema {
        /// The name given.
        schema: String,
    },
    /// A setting this store does not take (e.g. a Postgres schema for a SQLite inbox).
    #[error("inbox setting not supported here: {0}")]
    Unsupported(&'static str),
    /// A SQLite pool given to the inbox does not keep what the inbox promises: each commit on
    /// disk before the 200 (WAL and `synchronous=FULL`).
    #[error("the SQLite pool is not durable enough for the inbox: {0}")]
    NotDurable(&'static str),
    /// The transactional handler needs a store whose completion can join the handler's
    /// transaction ([`Store::transactions`](crate::store::Store::transactions)); this one has none.
    #[error("the transactional handler needs a store with transactions (SQLite or Postgres)")]
    NoTransactions,
    /// The transactional handler writes through another connection type than the store's
    /// transactions hand out (e.g. a `PgConnection` handler on a SQLite inbox).
    #[error(
        "the transactional handler writes through {handler}, but the store's transactions are {store}"
    )]
    ConnectionMismatch {
        /// The connection type the store's transactions hand out.
        store: &'static str,
        /// The connection type the handler takes.
        handler: &'static str,
    },
    /// The inbox's group commit was dropped before it answered (the runtime is shutting down).
    #[error("the inbox is shut down")]
    Closed,
    /// The worker's task panicked (a bug: handlers' panics are caught and retried).
    #[error("the inbox worker's task panicked")]
    WorkerPanicked,
    /// No inbox exists there: [`Inbox::open`](crate::Inbox::open) creates none (a wrong path,
    /// database or schema). `url` is shown without its password.
    #[error("no inbox at {url}")]
    NotFound {
        /// Where it was looked for.
        url: String,
    },
    /// The inbox was given keys ([`Inbox::with_keys`](crate::Inbox::with_keys)) but its
    /// provider has no current key: bodies are not stored in clear instead, the delivery is
    /// refused (503 to Suki, health red) until the provider has one.
    #[error(
        "no current body key: this inbox seals what it stores (it was given keys, or holds sealed \
         rows), and nothing is written in clear (give this process the inbox's keys, e.g. \
         SUKI_INBOX_KEYS)"
    )]
    NoCurrentKey,
    /// A body could not be sealed (AWS-LC had no randomness): the delivery is refused (503)
    /// rather than stored in clear or empty.
    #[error("a body could not be sealed")]
    SealFailed,
    /// An operator action the inbox refuses as given (e.g. an audit purge within the audit
    /// log's retention floor, an actor with no name): the reason names no stored value.
    #[error("refused: {0}")]
    Refused(String),
    /// The store did not answer in time (e.g. a database locked by another process).
    #[error("the inbox store did not answer within {0:?}")]
    Timeout(Duration),
    /// The SQLite database file was deleted or replaced under the running process: what it
    /// writes now reaches no file anyone will read.
    #[error("the inbox database file was deleted or replaced since it was opened")]
    FileGone,
}

/// A database's error, opaque: the inbox's API does not depend on its driver's types. Its
/// message and [`code`](Self::code) name no stored value; the driver's error is its
/// [`source`](std::error::Error::source) chain. The code and the kind are recorded when the error
/// is made (the built-in stores read them from sqlx's error), so a store of your own gives them
/// with [`with_code`](Self::with_code) and [`with_kind`](Self::with_kind).
#[derive(Clone)]
pub struct DatabaseError {
    error: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    code: Option<std::sync::Arc<str>>,
    kind: DatabaseErrorKind,
}

/// What kind of database failure a [`DatabaseError`] is, as far as the inbox acts on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseErrorKind {
    /// No connection could be had in time (the pool is exhausted or the server down).
    PoolTimeout,
    /// Any other failure.
    Other,
}

impl DatabaseError {
    /// Wraps a database driver's error (for a [`Store`](crate::store::Store) of your own), of kind
    /// [`DatabaseErrorKind::Other`] and with no code.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            error: std::sync::Arc::new(error),
            code: None,
            kind: DatabaseErrorKind::Other,
        }
    }

    /// With the code the database reported (see [`code`](Self::code)).
    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(std::sync::Arc::from(code.into()));
        self
    }

    /// Of `kind`.
    #[must_use]
    pub fn with_kind(mut self, kind: DatabaseErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// The code the database reported, when it did: Postgres's SQLSTATE (`"40001"`), SQLite's
    /// extended result code (`"5"`: busy).
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> DatabaseErrorKind {
        self.kind
    }

    /// Whether no connection could be had in time (the pool is exhausted or the server down).
    pub fn is_pool_timeout(&self) -> bool {
        self.kind == DatabaseErrorKind::PoolTimeout
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseError")
            .field(&format_args!("{}", self.error))
            .finish()
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// Why a migration run failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// A migration's statements failed (the database's message names no stored value).
    #[error("inbox migration {version} failed: {source}")]
    Failed {
        /// The version that failed.
        version: i64,
        /// The database's error.
        #[source]
        source: DatabaseError,
    },
    /// A recorded migration's SQL differs from this build's: the schema was made by another
    /// build of this version, or the file was edited after it was applied.
    #[error("inbox migration {version} was applied with different SQL (checksum mismatch)")]
    Changed {
        /// The version whose checksum differs.
        version: i64,
    },
    /// The schema is newer than this build knows: run the newer SDK (a downgrade is refused).
    #[error(
        "the inbox schema is at version {found}, newer than this build's {known}: upgrade the SDK"
    )]
    TooNew {
        /// The newest version recorded.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// sqlx's error as the inbox's opaque one, its code and kind read once here (the only place
/// that looks inside a sqlx error).
pub(crate) fn database_error(error: sqlx::Error) -> crate::error::DatabaseError {
    let code = match &error {
        sqlx::Error::Database(e) => e.code().map(std::borrow::Cow::into_owned),
        _ => None,
    };
    let kind = match error {
        sqlx::Error::PoolTimedOut => crate::error::DatabaseErrorKind::PoolTimeout,
        _ => crate::error::DatabaseErrorKind::Other,
    };
    let error = crate::error::DatabaseError::new(error).with_kind(kind);
    match code {
        Some(code) => error.with_code(code),
        None => error,
    }
}
