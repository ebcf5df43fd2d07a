//! The expectations' SQL: registering a session the application expects a webhook for, the
//! reconciler's claim of due checks, the record of their outcomes, and the sweep.

use suki_ambient_core::UnixMillis;

use super::rows::ExpectationRow;
use super::{Db as _, SqlDialect, Tables, sql_impl, stored};
use crate::StoreError;

/// The most checks one statement records.
const FINISH_CHUNK: usize = 200;

/// The expectations' statements, with their tables.
pub(crate) struct ExpectSql {
    /// A new expectation; already resolved when its session's event is in the inbox (the
    /// webhook came before `expect` was called).
    expect: String,
    claim: String,
    sweep: String,
    /// The table names [`Self::finish_many`] writes.
    expectations: String,
    deliveries: String,
}

impl ExpectSql {
    pub(super) fn new<D: SqlDialect>(t: &Tables) -> Self {
        let Tables {
            deliveries,
            expectations,
            ..
        } = t;
        // The event already stored for a session, as a resolution (`NULL` when none is).
        let stored_resolution = format!(
            "(SELECT CASE source WHEN 'poll' THEN 'poll' ELSE 'webhook' END \
              FROM {deliveries} WHERE session_id = $1 AND kind <> 'unknown' \
              ORDER BY id LIMIT 1)"
        );
        Self {
            expect: format!(
                "INSERT INTO {expectations} \
                 (session_id, encounter_id, provider_id, kind, ended_at, next_check, created_at, \
                  resolution, resolved_at, context) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, {stored_resolution}, \
                 CASE WHEN {stored_resolution} IS NULL THEN NULL ELSE $7 END, $8) \
                 ON CONFLICT (session_id) DO NOTHING"
            ),
            claim: D::claim_expectations(t),
            sweep: format!(
                "UPDATE {expectations} \
                 SET next_check = $2, resolution = NULL, resolved_at = NULL, \
                     lease_owner = NULL, lease_expires = NULL \
                 WHERE ended_at >= $1 AND (resolution IS NULL OR resolution = 'gave_up') \
                   AND (lease_expires IS NULL OR lease_expires <= $2)"
            ),
            expectations: expectations.clone(),
            deliveries: deliveries.clone(),
        }
    }

    /// Records `n` checks in one statement: per check its session, fence, outcome (`again`,
    /// `stored`, `gave_up`), next check (for `again`), status seen and the time, each parameter
    /// once and in order (`placeholder`). A check whose fence is no longer the row's (or, but
    /// for `stored`, whose expectation was resolved meanwhile) matches nothing; the sessions
    /// recorded are returned.
    pub(super) fn finish_many(&self, n: usize, placeholder: fn(&mut String, usize)) -> String {
        let Self {
            expectations,
            deliveries,
            ..
        } = self;
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
        sql.push_str(&format!(
            ") UPDATE {expectations} AS x \
             SET next_check = CASE WHEN v.kind = 'again' THEN v.vnext ELSE x.next_check END, \
                 last_status = v.vstatus, lease_owner = NULL, lease_expires = NULL, \
                 resolution = CASE v.kind WHEN 'gave_up' THEN 'gave_up' \
                     WHEN 'stored' THEN COALESCE(x.resolution, \
                         (SELECT CASE d.source WHEN 'poll' THEN 'poll' ELSE 'webhook' END \
                          FROM {deliveries} AS d \
                          WHERE d.session_id = x.session_id AND d.kind <> 'unknown' \
                          ORDER BY d.id LIMIT 1), 'poll') \
                     ELSE x.resolution END, \
                 resolved_at = CASE v.kind WHEN 'gave_up' THEN v.vnow \
                     WHEN 'stored' THEN COALESCE(x.resolved_at, v.vnow) \
                     ELSE x.resolved_at END \
             FROM v \
             WHERE x.session_id = v.sid AND x.fence = v.vfence \
               AND (v.kind = 'stored' OR x.resolution IS NULL) \
             RETURNING session_id"
        ));
        sql
    }
}

sql_impl! {
    crate::seam::Expectations {
    async fn register(&self, new: crate::records::NewExpectation<'_>) -> Result<bool, StoreError> {
        let e = new.expected;
        let sql = &self.sql.expect.expect;
        let done = sqlx::query(sql)
            .bind(e.session_id.as_str())
            .bind(e.encounter_id.as_str())
            .bind(e.provider_id.as_deref())
            .bind(e.kind.as_str())
            .bind(stored(e.ended_at))
            .bind(stored(new.first_check))
            .bind(stored(new.now))
            .bind(new.context)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn claim_expectations(
        &self,
        request: crate::records::ClaimRequest<'_>,
    ) -> Result<Vec<crate::expect::ExpectationRecord>, StoreError> {
        let sql = &self.sql.expect.claim;
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.db()?;
        let rows: Vec<ExpectationRow> = sqlx::query_as(sql)
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
        checks: &[crate::expect::FinishedCheck],
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
            let sql = self.sql.expect.finish_many(chunk.len(), D::placeholder);
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for check in chunk {
                let (kind, next, status) = match &check.outcome {
                    crate::expect::CheckOutcome::Again { status, next_check } => {
                        ("again", Some(stored(*next_check)), status)
                    }
                    crate::expect::CheckOutcome::Recovered { status }
                    | crate::expect::CheckOutcome::AlreadyStored { status } => ("stored", None, status),
                    crate::expect::CheckOutcome::GaveUp { status } => ("gave_up", None, status),
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
        let sql = &self.sql.expect.sweep;
        let done = sqlx::query(sql)
            .bind(stored(since))
            .bind(stored(now))
            .execute(&self.pool)
            .await
            .db()?;
        Ok(D::rows_affected(&done))
    }
}
}
