//! The rows the inbox keeps and the values its store contract passes: deliveries, their states
//! and leases, operator actions and the audit log, counts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use suki_ambient_core::{EncounterId, EventKind, SessionId, UnixMillis};

use crate::StoreError;
use crate::expect::{ExpectationRecord, ExpectedSession};

/// Where a row came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Source {
    /// A verified webhook delivery.
    Webhook,
    /// An event built from a status poll (the reconciler).
    Poll,
    /// Inserted by an operator.
    Manual,
}

impl Source {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Poll => "poll",
            Self::Manual => "manual",
        }
    }
}

impl FromStr for Source {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "webhook" => Ok(Self::Webhook),
            "poll" => Ok(Self::Poll),
            "manual" => Ok(Self::Manual),
            _ => Err(StoreError::Corrupt("unknown source")),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for a worker (due at `run_after`).
    Pending,
    /// Held by a worker under a lease.
    Running,
    /// Processed.
    Done,
    /// Given up: a permanent error or the last attempt failed. Kept, and can be retried.
    Dead,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 4] = [Self::Pending, Self::Running, Self::Done, Self::Dead];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }
}

impl FromStr for State {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(Self::Pending),
            "running" => Ok(Self::Running),
            "done" => Ok(Self::Done),
            "dead" => Ok(Self::Dead),
            _ => Err(StoreError::Corrupt("unknown state")),
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery to store.
#[derive(Clone)]
pub struct NewDelivery {
    /// Unique per event: `<session id>/<kind>` (the same for a webhook and a poll of one
    /// session), or `delivery/<replay key>` for an event of unknown status.
    pub dedup_key: String,
    /// Where it came from.
    pub source: Source,
    /// The event kind (`unknown` for a status the SDK does not know).
    pub kind: EventKind,
    /// The session, when the event names one.
    pub session_id: Option<SessionId>,
    /// The encounter, when the event names one.
    pub encounter_id: Option<EncounterId>,
    /// The authenticated `generated-at`.
    pub generated_at: UnixMillis,
    /// When it was received (and first due).
    pub received_at: UnixMillis,
    /// The verified webhook body (ids, status and links: no clinical content), or, with
    /// `key_id`, that body sealed under the key ([`crypto`](crate::crypto)).
    pub body: Bytes,
    /// The id of the key `body` is sealed with; `None`: in clear (the [`Inbox`](crate::Inbox)
    /// seals it when it has keys).
    pub key_id: Option<String>,
}

impl NewDelivery {
    /// This delivery with its body sealed under `key` and its key id set, unless it is sealed
    /// already.
    pub(crate) fn sealed_with(mut self, key: &crate::BodyKey) -> Result<Self, StoreError> {
        if self.key_id.is_none() {
            let sealed = key
                .try_seal(self.dedup_key.as_bytes(), &self.body)
                .ok_or(StoreError::SealFailed)?;
            self.body = Bytes::from(sealed);
            self.key_id = Some(key.id().to_owned());
        }
        Ok(self)
    }
}

impl fmt::Debug for NewDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewDelivery")
            .field("dedup_key", &self.dedup_key)
            .field("source", &self.source)
            .field("kind", &self.kind)
            .field("body_len", &self.body.len())
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A stored row, without its body: what `list`, `show` and the console display.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    /// The row id.
    pub id: i64,
    /// The deduplication key.
    pub dedup_key: String,
    /// Where it came from.
    pub source: Source,
    /// The event kind.
    pub kind: EventKind,
    /// The session.
    pub session_id: Option<SessionId>,
    /// The encounter.
    pub encounter_id: Option<EncounterId>,
    /// The authenticated `generated-at`.
    pub generated_at: UnixMillis,
    /// When it was stored.
    pub received_at: UnixMillis,
    /// Its state.
    pub state: State,
    /// Attempts started so far (a claim counts, so a crash mid-handler counts too).
    pub attempts: u32,
    /// When it is next due; for a running row, when its lease expires.
    pub run_after: UnixMillis,
    /// The worker holding it.
    pub lease_owner: Option<String>,
    /// The fencing token of the latest claim.
    pub fence: i64,
    /// The last error: a code and, for HTTP failures, the status; never content.
    pub last_error: Option<String>,
    /// When it was processed.
    pub completed_at: Option<UnixMillis>,
    /// Times its handler snoozed it (each without spending an attempt).
    pub snoozes: u32,
    /// The id of the key its body is sealed with (`None`: in clear).
    pub key_id: Option<String>,
    /// The attempts made before an operator last made it due again (retry, replay): the
    /// attempts a worker allows count from here, while `attempts` and the timeline go on.
    pub round_start: u32,
    /// The destination it waits for (pending without spending attempts while it is down).
    pub waiting_for: Option<String>,
}

impl DeliveryRecord {
    /// Attempts made since an operator last made it due again (all of them if never).
    pub fn round_attempts(&self) -> u32 {
        self.attempts.saturating_sub(self.round_start)
    }
}

/// A row claimed by a worker: its record and body. `Debug` shows the body's length only.
#[derive(Clone)]
pub struct Claim {
    /// The row as claimed (state `running`, attempts counting this one).
    pub record: DeliveryRecord,
    /// The stored webhook body.
    pub body: Bytes,
}

impl Claim {
    /// The lease this claim holds.
    pub fn lease(&self) -> Lease {
        Lease {
            id: self.record.id,
            fence: self.record.fence,
        }
    }
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("record", &self.record)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A row and the fencing token of the claim that holds it: a worker may change the row only
/// while the token is still the row's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The row id.
    pub id: i64,
    /// The fencing token.
    pub fence: i64,
}

/// What becomes of a row whose attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Next {
    /// Back to `pending`, due at the given time.
    RetryAt(UnixMillis),
    /// To `dead`.
    Dead,
    /// Back to `pending`, due at the given time, without spending the attempt (the handler
    /// asked for it: [`Snooze`](crate::Snooze)); counted in the row's snoozes.
    Snooze(UnixMillis),
    /// Back to `pending`, due at the given time, without spending the attempt or a snooze: a
    /// destination the row needs is down ([`FailedAttempt::waiting_for`] names it; an outage
    /// is not the row's failure). Its timeline says `waiting`.
    Wait(UnixMillis),
}

/// Which rows to retry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Selection {
    /// One row (dead, pending or discarded; a running or done row is left alone).
    Id(i64),
    /// Every dead row.
    Dead,
    /// The dead rows that match.
    DeadMatching(DeadFilter),
}

/// Which dead rows [`Selection::DeadMatching`] takes: every condition set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadFilter {
    /// Their error code is exactly this (a group of the console).
    pub code: Option<String>,
    /// Their error code starts with this (`fetch_contents_`).
    pub code_prefix: Option<String>,
    /// They died at or after this time.
    pub since: Option<UnixMillis>,
}

impl DeadFilter {
    /// Every dead row.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only those whose code is exactly `code`.
    #[must_use]
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Only those whose code starts with `prefix`.
    #[must_use]
    pub fn code_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.code_prefix = Some(prefix.into());
        self
    }

    /// Only those that died at or after `at`.
    #[must_use]
    pub fn since(mut self, at: UnixMillis) -> Self {
        self.since = Some(at);
        self
    }
}

/// Who does an operator [`Action`](crate::Action): a name (the console token's, the CLI's `--actor`, or
/// the application's) and where from. Recorded in the audit log and the rows' timelines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// Who.
    pub name: String,
    /// From where (`cli@host`, `console 10.0.0.7`, `application`).
    pub origin: String,
}

impl Actor {
    /// An actor named `name` acting from `origin`.
    pub fn new(name: impl Into<String>, origin: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            origin: origin.into(),
        }
    }

    /// The application itself (what [`Inbox::retry`](crate::Inbox::retry) and
    /// [`Inbox::purge`](crate::Inbox::purge) record).
    pub fn application() -> Self {
        Self::new("application", "application")
    }
}

/// An operator's action on the inbox ([`Inbox::act`](crate::Inbox::act)): done in one
/// transaction with an entry of the audit log and an event in each changed row's timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Makes the selected rows due now with a new round of attempts (their count and timeline
    /// kept: [`DeliveryRecord::round_start`]).
    Retry(Selection),
    /// Makes the rows completed since `since` (optionally of one kind) due again (after a
    /// handler bug); discarded rows stay discarded.
    Replay {
        /// Rows completed at or after this time.
        since: UnixMillis,
        /// Only rows of this kind.
        kind: Option<EventKind>,
    },
    /// Marks a dead or pending row as never to be processed: it is kept (state `done`, error
    /// `discarded`) until the retention purges it, and the reason is in its timeline.
    Discard {
        /// The row.
        id: i64,
        /// Why (kept in the timeline and the audit log).
        reason: String,
    },
    /// Stops every worker of the inbox claiming (all rows, or one kind) until resumed;
    /// deliveries are still stored.
    Pause {
        /// One kind, or every row.
        kind: Option<EventKind>,
        /// Why.
        reason: Option<String>,
    },
    /// Ends a pause.
    Resume {
        /// The kind paused, or the whole inbox.
        kind: Option<EventKind>,
    },
    /// Deletes done rows completed before `before`, with their timelines.
    Purge {
        /// Completed before this time.
        before: UnixMillis,
    },
    /// Deletes audit entries older than `before` (the audit log's own retention).
    PurgeAudit {
        /// Entries before this time.
        before: UnixMillis,
    },
    /// Records that someone looked at a session's or encounter's timeline (changes nothing).
    ViewTimeline {
        /// The session or encounter id looked up.
        target: String,
    },
    /// Records a sign-in to the console (changes nothing).
    SignIn {
        /// The role signed in as (`viewer`, `operator`).
        role: String,
    },
    /// Records what a re-seal of the stored bodies did ([`Inbox::rekey`](crate::Inbox::rekey);
    /// changes nothing itself).
    Rekey(crate::records::RekeyReport),
    /// Records the body keys a process started with, when they differ from the last recorded
    /// (changes nothing): key ids only.
    KeysSeen {
        /// The key that seals new bodies (`None`: bodies stored in clear).
        current: Option<String>,
        /// The other keys it can open with.
        others: Vec<String>,
    },
    /// Records the audit log's retention floor in force, when it differs from the last recorded
    /// (changes nothing).
    AuditFloor {
        /// The floor, in days.
        days: u64,
    },
    /// Records the audit key the chain continues under, by id, when it differs from the last
    /// recorded (changes nothing): a rotation, in the chain itself.
    AuditKeySeen {
        /// The key's id (`None`: entries chained by a plain hash).
        id: Option<String>,
    },
    /// Makes one completed row due again (as [`Replay`](Self::Replay) does for a window);
    /// a discarded row or one whose body was erased is not.
    ReplayRow {
        /// The row.
        id: i64,
    },
    /// Records a reconciliation sweep run by an operator (`suki-ambient reconcile`; changes
    /// nothing itself: the events it stored went through the inbox's write path).
    Reconciled {
        /// Sessions that ended at or after this time.
        since: UnixMillis,
        /// Sessions checked.
        checked: u64,
        /// Events stored.
        stored: u64,
    },
    /// Records an expected session registered by an operator (`suki-ambient reconcile
    /// expect`).
    Expected {
        /// The session.
        session: String,
        /// Whether it was new.
        new: bool,
    },
}

impl Action {
    /// Its name in the audit log (`retry`, `replay`, `discard`, `pause`, `resume`, `purge`,
    /// `purge_audit`, `view_timeline`, `sign_in`, `rekey`, `keys_changed`, `audit_floor`,
    /// `audit_key`, `reconcile`, `expect`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Retry(_) => "retry",
            Self::Replay { .. } => "replay",
            Self::Discard { .. } => "discard",
            Self::Pause { .. } => "pause",
            Self::Resume { .. } => "resume",
            Self::Purge { .. } => "purge",
            Self::PurgeAudit { .. } => "purge_audit",
            Self::ViewTimeline { .. } => "view_timeline",
            Self::SignIn { .. } => "sign_in",
            Self::Rekey(_) => "rekey",
            Self::KeysSeen { .. } => "keys_changed",
            Self::AuditFloor { .. } => "audit_floor",
            Self::AuditKeySeen { .. } => "audit_key",
            Self::ReplayRow { .. } => "replay",
            Self::Reconciled { .. } => "reconcile",
            Self::Expected { .. } => "expect",
        }
    }

    /// Its target and detail, as the audit log keeps them (for a [`Store`](crate::store::Store) of your own).
    pub fn describe(&self) -> (Option<String>, Option<String>) {
        let action = self;
        let kind_or_all = |kind: &Option<EventKind>| {
            kind.as_ref()
                .map_or_else(|| "all".to_owned(), |k| format!("kind {k}"))
        };
        match action {
            Self::Retry(Selection::Id(id)) => (Some(format!("row {id}")), None),
            Self::Retry(Selection::DeadMatching(f)) => {
                let mut detail = Vec::new();
                if let Some(code) = &f.code {
                    detail.push(format!("code {code}"));
                }
                if let Some(prefix) = &f.code_prefix {
                    detail.push(format!("code prefix {prefix}"));
                }
                if let Some(since) = f.since {
                    detail.push(format!("since {}", since.0));
                }
                (Some("dead".to_owned()), Some(detail.join(", ")))
            }
            Self::Retry(_) => (Some("dead".to_owned()), None),
            Self::Replay { since, kind } => (
                Some(kind_or_all(kind)),
                Some(format!("completed since {}", since.0)),
            ),
            Self::Discard { id, reason } => (Some(format!("row {id}")), Some(reason.clone())),
            Self::Pause { kind, reason } => (Some(kind_or_all(kind)), reason.clone()),
            Self::Resume { kind } => (Some(kind_or_all(kind)), None),
            Self::Purge { before } => (None, Some(format!("done before {}", before.0))),
            Self::PurgeAudit { before } => (None, Some(format!("entries before {}", before.0))),
            Self::ViewTimeline { target } => (Some(target.clone()), None),
            Self::SignIn { role } => (None, Some(format!("role {role}"))),
            Self::Rekey(report) => (
                None,
                Some(format!(
                    "examined {}, resealed {}, already current {}, key missing {}",
                    report.examined, report.resealed, report.current, report.missing_key
                )),
            ),
            Self::KeysSeen { current, others } => (
                Some(
                    current
                        .clone()
                        .unwrap_or_else(|| "none (bodies in clear)".to_owned()),
                ),
                (!others.is_empty()).then(|| format!("also opens with {}", others.join(", "))),
            ),
            Self::AuditFloor { days } => (None, Some(format!("retention floor {days} days"))),
            Self::AuditKeySeen { id } => (
                Some(
                    id.clone()
                        .unwrap_or_else(|| "none (plain hashes)".to_owned()),
                ),
                None,
            ),
            Self::ReplayRow { id } => (Some(format!("row {id}")), None),
            Self::Reconciled {
                since,
                checked,
                stored,
            } => (
                None,
                Some(format!(
                    "ended since {}, checked {checked}, stored {stored}",
                    since.0
                )),
            ),
            Self::Expected { session, new } => (
                Some(format!("session {session}")),
                (!new).then(|| "already expected".to_owned()),
            ),
        }
    }

    /// The rows an action that only records ([`records_only`](Self::records_only)) reports in
    /// its audit entry: what a re-seal re-sealed, what a sweep stored, an expectation added.
    pub fn recorded_rows(&self) -> u64 {
        match self {
            Self::Rekey(report) => report.resealed,
            Self::Reconciled { stored, .. } => *stored,
            Self::Expected { new, .. } => u64::from(*new),
            _ => 0,
        }
    }

    /// Whether it only records something (it changes no row, pause or entry).
    pub fn records_only(&self) -> bool {
        matches!(
            self,
            Self::ViewTimeline { .. }
                | Self::SignIn { .. }
                | Self::Rekey(_)
                | Self::KeysSeen { .. }
                | Self::AuditFloor { .. }
                | Self::AuditKeySeen { .. }
                | Self::Reconciled { .. }
                | Self::Expected { .. }
        )
    }
}

/// An action to do ([`Operations::act`](crate::store::Operations::act)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Act<'a> {
    /// What.
    pub action: &'a Action,
    /// Who.
    pub actor: &'a Actor,
    /// The caller's clock.
    pub now: UnixMillis,
    /// The key its audit entry is chained with ([`audit_mac`](crate::audit::audit_mac)); `None`: a
    /// plain hash. A store refuses to append an entry without a key to a chain whose newest
    /// entry is keyed ([`StoreError::Refused`]).
    pub audit_key: Option<&'a crate::AuditKey>,
}

/// A pause in force ([`ReadModel::pauses`](crate::store::ReadModel::pauses)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pause {
    /// The kind paused, or `None` for the whole inbox.
    pub kind: Option<EventKind>,
    /// Since when.
    pub paused_at: UnixMillis,
    /// Who paused it.
    pub paused_by: String,
    /// Why, if said.
    pub reason: Option<String>,
}

/// One event of a row's timeline ([`ReadModel::trace`](crate::store::ReadModel::trace)): an attempt and its outcome, or an
/// operator's action. Codes, statuses and names only, never content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineEvent {
    /// The row.
    pub delivery_id: i64,
    /// When it happened (an attempt: when it ended).
    pub at: UnixMillis,
    /// What: an attempt's outcome (`done`, `retry`, `dead`, `snoozed`, `waiting`, `released`,
    /// `interrupted`, `lease_expired`) or an action (`retried`, `replayed`, `discarded`).
    pub event: String,
    /// When the attempt started.
    pub started_at: Option<UnixMillis>,
    /// The attempt's number.
    pub attempt: Option<u32>,
    /// The worker that made the attempt.
    pub worker: Option<String>,
    /// The error code.
    pub code: Option<String>,
    /// When the row was due next.
    pub next_run: Option<UnixMillis>,
    /// The links fetched and their answers (`contents 200, transcripts 503`), or an operator's
    /// reason.
    pub detail: Option<String>,
    /// The operator, for an action.
    pub actor: Option<String>,
}

/// Everything the inbox knows about one session or encounter ([`ReadModel::trace`](crate::store::ReadModel::trace)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Trace {
    /// Its rows, oldest first.
    pub deliveries: Vec<DeliveryRecord>,
    /// Their timelines' events, in order.
    pub events: Vec<TimelineEvent>,
    /// Its expected sessions (the reconciler).
    pub expectations: Vec<ExpectationRecord>,
}

impl Trace {
    /// Nothing is known.
    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty() && self.expectations.is_empty()
    }
}

/// Dead rows with one error code ([`ReadModel::dead_groups`](crate::store::ReadModel::dead_groups)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadGroup {
    /// The code (`None`: none recorded).
    pub code: Option<String>,
    /// How many.
    pub count: u64,
    /// When the latest of them died.
    pub latest: UnixMillis,
}

/// An entry of the audit log ([`ReadModel::audit`](crate::store::ReadModel::audit)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Its number, in order.
    pub id: i64,
    /// When.
    pub at: UnixMillis,
    /// Who.
    pub actor: String,
    /// From where.
    pub origin: String,
    /// What ([`Action::name`](crate::Action::name)).
    pub action: String,
    /// On what: a row id, a selection, a kind, a window, an id looked up.
    pub target: Option<String>,
    /// How many rows it changed.
    pub rows: u64,
    /// The reason or filter given.
    pub detail: Option<String>,
    /// The hash of the entry before it in the chain (`""` for the first entry, and for
    /// entries written before the chain existed).
    pub prev_hash: String,
    /// Its own hash: its MAC under the inbox's audit key
    /// ([`audit_mac`](crate::audit::audit_mac): `hmac-sha256:<key id>:<hex>`), or, without one, the
    /// [`audit_hash`] of `prev_hash` and its fields; `""` for entries written before the chain
    /// existed.
    pub hash: String,
}

/// The hash that chains an audit entry to the one before it: SHA-256, in lowercase hex, over
/// `prev_hash` and the entry's `at`, `actor`, `origin`, `action`, `target`, `rows` and `detail`
/// (each length-prefixed; its `id`, `prev_hash` and `hash` fields are not read). A [`Store`](crate::store::Store) of
/// your own computes it for each entry it appends, from the newest entry's hash (or the latest
/// purge's anchor, [`ReadModel::audit_anchor`](crate::store::ReadModel::audit_anchor), when none is left).
pub fn audit_hash(prev_hash: &str, entry: &AuditEntry) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    entry_fields(prev_hash, entry, &mut |bytes| hash.update(bytes));
    hex::encode(hash.finalize())
}

impl crate::AuditKey {
    /// The MAC that chains `entry` to the entry before it (whose hash is `prev_hash`):
    /// `hmac-sha256:<id>:<hex>` over what [`audit_hash`] reads.
    pub fn mac(&self, prev_hash: &str, entry: &AuditEntry) -> String {
        self.tag(|update| entry_fields(prev_hash, entry, update))
    }
}

/// Feeds `entry`'s chained fields to `update`, each length-prefixed (what both the plain hash
/// and the MAC cover).
fn entry_fields(prev_hash: &str, entry: &AuditEntry, update: &mut dyn FnMut(&[u8])) {
    let mut field = |bytes: &[u8]| {
        update(&(bytes.len() as u64).to_be_bytes());
        update(bytes);
    };
    field(prev_hash.as_bytes());
    field(&entry.at.0.to_be_bytes());
    field(entry.actor.as_bytes());
    field(entry.origin.as_bytes());
    field(entry.action.as_bytes());
    for optional in [&entry.target, &entry.detail] {
        match optional {
            // A tag, so that `None` and `Some("")` differ.
            None => field(b"\0"),
            Some(text) => field(format!("\x01{text}").as_bytes()),
        }
    }
    field(&entry.rows.to_be_bytes());
}

/// Whether the stored bodies are sealed under keys this process holds ([`Health::key_check`](crate::Health::key_check)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyCheck {
    /// This process holds no body keys (e.g. the CLI's console without `SUKI_INBOX_KEYS`): not
    /// checked, and not a problem.
    NotConfigured,
    /// Every stored body is in clear or under a key it holds.
    Ok,
    /// Some are sealed under a key it does not hold (the problem `body_keys_missing`).
    Missing,
    /// The check did not answer in time (an index read, bounded to 500 ms): not known, never
    /// taken for `ok`.
    Unknown,
}

impl KeyCheck {
    /// `not configured`, `ok`, `missing`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotConfigured => "not configured",
            Self::Ok => "ok",
            Self::Missing => "missing",
            Self::Unknown => "unknown",
        }
    }
}

/// The inbox at a glance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Pending rows.
    pub pending: u64,
    /// Running rows.
    pub running: u64,
    /// Done rows (until purged).
    pub done: u64,
    /// Dead rows.
    pub dead: u64,
    /// When the oldest pending or running row was received (ms), if any.
    pub oldest_unfinished_received_at: Option<UnixMillis>,
}

/// A row's stored body ([`ReadModel::bodies`](crate::store::ReadModel::bodies)); `Debug` shows its length only.
#[derive(Clone)]
pub struct StoredBody {
    /// The row.
    pub id: i64,
    /// Its dedup key (the associated data of a sealed body).
    pub dedup_key: String,
    /// The key that seals it (`None`: in clear).
    pub key_id: Option<String>,
    /// The stored bytes.
    pub body: Bytes,
    /// What a failed attempt fetched and kept, as stored (its key id inside).
    pub fetched: Option<Bytes>,
}

impl fmt::Debug for StoredBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredBody")
            .field("id", &self.id)
            .field("key_id", &self.key_id)
            .field("body_len", &self.body.len())
            .field("fetched_len", &self.fetched.as_ref().map(Bytes::len))
            .finish()
    }
}

/// A body re-sealed under another key ([`Operations::reseal`](crate::store::Operations::reseal)).
#[derive(Clone)]
pub struct Resealed {
    /// The row.
    pub id: i64,
    /// The key that sealed it before (`None`: in clear).
    pub was: Option<String>,
    /// The key that seals it now.
    pub key_id: String,
    /// The sealed bytes.
    pub body: Bytes,
    /// What a failed attempt fetched, re-sealed under the same key (`None`: none kept, or one
    /// that no longer opens: dropped, and fetched again by the next attempt).
    pub fetched: Option<Bytes>,
}

impl fmt::Debug for Resealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resealed")
            .field("id", &self.id)
            .field("was", &self.was)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A claim of due rows or due expectations ([`DeliveryQueue::claim`](crate::store::DeliveryQueue::claim),
/// [`Expectations::claim_expectations`](crate::store::Expectations::claim_expectations)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimRequest<'a> {
    /// Who claims (the worker's or reconciler's owner name).
    pub owner: &'a str,
    /// The caller's clock: what is due at this time.
    pub now: UnixMillis,
    /// How long the claim holds what it took.
    pub lease: Duration,
    /// The most it takes.
    pub limit: u32,
    /// Kinds not to take (paused): `&[]` for every kind.
    pub paused: &'a [EventKind],
}

impl ClaimRequest<'_> {
    /// When the lease ends.
    pub fn until(&self) -> UnixMillis {
        self.now.saturating_add(self.lease)
    }
}

/// A failed attempt to record ([`DeliveryQueue::fail`](crate::store::DeliveryQueue::fail)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailedAttempt<'a> {
    /// The row and the claim that held it.
    pub lease: Lease,
    /// The caller's clock.
    pub now: UnixMillis,
    /// Retry at a time, or dead.
    pub next: Next,
    /// What went wrong: a code (`handler_failed`, `fetch_contents_503_…`), never content.
    pub error: &'a str,
    /// What the attempt fetched (links and answers), for the row's timeline.
    pub detail: Option<&'a str>,
    /// With [`Next::Wait`]: the destination the row waits for (kept with the row until its
    /// next outcome, so that the destination's return makes it due at once).
    pub waiting_for: Option<&'a str>,
}

/// A destination the worker calls (Suki's API, an EHR) as the store shares it between the
/// workers of a fleet ([`ReadModel::destinations`](crate::store::ReadModel::destinations)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DestinationRecord {
    /// Its name: `suki`, or `ehr:<host>`.
    pub name: String,
    /// Whether it answers.
    pub up: bool,
    /// Why it is down: the error code of the failures that opened its breaker.
    pub reason: Option<String>,
    /// Since when it is down.
    pub down_since: Option<UnixMillis>,
    /// When the next probe may be sent (while down).
    pub next_probe: UnixMillis,
    /// Probes sent since it went down, all failed.
    pub probes: u32,
    /// Rows waiting for it (pending, no attempt spent).
    pub waiting: u64,
    /// When a worker last changed it.
    pub updated_at: UnixMillis,
}

/// A destination found down ([`DeliveryQueue::destination_down`](crate::store::DeliveryQueue::destination_down)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestinationDown<'a> {
    /// The destination.
    pub name: &'a str,
    /// Why: an error code, never content.
    pub reason: &'a str,
    /// The caller's clock.
    pub now: UnixMillis,
    /// When the next probe may be sent.
    pub next_probe: UnixMillis,
}

/// An expected session to register ([`Expectations::register`](crate::store::Expectations::register)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewExpectation<'a> {
    /// The session.
    pub expected: &'a ExpectedSession,
    /// When it is first checked (its end plus the reconciler's grace).
    pub first_check: UnixMillis,
    /// The caller's clock.
    pub now: UnixMillis,
    /// The partner's context (`additional_info`), sealed as bodies are (or in clear without
    /// keys): stored as it is, handed back in [`ExpectationRecord::context`](crate::store::ExpectationRecord::context).
    pub context: Option<&'a [u8]>,
}

/// A request for a fleet-wide chore's lease ([`DeliveryQueue::lead`](crate::store::DeliveryQueue::lead)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChoreLease<'a> {
    /// The chore (`"maintenance"`).
    pub task: &'a str,
    /// Who asks (the worker's owner name).
    pub owner: &'a str,
    /// The caller's clock.
    pub now: UnixMillis,
    /// Until when the lease is held if granted.
    pub until: UnixMillis,
}

/// Rows received within one hour that are now in one state ([`ReadModel::hourly`](crate::store::ReadModel::hourly)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HourCount {
    /// The hour's start (Unix ms, a multiple of 3,600,000).
    pub hour_start: UnixMillis,
    /// The rows' state now.
    pub state: State,
    /// How many.
    pub count: u64,
}

/// Expectations by resolution ([`ReadModel::expectation_counts`](crate::store::ReadModel::expectation_counts)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExpectationCounts {
    /// All of them.
    pub expected: u64,
    /// Not resolved yet.
    pub open: u64,
    /// Resolved by their webhook.
    pub webhook: u64,
    /// Recovered by a poll.
    pub poll: u64,
    /// Given up.
    pub gave_up: u64,
}

/// [`Inbox::status`](crate::Inbox::status): the counts and how long the oldest unfinished row has waited.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InboxStatus {
    /// Rows by state.
    #[serde(flatten)]
    pub counts: Counts,
    /// How long the oldest pending or running row has been in the inbox.
    pub oldest_unfinished_age: Option<Duration>,
}

/// What [`Inbox::rekey`](crate::Inbox::rekey) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RekeyReport {
    /// Bodies looked at.
    pub examined: u64,
    /// Bodies already under the current key.
    pub current: u64,
    /// Bodies re-sealed under the current key.
    pub resealed: u64,
    /// Bodies whose key this inbox does not have (left as they are).
    pub missing_key: u64,
}
