//! The delivery queue's SQL: the group commit's insert, the claim, the lease's heartbeat and
//! end (complete, fail, release), what a failed attempt fetched, retention and the health probe.

use suki_ambient_core::{EncounterId, SessionId, UnixMillis};

use super::rows::ClaimRow;
use super::{Db as _, SqlDialect, Tables, sql_impl, stored};
use crate::StoreError;

/// The queue's statements, with their tables.
pub(crate) struct QueueSql {
    /// The head of the group commit's multi-row insert (the values follow, per row).
    insert_head: String,
    pub(crate) claim: String,
    heartbeat: String,
    pub(crate) complete: String,
    fail_retry: String,
    /// A snooze: back to pending without spending the attempt, counted.
    fail_snooze: String,
    fail_dead: String,
    release: String,
    release_owner: String,
    /// The body retention: done rows keep their metadata, not their bodies.
    erase_bodies: String,
    /// What dead rows fetched, past the body retention (their bodies stay, for a retry).
    erase_dead_fetched: String,
    /// What a failed attempt fetched, kept with the row it holds.
    keep_fetched: String,
    /// What an earlier attempt kept.
    fetched: String,
    /// The timelines of the done rows a purge deletes (before the rows themselves).
    pub(super) purge_history: String,
    pub(super) purge: String,
    /// The health check's write: one row, so that a full disk, a locked or read-only database
    /// or a server that cannot commit fails it.
    probe: String,
    /// Takes or renews a chore's lease: `$1` task, `$2` owner, `$3` now, `$4` until.
    lead: String,
    /// A wait for a destination that is down: back to pending, the attempt not spent.
    fail_wait: String,
    /// A destination down: `$1` name, `$2` reason, `$3` now, `$4` next probe.
    destination_down: String,
    /// A destination back: `$1` name, `$2` now.
    destination_up: String,
    /// The rows waiting for a destination made due: `$1` name, `$2` now.
    resume_waiting: String,
    /// The probe's lease: `$1` name, `$2` owner, `$3` now, `$4` until.
    take_probe: String,
    /// Every destination recorded, with the rows waiting for it.
    pub(super) destinations: String,
}

impl QueueSql {
    pub(super) fn new<D: SqlDialect>(t: &Tables) -> Self {
        let Tables {
            deliveries,
            history,
            probe,
            leases,
            destinations,
            ..
        } = t;
        // Each statement that ends a lease matches only the lease it was given.
        let leased = "WHERE id = $1 AND fence = $2 AND state = 'running'";
        Self {
            insert_head: format!(
                "INSERT INTO {deliveries} \
                 (dedup_key, source, kind, session_id, encounter_id, generated_at, received_at, \
                  body, key_id, state, attempts, run_after, fence, updated_at) "
            ),
            claim: D::claim(t),
            heartbeat: format!(
                "UPDATE {deliveries} SET lease_expires = $3, run_after = $3 {leased}"
            ),
            complete: format!(
                "UPDATE {deliveries} \
                 SET state = 'done', completed_at = $3, updated_at = $3, run_after = $3, \
                     last_error = NULL, attempt_detail = $4, lease_owner = NULL, \
                     lease_expires = NULL, fetched = NULL, waiting_for = NULL \
                 {leased}"
            ),
            fail_retry: format!(
                "UPDATE {deliveries} \
                 SET state = 'pending', run_after = $3, last_error = $4, updated_at = $5, \
                     attempt_detail = $6, lease_owner = NULL, lease_expires = NULL, \
                     waiting_for = NULL \
                 {leased}"
            ),
            fail_snooze: format!(
                "UPDATE {deliveries} \
                 SET state = 'pending', run_after = $3, last_error = $4, updated_at = $5, \
                     attempt_detail = $6, attempts = attempts - 1, snoozes = snoozes + 1, \
                     lease_owner = NULL, lease_expires = NULL, waiting_for = NULL \
                 {leased}"
            ),
            fail_dead: format!(
                "UPDATE {deliveries} \
                 SET state = 'dead', last_error = $3, updated_at = $4, run_after = $4, \
                     attempt_detail = $5, lease_owner = NULL, lease_expires = NULL, \
                     waiting_for = NULL \
                 {leased}"
            ),
            release: format!(
                "UPDATE {deliveries} \
                 SET state = 'pending', run_after = $3, updated_at = $3, attempts = attempts - 1, \
                     attempt_detail = NULL, lease_owner = NULL, lease_expires = NULL, \
                     waiting_for = NULL \
                 {leased}"
            ),
            release_owner: format!(
                "UPDATE {deliveries} \
                 SET state = 'pending', run_after = $2, updated_at = $2, fence = fence + 1, \
                     attempt_detail = NULL, lease_owner = NULL, lease_expires = NULL \
                 WHERE state = 'running' AND lease_owner = $1"
            ),
            erase_bodies: format!(
                "UPDATE {deliveries} \
                 SET body = $1, key_id = NULL, body_erased_at = $2, fetched = NULL \
                 WHERE state = 'done' AND completed_at < $3 AND body_erased_at IS NULL"
            ),
            erase_dead_fetched: format!(
                "UPDATE {deliveries} SET fetched = NULL \
                 WHERE state = 'dead' AND updated_at < $1 AND fetched IS NOT NULL"
            ),
            keep_fetched: format!("UPDATE {deliveries} SET fetched = $3 {leased}"),
            fetched: format!("SELECT fetched FROM {deliveries} WHERE id = $1"),
            purge_history: format!(
                "DELETE FROM {history} WHERE delivery_id IN \
                 (SELECT id FROM {deliveries} WHERE state = 'done' AND completed_at < $1)"
            ),
            purge: format!("DELETE FROM {deliveries} WHERE state = 'done' AND completed_at < $1"),
            probe: format!("UPDATE {probe} SET probed_at = $1 WHERE id = 1"),
            lead: format!(
                "UPDATE {leases} SET owner = $2, expires_at = $4 \
                 WHERE name = $1 AND (owner = $2 OR owner IS NULL OR expires_at <= $3)"
            ),
            fail_wait: format!(
                "UPDATE {deliveries} \
                 SET state = 'pending', run_after = $3, last_error = $4, updated_at = $5, \
                     attempt_detail = $6, attempts = attempts - 1, waiting_for = $7, \
                     lease_owner = NULL, lease_expires = NULL \
                 {leased}"
            ),
            destination_down: format!(
                "INSERT INTO {destinations} AS d \
                     (name, up, reason, down_since, next_probe, probes, updated_at) \
                 VALUES ($1, FALSE, $2, $3, $4, 0, $3) \
                 ON CONFLICT (name) DO UPDATE SET \
                     reason = excluded.reason, \
                     down_since = CASE WHEN d.up THEN excluded.down_since ELSE d.down_since END, \
                     probes = CASE WHEN d.up THEN 0 ELSE d.probes + 1 END, \
                     up = FALSE, next_probe = excluded.next_probe, probe_owner = NULL, \
                     probe_expires = 0, updated_at = excluded.updated_at"
            ),
            destination_up: format!(
                "UPDATE {destinations} \
                 SET up = TRUE, reason = NULL, down_since = NULL, probes = 0, \
                     probe_owner = NULL, probe_expires = 0, updated_at = $2 \
                 WHERE name = $1"
            ),
            resume_waiting: format!(
                "UPDATE {deliveries} SET run_after = $2 \
                 WHERE waiting_for = $1 AND state = 'pending' AND run_after > $2"
            ),
            take_probe: format!(
                "UPDATE {destinations} SET probe_owner = $2, probe_expires = $4 \
                 WHERE name = $1 AND NOT up AND next_probe <= $3 \
                   AND (probe_owner IS NULL OR probe_expires <= $3)"
            ),
            destinations: format!(
                "SELECT d.name, d.up, d.reason, d.down_since, d.next_probe, d.probes, \
                     d.updated_at, \
                     (SELECT count(*) FROM {deliveries} w \
                       WHERE w.waiting_for = d.name AND w.state = 'pending') AS waiting \
                 FROM {destinations} d ORDER BY d.name"
            ),
        }
    }

    /// The group commit's multi-row insert for `n` rows (11 parameters each, once and in order;
    /// the constant values are written out).
    pub(super) fn insert_many(&self, n: usize, placeholder: fn(&mut String, usize)) -> String {
        let mut sql = self.insert_head.clone();
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
}

sql_impl! {
    crate::seam::DeliveryQueue {
    async fn lead(&self, lead: crate::records::ChoreLease<'_>) -> Result<bool, StoreError> {
        let sql = &self.sql.queue.lead;
        let done = sqlx::query(sql)
            .bind(lead.task)
            .bind(lead.owner)
            .bind(stored(lead.now))
            .bind(stored(lead.until))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn destination_down(&self, down: crate::records::DestinationDown<'_>) -> Result<(), StoreError> {
        sqlx::query(&self.sql.queue.destination_down)
            .bind(down.name)
            .bind(down.reason)
            .bind(stored(down.now))
            .bind(stored(down.next_probe))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(())
    }

    async fn destination_up(&self, name: &str, now: UnixMillis) -> Result<u64, StoreError> {
        sqlx::query(&self.sql.queue.destination_up)
            .bind(name)
            .bind(stored(now))
            .execute(&self.pool)
            .await
            .db()?;
        let resumed = sqlx::query(&self.sql.queue.resume_waiting)
            .bind(name)
            .bind(stored(now))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&resumed))
    }

    async fn take_probe(&self, probe: crate::records::ChoreLease<'_>) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.sql.queue.take_probe)
            .bind(probe.task)
            .bind(probe.owner)
            .bind(stored(probe.now))
            .bind(stored(probe.until))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn subscribe(&self) -> Result<Option<Box<dyn crate::seam::Wakeups>>, StoreError> {
        D::subscribe(&self.pool).await
    }

    async fn insert(
        &self,
        batch: &[crate::records::NewDelivery],
    ) -> Result<Vec<suki_ambient_core::Stored>, StoreError> {
        self.insert_with_key(batch, None).await
    }

    async fn insert_with_key(
        &self,
        batch: &[crate::records::NewDelivery],
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
            let sql = self.sql.queue.insert_many(chunk.len(), D::placeholder);
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
        request: crate::records::ClaimRequest<'_>,
    ) -> Result<Vec<crate::records::Claim>, StoreError> {
        let sql = &self.sql.queue.claim;
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.db()?;
        let rows: Vec<ClaimRow> = sqlx::query_as(sql)
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
                Ok(crate::records::Claim {
                    body: bytes::Bytes::from(r.body),
                    record: r.row.try_into()?,
                })
            })
            .collect()
    }

    async fn heartbeat(&self, lease: crate::records::Lease, until: UnixMillis) -> Result<bool, StoreError> {
        let sql = &self.sql.queue.heartbeat;
        let done = sqlx::query(sql)
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
        lease: crate::records::Lease,
        now: UnixMillis,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = &self.sql.queue.complete;
        let done = sqlx::query(sql)
            .bind(lease.id)
            .bind(lease.fence)
            .bind(stored(now))
            .bind(detail)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn fail(&self, attempt: crate::records::FailedAttempt<'_>) -> Result<bool, StoreError> {
        let crate::records::FailedAttempt {
            lease,
            now,
            next,
            error,
            detail,
            ..
        } = attempt;
        let done = match next {
            crate::records::Next::Wait(at) => {
                let sql = &self.sql.queue.fail_wait;
                sqlx::query(sql)
                    .bind(lease.id)
                    .bind(lease.fence)
                    .bind(stored(at))
                    .bind(error)
                    .bind(stored(now))
                    .bind(detail)
                    .bind(attempt.waiting_for)
                    .execute(&self.pool)
                    .await
                    .db()?
            }
            crate::records::Next::RetryAt(at) | crate::records::Next::Snooze(at) => {
                let sql = if matches!(next, crate::records::Next::Snooze(_)) {
                    &self.sql.queue.fail_snooze
                } else {
                    &self.sql.queue.fail_retry
                };
                sqlx::query(sql)
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
            crate::records::Next::Dead => {
                let sql = &self.sql.queue.fail_dead;
                sqlx::query(sql)
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

    async fn release(&self, lease: crate::records::Lease, now: UnixMillis) -> Result<bool, StoreError> {
        let sql = &self.sql.queue.release;
        let done = sqlx::query(sql)
            .bind(lease.id)
            .bind(lease.fence)
            .bind(stored(now))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn release_owner(&self, owner: &str, now: UnixMillis) -> Result<u64, StoreError> {
        let sql = &self.sql.queue.release_owner;
        let done = sqlx::query(sql)
            .bind(owner)
            .bind(stored(now))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done))
    }

    async fn keep_fetched(&self, lease: crate::records::Lease, fetched: &[u8]) -> Result<bool, StoreError> {
        let sql = &self.sql.queue.keep_fetched;
        let done = sqlx::query(sql)
            .bind(lease.id)
            .bind(lease.fence)
            .bind(fetched)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn fetched(&self, id: i64) -> Result<Option<bytes::Bytes>, StoreError> {
        let sql = &self.sql.queue.fetched;
        let row = sqlx::query(sql)
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
        let sql = &self.sql.queue.erase_bodies;
        let empty: &[u8] = &[];
        let done = sqlx::query(sql)
            .bind(empty)
            .bind(stored(now))
            .bind(stored(before))
            .execute(&self.pool)
            .await
            .db()?;
        sqlx::query(&self.sql.queue.erase_dead_fetched)
            .bind(stored(before))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done))
    }

    async fn purge(&self, before: UnixMillis) -> Result<u64, StoreError> {
        let (history, purge) = (&self.sql.queue.purge_history, &self.sql.queue.purge);
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.db()?;
        sqlx::query(history)
            .bind(stored(before))
            .execute(&mut *tx)
            .await
            .db()?;
        let done = sqlx::query(purge)
            .bind(stored(before))
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(D::rows_affected(&done))
    }

    async fn probe(&self, now: UnixMillis) -> Result<(), StoreError> {
        self.check_file()?;
        let sql = &self.sql.queue.probe;
        let done = sqlx::query(sql)
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
