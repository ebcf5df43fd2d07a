//! The SQL both built-in stores share (SQLite and Postgres both take `$N` parameters), and the
//! one generic store that runs it over a sqlx pool, with a small [`SqlDialect`] for what differs.

use suki_ambient_core::{EncounterId, EventKind, SessionId, UnixMillis};

use crate::store::{DeliveryRecord, StoreError};

/// The record's columns, in [`Row`]'s order.
macro_rules! columns {
    () => {
        "id, dedup_key, source, kind, session_id, encounter_id, generated_at, received_at, \
         state, attempts, run_after, lease_owner, fence, last_error, completed_at, snoozes, key_id, \
         round_start"
    };
}

pub(crate) const LIST_STATE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM suki_inbox_deliveries WHERE state = $1 ORDER BY id DESC LIMIT $2"
);

/// The dead rows, newest first, through their partial index (the state is spelled out: a
/// bound parameter cannot select a partial index).
pub(crate) const LIST_DEAD: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM suki_inbox_deliveries WHERE state = 'dead' ORDER BY id DESC LIMIT $1"
);

pub(crate) const LIST_ALL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM suki_inbox_deliveries ORDER BY id DESC LIMIT $1"
);

pub(crate) const GET: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM suki_inbox_deliveries WHERE id = $1"
);

/// SQLite's claim: the due rows' ids in a subquery (SQLite has no `UPDATE … LIMIT` in its
/// default build), in an immediate transaction, so no two claims overlap.
#[cfg(feature = "sqlite")]
pub(crate) const CLAIM_SQLITE: &str = concat!(
    "UPDATE suki_inbox_deliveries \
     SET state = 'running', lease_owner = $1, lease_expires = $2, run_after = $2, \
         fence = fence + 1, attempts = attempts + 1, updated_at = $3 \
     WHERE id IN (SELECT id FROM suki_inbox_deliveries \
                  WHERE state IN ('pending', 'running') AND run_after <= $3 \
                  AND NOT EXISTS (SELECT 1 FROM suki_inbox_pauses AS p \
                                  WHERE p.scope = '*' OR p.scope = kind) /*paused*/ \
                  ORDER BY run_after, id LIMIT $4) \
     RETURNING ",
    columns!(),
    ", body"
);

/// The head of the group commit's multi-row insert (the values follow, per row).
pub(crate) const INSERT_MANY: &str = "INSERT INTO suki_inbox_deliveries \
     (dedup_key, source, kind, session_id, encounter_id, generated_at, received_at, body, \
      key_id, state, attempts, run_after, fence, updated_at) ";

pub(crate) const HEARTBEAT: &str = "UPDATE suki_inbox_deliveries \
     SET lease_expires = $3, run_after = $3 \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

pub(crate) const COMPLETE: &str = "UPDATE suki_inbox_deliveries \
     SET state = 'done', completed_at = $3, updated_at = $3, run_after = $3, last_error = NULL, \
         attempt_detail = $4, lease_owner = NULL, lease_expires = NULL, fetched = NULL \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

pub(crate) const FAIL_RETRY: &str = "UPDATE suki_inbox_deliveries \
     SET state = 'pending', run_after = $3, last_error = $4, updated_at = $5, \
         attempt_detail = $6, lease_owner = NULL, lease_expires = NULL \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

/// A snooze: back to pending without spending the attempt, counted.
pub(crate) const FAIL_SNOOZE: &str = "UPDATE suki_inbox_deliveries \
     SET state = 'pending', run_after = $3, last_error = $4, updated_at = $5, \
         attempt_detail = $6, attempts = attempts - 1, snoozes = snoozes + 1, \
         lease_owner = NULL, lease_expires = NULL \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

pub(crate) const FAIL_DEAD: &str = "UPDATE suki_inbox_deliveries \
     SET state = 'dead', last_error = $3, updated_at = $4, run_after = $4, \
         attempt_detail = $5, lease_owner = NULL, lease_expires = NULL \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

pub(crate) const RELEASE: &str = "UPDATE suki_inbox_deliveries \
     SET state = 'pending', run_after = $3, updated_at = $3, attempts = attempts - 1, \
         attempt_detail = NULL, lease_owner = NULL, lease_expires = NULL \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

pub(crate) const RELEASE_OWNER: &str = "UPDATE suki_inbox_deliveries \
     SET state = 'pending', run_after = $2, updated_at = $2, fence = fence + 1, \
         attempt_detail = NULL, lease_owner = NULL, lease_expires = NULL \
     WHERE state = 'running' AND lease_owner = $1";

/// The body retention: done rows keep their metadata, not their bodies.
pub(crate) const ERASE_BODIES: &str = "UPDATE suki_inbox_deliveries \
     SET body = $1, key_id = NULL, body_erased_at = $2, fetched = NULL \
     WHERE state = 'done' AND completed_at < $3 AND body_erased_at IS NULL";

/// What a failed attempt fetched, kept with the row it holds.
pub(crate) const KEEP_FETCHED: &str = "UPDATE suki_inbox_deliveries SET fetched = $3 \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

/// What an earlier attempt kept.
pub(crate) const FETCHED: &str = "SELECT fetched FROM suki_inbox_deliveries WHERE id = $1";

/// The timelines of the done rows a purge deletes (before the rows themselves).
pub(crate) const PURGE_HISTORY: &str = "DELETE FROM suki_inbox_history WHERE delivery_id IN \
     (SELECT id FROM suki_inbox_deliveries WHERE state = 'done' AND completed_at < $1)";

pub(crate) const PURGE: &str =
    "DELETE FROM suki_inbox_deliveries WHERE state = 'done' AND completed_at < $1";

/// The counts the triggers of migration 0004 keep (a few rows, whatever the table's size).
pub(crate) const COUNT_STATES: &str =
    "SELECT state, CAST(SUM(n) AS BIGINT) FROM suki_inbox_counts GROUP BY state";

/// Rows that are being retried (an attempt was made, or an error is recorded) however many new
/// rows are pending in front of them, newest failure first: the partial index of migration 0004,
/// whose predicate this repeats word for word so that SQLite's planner matches it.
pub(crate) const LIST_RETRYING: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM suki_inbox_deliveries \
     WHERE state IN ('pending', 'running') AND (attempts > 0 OR last_error IS NOT NULL) \
     ORDER BY updated_at DESC, id DESC LIMIT $1"
);

/// The health check's write: one row, so that a full disk, a locked or read-only database or a
/// server that cannot commit fails it.
pub(crate) const PROBE: &str = "UPDATE suki_inbox_probe SET probed_at = $1 WHERE id = 1";

pub(crate) const OLDEST_UNFINISHED: &str = "SELECT MIN(received_at) FROM suki_inbox_deliveries \
     WHERE state IN ('pending', 'running')";

/// Takes or renews a chore's lease: `$1` task, `$2` owner, `$3` now, `$4` until.
pub(crate) const LEAD: &str = "UPDATE suki_inbox_leases SET owner = $2, expires_at = $4 \
     WHERE name = $1 AND (owner = $2 OR owner IS NULL OR expires_at <= $3)";

/// The expectation columns, in [`ExpectationRow`]'s order.
macro_rules! expectation_columns {
    () => {
        "session_id, encounter_id, provider_id, kind, ended_at, next_check, checks, \
         last_status, lease_owner, fence, resolution, resolved_at"
    };
}

/// The event already stored for a session, as a resolution (`NULL` when none is).
macro_rules! stored_resolution {
    () => {
        "(SELECT CASE source WHEN 'poll' THEN 'poll' ELSE 'webhook' END \
          FROM suki_inbox_deliveries WHERE session_id = $1 AND kind <> 'unknown' \
          ORDER BY id LIMIT 1)"
    };
}

/// A new expectation; already resolved when its session's event is in the inbox (the webhook
/// came before `expect` was called).
pub(crate) const EXPECT: &str = concat!(
    "INSERT INTO suki_inbox_expectations \
     (session_id, encounter_id, provider_id, kind, ended_at, next_check, created_at, \
      resolution, resolved_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, ",
    stored_resolution!(),
    ", CASE WHEN ",
    stored_resolution!(),
    " IS NULL THEN NULL ELSE $7 END) ON CONFLICT (session_id) DO NOTHING"
);

#[cfg(feature = "sqlite")]
pub(crate) const CLAIM_EXPECTATIONS_SQLITE: &str = concat!(
    "UPDATE suki_inbox_expectations \
     SET lease_owner = $1, lease_expires = $2, next_check = $2, fence = fence + 1, \
         checks = checks + 1 \
     WHERE session_id IN (SELECT session_id FROM suki_inbox_expectations \
                          WHERE resolution IS NULL AND next_check <= $3 \
                          ORDER BY next_check LIMIT $4) \
     RETURNING ",
    expectation_columns!()
);

#[cfg(feature = "postgres")]
pub(crate) const CLAIM_EXPECTATIONS_POSTGRES: &str = "UPDATE suki_inbox_expectations AS e \
     SET lease_owner = $1, lease_expires = $2, next_check = $2, fence = e.fence + 1, \
         checks = e.checks + 1 \
     FROM (SELECT session_id FROM suki_inbox_expectations \
           WHERE resolution IS NULL AND next_check <= $3 \
           ORDER BY next_check LIMIT $4 FOR UPDATE SKIP LOCKED) AS due \
     WHERE e.session_id = due.session_id \
     RETURNING e.session_id, e.encounter_id, e.provider_id, e.kind, e.ended_at, e.next_check, \
         e.checks, e.last_status, e.lease_owner, e.fence, e.resolution, e.resolved_at";

/// The most checks one statement records.
const FINISH_CHUNK: usize = 200;

/// Records `n` checks in one statement: per check its session, fence, outcome (`again`,
/// `stored`, `gave_up`), next check (for `again`), status seen and the time, each parameter once
/// and in order (`placeholder`). A check whose fence is no longer the row's (or, but for
/// `stored`, whose expectation was resolved meanwhile) matches nothing; the sessions recorded are
/// returned.
fn finish_many(n: usize, placeholder: fn(&mut String, usize)) -> String {
    let mut sql = String::from("WITH v (sid, vfence, kind, vnext, vstatus, vnow) AS (VALUES ");
    for i in 0..n {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        // session, fence, outcome, next check, status, now
        for (k, cast) in [false, true, false, true, false, true]
            .into_iter()
            .enumerate()
        {
            if k > 0 {
                sql.push_str(", ");
            }
            sql.push_str(if cast { "CAST(" } else { "" });
            placeholder(&mut sql, i * 6 + k + 1);
            sql.push_str(if cast { " AS BIGINT)" } else { "" });
        }
        sql.push(')');
    }
    sql.push_str(
        ") UPDATE suki_inbox_expectations AS x \
         SET next_check = CASE WHEN v.kind = 'again' THEN v.vnext ELSE x.next_check END, \
             last_status = v.vstatus, lease_owner = NULL, lease_expires = NULL, \
             resolution = CASE v.kind WHEN 'gave_up' THEN 'gave_up' \
                 WHEN 'stored' THEN COALESCE(x.resolution, \
                     (SELECT CASE d.source WHEN 'poll' THEN 'poll' ELSE 'webhook' END \
                      FROM suki_inbox_deliveries AS d \
                      WHERE d.session_id = x.session_id AND d.kind <> 'unknown' \
                      ORDER BY d.id LIMIT 1), 'poll') \
                 ELSE x.resolution END, \
             resolved_at = CASE v.kind WHEN 'gave_up' THEN v.vnow \
                 WHEN 'stored' THEN COALESCE(x.resolved_at, v.vnow) \
                 ELSE x.resolved_at END \
         FROM v \
         WHERE x.session_id = v.sid AND x.fence = v.vfence \
           AND (v.kind = 'stored' OR x.resolution IS NULL) \
         RETURNING session_id",
    );
    sql
}

pub(crate) const HOURLY: &str = "SELECT received_at / 3600000 AS hour, state, COUNT(*) \
     FROM suki_inbox_deliveries WHERE received_at >= $1 GROUP BY received_at / 3600000, state";

pub(crate) const COUNT_RESOLUTIONS: &str =
    "SELECT resolution, COUNT(*) FROM suki_inbox_expectations GROUP BY resolution";

pub(crate) const SWEEP: &str = "UPDATE suki_inbox_expectations \
     SET next_check = $2, resolution = NULL, resolved_at = NULL, \
         lease_owner = NULL, lease_expires = NULL \
     WHERE ended_at >= $1 AND (resolution IS NULL OR resolution = 'gave_up') \
       AND (lease_expires IS NULL OR lease_expires <= $2)";

pub(crate) const GET_EXPECTATION: &str = concat!(
    "SELECT ",
    expectation_columns!(),
    " FROM suki_inbox_expectations WHERE session_id = $1"
);

pub(crate) const LIST_EXPECTATIONS: &str = concat!(
    "SELECT ",
    expectation_columns!(),
    " FROM suki_inbox_expectations ORDER BY ended_at DESC, session_id LIMIT $1"
);

/// A stored expectation as the database returns it.
#[derive(sqlx::FromRow)]
pub(crate) struct ExpectationRow {
    session_id: String,
    encounter_id: String,
    provider_id: Option<String>,
    kind: String,
    ended_at: i64,
    next_check: i64,
    checks: i32,
    last_status: Option<String>,
    lease_owner: Option<String>,
    fence: i64,
    resolution: Option<String>,
    resolved_at: Option<i64>,
}

impl TryFrom<ExpectationRow> for crate::ExpectationRecord {
    type Error = StoreError;
    fn try_from(row: ExpectationRow) -> Result<Self, StoreError> {
        Ok(Self {
            session_id: SessionId::from(row.session_id),
            encounter_id: EncounterId::from(row.encounter_id),
            provider_id: row.provider_id,
            kind: crate::expect::session_kind(&row.kind)?,
            ended_at: millis(row.ended_at)?,
            next_check: millis(row.next_check)?,
            checks: u32::try_from(row.checks)
                .map_err(|_| StoreError::Corrupt("negative checks"))?,
            last_status: row.last_status,
            lease_owner: row.lease_owner,
            fence: row.fence,
            resolution: row.resolution.map(|r| r.parse()).transpose()?,
            resolved_at: row.resolved_at.map(millis).transpose()?,
        })
    }
}

/// A stored row as the database returns it.
#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    id: i64,
    dedup_key: String,
    source: String,
    kind: String,
    session_id: Option<String>,
    encounter_id: Option<String>,
    generated_at: i64,
    received_at: i64,
    state: String,
    attempts: i32,
    run_after: i64,
    lease_owner: Option<String>,
    fence: i64,
    last_error: Option<String>,
    completed_at: Option<i64>,
    snoozes: i32,
    round_start: i32,
    key_id: Option<String>,
}

/// A claimed row: the record and its body.
#[derive(sqlx::FromRow)]
pub(crate) struct ClaimRow {
    #[sqlx(flatten)]
    pub(crate) row: Row,
    pub(crate) body: Vec<u8>,
}

fn millis(value: i64) -> Result<UnixMillis, StoreError> {
    u64::try_from(value)
        .map(UnixMillis)
        .map_err(|_| StoreError::Corrupt("negative time"))
}

/// A time as stored (saturating: no real clock reaches `i64::MAX` ms).
pub(crate) fn stored(at: UnixMillis) -> i64 {
    i64::try_from(at.0).unwrap_or(i64::MAX)
}

impl TryFrom<Row> for DeliveryRecord {
    type Error = StoreError;
    fn try_from(row: Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            dedup_key: row.dedup_key,
            source: row.source.parse()?,
            kind: EventKind::parse(&row.kind).ok_or(StoreError::Corrupt("unknown event kind"))?,
            session_id: row.session_id.map(SessionId::from),
            encounter_id: row.encounter_id.map(EncounterId::from),
            generated_at: millis(row.generated_at)?,
            received_at: millis(row.received_at)?,
            state: row.state.parse()?,
            attempts: u32::try_from(row.attempts)
                .map_err(|_| StoreError::Corrupt("negative attempts"))?,
            run_after: millis(row.run_after)?,
            lease_owner: row.lease_owner,
            fence: row.fence,
            last_error: row.last_error,
            completed_at: row.completed_at.map(millis).transpose()?,
            snoozes: u32::try_from(row.snoozes)
                .map_err(|_| StoreError::Corrupt("negative snoozes"))?,
            key_id: row.key_id,
            round_start: u32::try_from(row.round_start)
                .map_err(|_| StoreError::Corrupt("negative round start"))?,
        })
    }
}

/// What differs between the SQL databases the inbox supports; everything else is shared SQL
/// (both take `$N` placeholders). Sealed: the built-in dialects are [`SqliteDialect`] and
/// [`PostgresDialect`]; another engine implements [`Store`](crate::Store) itself and runs the
/// [conformance suite](crate::conformance).
pub trait SqlDialect: sealed::Sealed + Send + Sync + 'static {
    /// The sqlx database.
    #[doc(hidden)]
    type Db: sqlx::Database;
    /// The name shown in `Debug` and messages.
    #[doc(hidden)]
    const NAME: &'static str;
    /// Claims due deliveries: `$1` owner, `$2` lease expiry, `$3` now, `$4` limit; returns the
    /// record's columns and the body.
    #[doc(hidden)]
    const CLAIM: &'static str;
    /// Claims due expectations, with the same parameters; returns the expectation's columns.
    #[doc(hidden)]
    const CLAIM_EXPECTATIONS: &'static str;
    /// How a transaction that writes begins (SQLite takes the write lock at once, so two
    /// claimers never read the same due rows).
    #[doc(hidden)]
    const BEGIN_WRITE: &'static str;
    /// What serializes appends to the audit log's hash chain within a write transaction
    /// (SQLite's `BEGIN IMMEDIATE` already does).
    #[doc(hidden)]
    const LOCK_AUDIT: Option<&'static str>;
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
    ) -> futures_util::future::BoxFuture<'_, Result<Option<Box<dyn crate::Wakeups>>, StoreError>>;
    /// The store as the Postgres store, whose completions can join a handler's transaction.
    #[cfg(feature = "postgres")]
    #[doc(hidden)]
    fn as_postgres(store: &SqlStore<Self>) -> Option<&crate::PostgresStore>
    where
        Self: Sized;
}

mod sealed {
    pub trait Sealed {}
}

/// The channel migration 0006's trigger notifies on each insert (Postgres).
#[cfg(feature = "postgres")]
const NOTIFY_CHANNEL: &str = "suki_inbox";

/// A Postgres `LISTEN` on [`NOTIFY_CHANNEL`].
#[cfg(feature = "postgres")]
struct Listener(sqlx::postgres::PgListener);

#[cfg(feature = "postgres")]
#[async_trait::async_trait]
impl crate::Wakeups for Listener {
    async fn wait(&mut self) -> Result<(), StoreError> {
        // `None`: the connection dropped (notifications may have been lost meanwhile). Waking
        // is right either way: the claim that follows finds what a lost one announced, and the
        // next call reconnects and listens again.
        let _ = self.0.try_recv().await.db()?;
        Ok(())
    }
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
    const CLAIM: &'static str = CLAIM_SQLITE;
    const CLAIM_EXPECTATIONS: &'static str = CLAIM_EXPECTATIONS_SQLITE;
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const LOCK_AUDIT: Option<&'static str> = None;
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
        Box::pin(crate::migrate::sqlite(pool))
    }
    fn subscribe(
        _pool: &sqlx::SqlitePool,
    ) -> futures_util::future::BoxFuture<'_, Result<Option<Box<dyn crate::Wakeups>>, StoreError>>
    {
        // One host: the inbox wakes the workers of its own process; others poll.
        Box::pin(std::future::ready(Ok(None)))
    }
    #[cfg(feature = "postgres")]
    fn as_postgres(_: &SqlStore<Self>) -> Option<&crate::PostgresStore> {
        None
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
    const CLAIM: &'static str = CLAIM_POSTGRES;
    const CLAIM_EXPECTATIONS: &'static str = CLAIM_EXPECTATIONS_POSTGRES;
    const BEGIN_WRITE: &'static str = "BEGIN";
    const LOCK_AUDIT: Option<&'static str> =
        Some("LOCK TABLE suki_inbox_audit IN SHARE ROW EXCLUSIVE MODE");
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
        Box::pin(crate::migrate::postgres(pool, schema))
    }
    fn subscribe(
        pool: &sqlx::PgPool,
    ) -> futures_util::future::BoxFuture<'_, Result<Option<Box<dyn crate::Wakeups>>, StoreError>>
    {
        Box::pin(async move {
            let mut listener = sqlx::postgres::PgListener::connect_with(pool).await.db()?;
            listener.listen(NOTIFY_CHANNEL).await.db()?;
            Ok(Some(Box::new(Listener(listener)) as Box<dyn crate::Wakeups>))
        })
    }
    fn as_postgres(store: &SqlStore<Self>) -> Option<&crate::PostgresStore> {
        Some(store)
    }
}

/// The built-in SQL store over a sqlx pool: [`SqliteStore`](crate::SqliteStore) and
/// [`PostgresStore`](crate::PostgresStore) are this with their [`SqlDialect`].
pub struct SqlStore<D: SqlDialect> {
    pub(crate) pool: sqlx::Pool<D::Db>,
    /// The Postgres schema the tables are in, when not the connection's own.
    pub(crate) schema: Option<std::sync::Arc<str>>,
    /// The SQLite database file and its identity when opened (`None` in memory or on
    /// Postgres), so that the health probe notices a file deleted or replaced under the running
    /// process, which SQLite itself does not (it keeps writing to the unlinked file).
    pub(crate) file: Option<(std::path::PathBuf, FileId)>,
    pub(crate) dialect: std::marker::PhantomData<D>,
}

impl<D: SqlDialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            schema: self.schema.clone(),
            file: self.file.clone(),
            dialect: std::marker::PhantomData,
        }
    }
}

impl<D: SqlDialect> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &D::NAME)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl<D: SqlDialect> SqlStore<D> {
    pub(crate) fn new(pool: sqlx::Pool<D::Db>, schema: Option<&str>) -> Self {
        Self {
            pool,
            schema: schema.map(std::sync::Arc::from),
            file: None,
            dialect: std::marker::PhantomData,
        }
    }

    /// The connection pool (e.g. to read the tables from your own code).
    pub fn pool(&self) -> &sqlx::Pool<D::Db> {
        &self.pool
    }

    /// `sql` (a constant or a statement built at run time) with the inbox's tables in their
    /// schema; as it is when the tables are in the connection's own.
    pub(crate) fn sql<'a>(
        &self,
        sql: impl Into<std::borrow::Cow<'a, str>>,
    ) -> std::borrow::Cow<'a, str> {
        let sql = sql.into();
        match &self.schema {
            None => sql,
            Some(schema) => std::borrow::Cow::Owned(
                sql.replace("suki_inbox_", &format!("\"{schema}\".suki_inbox_")),
            ),
        }
    }

    /// [`StoreError::FileGone`] when the SQLite database file is no longer the one opened.
    fn check_file(&self) -> Result<(), StoreError> {
        match &self.file {
            Some((path, id)) if FileId::of(path).as_ref() != Some(id) => Err(StoreError::FileGone),
            _ => Ok(()),
        }
    }
}

/// `?` for sqlx results: the error becomes an opaque [`StoreError::Database`].
pub(crate) trait Db<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> Db<T> for Result<T, sqlx::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Database(crate::store::DatabaseError::new(e)))
    }
}

/// The claim statement without the rows of paused kinds (spelled out: each kind's stored
/// spelling is one of the SDK's own constants, never outside text).
fn claim_sql(claim: &'static str, paused: &[EventKind]) -> std::borrow::Cow<'static, str> {
    if paused.is_empty() {
        return std::borrow::Cow::Borrowed(claim);
    }
    let kinds: Vec<String> = paused
        .iter()
        .map(|k| k.as_str())
        .filter(|k| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .map(|k| format!("'{k}'"))
        .collect();
    std::borrow::Cow::Owned(claim.replace(
        "/*paused*/",
        &format!("AND kind NOT IN ({})", kinds.join(", ")),
    ))
}

/// A statement's parameter, for statements built at run time.
#[derive(Clone, Copy)]
enum Value<'a> {
    Int(i64),
    Text(&'a str),
}

/// The parameters of a statement built at run time, in order.
#[derive(Default)]
struct Params<'a> {
    values: Vec<Value<'a>>,
}

impl<'a> Params<'a> {
    /// Appends `value`'s placeholder to `sql`.
    fn push(&mut self, sql: &mut String, value: Value<'a>, placeholder: fn(&mut String, usize)) {
        self.values.push(value);
        placeholder(sql, self.values.len());
    }

    fn bind_scalar<'q, DB, O>(
        &self,
        mut query: sqlx::query::QueryScalar<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>,
    ) -> sqlx::query::QueryScalar<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>
    where
        'a: 'q,
        DB: sqlx::Database,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        &'a str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        for value in &self.values {
            query = match *value {
                Value::Int(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
            };
        }
        query
    }
}

/// What an action that changes rows sets (`{now}` where the time goes) and the timeline event
/// it records on each.
fn change(action: &crate::Action) -> Option<(&'static str, &'static str)> {
    match action {
        crate::Action::Retry(_) => Some((
            "state = 'pending', round_start = attempts, snoozes = 0, run_after = {now}, \
             updated_at = {now}",
            "retried",
        )),
        crate::Action::Replay { .. } => Some((
            "state = 'pending', round_start = attempts, snoozes = 0, completed_at = NULL, \
             run_after = {now}, updated_at = {now}",
            "replayed",
        )),
        crate::Action::Discard { .. } => Some((
            "state = 'done', last_error = 'discarded', completed_at = {now}, \
             run_after = {now}, updated_at = {now}",
            "discarded",
        )),
        _ => None,
    }
}

/// The rows an action takes, as a `WHERE` condition (its parameters pushed to `params`).
fn selection<'a>(
    action: &'a crate::Action,
    params: &mut Params<'a>,
    placeholder: fn(&mut String, usize),
) -> String {
    use crate::{Action, Selection};
    let mut sql = String::new();
    match action {
        Action::Retry(Selection::Id(id)) => {
            sql.push_str("id = ");
            params.push(&mut sql, Value::Int(*id), placeholder);
            sql.push_str(
                " AND (state IN ('dead', 'pending') \
                 OR (state = 'done' AND last_error = 'discarded' AND body_erased_at IS NULL))",
            );
        }
        Action::Retry(Selection::Dead) => sql.push_str("state = 'dead'"),
        Action::Retry(Selection::DeadMatching(filter)) => {
            sql.push_str("state = 'dead'");
            if let Some(code) = &filter.code {
                sql.push_str(" AND last_error = ");
                params.push(&mut sql, Value::Text(code), placeholder);
            }
            if let Some(prefix) = &filter.code_prefix {
                let chars = i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX);
                sql.push_str(" AND substr(last_error, 1, CAST(");
                params.push(&mut sql, Value::Int(chars), placeholder);
                sql.push_str(" AS INTEGER)) = ");
                params.push(&mut sql, Value::Text(prefix), placeholder);
            }
            if let Some(since) = filter.since {
                sql.push_str(" AND updated_at >= ");
                params.push(&mut sql, Value::Int(stored(since)), placeholder);
            }
        }
        Action::Replay { since, kind } => {
            sql.push_str("state = 'done' AND completed_at >= ");
            params.push(&mut sql, Value::Int(stored(*since)), placeholder);
            sql.push_str(
                " AND (last_error IS NULL OR last_error <> 'discarded') AND body_erased_at IS NULL",
            );
            if let Some(kind) = kind {
                sql.push_str(" AND kind = ");
                params.push(&mut sql, Value::Text(kind.as_str()), placeholder);
            }
        }
        Action::Discard { id, .. } => {
            sql.push_str("id = ");
            params.push(&mut sql, Value::Int(*id), placeholder);
            sql.push_str(" AND state IN ('dead', 'pending')");
        }
        Action::Purge { before } => {
            sql.push_str("state = 'done' AND completed_at < ");
            params.push(&mut sql, Value::Int(stored(*before)), placeholder);
        }
        // No row.
        _ => sql.push_str("1 = 0"),
    }
    sql
}

/// The stored scope of a pause: a kind, or `*` for the whole inbox.
fn pause_scope(kind: Option<&EventKind>) -> &'static str {
    kind.map_or("*", |k| k.as_str())
}

/// Operator events for `n` rows: per row its id, the time, the event, the detail and the
/// actor, each parameter once and in order.
fn history_insert(n: usize, placeholder: fn(&mut String, usize)) -> String {
    let mut sql = String::from(
        "INSERT INTO suki_inbox_history (delivery_id, at, event, detail, actor) VALUES ",
    );
    for i in 0..n {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for k in 1..=5 {
            if k > 1 {
                sql.push_str(", ");
            }
            placeholder(&mut sql, i * 5 + k);
        }
        sql.push(')');
    }
    sql
}

/// Stored bodies by key (erased ones left out).
pub(crate) const KEY_COUNTS: &str = "SELECT key_id, COUNT(*) FROM suki_inbox_deliveries \
     WHERE body_erased_at IS NULL GROUP BY key_id";

/// A page of stored bodies in id order.
pub(crate) const BODIES: &str = "SELECT id, dedup_key, key_id, body FROM suki_inbox_deliveries \
     WHERE id > $1 AND body_erased_at IS NULL ORDER BY id LIMIT $2";

/// A body re-sealed, if the row's key is still the one it was read with.
/// (Never a body erased meanwhile: an erased row's key id is cleared, which matches a body read
/// in clear.)
pub(crate) const RESEAL: &str = "UPDATE suki_inbox_deliveries SET body = $1, key_id = $2 \
     WHERE id = $3 AND key_id IS NOT DISTINCT FROM $4 AND body_erased_at IS NULL";

pub(crate) const TRACE_BY_SESSION: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM suki_inbox_deliveries WHERE session_id = $1 ORDER BY id LIMIT $2"
);

pub(crate) const TRACE_BY_ENCOUNTER: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM suki_inbox_deliveries WHERE encounter_id = $1 ORDER BY id LIMIT $2"
);

pub(crate) const EXPECTATIONS_BY_ENCOUNTER: &str = concat!(
    "SELECT ",
    expectation_columns!(),
    " FROM suki_inbox_expectations WHERE encounter_id = $1 ORDER BY ended_at LIMIT 100"
);

/// Dead rows by code, through the dead rows' partial index.
pub(crate) const DEAD_GROUPS: &str = "SELECT last_error, COUNT(*), MAX(updated_at) \
     FROM suki_inbox_deliveries WHERE state = 'dead' \
     GROUP BY last_error ORDER BY MAX(updated_at) DESC LIMIT $1";

pub(crate) const PAUSES: &str =
    "SELECT scope, paused_at, paused_by, reason FROM suki_inbox_pauses ORDER BY scope";

pub(crate) const PAUSED: &str = "SELECT COUNT(*) FROM suki_inbox_pauses WHERE scope = $1";

pub(crate) const PAUSE: &str = "INSERT INTO suki_inbox_pauses (scope, paused_at, paused_by, reason) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (scope) DO NOTHING";

pub(crate) const RESUME: &str = "DELETE FROM suki_inbox_pauses WHERE scope = $1";

pub(crate) const AUDIT: &str = "SELECT id, at, actor, origin, action, target, rows, detail, \
     prev_hash, hash FROM suki_inbox_audit WHERE at >= $1 ORDER BY id LIMIT $2";

pub(crate) const AUDIT_CHAIN: &str = "SELECT id, at, actor, origin, action, target, rows, \
     detail, prev_hash, hash FROM suki_inbox_audit WHERE id > $1 ORDER BY id LIMIT $2";

pub(crate) const LAST_AUDIT: &str = "SELECT id, at, actor, origin, action, target, rows, \
     detail, prev_hash, hash FROM suki_inbox_audit WHERE action = $1 ORDER BY id DESC LIMIT 1";

/// The newest entry's hash (what the next entry chains to).
pub(crate) const AUDIT_HEAD: &str = "SELECT hash FROM suki_inbox_audit ORDER BY id DESC LIMIT 1";

/// The latest audit purge's anchor.
pub(crate) const AUDIT_ANCHOR: &str =
    "SELECT anchor FROM suki_inbox_audit_purges ORDER BY id DESC LIMIT 1";

pub(crate) const AUDIT_INSERT: &str = "INSERT INTO suki_inbox_audit \
     (at, actor, origin, action, target, rows, detail, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// The first entry an audit purge keeps: the oldest within retention.
pub(crate) const AUDIT_FIRST_KEPT: &str = "SELECT MIN(id) FROM suki_inbox_audit WHERE at >= $1";

/// The last entry an audit purge deletes (the newest before the first kept), with its hash.
pub(crate) const AUDIT_LAST_PURGED: &str =
    "SELECT id, hash FROM suki_inbox_audit WHERE id < $1 ORDER BY id DESC LIMIT 1";

/// An audit purge's record, written before its delete (the delete trigger lets through only
/// entries up to the latest record's `through_id`).
pub(crate) const AUDIT_PURGE_RECORD: &str = "INSERT INTO suki_inbox_audit_purges \
     (at, before_at, through_id, anchor) VALUES ($1, $2, $3, $4)";

pub(crate) const PURGE_AUDIT: &str = "DELETE FROM suki_inbox_audit WHERE id <= $1";

pub(crate) const COUNT_AUDIT_BEFORE: &str = "SELECT COUNT(*) FROM suki_inbox_audit WHERE id < \
     COALESCE((SELECT MIN(id) FROM suki_inbox_audit WHERE at >= $1), 9223372036854775807)";

/// The timeline's columns, in [`HistoryRow`]'s order.
macro_rules! history_columns {
    () => {
        "delivery_id, at, event, started_at, attempt, worker, code, next_run, detail, actor"
    };
}

/// A timeline event as the database returns it.
#[derive(sqlx::FromRow)]
pub(crate) struct HistoryRow {
    delivery_id: i64,
    at: i64,
    event: String,
    started_at: Option<i64>,
    attempt: Option<i32>,
    worker: Option<String>,
    code: Option<String>,
    next_run: Option<i64>,
    detail: Option<String>,
    actor: Option<String>,
}

impl TryFrom<HistoryRow> for crate::TimelineEvent {
    type Error = StoreError;
    fn try_from(row: HistoryRow) -> Result<Self, StoreError> {
        Ok(Self {
            delivery_id: row.delivery_id,
            at: millis(row.at)?,
            event: row.event,
            started_at: row.started_at.map(millis).transpose()?,
            attempt: row.attempt.map(|a| u32::try_from(a).unwrap_or(0)),
            worker: row.worker,
            code: row.code,
            next_run: row.next_run.map(millis).transpose()?,
            detail: row.detail,
            actor: row.actor,
        })
    }
}

/// An audit entry as the database returns it.
#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    origin: String,
    action: String,
    target: Option<String>,
    rows: i64,
    detail: Option<String>,
    prev_hash: String,
    hash: String,
}

impl TryFrom<AuditRow> for crate::AuditEntry {
    type Error = StoreError;
    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            at: millis(row.at)?,
            actor: row.actor,
            origin: row.origin,
            action: row.action,
            target: row.target,
            rows: u64::try_from(row.rows).unwrap_or(0),
            detail: row.detail,
            prev_hash: row.prev_hash,
            hash: row.hash,
        })
    }
}

/// A pause as the database returns it.
#[derive(sqlx::FromRow)]
pub(crate) struct PauseRow {
    scope: String,
    paused_at: i64,
    paused_by: String,
    reason: Option<String>,
}

impl TryFrom<PauseRow> for crate::Pause {
    type Error = StoreError;
    fn try_from(row: PauseRow) -> Result<Self, StoreError> {
        Ok(Self {
            kind: match row.scope.as_str() {
                "*" => None,
                kind => {
                    Some(EventKind::parse(kind).ok_or(StoreError::Corrupt("unknown paused kind"))?)
                }
            },
            paused_at: millis(row.paused_at)?,
            paused_by: row.paused_by,
            reason: row.reason,
        })
    }
}

/// The group commit's multi-row insert for `n` rows (11 parameters each, once and in order;
/// the constant values are written out).
fn insert_many(n: usize, placeholder: fn(&mut String, usize)) -> String {
    let mut sql = String::from(INSERT_MANY);
    sql.push_str("VALUES ");
    for i in 0..n {
        let p = i * 11;
        sql.push_str(if i == 0 { "(" } else { ", (" });
        // dedup_key … body, key_id; then state, attempts, run_after, fence, updated_at
        for k in 1..=9 {
            if k > 1 {
                sql.push_str(", ");
            }
            placeholder(&mut sql, p + k);
        }
        sql.push_str(", 'pending', 0, ");
        placeholder(&mut sql, p + 10);
        sql.push_str(", 0, ");
        placeholder(&mut sql, p + 11);
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key");
    sql
}

/// An implementation of one of the store's traits for every [`SqlStore`], with the bounds the
/// shared SQL needs of its database (written once).
macro_rules! sql_impl {
    ($trait:path { $($body:tt)* }) => {
        #[async_trait::async_trait]
        impl<D: SqlDialect> $trait for SqlStore<D>
        where
        for<'c> &'c mut <D::Db as sqlx::Database>::Connection: sqlx::Executor<'c, Database = D::Db>,
        for<'c> &'c sqlx::Pool<D::Db>: sqlx::Executor<'c, Database = D::Db>,
        for<'q> <D::Db as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, D::Db>,
        for<'q> i64: sqlx::Encode<'q, D::Db> + sqlx::Decode<'q, D::Db> + sqlx::Type<D::Db>,
        for<'q> &'q str: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
        for<'q> Option<&'q str>: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
        for<'q> &'q [u8]: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
        for<'q> Vec<u8>: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
        for<'q> String: sqlx::Decode<'q, D::Db> + sqlx::Type<D::Db>,
        for<'q> Option<i64>: sqlx::Decode<'q, D::Db> + sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
        for<'r> Row: sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
        for<'r> ClaimRow: sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
        for<'r> ExpectationRow: sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
        for<'r> (String, i64): sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
        for<'r> (Option<String>, i64): sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
        for<'r> (i64, String, i64): sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
        for<'r> HistoryRow: sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
        for<'r> AuditRow: sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
        for<'r> PauseRow: sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
        for<'r> (Option<String>, i64, i64): sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
        for<'r> (i64, String, Option<String>, Vec<u8>): sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
        for<'q> Option<Vec<u8>>: sqlx::Decode<'q, D::Db> + sqlx::Type<D::Db>,
        usize: sqlx::ColumnIndex<<D::Db as sqlx::Database>::Row>,
        {
            $($body)*
        }
    };
}

sql_impl! {
    crate::Store {
    async fn migrate(&self) -> Result<(), StoreError> {
        D::migrate(&self.pool, self.schema.as_deref()).await
    }

    #[cfg(feature = "postgres")]
    fn postgres(&self) -> Option<&crate::PostgresStore> {
        D::as_postgres(self)
    }
}
}

sql_impl! {
    crate::DeliveryQueue {
    async fn lead(&self, lead: crate::Lead<'_>) -> Result<bool, StoreError> {
        let sql = self.sql(LEAD);
        let done = sqlx::query(&sql)
            .bind(lead.task)
            .bind(lead.owner)
            .bind(stored(lead.now))
            .bind(stored(lead.until))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn subscribe(&self) -> Result<Option<Box<dyn crate::Wakeups>>, StoreError> {
        D::subscribe(&self.pool).await
    }

    async fn insert(
        &self,
        batch: &[crate::NewDelivery],
    ) -> Result<Vec<suki_ambient_core::Stored>, StoreError> {
        self.insert_with_key(batch, None).await
    }

    async fn insert_with_key(
        &self,
        batch: &[crate::NewDelivery],
        key: Option<&crate::BodyKey>,
    ) -> Result<Vec<suki_ambient_core::Stored>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // One multi-row statement per transaction (per 256 rows: the databases bound the number
        // of parameters of one statement): one round trip for a group commit. One statement is
        // atomic by itself: no explicit transaction (and its two extra round trips) unless the
        // batch needs several.
        let mut tx = if batch.len() > 256 {
            Some(self.pool.begin_with(D::BEGIN_WRITE).await.db()?)
        } else {
            None
        };
        let mut inserted = std::collections::HashSet::new();
        for chunk in batch.chunks(256) {
            let sql = self.sql(insert_many(chunk.len(), D::placeholder));
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for d in chunk {
                query = query
                    .bind(d.dedup_key.as_str())
                    .bind(d.source.as_str())
                    .bind(d.kind.as_str())
                    .bind(d.session_id.as_ref().map(SessionId::as_str))
                    .bind(d.encounter_id.as_ref().map(EncounterId::as_str))
                    .bind(stored(d.generated_at))
                    .bind(stored(d.received_at));
                // A body to seal is sealed into an argument the statement owns: no copy of it.
                query = match key.filter(|_| d.key_id.is_none()) {
                    Some(key) => query
                        .bind(
                            key.try_seal(d.dedup_key.as_bytes(), &d.body)
                                .ok_or(StoreError::SealFailed)?,
                        )
                        .bind(Some(key.id())),
                    None => query.bind(&d.body[..]).bind(d.key_id.as_deref()),
                };
                query = query
                    .bind(stored(d.received_at))
                    .bind(stored(d.received_at));
            }
            let keys = match tx.as_mut() {
                Some(tx) => query.fetch_all(&mut **tx).await.db()?,
                None => query.fetch_all(&self.pool).await.db()?,
            };
            inserted.extend(keys);
        }
        if let Some(tx) = tx {
            tx.commit().await.db()?;
        }
        // A key repeated within the batch was inserted once: its first delivery.
        Ok(batch
            .iter()
            .map(|d| {
                if inserted.remove(&d.dedup_key) {
                    suki_ambient_core::Stored::Accepted
                } else {
                    suki_ambient_core::Stored::Duplicate
                }
            })
            .collect())
    }

    async fn claim(
        &self,
        request: crate::ClaimRequest<'_>,
    ) -> Result<Vec<crate::Claim>, StoreError> {
        let sql = self.sql(claim_sql(D::CLAIM, request.paused));
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.db()?;
        let rows: Vec<ClaimRow> = sqlx::query_as(&sql)
            .bind(request.owner)
            .bind(stored(request.until()))
            .bind(stored(request.now))
            .bind(i64::from(request.limit))
            .fetch_all(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        rows.into_iter()
            .map(|r| {
                Ok(crate::Claim {
                    body: bytes::Bytes::from(r.body),
                    record: r.row.try_into()?,
                })
            })
            .collect()
    }

    async fn heartbeat(&self, lease: crate::Lease, until: UnixMillis) -> Result<bool, StoreError> {
        let sql = self.sql(HEARTBEAT);
        let done = sqlx::query(&sql)
            .bind(lease.id)
            .bind(lease.fence)
            .bind(stored(until))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn complete(
        &self,
        lease: crate::Lease,
        now: UnixMillis,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(COMPLETE);
        let done = sqlx::query(&sql)
            .bind(lease.id)
            .bind(lease.fence)
            .bind(stored(now))
            .bind(detail)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn fail(&self, attempt: crate::FailedAttempt<'_>) -> Result<bool, StoreError> {
        let crate::FailedAttempt {
            lease,
            now,
            next,
            error,
            detail,
        } = attempt;
        let done = match next {
            crate::Next::RetryAt(at) | crate::Next::Snooze(at) => {
                let sql = self.sql(if matches!(next, crate::Next::Snooze(_)) {
                    FAIL_SNOOZE
                } else {
                    FAIL_RETRY
                });
                sqlx::query(&sql)
                    .bind(lease.id)
                    .bind(lease.fence)
                    .bind(stored(at))
                    .bind(error)
                    .bind(stored(now))
                    .bind(detail)
                    .execute(&self.pool)
                    .await
                    .db()?
            }
            crate::Next::Dead => {
                let sql = self.sql(FAIL_DEAD);
                sqlx::query(&sql)
                    .bind(lease.id)
                    .bind(lease.fence)
                    .bind(error)
                    .bind(stored(now))
                    .bind(detail)
                    .execute(&self.pool)
                    .await
                    .db()?
            }
        };
        Ok(D::rows_affected(&done) == 1)
    }

    async fn release(&self, lease: crate::Lease, now: UnixMillis) -> Result<bool, StoreError> {
        let sql = self.sql(RELEASE);
        let done = sqlx::query(&sql)
            .bind(lease.id)
            .bind(lease.fence)
            .bind(stored(now))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn release_owner(&self, owner: &str, now: UnixMillis) -> Result<u64, StoreError> {
        let sql = self.sql(RELEASE_OWNER);
        let done = sqlx::query(&sql)
            .bind(owner)
            .bind(stored(now))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done))
    }

    async fn keep_fetched(&self, lease: crate::Lease, fetched: &[u8]) -> Result<bool, StoreError> {
        let sql = self.sql(KEEP_FETCHED);
        let done = sqlx::query(&sql)
            .bind(lease.id)
            .bind(lease.fence)
            .bind(fetched)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn fetched(&self, id: i64) -> Result<Option<bytes::Bytes>, StoreError> {
        let sql = self.sql(FETCHED);
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        let fetched: Option<Vec<u8>> = match row {
            Some(row) => sqlx::Row::try_get(&row, 0usize).db()?,
            None => None,
        };
        Ok(fetched.map(bytes::Bytes::from))
    }

    async fn erase_bodies(&self, before: UnixMillis, now: UnixMillis) -> Result<u64, StoreError> {
        let sql = self.sql(ERASE_BODIES);
        let empty: &[u8] = &[];
        let done = sqlx::query(&sql)
            .bind(empty)
            .bind(stored(now))
            .bind(stored(before))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done))
    }

    async fn purge(&self, before: UnixMillis) -> Result<u64, StoreError> {
        let (history, purge) = (self.sql(PURGE_HISTORY), self.sql(PURGE));
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.db()?;
        sqlx::query(&history)
            .bind(stored(before))
            .execute(&mut *tx)
            .await
            .db()?;
        let done = sqlx::query(&purge)
            .bind(stored(before))
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(D::rows_affected(&done))
    }

    async fn probe(&self, now: UnixMillis) -> Result<(), StoreError> {
        self.check_file()?;
        let sql = self.sql(PROBE);
        let done = sqlx::query(&sql)
            .bind(stored(now))
            .execute(&self.pool)
            .await
            .db()?;
        if D::rows_affected(&done) == 1 {
            Ok(())
        } else {
            Err(StoreError::Corrupt("the health probe row is missing"))
        }
    }
}
}

sql_impl! {
    crate::Expectations {
    async fn register(&self, new: crate::NewExpectation<'_>) -> Result<bool, StoreError> {
        let e = new.expected;
        let sql = self.sql(EXPECT);
        let done = sqlx::query(&sql)
            .bind(e.session_id.as_str())
            .bind(e.encounter_id.as_str())
            .bind(e.provider_id.as_deref())
            .bind(e.kind.as_str())
            .bind(stored(e.ended_at))
            .bind(stored(new.first_check))
            .bind(stored(new.now))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn claim_expectations(
        &self,
        request: crate::ClaimRequest<'_>,
    ) -> Result<Vec<crate::ExpectationRecord>, StoreError> {
        let sql = self.sql(D::CLAIM_EXPECTATIONS);
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.db()?;
        let rows: Vec<ExpectationRow> = sqlx::query_as(&sql)
            .bind(request.owner)
            .bind(stored(request.until()))
            .bind(stored(request.now))
            .bind(i64::from(request.limit))
            .fetch_all(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn finish_checks(
        &self,
        now: UnixMillis,
        checks: &[crate::FinishedCheck],
    ) -> Result<Vec<bool>, StoreError> {
        if checks.is_empty() {
            return Ok(Vec::new());
        }
        // One statement per chunk (one for a pass of the reconciler): no transaction unless the
        // batch needs several.
        let mut tx = if checks.len() > FINISH_CHUNK {
            Some(self.pool.begin_with(D::BEGIN_WRITE).await.db()?)
        } else {
            None
        };
        let mut recorded = std::collections::HashSet::new();
        for chunk in checks.chunks(FINISH_CHUNK) {
            let sql = self.sql(finish_many(chunk.len(), D::placeholder));
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for check in chunk {
                let (kind, next, status) = match &check.outcome {
                    crate::CheckOutcome::Again { status, next_check } => {
                        ("again", Some(stored(*next_check)), status)
                    }
                    crate::CheckOutcome::Recovered { status }
                    | crate::CheckOutcome::AlreadyStored { status } => ("stored", None, status),
                    crate::CheckOutcome::GaveUp { status } => ("gave_up", None, status),
                };
                query = query
                    .bind(check.lease.session_id.as_str())
                    .bind(check.lease.fence)
                    .bind(kind)
                    .bind(next)
                    .bind(status.as_str())
                    .bind(stored(now));
            }
            let ids = match tx.as_mut() {
                Some(tx) => query.fetch_all(&mut **tx).await.db()?,
                None => query.fetch_all(&self.pool).await.db()?,
            };
            recorded.extend(ids);
        }
        if let Some(tx) = tx {
            tx.commit().await.db()?;
        }
        Ok(checks
            .iter()
            .map(|c| recorded.contains(c.lease.session_id.as_str()))
            .collect())
    }

    async fn sweep(&self, since: UnixMillis, now: UnixMillis) -> Result<u64, StoreError> {
        let sql = self.sql(SWEEP);
        let done = sqlx::query(&sql)
            .bind(stored(since))
            .bind(stored(now))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done))
    }
}
}

sql_impl! {
    crate::ReadModel {
    async fn counts(&self) -> Result<crate::Counts, StoreError> {
        let (count_states, oldest) = (self.sql(COUNT_STATES), self.sql(OLDEST_UNFINISHED));
        let states: Vec<(String, i64)> = sqlx::query_as(&count_states)
            .fetch_all(&self.pool)
            .await
            .db()?;
        let oldest: Option<i64> = sqlx::query_scalar(&oldest)
            .fetch_one(&self.pool)
            .await
            .db()?;
        let mut counts = crate::Counts::default();
        for (state, n) in states {
            let n = u64::try_from(n).unwrap_or(0);
            match state.parse::<crate::State>()? {
                crate::State::Pending => counts.pending = n,
                crate::State::Running => counts.running = n,
                crate::State::Done => counts.done = n,
                crate::State::Dead => counts.dead = n,
            }
        }
        counts.oldest_unfinished_received_at =
            oldest.and_then(|t| u64::try_from(t).ok()).map(UnixMillis);
        Ok(counts)
    }

    async fn retrying(&self, limit: u32) -> Result<Vec<crate::DeliveryRecord>, StoreError> {
        let sql = self.sql(LIST_RETRYING);
        let rows: Vec<Row> = sqlx::query_as(&sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn list(
        &self,
        state: Option<crate::State>,
        limit: u32,
    ) -> Result<Vec<crate::DeliveryRecord>, StoreError> {
        let rows: Vec<Row> = match state {
            Some(crate::State::Dead) => {
                let sql = self.sql(LIST_DEAD);
                sqlx::query_as(&sql)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .db()?
            }
            Some(state) => {
                let sql = self.sql(LIST_STATE);
                sqlx::query_as(&sql)
                    .bind(state.as_str())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .db()?
            }
            None => {
                let sql = self.sql(LIST_ALL);
                sqlx::query_as(&sql)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .db()?
            }
        };
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn get(&self, id: i64) -> Result<Option<crate::DeliveryRecord>, StoreError> {
        let sql = self.sql(GET);
        let row: Option<Row> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.map(TryInto::try_into).transpose()
    }

    async fn expectation(
        &self,
        session_id: &SessionId,
    ) -> Result<Option<crate::ExpectationRecord>, StoreError> {
        let sql = self.sql(GET_EXPECTATION);
        let row: Option<ExpectationRow> = sqlx::query_as(&sql)
            .bind(session_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.map(TryInto::try_into).transpose()
    }

    async fn expectations(&self, limit: u32) -> Result<Vec<crate::ExpectationRecord>, StoreError> {
        let sql = self.sql(LIST_EXPECTATIONS);
        let rows: Vec<ExpectationRow> = sqlx::query_as(&sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn hourly(&self, since: UnixMillis) -> Result<Vec<crate::HourCount>, StoreError> {
        let sql = self.sql(HOURLY);
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(&sql)
            .bind(stored(since))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter()
            .map(|(hour, state, n)| {
                Ok(crate::HourCount {
                    hour_start: UnixMillis(u64::try_from(hour).unwrap_or(0) * 3_600_000),
                    state: state.parse()?,
                    count: u64::try_from(n).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn expectation_counts(&self) -> Result<crate::ExpectationCounts, StoreError> {
        let sql = self.sql(COUNT_RESOLUTIONS);
        let rows: Vec<(Option<String>, i64)> =
            sqlx::query_as(&sql).fetch_all(&self.pool).await.db()?;
        let mut counts = crate::ExpectationCounts::default();
        for (resolution, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            counts.expected += n;
            match resolution.as_deref() {
                None => counts.open += n,
                Some("webhook") => counts.webhook += n,
                Some("poll") => counts.poll += n,
                Some(_) => counts.gave_up += n,
            }
        }
        Ok(counts)
    }

    async fn trace(&self, id: &str, limit: u32) -> Result<crate::Trace, StoreError> {
        let mut rows: Vec<Row> = Vec::new();
        for sql in [TRACE_BY_SESSION, TRACE_BY_ENCOUNTER] {
            let sql = self.sql(sql);
            let found: Vec<Row> = sqlx::query_as(&sql)
                .bind(id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .db()?;
            rows.extend(found);
        }
        rows.sort_by_key(|r| r.id);
        rows.dedup_by_key(|r| r.id);
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let mut events = Vec::new();
        for chunk in rows.chunks(200) {
            let mut sql = String::from(concat!(
                "SELECT ",
                history_columns!(),
                " FROM suki_inbox_history WHERE delivery_id IN ("
            ));
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                D::placeholder(&mut sql, i + 1);
            }
            sql.push_str(") ORDER BY id");
            let sql = self.sql(sql);
            let mut query = sqlx::query_as::<_, HistoryRow>(&sql);
            for r in chunk {
                query = query.bind(r.id);
            }
            for row in query.fetch_all(&self.pool).await.db()? {
                events.push(row.try_into()?);
            }
        }
        let mut expectations: Vec<crate::ExpectationRecord> = Vec::new();
        for sql in [GET_EXPECTATION, EXPECTATIONS_BY_ENCOUNTER] {
            let sql = self.sql(sql);
            let found: Vec<ExpectationRow> = sqlx::query_as(&sql)
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .db()?;
            for row in found {
                let record: crate::ExpectationRecord = row.try_into()?;
                if !expectations
                    .iter()
                    .any(|e| e.session_id == record.session_id)
                {
                    expectations.push(record);
                }
            }
        }
        Ok(crate::Trace {
            deliveries: rows
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
            events,
            expectations,
        })
    }

    async fn dead_groups(&self, limit: u32) -> Result<Vec<crate::DeadGroup>, StoreError> {
        let sql = self.sql(DEAD_GROUPS);
        let rows: Vec<(Option<String>, i64, i64)> = sqlx::query_as(&sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter()
            .map(|(code, count, latest)| {
                Ok(crate::DeadGroup {
                    code,
                    count: u64::try_from(count).unwrap_or(0),
                    latest: millis(latest)?,
                })
            })
            .collect()
    }

    async fn pauses(&self) -> Result<Vec<crate::Pause>, StoreError> {
        let sql = self.sql(PAUSES);
        let rows: Vec<PauseRow> = sqlx::query_as(&sql).fetch_all(&self.pool).await.db()?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn audit(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<crate::AuditEntry>, StoreError> {
        let sql = self.sql(AUDIT);
        let rows: Vec<AuditRow> = sqlx::query_as(&sql)
            .bind(stored(since))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn audit_chain(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<crate::AuditEntry>, StoreError> {
        let sql = self.sql(AUDIT_CHAIN);
        let rows: Vec<AuditRow> = sqlx::query_as(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn audit_anchor(&self) -> Result<Option<String>, StoreError> {
        let sql = self.sql(AUDIT_ANCHOR);
        sqlx::query_scalar(&sql).fetch_optional(&self.pool).await.db()
    }

    async fn last_audit(&self, action: &str) -> Result<Option<crate::AuditEntry>, StoreError> {
        let sql = self.sql(LAST_AUDIT);
        let row: Option<AuditRow> = sqlx::query_as(&sql)
            .bind(action)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.map(TryInto::try_into).transpose()
    }

    async fn key_counts(&self) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        let sql = self.sql(KEY_COUNTS);
        let rows: Vec<(Option<String>, i64)> =
            sqlx::query_as(&sql).fetch_all(&self.pool).await.db()?;
        Ok(rows
            .into_iter()
            .map(|(key, n)| (key, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    async fn bodies(&self, after: i64, limit: u32) -> Result<Vec<crate::StoredBody>, StoreError> {
        let sql = self.sql(BODIES);
        let rows: Vec<(i64, String, Option<String>, Vec<u8>)> = sqlx::query_as(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .db()?;
        Ok(rows
            .into_iter()
            .map(|(id, dedup_key, key_id, body)| crate::StoredBody {
                id,
                dedup_key,
                key_id,
                body: bytes::Bytes::from(body),
            })
            .collect())
    }
}
}

sql_impl! {
    crate::Operations {
    async fn act(&self, act: crate::Act<'_>) -> Result<u64, StoreError> {
        use crate::Action;
        let now = stored(act.now);
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.db()?;
        let rows = match act.action {
            Action::Pause { kind, reason } => {
                let sql = self.sql(PAUSE);
                let done = sqlx::query(&sql)
                    .bind(pause_scope(kind.as_ref()))
                    .bind(now)
                    .bind(act.actor.name.as_str())
                    .bind(reason.as_deref())
                    .execute(&mut *tx)
                    .await
                    .db()?;
                D::rows_affected(&done)
            }
            Action::Resume { kind } => {
                let sql = self.sql(RESUME);
                let done = sqlx::query(&sql)
                    .bind(pause_scope(kind.as_ref()))
                    .execute(&mut *tx)
                    .await
                    .db()?;
                D::rows_affected(&done)
            }
            Action::Purge { before } => {
                let (history, purge) = (self.sql(PURGE_HISTORY), self.sql(PURGE));
                sqlx::query(&history)
                    .bind(stored(*before))
                    .execute(&mut *tx)
                    .await
                    .db()?;
                let done = sqlx::query(&purge)
                    .bind(stored(*before))
                    .execute(&mut *tx)
                    .await
                    .db()?;
                D::rows_affected(&done)
            }
            Action::PurgeAudit { before } => {
                if let Some(lock) = D::LOCK_AUDIT {
                    sqlx::query(&self.sql(lock)).execute(&mut *tx).await.db()?;
                }
                let first_kept: Option<i64> = sqlx::query_scalar(&self.sql(AUDIT_FIRST_KEPT))
                    .bind(stored(*before))
                    .fetch_one(&mut *tx)
                    .await
                    .db()?;
                let last: Option<(i64, String)> =
                    sqlx::query_as(&self.sql(AUDIT_LAST_PURGED))
                        .bind(first_kept.unwrap_or(i64::MAX))
                        .fetch_optional(&mut *tx)
                        .await
                        .db()?;
                match last {
                    None => 0,
                    Some((through, anchor)) => {
                        sqlx::query(&self.sql(AUDIT_PURGE_RECORD))
                            .bind(now)
                            .bind(stored(*before))
                            .bind(through)
                            .bind(anchor.as_str())
                            .execute(&mut *tx)
                            .await
                            .db()?;
                        let done = sqlx::query(&self.sql(PURGE_AUDIT))
                            .bind(through)
                            .execute(&mut *tx)
                            .await
                            .db()?;
                        D::rows_affected(&done)
                    }
                }
            }
            Action::ViewTimeline { .. }
            | Action::SignIn { .. }
            | Action::Rekey(_)
            | Action::KeysSeen { .. }
            | Action::AuditFloor { .. } => 0,
            Action::Retry(_) | Action::Replay { .. } | Action::Discard { .. } => {
                let Some((set, event)) = change(act.action) else {
                    return Err(StoreError::Unsupported("this action"));
                };
                let mut params = Params::default();
                let mut sql = String::from("UPDATE suki_inbox_deliveries SET ");
                // The SET clause's parameters (now, each time it appears), then the selection's.
                for (i, part) in set.split("{now}").enumerate() {
                    if i > 0 {
                        params.push(&mut sql, Value::Int(now), D::placeholder);
                    }
                    sql.push_str(part);
                }
                sql.push_str(" WHERE ");
                let selection = selection(act.action, &mut params, D::placeholder);
                sql.push_str(&selection);
                sql.push_str(" RETURNING id");
                let sql = self.sql(sql);
                let ids: Vec<i64> = params
                    .bind_scalar(sqlx::query_scalar::<_, i64>(&sql))
                    .fetch_all(&mut *tx)
                    .await
                    .db()?;
                let detail = match act.action {
                    Action::Discard { reason, .. } => Some(reason.as_str()),
                    _ => None,
                };
                // A row made due again keeps its attempt count and its timeline (the trigger
                // of migration 0006/0007 keeps its latest 20 worker events).
                for chunk in ids.chunks(200) {
                    let sql = self.sql(history_insert(chunk.len(), D::placeholder));
                    let mut query = sqlx::query(&sql);
                    for id in chunk {
                        query = query
                            .bind(*id)
                            .bind(now)
                            .bind(event)
                            .bind(detail)
                            .bind(act.actor.name.as_str());
                    }
                    query.execute(&mut *tx).await.db()?;
                }
                u64::try_from(ids.len()).unwrap_or(u64::MAX)
            }
        };
        // The retention purge the worker runs hourly is recorded when it deleted something.
        if rows == 0
            && matches!(act.action, Action::Purge { .. })
            && *act.actor == crate::Actor::application()
        {
            tx.commit().await.db()?;
            return Ok(rows);
        }
        let (target, detail) = act.action.describe();
        // The chain: appends are serialized (Postgres: a lock held to the commit; SQLite's
        // write transaction is already exclusive), each chained to the newest entry's hash,
        // or to the latest purge's anchor when the log is empty.
        if let Some(lock) = D::LOCK_AUDIT {
            sqlx::query(&self.sql(lock)).execute(&mut *tx).await.db()?;
        }
        let head: Option<String> = sqlx::query_scalar(&self.sql(AUDIT_HEAD))
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let prev_hash = match head {
            Some(hash) => hash,
            None => sqlx::query_scalar(&self.sql(AUDIT_ANCHOR))
                .fetch_optional(&mut *tx)
                .await
                .db()?
                .unwrap_or_default(),
        };
        let entry = crate::AuditEntry {
            id: 0,
            at: act.now,
            actor: act.actor.name.clone(),
            origin: act.actor.origin.clone(),
            action: act.action.name().to_owned(),
            target,
            rows,
            detail,
            prev_hash: String::new(),
            hash: String::new(),
        };
        let hash = crate::audit_hash(&prev_hash, &entry);
        let sql = self.sql(AUDIT_INSERT);
        sqlx::query(&sql)
            .bind(now)
            .bind(entry.actor.as_str())
            .bind(entry.origin.as_str())
            .bind(entry.action.as_str())
            .bind(entry.target.as_deref())
            .bind(i64::try_from(rows).unwrap_or(i64::MAX))
            .bind(entry.detail.as_deref())
            .bind(prev_hash.as_str())
            .bind(hash.as_str())
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(rows)
    }

    async fn preview(&self, action: &crate::Action, now: UnixMillis) -> Result<u64, StoreError> {
        use crate::Action;
        let _ = now;
        let count: i64 = match action {
            Action::Pause { kind, .. } | Action::Resume { kind } => {
                let sql = self.sql(PAUSED);
                let paused: i64 = sqlx::query_scalar(&sql)
                    .bind(pause_scope(kind.as_ref()))
                    .fetch_one(&self.pool)
                    .await
                    .db()?;
                match action {
                    Action::Pause { .. } => 1 - paused,
                    _ => paused,
                }
            }
            Action::ViewTimeline { .. }
            | Action::SignIn { .. }
            | Action::Rekey(_)
            | Action::KeysSeen { .. }
            | Action::AuditFloor { .. } => 0,
            Action::PurgeAudit { before } => {
                let sql = self.sql(COUNT_AUDIT_BEFORE);
                sqlx::query_scalar(&sql)
                    .bind(stored(*before))
                    .fetch_one(&self.pool)
                    .await
                    .db()?
            }
            _ => {
                let mut params = Params::default();
                let mut sql = String::from("SELECT COUNT(*) FROM suki_inbox_deliveries WHERE ");
                sql.push_str(&selection(action, &mut params, D::placeholder));
                let sql = self.sql(sql);
                params
                    .bind_scalar(sqlx::query_scalar::<_, i64>(&sql))
                    .fetch_one(&self.pool)
                    .await
                    .db()?
            }
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn reseal(&self, bodies: &[crate::Resealed]) -> Result<u64, StoreError> {
        if bodies.is_empty() {
            return Ok(0);
        }
        let sql = self.sql(RESEAL);
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.db()?;
        let mut n = 0;
        for b in bodies {
            let done = sqlx::query(&sql)
                .bind(&b.body[..])
                .bind(b.key_id.as_str())
                .bind(b.id)
                .bind(b.was.as_deref())
                .execute(&mut *tx)
                .await
                .db()?;
            n += D::rows_affected(&done);
        }
        tx.commit().await.db()?;
        Ok(n)
    }
}
}

/// Postgres's claim: `FOR UPDATE SKIP LOCKED`, so concurrent workers take different rows.
#[cfg(feature = "postgres")]
pub(crate) const CLAIM_POSTGRES: &str = "UPDATE suki_inbox_deliveries AS d \
     SET state = 'running', lease_owner = $1, lease_expires = $2, run_after = $2, \
         fence = d.fence + 1, attempts = d.attempts + 1, updated_at = $3 \
     FROM (SELECT id FROM suki_inbox_deliveries \
           WHERE state IN ('pending', 'running') AND run_after <= $3 \
                  AND NOT EXISTS (SELECT 1 FROM suki_inbox_pauses AS p \
                                  WHERE p.scope = '*' OR p.scope = kind) /*paused*/ \
           ORDER BY run_after, id LIMIT $4 FOR UPDATE SKIP LOCKED) AS due \
     WHERE d.id = due.id \
     RETURNING d.id, d.dedup_key, d.source, d.kind, d.session_id, d.encounter_id, \
         d.generated_at, d.received_at, d.state, d.attempts, d.run_after, d.lease_owner, \
         d.fence, d.last_error, d.completed_at, d.snoozes, d.key_id, d.round_start, d.body";

/// What identifies a file (device and inode on Unix; elsewhere only that it exists).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileId(u64, u64);

impl FileId {
    pub(crate) fn of(path: &std::path::Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            Some(Self(meta.dev(), meta.ino()))
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Some(Self(0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dollar(sql: &mut String, n: usize) {
        use std::fmt::Write as _;
        let _ = write!(sql, "${n}");
    }

    fn anonymous(sql: &mut String, _n: usize) {
        sql.push('?');
    }

    /// Each parameter once, in order: numbered 1..=N for Postgres, N anonymous ones for SQLite.
    #[test]
    fn multi_row_statements_number_their_parameters_once_in_order() {
        for (sql, per_row) in [(insert_many(3, dollar), 11), (finish_many(3, dollar), 6)] {
            let mut at = 0;
            for n in 1..=3 * per_row {
                let p = format!("${n}");
                let found = sql[at..].find(&p).unwrap_or_else(|| panic!("{p} in {sql}"));
                at += found + p.len();
            }
            assert!(!sql.contains(&format!("${}", 3 * per_row + 1)), "{sql}");
        }
        for (sql, per_row) in [
            (insert_many(3, anonymous), 11),
            (finish_many(3, anonymous), 6),
        ] {
            assert_eq!(sql.matches('?').count(), 3 * per_row, "{sql}");
            assert!(!sql.contains('$'), "{sql}");
        }
    }
}
