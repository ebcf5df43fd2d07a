//! The rows the inbox's statements return, and their conversions into the store's records.

use suki_ambient_core::{EncounterId, EventKind, SessionId, UnixMillis};

use crate::DeliveryRecord;
use crate::StoreError;

/// The record's columns, in [`Row`]'s order.
pub(super) const COLUMNS: &str = "id, dedup_key, source, kind, session_id, encounter_id, \
     generated_at, received_at, state, attempts, run_after, lease_owner, fence, last_error, \
     completed_at, snoozes, key_id, round_start, waiting_for";

/// The expectation columns, in [`ExpectationRow`]'s order.
pub(super) const EXPECTATION_COLUMNS: &str = "session_id, encounter_id, provider_id, kind, \
     ended_at, next_check, checks, last_status, lease_owner, fence, resolution, resolved_at, \
     context";

/// The timeline's columns, in [`HistoryRow`]'s order.
pub(super) const HISTORY_COLUMNS: &str =
    "delivery_id, at, event, started_at, attempt, worker, code, next_run, detail, actor";

/// The audit log's columns, in [`AuditRow`]'s order.
pub(super) const AUDIT_COLUMNS: &str =
    "id, at, actor, origin, action, target, rows, detail, prev_hash, hash";

#[derive(sqlx::FromRow)]
pub(super) struct ExpectationRow {
    pub(super) session_id: String,
    pub(super) encounter_id: String,
    pub(super) provider_id: Option<String>,
    pub(super) kind: String,
    pub(super) ended_at: i64,
    pub(super) next_check: i64,
    pub(super) checks: i32,
    pub(super) last_status: Option<String>,
    pub(super) lease_owner: Option<String>,
    pub(super) fence: i64,
    pub(super) resolution: Option<String>,
    pub(super) resolved_at: Option<i64>,
    pub(super) context: Option<Vec<u8>>,
}

impl TryFrom<ExpectationRow> for crate::expect::ExpectationRecord {
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
            context: row.context.map(crate::expect::SealedContext::from_stored),
        })
    }
}

/// A stored row as the database returns it.
#[derive(sqlx::FromRow)]
pub(super) struct Row {
    pub(super) id: i64,
    pub(super) dedup_key: String,
    pub(super) source: String,
    pub(super) kind: String,
    pub(super) session_id: Option<String>,
    pub(super) encounter_id: Option<String>,
    pub(super) generated_at: i64,
    pub(super) received_at: i64,
    pub(super) state: String,
    pub(super) attempts: i32,
    pub(super) run_after: i64,
    pub(super) lease_owner: Option<String>,
    pub(super) fence: i64,
    pub(super) last_error: Option<String>,
    pub(super) completed_at: Option<i64>,
    pub(super) snoozes: i32,
    pub(super) round_start: i32,
    pub(super) key_id: Option<String>,
    pub(super) waiting_for: Option<String>,
}

/// A claimed row: the record and its body.
#[derive(sqlx::FromRow)]
pub(super) struct ClaimRow {
    #[sqlx(flatten)]
    pub(crate) row: Row,
    pub(crate) body: Vec<u8>,
}

pub(super) fn millis(value: i64) -> Result<UnixMillis, StoreError> {
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
            waiting_for: row.waiting_for,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct HistoryRow {
    pub(super) delivery_id: i64,
    pub(super) at: i64,
    pub(super) event: String,
    pub(super) started_at: Option<i64>,
    pub(super) attempt: Option<i32>,
    pub(super) worker: Option<String>,
    pub(super) code: Option<String>,
    pub(super) next_run: Option<i64>,
    pub(super) detail: Option<String>,
    pub(super) actor: Option<String>,
}

impl TryFrom<HistoryRow> for crate::records::TimelineEvent {
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
pub(super) struct AuditRow {
    pub(super) id: i64,
    pub(super) at: i64,
    pub(super) actor: String,
    pub(super) origin: String,
    pub(super) action: String,
    pub(super) target: Option<String>,
    pub(super) rows: i64,
    pub(super) detail: Option<String>,
    pub(super) prev_hash: String,
    pub(super) hash: String,
}

impl TryFrom<AuditRow> for crate::records::AuditEntry {
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
pub(super) struct PauseRow {
    pub(super) scope: String,
    pub(super) paused_at: i64,
    pub(super) paused_by: String,
    pub(super) reason: Option<String>,
}

impl TryFrom<PauseRow> for crate::records::Pause {
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
