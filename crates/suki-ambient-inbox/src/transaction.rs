//! The transaction capability: a store whose completion can commit in the same transaction as
//! the application's own writes, and the [`TransactionalHandler`] that writes in it.
//!
//! The worker asks the store for it ([`Store::transactions`](crate::store::Store::transactions)), begins
//! a transaction per attempt, hands the handler the transaction's connection, completes the row
//! (fenced) in the same transaction, and commits, so the handler's writes and the row's
//! completion happen together or not at all. Both built-in stores have it: Postgres
//! (`sqlx::PgConnection`) and SQLite (`sqlx::SqliteConnection`, under `BEGIN IMMEDIATE`).

use std::any::Any;
use std::marker::PhantomData;

use async_trait::async_trait;
use suki_ambient_core::{HandlerError, WebhookEvent};

/// A handler that writes in the transaction that completes the row: its writes and the
/// completion commit together, or neither does. A worker that lost its lease (another worker
/// took the row over) finds the fencing token changed at completion and rolls back, so each
/// stored event's effect happens exactly once.
///
/// `C` is the store's connection: `sqlx::PgConnection` on Postgres, `sqlx::SqliteConnection` on
/// SQLite ([`InboxWorker::transactional`](crate::InboxWorker::transactional) checks it).
///
/// Keep the transaction short: the row is locked from the completion to the commit, and on
/// SQLite the whole database is locked for writes (ingest included) while the handler runs.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use suki_ambient_core::{HandlerError, WebhookEvent};
/// use suki_ambient_inbox::{InboxMeta, TransactionalHandler};
///
/// struct RecordNotes;
///
/// #[async_trait::async_trait]
/// impl TransactionalHandler<sqlx::SqliteConnection> for RecordNotes {
///     async fn handle(
///         &self,
///         _event: WebhookEvent,
///         meta: InboxMeta,
///         tx: &mut sqlx::SqliteConnection,
///     ) -> Result<(), HandlerError> {
///         sqlx::query("INSERT INTO notes (dedup_key) VALUES ($1)")
///             .bind(meta.dedup_key.as_str())
///             .execute(&mut *tx)
///             .await?;
///         Ok(())
///     }
/// }
/// # }
/// ```
#[async_trait]
pub trait TransactionalHandler<C: Send + 'static>: Send + Sync + 'static {
    /// Processes one event, writing through `tx` (do not commit it: the worker does).
    async fn handle(
        &self,
        event: WebhookEvent,
        meta: crate::InboxMeta,
        tx: &mut C,
    ) -> Result<(), HandlerError>;
}

/// A [`TransactionalHandler`] with its connection type erased, for the worker.
#[async_trait]
pub(crate) trait ErasedTransactional: Send + Sync {
    /// Runs the handler on `connection`; `None` when it is not the handler's type.
    async fn handle(
        &self,
        event: WebhookEvent,
        meta: crate::InboxMeta,
        connection: &mut (dyn Any + Send),
    ) -> Option<Result<(), HandlerError>>;
}

/// The erasure of a `TransactionalHandler<C>`.
pub(crate) struct Erased<H, C>(pub(crate) H, pub(crate) PhantomData<fn() -> C>);

#[async_trait]
impl<H, C> ErasedTransactional for Erased<H, C>
where
    H: TransactionalHandler<C>,
    C: Send + 'static,
{
    async fn handle(
        &self,
        event: WebhookEvent,
        meta: crate::InboxMeta,
        connection: &mut (dyn Any + Send),
    ) -> Option<Result<(), HandlerError>> {
        let connection = connection.downcast_mut::<C>()?;
        Some(self.0.handle(event, meta, connection).await)
    }
}
