//! The operators' actions in SQL: pause and resume, retry, replay, discard, purge, the audit
//! log's append and purge (its hash chain), their previews, and re-sealing bodies.

use suki_ambient_core::{EventKind, UnixMillis};

use super::{Db as _, Params, SqlDialect, Tables, Value, sql_impl, stored};
use crate::StoreError;

/// The operations' statements, with their tables.
pub(crate) struct OpsSql {
    paused: String,
    pause: String,
    resume: String,
    /// What serializes the audit chain's appends (Postgres), if the write transaction does not.
    lock_audit: Option<String>,
    /// The newest entry's hash (what the next entry chains to).
    audit_head: String,
    audit_insert: String,
    /// The first entry an audit purge keeps: the oldest within retention.
    audit_first_kept: String,
    /// The last entry an audit purge deletes (the newest before the first kept), with its hash.
    audit_last_purged: String,
    /// An audit purge's record, written before its delete (the delete trigger lets through
    /// only entries up to the latest record's `through_id`).
    audit_purge_record: String,
    purge_audit: String,
    /// The audit log's retention floor in force, for the database's own check of purges.
    audit_floor_record: String,
    count_audit_before: String,
    /// A body re-sealed, if the row's key is still the one it was read with. (Never a body
    /// erased meanwhile: an erased row's key id is cleared, which matches a body read in clear.)
    reseal: String,
}

impl OpsSql {
    pub(super) fn new<D: SqlDialect>(t: &Tables) -> Self {
        let Tables {
            deliveries,
            pauses,
            audit,
            audit_purges,
            audit_floors,
            ..
        } = t;
        Self {
            paused: format!("SELECT COUNT(*) FROM {pauses} WHERE scope = $1"),
            pause: format!(
                "INSERT INTO {pauses} (scope, paused_at, paused_by, reason) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (scope) DO NOTHING"
            ),
            resume: format!("DELETE FROM {pauses} WHERE scope = $1"),
            lock_audit: D::lock_audit(t),
            audit_head: format!("SELECT hash FROM {audit} ORDER BY id DESC LIMIT 1"),
            audit_insert: format!(
                "INSERT INTO {audit} \
                 (at, actor, origin, action, target, rows, detail, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            audit_first_kept: format!("SELECT MIN(id) FROM {audit} WHERE at >= $1"),
            audit_last_purged: format!(
                "SELECT id, hash FROM {audit} WHERE id < $1 ORDER BY id DESC LIMIT 1"
            ),
            audit_purge_record: format!(
                "INSERT INTO {audit_purges} (at, before_at, through_id, anchor) \
                 VALUES ($1, $2, $3, $4)"
            ),
            purge_audit: format!("DELETE FROM {audit} WHERE id <= $1"),
            audit_floor_record: format!("INSERT INTO {audit_floors} (at, days) VALUES ($1, $2)"),
            count_audit_before: format!(
                "SELECT COUNT(*) FROM {audit} WHERE id < \
                 COALESCE((SELECT MIN(id) FROM {audit} WHERE at >= $1), 9223372036854775807)"
            ),
            reseal: format!(
                "UPDATE {deliveries} SET body = $1, key_id = $2, fetched = $5 \
                 WHERE id = $3 AND key_id IS NOT DISTINCT FROM $4 AND body_erased_at IS NULL"
            ),
        }
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
        crate::Action::Replay { .. } | crate::Action::ReplayRow { .. } => Some((
            "state = 'pending', round_start = attempts, snoozes = 0, completed_at = NULL, \
             run_after = {now}, updated_at = {now}",
            "replayed",
        )),
        crate::Action::Discard { .. } => Some((
            "state = 'done', last_error = 'discarded', completed_at = {now}, \
             run_after = {now}, updated_at = {now}, fetched = NULL",
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
        Action::ReplayRow { id } => {
            sql.push_str("id = ");
            params.push(&mut sql, Value::Int(*id), placeholder);
            sql.push_str(
                " AND state = 'done' AND (last_error IS NULL OR last_error <> 'discarded') \
                 AND body_erased_at IS NULL",
            );
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
fn history_insert(t: &Tables, n: usize, placeholder: fn(&mut String, usize)) -> String {
    let history = &t.history;
    let mut sql = format!("INSERT INTO {history} (delivery_id, at, event, detail, actor) VALUES ");
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

sql_impl! {
    crate::seam::Operations {
    async fn act(&self, act: crate::records::Act<'_>) -> Result<u64, StoreError> {
        use crate::Action;
        let now = stored(act.now);
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.db()?;
        let rows = match act.action {
            Action::Pause { kind, reason } => {
                let sql = &self.sql.ops.pause;
                let done = sqlx::query(sql)
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
                let sql = &self.sql.ops.resume;
                let done = sqlx::query(sql)
                    .bind(pause_scope(kind.as_ref()))
                    .execute(&mut *tx)
                    .await
                    .db()?;
                D::rows_affected(&done)
            }
            Action::Purge { before } => {
                let (history, purge) = (&self.sql.queue.purge_history, &self.sql.queue.purge);
                sqlx::query(history)
                    .bind(stored(*before))
                    .execute(&mut *tx)
                    .await
                    .db()?;
                let done = sqlx::query(purge)
                    .bind(stored(*before))
                    .execute(&mut *tx)
                    .await
                    .db()?;
                D::rows_affected(&done)
            }
            Action::PurgeAudit { before } => {
                if let Some(lock) = &self.sql.ops.lock_audit {
                    sqlx::query(lock).execute(&mut *tx).await.db()?;
                }
                let first_kept: Option<i64> = sqlx::query_scalar(&self.sql.ops.audit_first_kept)
                    .bind(stored(*before))
                    .fetch_one(&mut *tx)
                    .await
                    .db()?;
                let last: Option<(i64, String)> =
                    sqlx::query_as(&self.sql.ops.audit_last_purged)
                        .bind(first_kept.unwrap_or(i64::MAX))
                        .fetch_optional(&mut *tx)
                        .await
                        .db()?;
                match last {
                    None => 0,
                    Some((through, anchor)) => {
                        sqlx::query(&self.sql.ops.audit_purge_record)
                            .bind(now)
                            .bind(stored(*before))
                            .bind(through)
                            .bind(anchor.as_str())
                            .execute(&mut *tx)
                            .await
                            .db()?;
                        let done = sqlx::query(&self.sql.ops.purge_audit)
                            .bind(through)
                            .execute(&mut *tx)
                            .await
                            .db()?;
                        D::rows_affected(&done)
                    }
                }
            }
            Action::AuditFloor { days } => {
                // The floor the database itself enforces on audit purges (migration 0013/0014).
                sqlx::query(&self.sql.ops.audit_floor_record)
                    .bind(now)
                    .bind(i64::try_from(*days).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await
                    .db()?;
                0
            }
            Action::Retry(_)
            | Action::Replay { .. }
            | Action::ReplayRow { .. }
            | Action::Discard { .. } => {
                let Some((set, event)) = change(act.action) else {
                    return Err(StoreError::Unsupported("this action"));
                };
                let mut params = Params::default();
                let mut sql = format!("UPDATE {} SET ", self.sql.tables.deliveries);
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
                    let sql = history_insert(&self.sql.tables, chunk.len(), D::placeholder);
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
            action => action.recorded_rows(),
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
        if let Some(lock) = &self.sql.ops.lock_audit {
            sqlx::query(lock).execute(&mut *tx).await.db()?;
        }
        let head: Option<String> = sqlx::query_scalar(&self.sql.ops.audit_head)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        // A process without the audit key may not continue a keyed chain with plain hashes:
        // that would read as a rewrite (and would be one's cover).
        if act.audit_key.is_none() && head.as_deref().is_some_and(crate::audit::is_keyed) {
            return Err(StoreError::Refused(
                "the audit log is chained under an audit key this process does not hold: \
                 give it SUKI_AUDIT_KEY or the inbox's SUKI_INBOX_KEYS"
                    .to_owned(),
            ));
        }
        let prev_hash = match head {
            Some(hash) => hash,
            None => sqlx::query_scalar(&self.sql.read.audit_anchor)
                .fetch_optional(&mut *tx)
                .await
                .db()?
                .unwrap_or_default(),
        };
        let entry = crate::records::AuditEntry {
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
        let hash = crate::audit::audit_mac(act.audit_key, &prev_hash, &entry);
        let sql = &self.sql.ops.audit_insert;
        sqlx::query(sql)
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
                let sql = &self.sql.ops.paused;
                let paused: i64 = sqlx::query_scalar(sql)
                    .bind(pause_scope(kind.as_ref()))
                    .fetch_one(&self.pool)
                    .await
                    .db()?;
                match action {
                    Action::Pause { .. } => 1 - paused,
                    _ => paused,
                }
            }
            action if action.records_only() => 0,
            Action::PurgeAudit { before } => {
                let sql = &self.sql.ops.count_audit_before;
                sqlx::query_scalar(sql)
                    .bind(stored(*before))
                    .fetch_one(&self.pool)
                    .await
                    .db()?
            }
            _ => {
                let mut params = Params::default();
                let mut sql = format!("SELECT COUNT(*) FROM {} WHERE ", self.sql.tables.deliveries);
                sql.push_str(&selection(action, &mut params, D::placeholder));
                params
                    .bind_scalar(sqlx::query_scalar::<_, i64>(&sql))
                    .fetch_one(&self.pool)
                    .await
                    .db()?
            }
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn reseal(&self, bodies: &[crate::records::Resealed]) -> Result<u64, StoreError> {
        if bodies.is_empty() {
            return Ok(0);
        }
        let sql = &self.sql.ops.reseal;
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.db()?;
        let mut n = 0;
        for b in bodies {
            let done = sqlx::query(sql)
                .bind(&b.body[..])
                .bind(b.key_id.as_str())
                .bind(b.id)
                .bind(b.was.as_deref())
                .bind(b.fetched.as_deref())
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
