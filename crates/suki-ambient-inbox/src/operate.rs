//! The operators' side of an [`Inbox`]: actions (retry, replay, discard, pause, purge) with
//! their audit entries, the audit log's retention floor and chain verification, the key
//! inventory and re-sealing.

use std::time::Duration;

use suki_ambient_core::UnixMillis;

/// The most rows [`Inbox::trace`] returns.
const TRACE_LIMIT: u32 = 100;

use crate::{
    Action, Actor, Inbox, Selection, StoreError, audit::AuditVerification, records::RekeyReport,
};

impl Inbox {
    /// Makes the selected rows due now with a new round of attempts (their count and timeline
    /// kept); how many. Recorded in the
    /// audit log as the [application](Actor::application)'s action; an operator's goes through
    /// [`act`](Self::act) with their name.
    pub async fn retry(&self, which: Selection) -> Result<u64, StoreError> {
        self.act(&Actor::application(), Action::Retry(which)).await
    }

    /// Does an operator's `action` as `actor`, in one transaction with its entry in the audit
    /// log and an event in the timeline of each row it changes; how many rows it changed (a
    /// pause or resume: 1 when it changed the pause, 0 when it was already so). Workers of
    /// this process wake at once for rows made due; others within their poll interval (on
    /// Postgres at once).
    ///
    /// Refused ([`StoreError::Refused`]) before anything is written: an actor with no name, an
    /// [`Action::PurgeAudit`] within the audit log's retention floor
    /// ([`with_audit_floor`](Self::with_audit_floor)).
    ///
    /// What an operator typed is bounded and cleaned here, whoever calls (the console, the CLI,
    /// your code): the actor's name to 64 characters and its origin to 128, a reason to 500, an
    /// id looked up to 128, a code filter to 64; control and invisible characters are shown
    /// escaped (`\u{202e}`). A discard needs a reason.
    pub async fn act(&self, actor: &Actor, action: Action) -> Result<u64, StoreError> {
        let (actor, action) = bounded(actor, action)?;
        let actor = &actor;
        if let Action::PurgeAudit { before } = &action {
            self.check_audit_floor(*before)?;
            self.record_audit_floor().await?;
        }
        let audit_key = self.audit_keys().current();
        let n = self
            .inner
            .store
            .act(crate::records::Act {
                action: &action,
                actor,
                now: self.now(),
                audit_key: audit_key.as_deref(),
            })
            .await?;
        if matches!(
            action,
            Action::Retry(_) | Action::Replay { .. } | Action::Resume { .. }
        ) && n > 0
        {
            self.inner.wake.notify_waiters();
        }
        if matches!(action, Action::Pause { .. } | Action::Resume { .. }) {
            // Health says `paused` (or no longer) from the next check, not a second later.
            *self.inner.health_cache.lock().await = None;
        }
        Ok(n)
    }

    /// How many rows `action` would change now: the dry run of [`act`](Self::act), which
    /// changes and records nothing (refused as `act` would be).
    pub async fn preview(&self, action: &Action) -> Result<u64, StoreError> {
        if let Action::PurgeAudit { before } = action {
            self.check_audit_floor(*before)?;
        }
        self.inner.store.preview(action, self.now()).await
    }

    /// The audit log's retention floor in force.
    pub fn audit_floor(&self) -> Duration {
        self.inner.audit_floor
    }

    fn check_audit_floor(&self, before: UnixMillis) -> Result<(), StoreError> {
        let floor = suki_ambient_core::time::millis(self.inner.audit_floor);
        let latest = self.now().0.saturating_sub(floor);
        if before.0 > latest {
            return Err(StoreError::Refused(format!(
                "the audit log keeps entries at least {} days (its retention floor); \
                 purge only before {latest} (a lower floor is set with Inbox::with_audit_floor)",
                self.inner.audit_floor.as_secs() / 86_400
            )));
        }
        Ok(())
    }

    /// Records the retention floor in force when it is not the last one recorded.
    async fn record_audit_floor(&self) -> Result<(), StoreError> {
        let days = self.inner.audit_floor.as_secs() / 86_400;
        self.record_if_changed(Action::AuditFloor { days }, true)
            .await
            .map(drop)
    }

    /// Records `action` (as the application) when its target and detail differ from the last
    /// entry of its kind, or when there is none and `first_is_news`; whether it recorded.
    async fn record_if_changed(
        &self,
        action: Action,
        first_is_news: bool,
    ) -> Result<bool, StoreError> {
        let (target, detail) = action.describe();
        let unchanged = match self.inner.store.last_audit(action.name()).await? {
            Some(entry) => entry.target == target && entry.detail == detail,
            None => !first_is_news,
        };
        if unchanged {
            return Ok(false);
        }
        // Straight to the store: `act` itself records the floor before a purge.
        let audit_key = self.audit_keys().current();
        self.inner
            .store
            .act(crate::records::Act {
                action: &action,
                actor: &Actor::application(),
                now: self.now(),
                audit_key: audit_key.as_deref(),
            })
            .await?;
        Ok(true)
    }

    /// Records in the audit log (`keys_changed`, as the application) the body keys this inbox
    /// holds, by id, when they differ from the last recorded; whether it recorded. The worker
    /// calls it when it starts, so a key added, retired or dropped shows in the log.
    pub async fn record_keys(&self) -> Result<bool, StoreError> {
        let (current, others) = match &self.inner.keys {
            None => (None, Vec::new()),
            Some(keys) => {
                let current = keys.current().map(|k| k.id().to_owned());
                let others = keys
                    .ids()
                    .into_iter()
                    .filter(|id| Some(id) != current.as_ref())
                    .collect();
                (current, others)
            }
        };
        // Nothing recorded yet: an inbox that never had keys need not say so.
        let keys = self
            .record_if_changed(
                Action::KeysSeen { current, others },
                self.inner.keys.is_some(),
            )
            .await?;
        // The audit key (by id) the chain continues under: a rotation shows in the chain.
        let audit = self.audit_keys().current();
        let audit = self
            .record_if_changed(
                Action::AuditKeySeen {
                    id: audit.as_ref().map(|k| k.id().to_owned()),
                },
                audit.is_some(),
            )
            .await?;
        Ok(keys || audit)
    }

    /// Walks the audit log's chain from its oldest entry (or the latest purge's anchor) to its
    /// newest, checking each keyed entry's MAC with the audit key that made it (this inbox's,
    /// explicit or derived from its body keys): the first entry that does not chain to the one
    /// before it, whose fields no longer match its MAC or hash, with no hash after the chain
    /// began, with a plain hash after the chain was keyed, or under a key not held, is
    /// [`AuditVerification::broken`]; so is a chain with no MAC at all when this inbox holds an
    /// audit key. Entries written before the chain existed are counted, not checked. An entry
    /// deleted from the end leaves no break: keep [`audit_checkpoint`](Self::audit_checkpoint)
    /// elsewhere and check with [`verify_audit_since`](Self::verify_audit_since).
    pub async fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        crate::audit::verify_chain(&*self.inner.store, &self.audit_keys(), None).await
    }

    /// [`verify_audit`](Self::verify_audit), and the `checkpoint` kept from an earlier
    /// [`audit_checkpoint`](Self::audit_checkpoint): its entry must still be there with the
    /// same hash (unless the audit purge removed it), or entries were removed from the end.
    pub async fn verify_audit_since(
        &self,
        checkpoint: &crate::audit::AuditCheckpoint,
    ) -> Result<AuditVerification, StoreError> {
        crate::audit::verify_chain(&*self.inner.store, &self.audit_keys(), Some(checkpoint)).await
    }

    /// The newest audit entry's id and hash, to keep outside the database (`None`: the log is
    /// empty).
    pub async fn audit_checkpoint(
        &self,
    ) -> Result<Option<crate::audit::AuditCheckpoint>, StoreError> {
        let newest = self.inner.store.audit(UnixMillis(0), 1).await?;
        Ok(newest
            .into_iter()
            .next()
            .map(|e| crate::audit::AuditCheckpoint {
                id: e.id,
                hash: e.hash,
            }))
    }

    /// Everything known about a session or an encounter id: its rows (at most 100), their
    /// timelines and its expected sessions. Empty when nothing is known.
    pub async fn trace(&self, id: &str) -> Result<crate::records::Trace, StoreError> {
        self.inner.store.trace(id, TRACE_LIMIT).await
    }

    /// Stored bodies by the key that seals them (`None`: in clear), erased ones left out. A
    /// scan of the table: for `inbox status` and the console.
    pub async fn key_counts(&self) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        self.inner.store.key_counts().await
    }

    /// Re-seals every stored body that is not under the current key (in clear, or under an
    /// older key) with the current key, `batch` rows at a time, online (each page is one short
    /// transaction; a row changed meanwhile is left for the next run) and resumable (run it
    /// again: it starts over and skips what is done). `progress` is called after each page.
    /// A body whose key this inbox does not have is left as it is and counted in
    /// [`RekeyReport::missing_key`]: never dropped. Fails with [`StoreError::Unsupported`]
    /// without keys.
    ///
    /// Recorded in the audit log as `actor`'s `rekey`, with its counts, when it ends (also
    /// when a page fails: what it did until then).
    pub async fn rekey(
        &self,
        actor: &Actor,
        batch: u32,
        progress: impl FnMut(&RekeyReport),
    ) -> Result<RekeyReport, StoreError> {
        let mut report = RekeyReport::default();
        let outcome = self.rekey_pages(batch, progress, &mut report).await;
        if report.examined > 0 || outcome.is_ok() {
            self.act(actor, Action::Rekey(report)).await?;
        }
        outcome.map(|()| report)
    }

    async fn rekey_pages(
        &self,
        batch: u32,
        mut progress: impl FnMut(&RekeyReport),
        report: &mut RekeyReport,
    ) -> Result<(), StoreError> {
        let current = self
            .inner
            .keys
            .as_ref()
            .and_then(|k| k.current())
            .ok_or(StoreError::Unsupported("rekey without keys"))?;
        let mut after = 0;
        loop {
            let page = self.inner.store.bodies(after, batch.max(1)).await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.id;
            let mut resealed = Vec::new();
            for stored in page {
                report.examined += 1;
                // What a failed attempt fetched is re-sealed with its body (or dropped when it
                // no longer opens: the next attempt fetches it again).
                let fetched_current = stored
                    .fetched
                    .as_deref()
                    .is_none_or(|kept| crate::inbox::blob_key_id(kept) == Some(current.id()));
                if stored.key_id.as_deref() == Some(current.id()) && fetched_current {
                    report.current += 1;
                    continue;
                }
                let fetched = stored
                    .fetched
                    .as_deref()
                    .and_then(|kept| self.open_fetched(&stored.dedup_key, kept))
                    .and_then(|plain| self.seal_fetched(&stored.dedup_key, &plain))
                    .map(bytes::Bytes::from);
                let plain = match stored.key_id.as_deref() {
                    None => Some(stored.body.to_vec()),
                    Some(id) => self
                        .inner
                        .keys
                        .as_ref()
                        .and_then(|k| k.key(id))
                        .and_then(|k| k.open(stored.dedup_key.as_bytes(), &stored.body)),
                };
                let Some(plain) = plain else {
                    report.missing_key += 1;
                    continue;
                };
                let sealed = current
                    .try_seal(stored.dedup_key.as_bytes(), &plain)
                    .ok_or(StoreError::SealFailed)?;
                resealed.push(crate::records::Resealed {
                    id: stored.id,
                    was: stored.key_id,
                    key_id: current.id().to_owned(),
                    body: bytes::Bytes::from(sealed),
                    fetched,
                });
            }
            report.resealed += self.inner.store.reseal(&resealed).await?;
            progress(report);
        }
    }

    /// The pauses in force.
    pub async fn pauses(&self) -> Result<Vec<crate::records::Pause>, StoreError> {
        self.inner.store.pauses().await
    }

    /// Dead rows grouped by error code, the group that died latest first.
    pub async fn dead_groups(
        &self,
        limit: u32,
    ) -> Result<Vec<crate::records::DeadGroup>, StoreError> {
        self.inner.store.dead_groups(limit).await
    }

    /// The audit log's entries at or after `since`, newest first, at most `limit`.
    pub async fn audit(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<crate::records::AuditEntry>, StoreError> {
        self.inner.store.audit(since, limit).await
    }

    /// What operators changed at or after `since`, newest first, at most `limit`: the audit log
    /// without the actions that only looked (timeline views, sign-ins), so that a viewer's many
    /// views cannot push an operator's action out of a short list (the console's).
    pub async fn audit_changes(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<crate::records::AuditEntry>, StoreError> {
        self.inner.store.audit_changes(since, limit).await
    }

    /// Erases the stored bodies of done rows completed more than `older_than` ago, keeping
    /// their metadata and timelines; how many. (The worker does it hourly, after its
    /// `body_retention`.)
    pub async fn erase_bodies(&self, older_than: Duration) -> Result<u64, StoreError> {
        let now = self.now();
        let before = now.saturating_sub(older_than);
        self.inner.store.erase_bodies(before, now).await
    }

    /// Deletes done rows completed more than `older_than` ago; how many.
    /// Recorded in the audit log (as the application's `purge`) when it deleted any.
    pub async fn purge(&self, older_than: Duration) -> Result<u64, StoreError> {
        let before = self.now().saturating_sub(older_than);
        self.act(&Actor::application(), Action::Purge { before })
            .await
    }
}

/// The most characters of an operator's reason ([`Inbox::act`]).
pub(crate) const MAX_REASON: usize = 500;

/// `actor` and `action` bounded and cleaned as [`Inbox::act`] says; refused when a name or a
/// discard's reason is empty.
fn bounded(actor: &Actor, action: Action) -> Result<(Actor, Action), StoreError> {
    use crate::display::clean;
    let refused = |why: &str| StoreError::Refused(why.to_owned());
    let name = clean(actor.name.trim(), 64);
    if name.is_empty() {
        return Err(refused("an operator action needs an actor's name"));
    }
    let actor = Actor::new(name, clean(actor.origin.trim(), 128));
    let text = |t: &str, max: usize| clean(t.trim(), max);
    let action = match action {
        Action::Discard { id, reason } => {
            let reason = text(&reason, MAX_REASON);
            if reason.is_empty() {
                return Err(refused("a discard needs a reason"));
            }
            Action::Discard { id, reason }
        }
        Action::Pause { kind, reason } => Action::Pause {
            kind,
            reason: reason
                .map(|r| text(&r, MAX_REASON))
                .filter(|r| !r.is_empty()),
        },
        Action::ViewTimeline { target } => Action::ViewTimeline {
            target: text(&target, 128),
        },
        Action::SignIn { role } => Action::SignIn {
            role: text(&role, 32),
        },
        Action::Retry(crate::Selection::DeadMatching(mut filter)) => {
            filter.code = filter.code.map(|c| text(&c, 64));
            filter.code_prefix = filter.code_prefix.map(|c| text(&c, 64));
            Action::Retry(crate::Selection::DeadMatching(filter))
        }
        other => other,
    };
    Ok((actor, action))
}
