//! The SQL both built-in stores share (SQLite and Postgres both take `$N` parameters), and the
//! macro that implements [`Store`](crate::Store) over a sqlx pool with it.

use suki_ambient_core::UnixMillis;

use crate::store::{DeliveryRecord, StoreError};

/// The record's columns, in [`Row`]'s order.
macro_rules! columns {
    () => {
        "id, dedup_key, source, kind, session_id, encounter_id, generated_at, received_at, \
         state, attempts, run_after, lease_owner, fence, last_error, completed_at"
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
                  ORDER BY run_after, id LIMIT $4) \
     RETURNING ",
    columns!(),
    ", body"
);

/// The head of the group commit's multi-row insert (the values are pushed per row).
pub(crate) const INSERT_MANY: &str = "INSERT INTO suki_inbox_deliveries \
     (dedup_key, source, kind, session_id, encounter_id, generated_at, received_at, body, \
      state, attempts, run_after, fence, updated_at) ";

pub(crate) const HEARTBEAT: &str = "UPDATE suki_inbox_deliveries \
     SET lease_expires = $3, run_after = $3 \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

pub(crate) const COMPLETE: &str = "UPDATE suki_inbox_deliveries \
     SET state = 'done', completed_at = $3, updated_at = $3, run_after = $3, \
         lease_owner = NULL, lease_expires = NULL \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

pub(crate) const FAIL_RETRY: &str = "UPDATE suki_inbox_deliveries \
     SET state = 'pending', run_after = $3, last_error = $4, updated_at = $5, \
         lease_owner = NULL, lease_expires = NULL \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

pub(crate) const FAIL_DEAD: &str = "UPDATE suki_inbox_deliveries \
     SET state = 'dead', last_error = $3, updated_at = $4, run_after = $4, \
         lease_owner = NULL, lease_expires = NULL \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

pub(crate) const RELEASE: &str = "UPDATE suki_inbox_deliveries \
     SET state = 'pending', run_after = $3, updated_at = $3, attempts = attempts - 1, \
         lease_owner = NULL, lease_expires = NULL \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

pub(crate) const RELEASE_OWNER: &str = "UPDATE suki_inbox_deliveries \
     SET state = 'pending', run_after = $2, updated_at = $2, fence = fence + 1, \
         lease_owner = NULL, lease_expires = NULL \
     WHERE state = 'running' AND lease_owner = $1";

pub(crate) const RETRY_ONE: &str = "UPDATE suki_inbox_deliveries \
     SET state = 'pending', attempts = 0, run_after = $2, updated_at = $2 \
     WHERE id = $1 AND state IN ('dead', 'pending')";

pub(crate) const RETRY_DEAD: &str = "UPDATE suki_inbox_deliveries \
     SET state = 'pending', attempts = 0, run_after = $1, updated_at = $1 \
     WHERE state = 'dead'";

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

pub(crate) const CHECK_AGAIN: &str = "UPDATE suki_inbox_expectations \
     SET next_check = $3, last_status = $4, lease_owner = NULL, lease_expires = NULL \
     WHERE session_id = $1 AND fence = $2 AND resolution IS NULL";

pub(crate) const CHECK_STORED: &str = concat!(
    "UPDATE suki_inbox_expectations \
     SET last_status = $3, resolved_at = COALESCE(resolved_at, $4), \
         lease_owner = NULL, lease_expires = NULL, \
         resolution = COALESCE(resolution, ",
    stored_resolution!(),
    ", 'poll') WHERE session_id = $1 AND fence = $2"
);

pub(crate) const CHECK_GAVE_UP: &str = "UPDATE suki_inbox_expectations \
     SET resolution = 'gave_up', resolved_at = $4, last_status = $3, \
         lease_owner = NULL, lease_expires = NULL \
     WHERE session_id = $1 AND fence = $2 AND resolution IS NULL";

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
            session_id: row.session_id,
            encounter_id: row.encounter_id,
            provider_id: row.provider_id,
            kind: row.kind.parse()?,
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
}

/// A claimed row: the record and its body.
#[derive(sqlx::FromRow)]
pub(crate) struct ClaimRow {
    #[sqlx(flatten)]
    pub(crate) row: Row,
    pub(crate) body: Vec<u8>,
}

fn millis(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt("negative time"))
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
            kind: row.kind,
            session_id: row.session_id,
            encounter_id: row.encounter_id,
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
        })
    }
}

/// Implements [`Store`](crate::Store) for `$store` (a struct with a `pool: $pool` field),
/// claiming with `$claim` inside a transaction begun with `$begin`.
macro_rules! sql_store {
    ($store:ty, $pool:ty, claim = $claim:expr, claim_expectations = $claim_e:expr, begin = $begin:expr) => {
        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn insert(
                &self,
                batch: &[$crate::NewDelivery],
            ) -> Result<Vec<suki_ambient_core::Stored>, $crate::StoreError> {
                use $crate::sql::stored;
                if batch.is_empty() {
                    return Ok(Vec::new());
                }
                // One multi-row statement per transaction (per 256 rows: the databases bound
                // the number of parameters of one statement): one round trip for a group commit.
                // One statement is atomic by itself: no explicit transaction (and its two
                // extra round trips) unless the batch needs several.
                let mut tx = if batch.len() > 256 {
                    Some(self.pool.begin_with($begin).await?)
                } else {
                    None
                };
                let mut inserted = std::collections::HashSet::new();
                for chunk in batch.chunks(256) {
                    let mut insert = sqlx::QueryBuilder::new($crate::sql::INSERT_MANY);
                    insert.push_values(chunk, |mut row, d| {
                        let received = stored(d.received_at);
                        row.push_bind(&d.dedup_key)
                            .push_bind(d.source.as_str())
                            .push_bind(&d.kind)
                            .push_bind(d.session_id.as_deref())
                            .push_bind(d.encounter_id.as_deref())
                            .push_bind(stored(d.generated_at))
                            .push_bind(received)
                            .push_bind(&d.body[..])
                            .push("'pending'")
                            .push("0")
                            .push_bind(received)
                            .push("0")
                            .push_bind(received);
                    });
                    insert.push(" ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key");
                    let query = insert.build_query_scalar::<String>();
                    let keys = match tx.as_mut() {
                        Some(tx) => query.fetch_all(&mut **tx).await?,
                        None => query.fetch_all(&self.pool).await?,
                    };
                    inserted.extend(keys);
                }
                if let Some(tx) = tx {
                    tx.commit().await?;
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
                owner: &str,
                now: suki_ambient_core::UnixMillis,
                lease: std::time::Duration,
                limit: u32,
            ) -> Result<Vec<$crate::Claim>, $crate::StoreError> {
                use $crate::sql::stored;
                let until = now
                    .0
                    .saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX));
                let mut tx = self.pool.begin_with($begin).await?;
                let rows: Vec<$crate::sql::ClaimRow> = sqlx::query_as($claim)
                    .bind(owner)
                    .bind(stored(suki_ambient_core::UnixMillis(until)))
                    .bind(stored(now))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows.into_iter()
                    .map(|r| {
                        Ok($crate::Claim {
                            body: bytes::Bytes::from(r.body),
                            record: r.row.try_into()?,
                        })
                    })
                    .collect()
            }

            async fn heartbeat(
                &self,
                lease: $crate::Lease,
                until: suki_ambient_core::UnixMillis,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query($crate::sql::HEARTBEAT)
                    .bind(lease.id)
                    .bind(lease.fence)
                    .bind($crate::sql::stored(until))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn complete(
                &self,
                lease: $crate::Lease,
                now: suki_ambient_core::UnixMillis,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query($crate::sql::COMPLETE)
                    .bind(lease.id)
                    .bind(lease.fence)
                    .bind($crate::sql::stored(now))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn fail(
                &self,
                lease: $crate::Lease,
                now: suki_ambient_core::UnixMillis,
                next: $crate::Next,
                error: &str,
            ) -> Result<bool, $crate::StoreError> {
                use $crate::sql::stored;
                let done = match next {
                    $crate::Next::RetryAt(at) => {
                        sqlx::query($crate::sql::FAIL_RETRY)
                            .bind(lease.id)
                            .bind(lease.fence)
                            .bind(stored(at))
                            .bind(error)
                            .bind(stored(now))
                            .execute(&self.pool)
                            .await?
                    }
                    $crate::Next::Dead => {
                        sqlx::query($crate::sql::FAIL_DEAD)
                            .bind(lease.id)
                            .bind(lease.fence)
                            .bind(error)
                            .bind(stored(now))
                            .execute(&self.pool)
                            .await?
                    }
                };
                Ok(done.rows_affected() == 1)
            }

            async fn release(
                &self,
                lease: $crate::Lease,
                now: suki_ambient_core::UnixMillis,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query($crate::sql::RELEASE)
                    .bind(lease.id)
                    .bind(lease.fence)
                    .bind($crate::sql::stored(now))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_owner(
                &self,
                owner: &str,
                now: suki_ambient_core::UnixMillis,
            ) -> Result<u64, $crate::StoreError> {
                let done = sqlx::query($crate::sql::RELEASE_OWNER)
                    .bind(owner)
                    .bind($crate::sql::stored(now))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn retry(
                &self,
                which: $crate::Selection,
                now: suki_ambient_core::UnixMillis,
            ) -> Result<u64, $crate::StoreError> {
                use $crate::sql::stored;
                let done = match which {
                    $crate::Selection::Id(id) => {
                        sqlx::query($crate::sql::RETRY_ONE)
                            .bind(id)
                            .bind(stored(now))
                            .execute(&self.pool)
                            .await?
                    }
                    $crate::Selection::Dead => {
                        sqlx::query($crate::sql::RETRY_DEAD)
                            .bind(stored(now))
                            .execute(&self.pool)
                            .await?
                    }
                };
                Ok(done.rows_affected())
            }

            async fn purge(
                &self,
                before: suki_ambient_core::UnixMillis,
            ) -> Result<u64, $crate::StoreError> {
                let done = sqlx::query($crate::sql::PURGE)
                    .bind($crate::sql::stored(before))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn counts(&self) -> Result<$crate::Counts, $crate::StoreError> {
                let states: Vec<(String, i64)> = sqlx::query_as($crate::sql::COUNT_STATES)
                    .fetch_all(&self.pool)
                    .await?;
                let oldest: Option<i64> = sqlx::query_scalar($crate::sql::OLDEST_UNFINISHED)
                    .fetch_one(&self.pool)
                    .await?;
                let mut counts = $crate::Counts::default();
                for (state, n) in states {
                    let n = u64::try_from(n).unwrap_or(0);
                    match state.parse::<$crate::State>()? {
                        $crate::State::Pending => counts.pending = n,
                        $crate::State::Running => counts.running = n,
                        $crate::State::Done => counts.done = n,
                        $crate::State::Dead => counts.dead = n,
                    }
                }
                counts.oldest_unfinished_received_at = oldest.and_then(|t| u64::try_from(t).ok());
                Ok(counts)
            }

            async fn retrying(
                &self,
                limit: u32,
            ) -> Result<Vec<$crate::DeliveryRecord>, $crate::StoreError> {
                let rows: Vec<$crate::sql::Row> = sqlx::query_as($crate::sql::LIST_RETRYING)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn probe(
                &self,
                now: suki_ambient_core::UnixMillis,
            ) -> Result<(), $crate::StoreError> {
                self.check_file()?;
                let done = sqlx::query($crate::sql::PROBE)
                    .bind($crate::sql::stored(now))
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err($crate::StoreError::Corrupt(
                        "the health probe row is missing",
                    ))
                }
            }

            async fn list(
                &self,
                state: Option<$crate::State>,
                limit: u32,
            ) -> Result<Vec<$crate::DeliveryRecord>, $crate::StoreError> {
                let rows: Vec<$crate::sql::Row> = match state {
                    Some($crate::State::Dead) => {
                        sqlx::query_as($crate::sql::LIST_DEAD)
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await?
                    }
                    Some(state) => {
                        sqlx::query_as($crate::sql::LIST_STATE)
                            .bind(state.as_str())
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await?
                    }
                    None => {
                        sqlx::query_as($crate::sql::LIST_ALL)
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await?
                    }
                };
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn expect(
                &self,
                e: &$crate::ExpectedSession,
                next_check: suki_ambient_core::UnixMillis,
                now: suki_ambient_core::UnixMillis,
            ) -> Result<bool, $crate::StoreError> {
                use $crate::sql::stored;
                let done = sqlx::query($crate::sql::EXPECT)
                    .bind(e.session_id.as_str())
                    .bind(e.encounter_id.as_str())
                    .bind(e.provider_id.as_deref())
                    .bind(e.kind.as_str())
                    .bind(stored(e.ended_at))
                    .bind(stored(next_check))
                    .bind(stored(now))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn claim_expectations(
                &self,
                owner: &str,
                now: suki_ambient_core::UnixMillis,
                lease: std::time::Duration,
                limit: u32,
            ) -> Result<Vec<$crate::ExpectationRecord>, $crate::StoreError> {
                use $crate::sql::stored;
                let until = now
                    .0
                    .saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX));
                let mut tx = self.pool.begin_with($begin).await?;
                let rows: Vec<$crate::sql::ExpectationRow> = sqlx::query_as($claim_e)
                    .bind(owner)
                    .bind(stored(suki_ambient_core::UnixMillis(until)))
                    .bind(stored(now))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn finish_check(
                &self,
                lease: &$crate::ExpectationLease,
                now: suki_ambient_core::UnixMillis,
                outcome: &$crate::CheckOutcome,
            ) -> Result<bool, $crate::StoreError> {
                use $crate::sql::stored;
                let done = match outcome {
                    $crate::CheckOutcome::Again {
                        next_check,
                        last_status,
                    } => {
                        sqlx::query($crate::sql::CHECK_AGAIN)
                            .bind(&lease.session_id)
                            .bind(lease.fence)
                            .bind(stored(*next_check))
                            .bind(last_status)
                            .execute(&self.pool)
                            .await?
                    }
                    $crate::CheckOutcome::Stored { last_status } => {
                        sqlx::query($crate::sql::CHECK_STORED)
                            .bind(&lease.session_id)
                            .bind(lease.fence)
                            .bind(last_status)
                            .bind(stored(now))
                            .execute(&self.pool)
                            .await?
                    }
                    $crate::CheckOutcome::GaveUp { last_status } => {
                        sqlx::query($crate::sql::CHECK_GAVE_UP)
                            .bind(&lease.session_id)
                            .bind(lease.fence)
                            .bind(last_status)
                            .bind(stored(now))
                            .execute(&self.pool)
                            .await?
                    }
                };
                Ok(done.rows_affected() == 1)
            }

            async fn sweep(
                &self,
                since: suki_ambient_core::UnixMillis,
                now: suki_ambient_core::UnixMillis,
            ) -> Result<u64, $crate::StoreError> {
                let done = sqlx::query($crate::sql::SWEEP)
                    .bind($crate::sql::stored(since))
                    .bind($crate::sql::stored(now))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn expectation(
                &self,
                session_id: &str,
            ) -> Result<Option<$crate::ExpectationRecord>, $crate::StoreError> {
                let row: Option<$crate::sql::ExpectationRow> =
                    sqlx::query_as($crate::sql::GET_EXPECTATION)
                        .bind(session_id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn hourly(
                &self,
                since: suki_ambient_core::UnixMillis,
            ) -> Result<Vec<$crate::HourCount>, $crate::StoreError> {
                let rows: Vec<(i64, String, i64)> = sqlx::query_as($crate::sql::HOURLY)
                    .bind($crate::sql::stored(since))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(|(hour, state, n)| {
                        Ok($crate::HourCount {
                            hour_start: u64::try_from(hour).unwrap_or(0) * 3_600_000,
                            state: state.parse()?,
                            count: u64::try_from(n).unwrap_or(0),
                        })
                    })
                    .collect()
            }

            async fn expectation_counts(
                &self,
            ) -> Result<$crate::ExpectationCounts, $crate::StoreError> {
                let rows: Vec<(Option<String>, i64)> =
                    sqlx::query_as($crate::sql::COUNT_RESOLUTIONS)
                        .fetch_all(&self.pool)
                        .await?;
                let mut counts = $crate::ExpectationCounts::default();
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

            async fn expectations(
                &self,
                limit: u32,
            ) -> Result<Vec<$crate::ExpectationRecord>, $crate::StoreError> {
                let rows: Vec<$crate::sql::ExpectationRow> =
                    sqlx::query_as($crate::sql::LIST_EXPECTATIONS)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn get(
                &self,
                id: i64,
            ) -> Result<Option<$crate::DeliveryRecord>, $crate::StoreError> {
                let row: Option<$crate::sql::Row> = sqlx::query_as($crate::sql::GET)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }
        }
    };
}

pub(crate) use sql_store;

/// Postgres's claim: `FOR UPDATE SKIP LOCKED`, so concurrent workers take different rows.
#[cfg(feature = "postgres")]
pub(crate) const CLAIM_POSTGRES: &str = "UPDATE suki_inbox_deliveries AS d \
     SET state = 'running', lease_owner = $1, lease_expires = $2, run_after = $2, \
         fence = d.fence + 1, attempts = d.attempts + 1, updated_at = $3 \
     FROM (SELECT id FROM suki_inbox_deliveries \
           WHERE state IN ('pending', 'running') AND run_after <= $3 \
           ORDER BY run_after, id LIMIT $4 FOR UPDATE SKIP LOCKED) AS due \
     WHERE d.id = due.id \
     RETURNING d.id, d.dedup_key, d.source, d.kind, d.session_id, d.encounter_id, \
         d.generated_at, d.received_at, d.state, d.attempts, d.run_after, d.lease_owner, \
         d.fence, d.last_error, d.completed_at, d.body";
