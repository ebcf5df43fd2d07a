//! For a store of your own (a [`Store`] over another database) and for the owner of the
//! database the inbox lives in: the store traits, the values they pass, the SQL implementation's
//! building blocks and the migrations. An application that uses the bundled SQLite or Postgres
//! store needs none of this.

pub use crate::error::{DatabaseError, DatabaseErrorKind};
pub use crate::expect::{ExpectationLease, ExpectationRecord, FinishedCheck, SealedContext};
pub use crate::inbox::{AUDIT_FLOOR, dedup_key};
pub use crate::migrate::{Dialect, HISTORY_TABLE, Migration, migrations};
pub use crate::records::{
    Act, ChoreLease, Claim, ClaimRequest, FailedAttempt, Lease, NewDelivery, NewExpectation, Next,
    Resealed, StoredBody,
};
pub use crate::seam::{
    DeliveryQueue, Expectations, Operations, ReadModel, Store, StoreTransaction, Transactions,
    Wakeups,
};
#[cfg(feature = "postgres")]
pub use crate::sql::PostgresDialect;
#[cfg(feature = "sqlite")]
pub use crate::sql::SqliteDialect;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use crate::sql::{SqlDialect, SqlStore};
pub use crate::worker::backoff;
