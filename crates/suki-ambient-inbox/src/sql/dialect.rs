//! Everything that differs between the SQL databases the inbox supports, in one place: how a
//! claim takes rows without two workers taking the same one, how a write transaction begins,
//! what serializes the audit chain, how parameters are written, how migrations run and whether
//! other processes' inserts wake the workers.

#[cfg(feature = "postgres")]
use super::Db as _;
use super::Tables;
#[cfg(feature = "sqlite")]
use super::rows::{COLUMNS, EXPECTATION_COLUMNS};
use crate::StoreError;

/// What differs between the SQL databases the inbox supports; everything else is shared SQL
/// (both take `$N` placeholders). Sealed: the built-in dialects are [`SqliteDialect`] and
/// [`PostgresDialect`]; another engine implements [`Store`](crate::store::Store) itself and runs the
/// [conformance suite](crate::conformance).
pub trait SqlDialect: sealed::Sealed + Send + Sync + 'static {
    /// The sqlx database.
    #[doc(hidden)]
    type Db: sqlx::Database;
    /// The name shown in `Debug` and messages.
    #[doc(hidden)]
    const NAME: &'static str;
    /// How a transaction that writes begins (SQLite takes the write lock at once, so two
    /// claimers never read the same due rows).
    #[doc(hidden)]
    const BEGIN_WRITE: &'static str;
    /// Claims due deliveries: `$1` owner, `$2` lease expiry, `$3` now, `$4` limit; returns the
    /// record's columns and the body. Rows of a paused kind (or of a paused inbox) are left.
    #[doc(hidden)]
    fn claim(t: &Tables) -> String;
    /// Claims due expectations, with the same parameters; returns the expectation's columns.
    #[doc(hidden)]
    fn claim_expectations(t: &Tables) -> String;
    /// What serializes appends to the audit log's hash chain within a write transaction
    /// (SQLite's `BEGIN IMMEDIATE` already does).
    #[doc(hidden)]
    fn lock_audit(t: &Tables) -> Option<String>;
    /// The `n`th (from 1) parameter of a statement whose parameters each appear once, in
    /// order: Postgres numbers them (`$n`); SQLite takes them anonymous (`?`), because binding
    /// numbered ones looks each name up in a list (quadratic in a group commit's 2,560).
    #[doc(hidden)]
    fn placeholder(sql: &mut String, n: usize);
    /// Rows a statement changed.
    #[doc(hidden)]
    fn rows_affected(result: &<Self::Db as sqlx::Database>::QueryResult) -> u64;
    /// Migrates the inbox's tables (in `schema`, Postgres only).
    #[doc(hidden)]
    fn migrate<'a>(
        pool: &'a sqlx::Pool<Self::Db>,
        schema: Option<&'a str>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), StoreError>>;
    /// Wake-ups from other processes' inserts, when the database has them.
    #[doc(hidden)]
    fn subscribe(
        pool: &sqlx::Pool<Self::Db>,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<Option<Box<dyn crate::seam::Wakeups>>, StoreError>,
    >;
}

mod sealed {
    pub trait Sealed {}
}

/// The condition that leaves the rows of a paused kind (or of a paused inbox) unclaimed.
fn not_paused(t: &Tables) -> String {
    let pauses = &t.pauses;
    format!("NOT EXISTS (SELECT 1 FROM {pauses} AS p WHERE p.scope = '*' OR p.scope = kind)")
}

/// SQLite: claims in a subquery under `BEGIN IMMEDIATE`.
#[cfg(feature = "sqlite")]
#[derive(Clone, Copy, Debug)]
pub struct SqliteDialect;

#[cfg(feature = "sqlite")]
impl sealed::Sealed for SqliteDialect {}

#[cfg(feature = "sqlite")]
impl SqlDialect for SqliteDialect {
    type Db = sqlx::Sqlite;
    const NAME: &'static str = "sqlite";
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    /// The due rows' ids in a subquery (SQLite has no `UPDATE … LIMIT` in its default build),
    /// in an immediate transaction, so no two claims overlap.
    fn claim(t: &Tables) -> String {
        let (deliveries, not_paused) = (&t.deliveries, not_paused(t));
        format!(
            "UPDATE {deliveries} \
             SET state = 'running', lease_owner = $1, lease_expires = $2, run_after = $2, \
                 fence = fence + 1, attempts = attempts + 1, updated_at = $3 \
             WHERE id IN (SELECT id FROM {deliveries} \
                          WHERE state IN ('pending', 'running') AND run_after <= $3 \
                          AND {not_paused} \
                          ORDER BY run_after, id LIMIT $4) \
             RETURNING {COLUMNS}, body"
        )
    }
    fn claim_expectations(t: &Tables) -> String {
        let expectations = &t.expectations;
        format!(
            "UPDATE {expectations} \
             SET lease_owner = $1, lease_expires = $2, next_check = $2, fence = fence + 1, \
                 checks = checks + 1 \
             WHERE session_id IN (SELECT session_id FROM {expectations} \
                                  WHERE resolution IS NULL AND next_check <= $3 \
                                  ORDER BY next_check LIMIT $4) \
             RETURNING {EXPECTATION_COLUMNS}"
        )
    }
    fn lock_audit(_: &Tables) -> Option<String> {
        None
    }
    fn placeholder(sql: &mut String, _n: usize) {
        sql.push('?');
    }
    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
    fn migrate<'a>(
        pool: &'a sqlx::SqlitePool,
        _schema: Option<&'a str>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(crate::migrate::run::sqlite(pool))
    }
    fn subscribe(
        _pool: &sqlx::SqlitePool,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<Option<Box<dyn crate::seam::Wakeups>>, StoreError>,
    > {
        // One host: the inbox wakes the workers of its own process; others poll.
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// The channel migration 0006's trigger notifies on each insert (Postgres).
#[cfg(feature = "postgres")]
const NOTIFY_CHANNEL: &str = "suki_inbox";

/// A Postgres `LISTEN` on [`NOTIFY_CHANNEL`].
#[cfg(feature = "postgres")]
struct Listener(sqlx::postgres::PgListener);

#[cfg(feature = "postgres")]
#[async_trait::async_trait]
impl crate::seam::Wakeups for Listener {
    async fn wait(&mut self) -> Result<(), StoreError> {
        // `None`: the connection dropped (notifications may have been lost meanwhile). Waking
        // is right either way: the claim that follows finds what a lost one announced, and the
        // next call reconnects and listens again.
        let _ = self.0.try_recv().await.db()?;
        Ok(())
    }
}

/// Postgres: claims with `FOR UPDATE SKIP LOCKED`.
#[cfg(feature = "postgres")]
#[derive(Clone, Copy, Debug)]
pub struct PostgresDialect;

#[cfg(feature = "postgres")]
impl sealed::Sealed for PostgresDialect {}

#[cfg(feature = "postgres")]
impl SqlDialect for PostgresDialect {
    type Db = sqlx::Postgres;
    const NAME: &'static str = "postgres";
    const BEGIN_WRITE: &'static str = "BEGIN";
    /// `FOR UPDATE SKIP LOCKED`, so concurrent workers take different rows.
    fn claim(t: &Tables) -> String {
        let (deliveries, not_paused) = (&t.deliveries, not_paused(t));
        format!(
            "UPDATE {deliveries} AS d \
             SET state = 'running', lease_owner = $1, lease_expires = $2, run_after = $2, \
                 fence = d.fence + 1, attempts = d.attempts + 1, updated_at = $3 \
             FROM (SELECT id FROM {deliveries} \
                   WHERE state IN ('pending', 'running') AND run_after <= $3 \
                   AND {not_paused} \
                   ORDER BY run_after, id LIMIT $4 FOR UPDATE SKIP LOCKED) AS due \
             WHERE d.id = due.id \
             RETURNING d.id, d.dedup_key, d.source, d.kind, d.session_id, d.encounter_id, \
                 d.generated_at, d.received_at, d.state, d.attempts, d.run_after, d.lease_owner, \
                 d.fence, d.last_error, d.completed_at, d.snoozes, d.key_id, d.round_start, \
                 d.waiting_for, d.body"
        )
    }
    fn claim_expectations(t: &Tables) -> String {
        let expectations = &t.expectations;
        format!(
            "UPDATE {expectations} AS e \
             SET lease_owner = $1, lease_expires = $2, next_check = $2, fence = e.fence + 1, \
                 checks = e.checks + 1 \
             FROM (SELECT session_id FROM {expectations} \
                   WHERE resolution IS NULL AND next_check <= $3 \
                   ORDER BY next_check LIMIT $4 FOR UPDATE SKIP LOCKED) AS due \
             WHERE e.session_id = due.session_id \
             RETURNING e.session_id, e.encounter_id, e.provider_id, e.kind, e.ended_at, \
                 e.next_check, e.checks, e.last_status, e.lease_owner, e.fence, e.resolution, \
                 e.resolved_at, e.context"
        )
    }
    fn lock_audit(t: &Tables) -> Option<String> {
        let audit = &t.audit;
        Some(format!("LOCK TABLE {audit} IN SHARE ROW EXCLUSIVE MODE"))
    }
    fn placeholder(sql: &mut String, n: usize) {
        use std::fmt::Write as _;
        let _ = write!(sql, "${n}");
    }
    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }
    fn migrate<'a>(
        pool: &'a sqlx::PgPool,
        schema: Option<&'a str>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(crate::migrate::run::postgres(pool, schema))
    }
    fn subscribe(
        pool: &sqlx::PgPool,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<Option<Box<dyn crate::seam::Wakeups>>, StoreError>,
    > {
        Box::pin(async move {
            let mut listener = sqlx::postgres::PgListener::connect_with(pool).await.db()?;
            listener.listen(NOTIFY_CHANNEL).await.db()?;
            Ok(Some(
                Box::new(Listener(listener)) as Box<dyn crate::seam::Wakeups>
            ))
        })
    }
}
