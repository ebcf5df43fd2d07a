//! The read model's SQL: counts, lists, one row, the hourly chart, traces, dead-letter groups,
//! pauses, the audit log and the key inventory. Nothing here writes.

use suki_ambient_core::{SessionId, UnixMillis};

use super::rows::{
    AUDIT_COLUMNS, AuditRow, COLUMNS, EXPECTATION_COLUMNS, ExpectationRow, HISTORY_COLUMNS,
    HistoryRow, PauseRow, Row, millis,
};
use super::{Db as _, SqlDialect, Tables, sql_impl, stored};
use crate::StoreError;

/// The read model's statements, with their tables.
pub(crate) struct ReadSql {
    list_state: String,
    /// The dead rows, newest first, through their partial index (the state is spelled out: a
    /// bound parameter cannot select a partial index).
    pub(crate) list_dead: String,
    list_all: String,
    /// Sessions without a note of one kind, newest first, through the partial index of
    /// migration 0011/0012 (its predicate spelled out, for SQLite's planner).
    list_without_note: String,
    count_without_note: String,
    get: String,
    /// The counts the triggers of migration 0004 keep (a few rows, whatever the table's size).
    count_states: String,
    /// Rows that are being retried (an attempt was made, or an error is recorded) however many
    /// new rows are pending in front of them, newest failure first: the partial index of
    /// migration 0004, whose predicate this repeats word for word so that SQLite's planner
    /// matches it.
    pub(crate) list_retrying: String,
    pub(crate) oldest_unfinished: String,
    hourly: String,
    count_resolutions: String,
    get_expectation: String,
    list_expectations: String,
    trace_by_session: String,
    trace_by_encounter: String,
    expectations_by_encounter: String,
    /// The head of a trace's timeline query (the delivery ids follow).
    history_of: String,
    /// Dead rows by code, through the dead rows' partial index.
    dead_groups: String,
    pauses: String,
    /// Newest first.
    audit: String,
    /// Newest first, without what only looked (timeline views, sign-ins).
    audit_changes: String,
    audit_chain: String,
    last_audit: String,
    /// The latest audit purge's anchor.
    pub(super) audit_anchor: String,
    /// Stored bodies by key (erased ones left out).
    key_counts: String,
    /// A page of stored bodies in id order.
    bodies: String,
    /// Whether any stored body is sealed (through the key index).
    has_sealed: String,
}

impl ReadSql {
    pub(super) fn new(t: &Tables) -> Self {
        let Tables {
            deliveries,
            history,
            expectations,
            pauses,
            audit,
            audit_purges,
            counts,
            ..
        } = t;
        let rows = format!("SELECT {COLUMNS} FROM {deliveries}");
        let expected = format!("SELECT {EXPECTATION_COLUMNS} FROM {expectations}");
        let entries = format!("SELECT {AUDIT_COLUMNS} FROM {audit}");
        Self {
            list_state: format!("{rows} WHERE state = $1 ORDER BY id DESC LIMIT $2"),
            list_dead: format!("{rows} WHERE state = 'dead' ORDER BY id DESC LIMIT $1"),
            list_all: format!("{rows} ORDER BY id DESC LIMIT $1"),
            list_without_note: format!(
                "{rows} WHERE kind IN ('failed', 'timed_out', 'cancelled') AND kind = $1 \
                 ORDER BY received_at DESC, id DESC LIMIT $2"
            ),
            count_without_note: format!(
                "SELECT COUNT(*) FROM {deliveries} \
                 WHERE kind IN ('failed', 'timed_out', 'cancelled') AND received_at >= $1"
            ),
            get: format!("{rows} WHERE id = $1"),
            count_states: format!(
                "SELECT state, CAST(SUM(n) AS BIGINT) FROM {counts} GROUP BY state"
            ),
            list_retrying: format!(
                "{rows} \
                 WHERE state IN ('pending', 'running') AND (attempts > 0 OR last_error IS NOT NULL) \
                 ORDER BY updated_at DESC, id DESC LIMIT $1"
            ),
            oldest_unfinished: format!(
                "SELECT MIN(received_at) FROM {deliveries} WHERE state IN ('pending', 'running')"
            ),
            hourly: format!(
                "SELECT received_at / 3600000 AS hour, state, COUNT(*) FROM {deliveries} \
                 WHERE received_at >= $1 GROUP BY received_at / 3600000, state"
            ),
            count_resolutions: format!(
                "SELECT resolution, COUNT(*) FROM {expectations} GROUP BY resolution"
            ),
            get_expectation: format!("{expected} WHERE session_id = $1"),
            list_expectations: format!("{expected} ORDER BY ended_at DESC, session_id LIMIT $1"),
            trace_by_session: format!("{rows} WHERE session_id = $1 ORDER BY id LIMIT $2"),
            trace_by_encounter: format!("{rows} WHERE encounter_id = $1 ORDER BY id LIMIT $2"),
            expectations_by_encounter: format!(
                "{expected} WHERE encounter_id = $1 ORDER BY ended_at LIMIT 100"
            ),
            history_of: format!("SELECT {HISTORY_COLUMNS} FROM {history} WHERE delivery_id IN ("),
            dead_groups: format!(
                "SELECT last_error, COUNT(*), MAX(updated_at) FROM {deliveries} \
                 WHERE state = 'dead' GROUP BY last_error ORDER BY MAX(updated_at) DESC LIMIT $1"
            ),
            pauses: format!(
                "SELECT scope, paused_at, paused_by, reason FROM {pauses} ORDER BY scope"
            ),
            audit: format!("{entries} WHERE at >= $1 ORDER BY id DESC LIMIT $2"),
            audit_changes: format!(
                "{entries} WHERE at >= $1 AND action NOT IN ('view_timeline', 'sign_in') \
                 ORDER BY id DESC LIMIT $2"
            ),
            audit_chain: format!("{entries} WHERE id > $1 ORDER BY id LIMIT $2"),
            last_audit: format!("{entries} WHERE action = $1 ORDER BY id DESC LIMIT 1"),
            audit_anchor: format!("SELECT anchor FROM {audit_purges} ORDER BY id DESC LIMIT 1"),
            key_counts: format!(
                "SELECT key_id, COUNT(*) FROM {deliveries} \
                 WHERE body_erased_at IS NULL GROUP BY key_id"
            ),
            bodies: format!(
                "SELECT id, dedup_key, key_id, body, fetched FROM {deliveries} \
                 WHERE id > $1 AND body_erased_at IS NULL ORDER BY id LIMIT $2"
            ),
            has_sealed: format!(
                "SELECT id FROM {deliveries} \
                 WHERE key_id IS NOT NULL AND body_erased_at IS NULL LIMIT 1"
            ),
        }
    }
}

sql_impl! {
    crate::seam::ReadModel {
    async fn counts(&self) -> Result<crate::records::Counts, StoreError> {
        let (count_states, oldest) = (&self.sql.read.count_states, &self.sql.read.oldest_unfinished);
        let states: Vec<(String, i64)> = sqlx::query_as(count_states)
            .fetch_all(&self.pool)
            .await
            .db()?;
        let oldest: Option<i64> = sqlx::query_scalar(oldest)
            .fetch_one(&self.pool)
            .await
            .db()?;
        let mut counts = crate::records::Counts::default();
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
        let sql = &self.sql.read.list_retrying;
        let rows: Vec<Row> = sqlx::query_as(sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn without_note(
        &self,
        kind: suki_ambient_core::EventKind,
        limit: u32,
    ) -> Result<Vec<crate::DeliveryRecord>, StoreError> {
        use suki_ambient_core::EventKind;
        if !matches!(
            kind,
            EventKind::Failed | EventKind::TimedOut | EventKind::Cancelled
        ) {
            return Err(StoreError::Refused(
                "only failed, timed-out and cancelled sessions are without a note".into(),
            ));
        }
        let rows: Vec<Row> = sqlx::query_as(&self.sql.read.list_without_note)
            .bind(kind.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn count_without_note(&self, since: UnixMillis) -> Result<u64, StoreError> {
        let (n,): (i64,) = sqlx::query_as(&self.sql.read.count_without_note)
            .bind(stored(since))
            .fetch_one(&self.pool)
            .await
            .db()?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    async fn list(
        &self,
        state: Option<crate::State>,
        limit: u32,
    ) -> Result<Vec<crate::DeliveryRecord>, StoreError> {
        let rows: Vec<Row> = match state {
            Some(crate::State::Dead) => {
                let sql = &self.sql.read.list_dead;
                sqlx::query_as(sql)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .db()?
            }
            Some(state) => {
                let sql = &self.sql.read.list_state;
                sqlx::query_as(sql)
                    .bind(state.as_str())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .db()?
            }
            None => {
                let sql = &self.sql.read.list_all;
                sqlx::query_as(sql)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .db()?
            }
        };
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn get(&self, id: i64) -> Result<Option<crate::DeliveryRecord>, StoreError> {
        let sql = &self.sql.read.get;
        let row: Option<Row> = sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.map(TryInto::try_into).transpose()
    }

    async fn expectation(
        &self,
        session_id: &SessionId,
    ) -> Result<Option<crate::expect::ExpectationRecord>, StoreError> {
        let sql = &self.sql.read.get_expectation;
        let row: Option<ExpectationRow> = sqlx::query_as(sql)
            .bind(session_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.map(TryInto::try_into).transpose()
    }

    async fn expectations(&self, limit: u32) -> Result<Vec<crate::expect::ExpectationRecord>, StoreError> {
        let sql = &self.sql.read.list_expectations;
        let rows: Vec<ExpectationRow> = sqlx::query_as(sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn hourly(&self, since: UnixMillis) -> Result<Vec<crate::records::HourCount>, StoreError> {
        let sql = &self.sql.read.hourly;
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(sql)
            .bind(stored(since))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter()
            .map(|(hour, state, n)| {
                Ok(crate::records::HourCount {
                    hour_start: UnixMillis(u64::try_from(hour).unwrap_or(0) * 3_600_000),
                    state: state.parse()?,
                    count: u64::try_from(n).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn expectation_counts(&self) -> Result<crate::records::ExpectationCounts, StoreError> {
        let sql = &self.sql.read.count_resolutions;
        let rows: Vec<(Option<String>, i64)> =
            sqlx::query_as(sql).fetch_all(&self.pool).await.db()?;
        let mut counts = crate::records::ExpectationCounts::default();
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

    async fn trace(&self, id: &str, limit: u32) -> Result<crate::records::Trace, StoreError> {
        let mut rows: Vec<Row> = Vec::new();
        for sql in [&self.sql.read.trace_by_session, &self.sql.read.trace_by_encounter] {
            let found: Vec<Row> = sqlx::query_as(sql)
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
            let mut sql = self.sql.read.history_of.clone();
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                D::placeholder(&mut sql, i + 1);
            }
            sql.push_str(") ORDER BY id");
            let mut query = sqlx::query_as::<_, HistoryRow>(&sql);
            for r in chunk {
                query = query.bind(r.id);
            }
            for row in query.fetch_all(&self.pool).await.db()? {
                events.push(row.try_into()?);
            }
        }
        let mut expectations: Vec<crate::expect::ExpectationRecord> = Vec::new();
        for sql in [&self.sql.read.get_expectation, &self.sql.read.expectations_by_encounter] {
            let found: Vec<ExpectationRow> = sqlx::query_as(sql)
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .db()?;
            for row in found {
                let record: crate::expect::ExpectationRecord = row.try_into()?;
                if !expectations
                    .iter()
                    .any(|e| e.session_id == record.session_id)
                {
                    expectations.push(record);
                }
            }
        }
        Ok(crate::records::Trace {
            deliveries: rows
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
            events,
            expectations,
        })
    }

    async fn dead_groups(&self, limit: u32) -> Result<Vec<crate::records::DeadGroup>, StoreError> {
        let sql = &self.sql.read.dead_groups;
        let rows: Vec<(Option<String>, i64, i64)> = sqlx::query_as(sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter()
            .map(|(code, count, latest)| {
                Ok(crate::records::DeadGroup {
                    code,
                    count: u64::try_from(count).unwrap_or(0),
                    latest: millis(latest)?,
                })
            })
            .collect()
    }

    async fn destinations(&self) -> Result<Vec<crate::records::DestinationRecord>, StoreError> {
        type DestinationRow = (String, bool, Option<String>, Option<i64>, i64, i32, i64, i64);
        let rows: Vec<DestinationRow> = sqlx::query_as(&self.sql.queue.destinations)
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter()
            .map(
                |(name, up, reason, down_since, next_probe, probes, updated_at, waiting)| {
                    Ok(crate::records::DestinationRecord {
                        name,
                        up,
                        reason,
                        down_since: down_since.map(millis).transpose()?,
                        next_probe: millis(next_probe)?,
                        probes: u32::try_from(probes).unwrap_or(0),
                        waiting: u64::try_from(waiting).unwrap_or(0),
                        updated_at: millis(updated_at)?,
                    })
                },
            )
            .collect()
    }

    async fn pauses(&self) -> Result<Vec<crate::records::Pause>, StoreError> {
        let sql = &self.sql.read.pauses;
        let rows: Vec<PauseRow> = sqlx::query_as(sql).fetch_all(&self.pool).await.db()?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn audit(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<crate::records::AuditEntry>, StoreError> {
        let sql = &self.sql.read.audit;
        let rows: Vec<AuditRow> = sqlx::query_as(sql)
            .bind(stored(since))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn audit_changes(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<crate::records::AuditEntry>, StoreError> {
        let rows: Vec<AuditRow> = sqlx::query_as(&self.sql.read.audit_changes)
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
    ) -> Result<Vec<crate::records::AuditEntry>, StoreError> {
        let sql = &self.sql.read.audit_chain;
        let rows: Vec<AuditRow> = sqlx::query_as(sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn audit_anchor(&self) -> Result<Option<String>, StoreError> {
        let sql = &self.sql.read.audit_anchor;
        sqlx::query_scalar(sql).fetch_optional(&self.pool).await.db()
    }

    async fn last_audit(&self, action: &str) -> Result<Option<crate::records::AuditEntry>, StoreError> {
        let sql = &self.sql.read.last_audit;
        let row: Option<AuditRow> = sqlx::query_as(sql)
            .bind(action)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.map(TryInto::try_into).transpose()
    }

    async fn key_counts(&self) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        let sql = &self.sql.read.key_counts;
        let rows: Vec<(Option<String>, i64)> =
            sqlx::query_as(sql).fetch_all(&self.pool).await.db()?;
        Ok(rows
            .into_iter()
            .map(|(key, n)| (key, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    async fn bodies(&self, after: i64, limit: u32) -> Result<Vec<crate::records::StoredBody>, StoreError> {
        let sql = &self.sql.read.bodies;
        type Row = (i64, String, Option<String>, Vec<u8>, Option<Vec<u8>>);
        let rows: Vec<Row> = sqlx::query_as(sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .db()?;
        Ok(rows
            .into_iter()
            .map(|(id, dedup_key, key_id, body, fetched)| crate::records::StoredBody {
                id,
                dedup_key,
                key_id,
                body: bytes::Bytes::from(body),
                fetched: fetched.map(bytes::Bytes::from),
            })
            .collect())
    }

    async fn has_sealed(&self) -> Result<bool, StoreError> {
        let sql = &self.sql.read.has_sealed;
        let row: Option<i64> = sqlx::query_scalar(sql)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        Ok(row.is_some())
    }
}
}
