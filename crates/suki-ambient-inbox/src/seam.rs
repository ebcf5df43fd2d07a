//! The store contract: what an inbox needs from a database ([`Store`](crate::store::Store) = [`DeliveryQueue`](crate::store::DeliveryQueue) +
//! [`Expectations`](crate::store::Expectations) + [`ReadModel`](crate::store::ReadModel) + [`Operations`](crate::store::Operations)), the wake-ups, and the transaction
//! capability exactly-once processing needs. The values it passes are in `records.rs`.

use std::any::{Any, TypeId};

use async_trait::async_trait;
use bytes::Bytes;
use suki_ambient_core::{SessionId, Stored, UnixMillis};

use crate::StoreError;
use crate::expect::{ExpectationRecord, FinishedCheck};
use crate::records::*;

/// What an inbox needs from a database: the [`DeliveryQueue`](crate::store::DeliveryQueue), the reconciler's
/// [`Expectations`](crate::store::Expectations) and the [`ReadModel`](crate::store::ReadModel) that status, health, the console and the CLI read,
/// plus the schema's migrations and, for exactly-once processing, the Postgres capability.
/// Both built-in stores (`sqlite`, `postgres`) pass [`conformance::run`](crate::conformance::run)
/// (feature `testing`); another engine implements the four traits and runs the same suite.
///
/// Times are passed in by the caller (the worker's clock), never read by the store.
///
/// **The rule that ties the queue to the expectations**: storing a terminal event of a session
/// (any kind but `unknown`, with a session id) resolves that session's unresolved expectation
/// (`webhook`, or `poll` for a polled event) in the same statement or transaction as the insert,
/// so that a session whose webhook arrived is never polled. The built-in stores do it with a
/// trigger; the conformance suite checks it.
#[async_trait]
pub trait Store: DeliveryQueue + Expectations + ReadModel + Operations {
    /// Creates or upgrades the store's schema to this version's (idempotent; the built-in
    /// stores record it in their own `suki_inbox_migrations` table). Nothing by default.
    async fn migrate(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The store's transactions, when its completion can commit in the transaction of a
    /// [`TransactionalHandler`](crate::TransactionalHandler): the capability that exactly-once
    /// processing needs. The built-in stores have it; a store that wraps one returns the
    /// inner store's; `None` by default.
    fn transactions(&self) -> Option<&dyn crate::seam::Transactions> {
        None
    }
}

/// The delivery queue: durable rows, claimed under fenced leases, completed, retried or dead.
#[async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Inserts `batch` in one durable transaction; per delivery, whether it was new or its
    /// dedup key existed (also within the batch). A terminal event resolves its session's
    /// expectation in the same transaction (see [`Store`](crate::store::Store)).
    async fn insert(&self, batch: &[NewDelivery]) -> Result<Vec<Stored>, StoreError>;

    /// [`insert`](Self::insert), sealing under `key` (when there is one) the body of each
    /// delivery that has no key id yet, as it is written: what the inbox's group commit calls
    /// when it has a key. The SQL stores seal each body straight into their statement's
    /// arguments, with no other copy of it made; this default seals copies of the deliveries
    /// and calls `insert`.
    async fn insert_with_key(
        &self,
        batch: &[NewDelivery],
        key: Option<&crate::BodyKey>,
    ) -> Result<Vec<Stored>, StoreError> {
        match key {
            Some(key) if batch.iter().any(|d| d.key_id.is_none()) => {
                let sealed = batch
                    .iter()
                    .map(|d| d.clone().sealed_with(key))
                    .collect::<Result<Vec<NewDelivery>, StoreError>>()?;
                self.insert(&sealed).await
            }
            _ => self.insert(batch).await,
        }
    }

    /// Claims up to `request.limit` due rows (pending and due, or running with an expired
    /// lease) for `request.owner` until `request.now + request.lease`: state `running`,
    /// attempts + 1, a new fencing token. No row is held by two claims at once.
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<Claim>, StoreError>;

    /// Extends a held lease to `until`; `false` when the lease is no longer this one.
    async fn heartbeat(&self, lease: Lease, until: UnixMillis) -> Result<bool, StoreError>;

    /// Marks a held row done, with what the attempt fetched (`detail`: links and answers, for
    /// its timeline); `false` (nothing changed) when the lease is no longer this one.
    async fn complete(
        &self,
        lease: Lease,
        now: UnixMillis,
        detail: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Records a failed (or snoozed) attempt (its error: a code, never content) and schedules
    /// the row or moves it to dead; `false` when the lease is no longer this one.
    async fn fail(&self, attempt: FailedAttempt<'_>) -> Result<bool, StoreError>;

    /// Gives a held row back unprocessed (graceful shutdown): pending, due now, this attempt
    /// not counted; `false` when the lease is no longer this one.
    async fn release(&self, lease: Lease, now: UnixMillis) -> Result<bool, StoreError>;

    /// Gives back every row held by `owner` (a restarted worker with a stable name taking back
    /// what its crashed previous run held, without waiting for the leases to expire): pending,
    /// due now, a new fencing token; the interrupted attempts stay counted. How many.
    async fn release_owner(&self, owner: &str, now: UnixMillis) -> Result<u64, StoreError>;

    /// Keeps `fetched` (what a failed attempt fetched, sealed like the body when the inbox has
    /// keys) with a held row for its next attempt; `false` when the lease is no longer this
    /// one. [`complete`](Self::complete) and [`erase_bodies`](Self::erase_bodies) clear it.
    /// The default keeps nothing (a store without it fetches again on every attempt).
    async fn keep_fetched(&self, lease: Lease, fetched: &[u8]) -> Result<bool, StoreError> {
        let _ = (lease, fetched);
        Ok(false)
    }

    /// What an earlier attempt of row `id` kept ([`keep_fetched`](Self::keep_fetched)); the
    /// default: nothing.
    async fn fetched(&self, id: i64) -> Result<Option<Bytes>, StoreError> {
        let _ = id;
        Ok(None)
    }

    /// Deletes done rows completed before `before`.
    async fn purge(&self, before: UnixMillis) -> Result<u64, StoreError>;

    /// Erases the bodies of done rows completed before `before` (an empty body, no key, erased
    /// at `now`), their metadata and timelines kept, and what dead rows last changed before
    /// `before` kept of an attempt's fetch ([`keep_fetched`](Self::keep_fetched); their
    /// bodies stay, for a retry); how many bodies.
    async fn erase_bodies(&self, before: UnixMillis, now: UnixMillis) -> Result<u64, StoreError>;

    /// Proves the store can still commit a write (a one-row update), so that health turns red
    /// on a full disk, a locked or read-only database, a server down, or (SQLite) a database
    /// file deleted or replaced under the running process.
    async fn probe(&self, now: UnixMillis) -> Result<(), StoreError>;

    /// Takes or renews the lease on a fleet-wide chore (`lead.task`, e.g. `"maintenance"`) for
    /// `lead.owner` until `lead.until`: `true` while that owner holds it (it held it, or the
    /// lease was free or expired at `lead.now`), `false` while another owner's lease runs. So
    /// that one worker of a fleet purges and refreshes gauges, not every one. A store without
    /// leases answers `true` (every worker does the chores); the conformance suite expects one
    /// holder at a time.
    async fn lead(&self, lead: ChoreLease<'_>) -> Result<bool, StoreError> {
        let _ = lead;
        Ok(true)
    }

    /// Records that destination `down.name` does not answer (its breaker opened, or a probe
    /// failed): down since `down.now` unless it was already, the next probe not before
    /// `down.next_probe`, any probe lease given up. The default records nothing: each worker
    /// then keeps its breakers to itself.
    async fn destination_down(&self, down: DestinationDown<'_>) -> Result<(), StoreError> {
        let _ = down;
        Ok(())
    }

    /// Records that destination `name` answers again, and makes the rows waiting for it due at
    /// `now`; how many. The default: nothing recorded, 0.
    async fn destination_up(&self, name: &str, now: UnixMillis) -> Result<u64, StoreError> {
        let _ = (name, now);
        Ok(0)
    }

    /// Takes the right to send the one probe of destination `probe.task` (down, its next
    /// probe due at `probe.now`, no other probe lease running) until `probe.until`: `true`
    /// for one worker of the fleet at a time. The default answers `true` (each worker probes
    /// on its own schedule).
    async fn take_probe(&self, probe: ChoreLease<'_>) -> Result<bool, StoreError> {
        let _ = probe;
        Ok(true)
    }

    /// A signal that another process stored a delivery (Postgres `LISTEN`), so that idle
    /// workers claim at once rather than at their next poll; `None` (the default) when the
    /// store has none, and workers poll. A signal may be lost (a dropped connection): workers
    /// keep polling as the fallback.
    async fn subscribe(&self) -> Result<Option<Box<dyn Wakeups>>, StoreError> {
        Ok(None)
    }
}

/// The reconciler's expected sessions: registered, claimed for a status check under fenced
/// leases, resolved.
#[async_trait]
pub trait Expectations: Send + Sync + 'static {
    /// Stores an expected session, first checked at `new.first_check` (already resolved when
    /// its event is in the inbox); `false` when the session was already expected.
    async fn register(&self, new: NewExpectation<'_>) -> Result<bool, StoreError>;

    /// Claims up to `request.limit` unresolved expectations due at `request.now` for
    /// `request.owner` until `request.now + request.lease` (checks + 1, a new fencing token).
    /// No expectation is held by two claims.
    async fn claim_expectations(
        &self,
        request: ClaimRequest<'_>,
    ) -> Result<Vec<ExpectationRecord>, StoreError>;

    /// Records what each check of a pass concluded, in one transaction (one commit for the
    /// pass, not one per session); per check, `false` when its lease is no longer this one
    /// (that check changed nothing).
    async fn finish_checks(
        &self,
        now: UnixMillis,
        checks: &[FinishedCheck],
    ) -> Result<Vec<bool>, StoreError>;

    /// Makes every expectation of a session ended since `since` that no stored event resolved
    /// (unresolved, or given up) due now, given-up ones reopened; how many. One under a live
    /// lease is left to the reconciler checking it.
    async fn sweep(&self, since: UnixMillis, now: UnixMillis) -> Result<u64, StoreError>;
}

/// What status, health, the console and the CLI read: O(1) counts and index reads.
#[async_trait]
pub trait ReadModel: Send + Sync + 'static {
    /// Counts by state and the oldest unfinished row: O(1) (counts kept by the store as rows
    /// change) and one index read, whatever the table's size.
    async fn counts(&self) -> Result<Counts, StoreError>;

    /// The rows being retried: pending or running with an attempt made or an error recorded,
    /// however many new rows are pending, the latest change first (an index read).
    async fn retrying(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// The rows of sessions that ended without a note, of `kind` (`Failed`, `TimedOut` or
    /// `Cancelled`; another kind is [`StoreError::Refused`]), newest first (an index read).
    /// The default, for stores that predate it, is [`StoreError::Unsupported`].
    async fn without_note(
        &self,
        kind: suki_ambient_core::EventKind,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let _ = (kind, limit);
        Err(StoreError::Unsupported("listing sessions without a note"))
    }

    /// How many sessions that ended without a note (failed, timed out, cancelled) were
    /// received since `since` (an index read). The default is [`StoreError::Unsupported`].
    async fn count_without_note(&self, since: UnixMillis) -> Result<u64, StoreError> {
        let _ = since;
        Err(StoreError::Unsupported("counting sessions without a note"))
    }

    /// The destinations workers found down (and those back up since), with the rows waiting
    /// for each: for status, health and the console, and for the workers of a fleet to share
    /// their breakers. The default: none (a store that shares no breakers).
    async fn destinations(&self) -> Result<Vec<DestinationRecord>, StoreError> {
        Ok(Vec::new())
    }

    /// Rows, newest first, optionally of one state.
    async fn list(
        &self,
        state: Option<State>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// One row.
    async fn get(&self, id: i64) -> Result<Option<DeliveryRecord>, StoreError>;

    /// One expectation.
    async fn expectation(
        &self,
        session_id: &SessionId,
    ) -> Result<Option<ExpectationRecord>, StoreError>;

    /// Expectations, latest ended first.
    async fn expectations(&self, limit: u32) -> Result<Vec<ExpectationRecord>, StoreError>;

    /// Rows received since `since`, by hour of reception and present state.
    async fn hourly(&self, since: UnixMillis) -> Result<Vec<HourCount>, StoreError>;

    /// Expectations by resolution.
    async fn expectation_counts(&self) -> Result<ExpectationCounts, StoreError>;

    /// Everything known about `id`, a session or an encounter id: its rows (at most `limit`,
    /// found by index), their timelines and its expectations.
    async fn trace(&self, id: &str, limit: u32) -> Result<Trace, StoreError>;

    /// Dead rows grouped by error code, the group that died latest first.
    async fn dead_groups(&self, limit: u32) -> Result<Vec<DeadGroup>, StoreError>;

    /// The pauses in force.
    async fn pauses(&self) -> Result<Vec<Pause>, StoreError>;

    /// Audit entries at or after `since`, **newest first**, at most `limit`.
    async fn audit(&self, since: UnixMillis, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    /// [`audit`](Self::audit) without the entries of actions that only looked
    /// ([`Action::ViewTimeline`](crate::Action::ViewTimeline), [`Action::SignIn`](crate::Action::SignIn)), newest first: what operators changed,
    /// which a flood of views cannot push out of a short list. By default `audit`'s page,
    /// filtered (it may then hold fewer than `limit` when views crowd it); the built-in stores
    /// filter in the query.
    async fn audit_changes(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries = self.audit(since, limit).await?;
        entries.retain(|e| !matches!(e.action.as_str(), "view_timeline" | "sign_in"));
        Ok(entries)
    }

    /// Up to `limit` audit entries with an id above `after`, in id order (the chain, a page at
    /// a time, for [`Inbox::verify_audit`](crate::Inbox::verify_audit)).
    async fn audit_chain(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let _ = (after, limit);
        Err(StoreError::Unsupported("an audit chain"))
    }

    /// The hash the oldest remaining audit entry chains to: the last purged entry's, as the
    /// latest audit purge recorded it (`None`: never purged).
    async fn audit_anchor(&self) -> Result<Option<String>, StoreError> {
        Err(StoreError::Unsupported("an audit chain"))
    }

    /// The newest audit entry of `action` ([`Action::name`](crate::Action::name)), if any.
    async fn last_audit(&self, action: &str) -> Result<Option<AuditEntry>, StoreError> {
        let _ = action;
        Err(StoreError::Unsupported("an audit chain"))
    }

    /// Stored bodies by the key that seals them (`None`: in clear), erased ones left out (a
    /// scan: for `inbox status` and the console, not for probes).
    async fn key_counts(&self) -> Result<Vec<(Option<String>, u64)>, StoreError>;

    /// Up to `limit` stored bodies of rows with an id above `after`, in id order (for
    /// re-sealing them under another key, a page at a time).
    async fn bodies(&self, after: i64, limit: u32) -> Result<Vec<StoredBody>, StoreError>;

    /// Whether any stored body is sealed (an inbox without keys then refuses to write rather
    /// than add a row in clear). Answer it from an index: it is read before writes.
    async fn has_sealed(&self) -> Result<bool, StoreError> {
        Ok(self
            .key_counts()
            .await?
            .iter()
            .any(|(id, n)| id.is_some() && *n > 0))
    }
}

/// Operators' actions: each in one transaction with its audit entry and the changed rows'
/// timeline events, so that no action happens unrecorded.
#[async_trait]
pub trait Operations: Send + Sync + 'static {
    /// Does `act.action` as `act.actor`; how many rows it changed (pauses: 1 when it changed
    /// the pause, 0 when it was already so).
    async fn act(&self, act: Act<'_>) -> Result<u64, StoreError>;

    /// How many rows `action` would change now (a dry run: nothing changes, nothing is
    /// recorded).
    async fn preview(&self, action: &Action, now: UnixMillis) -> Result<u64, StoreError>;

    /// Replaces stored bodies re-sealed under another key, in one transaction: each only if
    /// the row's body is still sealed with `was` (a row changed meanwhile is left alone); how
    /// many were replaced.
    async fn reseal(&self, bodies: &[Resealed]) -> Result<u64, StoreError>;
}

/// Wake-ups from a store ([`DeliveryQueue::subscribe`](crate::store::DeliveryQueue::subscribe)).
#[async_trait]
pub trait Wakeups: Send {
    /// Waits for the next signal that something may be due. An error ends this subscription
    /// (the caller subscribes again after a pause).
    async fn wait(&mut self) -> Result<(), StoreError>;
}

/// A store whose row completion can join a transaction the application writes in.
#[async_trait]
pub trait Transactions: Send + Sync {
    /// Begins a write transaction.
    async fn begin(&self) -> Result<Box<dyn StoreTransaction>, StoreError>;

    /// The type of the transaction's [connection](StoreTransaction::connection), which a
    /// [`TransactionalHandler`](crate::TransactionalHandler) names; the worker checks it when it is built.
    fn connection_type(&self) -> TypeId;

    /// That type's name, for the error when a handler names another.
    fn connection_name(&self) -> &'static str;
}

/// One open transaction of a [`Transactions`] store. Dropped without
/// [`commit`](Self::commit), it rolls back.
#[async_trait]
pub trait StoreTransaction: Send {
    /// The transaction's connection, for the handler's writes: a value of the store's
    /// [`connection_type`](Transactions::connection_type).
    fn connection(&mut self) -> &mut (dyn Any + Send);

    /// Completes the leased row within the transaction (`detail` as the attempt's detail):
    /// `false` when the row's fencing token is no longer the lease's (another worker took the
    /// row over), and then nothing may be committed.
    async fn complete(
        &mut self,
        lease: Lease,
        now: UnixMillis,
        detail: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Commits the handler's writes and the completion together.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;

    /// Rolls everything back.
    async fn rollback(self: Box<Self>) -> Result<(), StoreError>;
}
