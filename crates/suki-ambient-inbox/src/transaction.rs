//! The transaction capability: a store whose completion can commit in the same transaction as
//! the application's own writes, and the [`TransactionalHandler`] that writes in it.
//!
//! The worker asks the store for it ([`Store::transactions`](crate::Store::transactions)), begins
//! a transaction per attempt, hands the handler the transaction's connection, completes the row
//! (fenced) in the same transaction, and commits, so the handler's writes and the row's
//! completion happen together or not at all. Both built-in stores have it: Postgres
//! (`sqlx::PgConnection`) and SQLite (`sqlx::SqliteConnection`, under `BEGIN IMMEDIATE`).

use std::any::{Any, TypeId};
use std::marker::PhantomData;

use async_trait::async_trait;
use suki_ambient_core::{HandlerError, UnixMillis, WebhookEvent};

use crate::StoreError;
use crate::store::Lease;

/// A store whose row completion can join a transaction the application writes in.
#[async_trait]
pub trait Transactions: Send + Sync {
    /// Begins a write transaction.
    async fn begin(&self) -> Result<Box<dyn StoreTransaction>, StoreError>;

    /// The type of the transaction's [connection](StoreTransaction::connection), which a
    /// [`TransactionalHandler`] names; the worker checks it when it is built.
    fn connection_type(&self) -> TypeId;

    /// That type's name, for the error when a handler names another.
    fn connection_name(&self) -> &'static str;
}

/// One open transaction of a [`Transactions`] store. Dropped without
/// [`commit`](Self::commit), it rolls back.
#[async_trait]
pub trait StoreTransaction: Send {
    /// The transaction's connection, for the handler's writes: a value of the store's
    /// [`connection_type`](Transactions::connection_type).
    fn connection(&mut self) -> &mut (dyn Any + Send);

    /// Completes the leased row within the transaction (`detail` as the attempt's detail):
    /// `false` when the row's fencing token is no longer the lease's (another worker took the
    /// row over), and then nothing may be committed.
    async fn complete(
        &mut self,
        lease: Lease,
        now: UnixMillis,
        detail: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Commits the handler's writes and the completion together.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;

    /// Rolls everything back.
    async fn rollback(self: Box<Self>) -> Result<(), StoreError>;
}

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

/// One attempt of the transactional runner: begin, the handler's writes, the fenced
/// completion, commit.
pub(crate) async fn attempt(
    handler: &dyn ErasedTransactional,
    store: &dyn Transactions,
    event: WebhookEvent,
    meta: crate::InboxMeta,
    lease: Lease,
    now: UnixMillis,
) -> crate::worker::Outcome {
    use crate::worker::{Failure, Outcome};
    use futures_util::FutureExt as _;
    let store_failed = |err: StoreError| {
        tracing::warn!(error = %err, "suki inbox transaction failed");
        Outcome::Failed(Failure::retryable("store_error"))
    };
    let mut tx = match store.begin().await {
        Ok(tx) => tx,
        Err(err) => return store_failed(err),
    };
    let fetched = meta.fetched.clone();
    let run =
        std::panic::AssertUnwindSafe(handler.handle(event, meta, tx.connection())).catch_unwind();
    let failed = match run.await {
        Ok(Some(Ok(()))) => None,
        Ok(Some(Err(err))) => Some(Failure::classify(&err)),
        // Checked when the worker was built; a store cannot change its connection type.
        Ok(None) => Some(Failure::retryable("transaction_connection")),
        Err(_) => Some(Failure::retryable("handler_panicked")),
    };
    if let Some(failure) = failed {
        let _ = tx.rollback().await;
        return Outcome::Failed(failure);
    }
    // Last, so the row is locked only from here to the commit; a claim that took the row over
    // changed the token, and this matches nothing.
    let detail = fetched.take();
    match tx.complete(lease, now, detail.as_deref()).await {
        Ok(true) => match tx.commit().await {
            Ok(()) => Outcome::Committed,
            Err(err) => store_failed(err),
        },
        Ok(false) => {
            let _ = tx.rollback().await;
            Outcome::Fenced
        }
        Err(err) => {
            let _ = tx.rollback().await;
            store_failed(err)
        }
    }
}
