//! The transaction capability of the SQL store: a sqlx transaction on the store's pool (SQLite:
//! `BEGIN IMMEDIATE`, so the write lock is taken before the handler's first write), the fenced
//! completion in it, and the connection handed to the handler.

use std::any::{Any, TypeId};
use std::sync::Arc;

use suki_ambient_core::UnixMillis;

use super::{Db as _, SqlDialect, SqlStore, Statements, stored};
use crate::StoreError;
use crate::records::Lease;
use crate::{seam::StoreTransaction, seam::Transactions};

/// An open transaction of a [`SqlStore`].
struct SqlTransaction<D: SqlDialect> {
    tx: sqlx::Transaction<'static, D::Db>,
    sql: Arc<Statements>,
}

/// [`Transactions`] and [`StoreTransaction`] for the store of each built-in dialect (`D` in the
/// bodies).
macro_rules! transactions {
    ($($feature:literal => $dialect:ty, $connection:ty;)*) => {$(
        #[cfg(feature = $feature)]
        const _: () = {
            type D = $dialect;

            #[async_trait::async_trait]
            impl Transactions for SqlStore<D> {
                async fn begin(&self) -> Result<Box<dyn StoreTransaction>, StoreError> {
                    let tx = self.pool.begin_with(D::BEGIN_WRITE).await.db()?;
                    Ok(Box::new(SqlTransaction::<D> {
                        tx,
                        sql: Arc::clone(&self.sql),
                    }))
                }

                fn connection_type(&self) -> TypeId {
                    TypeId::of::<$connection>()
                }

                fn connection_name(&self) -> &'static str {
                    std::any::type_name::<$connection>()
                }
            }

            #[async_trait::async_trait]
            impl StoreTransaction for SqlTransaction<D> {
                fn connection(&mut self) -> &mut (dyn Any + Send) {
                    let connection: &mut $connection = &mut self.tx;
                    connection
                }

                async fn complete(
                    &mut self,
                    lease: Lease,
                    now: UnixMillis,
                    detail: Option<&str>,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query(&self.sql.queue.complete)
                        .bind(lease.id)
                        .bind(lease.fence)
                        .bind(stored(now))
                        .bind(detail)
                        .execute(&mut *self.tx)
                        .await
                        .db()?;
                    Ok(D::rows_affected(&done) == 1)
                }

                async fn commit(self: Box<Self>) -> Result<(), StoreError> {
                    self.tx.commit().await.db()
                }

                async fn rollback(self: Box<Self>) -> Result<(), StoreError> {
                    self.tx.rollback().await.db()
                }
            }
        };
    )*};
}

transactions! {
    "sqlite" => super::SqliteDialect, sqlx::SqliteConnection;
    "postgres" => super::PostgresDialect, sqlx::PgConnection;
}
