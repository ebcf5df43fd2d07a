//! The audit log's keyed chain: each entry's MAC (HMAC-SHA-256 under an audit key held outside
//! the database) covers its fields and the MAC of the entry before it, so that a database user
//! who rewrites an entry cannot recompute the chain; its verification, and the checkpoints that
//! show entries removed from the end.
//!
//! The audit key is `SUKI_AUDIT_KEY` ([`AuditKey::from_env`]), or, without one, derived with
//! HKDF-SHA-256 from the inbox's current body key under a label of its own
//! ([`BodyKey::audit_key`](crate::BodyKey::audit_key)). An inbox with neither chains its entries
//! with plain SHA-256 ([`audit_hash`]), which shows accidents but not an
//! insider who recomputes it. A keyed entry's hash is `hmac-sha256:<key id>:<64 hex digits>`.

use std::sync::Arc;

use crate::crypto::{AuditKey, MAC_PREFIX};
use crate::{StoreError, records::AuditEntry};

pub use crate::records::audit_hash;

/// The hash a [`Store`](crate::store::Store) writes for an entry it appends: its MAC under `key`
/// ([`AuditKey::mac`]) when the inbox holds an audit key ([`Act::audit_key`](crate::store::Act)),
/// else its plain [`audit_hash`].
pub fn audit_mac(key: Option<&AuditKey>, prev_hash: &str, entry: &AuditEntry) -> String {
    match key {
        Some(key) => key.mac(prev_hash, entry),
        None => crate::records::audit_hash(prev_hash, entry),
    }
}

/// Whether a stored hash is a MAC ([`audit_mac`] under a key).
pub(crate) fn is_keyed(hash: &str) -> bool {
    hash.starts_with(MAC_PREFIX)
}

/// The audit keys an inbox holds: the one it chains new entries with, and any by id to check.
#[derive(Clone, Default)]
pub(crate) struct AuditKeys {
    /// Given explicitly ([`Inbox::with_audit_key`](crate::Inbox::with_audit_key)).
    pub(crate) explicit: Option<Arc<AuditKey>>,
    /// The body keys the others are derived from.
    pub(crate) body: Option<Arc<dyn crate::KeyProvider>>,
}

impl AuditKeys {
    /// The key new entries are chained with.
    pub(crate) fn current(&self) -> Option<Arc<AuditKey>> {
        self.explicit
            .clone()
            .or_else(|| self.body.as_ref()?.current().map(|k| k.audit_key()))
    }

    /// The key with this id, explicit or derived from any body key held.
    pub(crate) fn find(&self, id: &str) -> Option<Arc<AuditKey>> {
        if let Some(key) = self.explicit.as_ref().filter(|k| k.id() == id) {
            return Some(Arc::clone(key));
        }
        let body = self.body.as_ref()?;
        body.ids()
            .iter()
            .filter_map(|kid| body.key(kid))
            .map(|k| k.audit_key())
            .find(|k| k.id() == id)
    }
}

/// The newest audit entry's id and hash, to keep outside the database
/// ([`Inbox::audit_checkpoint`](crate::Inbox::audit_checkpoint)): a later
/// [`verify_audit_since`](crate::Inbox::verify_audit_since) finds the entries removed from the
/// end since, which no chain can show by itself.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditCheckpoint {
    /// The entry's id.
    pub id: i64,
    /// Its hash (a MAC on a keyed chain).
    pub hash: String,
}

/// What [`Inbox::verify_audit`](crate::Inbox::verify_audit) found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AuditVerification {
    /// Entries read.
    pub entries: u64,
    /// Of them, entries written before the chain existed (not checked).
    pub unchained: u64,
    /// Of them, entries checked by their MAC under an audit key.
    pub keyed: u64,
    /// Of them, entries chained by a plain hash (before the chain was keyed: a database user
    /// could recompute those, but not the MAC of the first keyed entry that chains to them).
    pub unkeyed: u64,
    /// The first broken link, if any.
    pub broken: Option<BrokenLink>,
    /// The newest entry's id and hash (keep it elsewhere to detect entries removed from the
    /// end: [`AuditCheckpoint`]).
    pub newest: Option<(i64, String)>,
}

impl AuditVerification {
    /// The newest entry as a checkpoint to keep elsewhere.
    pub fn checkpoint(&self) -> Option<AuditCheckpoint> {
        self.newest.as_ref().map(|(id, hash)| AuditCheckpoint {
            id: *id,
            hash: hash.clone(),
        })
    }
}

/// Where the audit chain breaks ([`AuditVerification::broken`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BrokenLink {
    /// The entry.
    pub id: i64,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Walks the audit chain of `store` with `keys`, and checks `checkpoint` when given
/// ([`Inbox::verify_audit`](crate::Inbox::verify_audit)).
pub(crate) async fn verify_chain(
    store: &(impl crate::seam::ReadModel + ?Sized),
    keys: &AuditKeys,
    checkpoint: Option<&AuditCheckpoint>,
) -> Result<AuditVerification, StoreError> {
    let anchor = store.audit_anchor().await?.unwrap_or_default();
    let mut report = AuditVerification::default();
    let mut expected = anchor;
    let mut chained = false;
    let mut oldest = None;
    let mut seen_checkpoint = false;
    let mut after = 0;
    let broken = |report: &mut AuditVerification, id: i64, reason: &'static str| {
        if report.broken.is_none() {
            report.broken = Some(BrokenLink { id, reason });
        }
    };
    loop {
        let page = store.audit_chain(after, 500).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.id;
        for entry in page {
            report.entries += 1;
            oldest.get_or_insert(entry.id);
            if let Some(cp) = checkpoint
                && cp.id == entry.id
            {
                seen_checkpoint = true;
                if cp.hash != entry.hash {
                    broken(
                        &mut report,
                        entry.id,
                        "differs from the checkpoint (it was changed since)",
                    );
                }
            }
            if entry.hash.is_empty() && !chained {
                report.unchained += 1;
                expected = String::new();
                report.newest = Some((entry.id, entry.hash));
                continue;
            }
            chained = true;
            let reason = if entry.hash.is_empty() {
                Some("no hash after the chain began (blanked)")
            } else if entry.prev_hash != expected {
                Some("does not chain to the entry before it (an entry was removed or inserted)")
            } else if is_keyed(&entry.hash) {
                report.keyed += 1;
                let rest = &entry.hash[MAC_PREFIX.len()..];
                let id = rest.split_once(':').map_or("", |(id, _)| id);
                match keys.find(id) {
                    None => Some("its MAC is under an audit key this check does not hold"),
                    Some(key) if key.mac(&entry.prev_hash, &entry) != entry.hash => {
                        Some("its fields do not match its MAC (it was changed)")
                    }
                    Some(_) => None,
                }
            } else if report.keyed > 0 {
                Some("a plain hash after the chain was keyed (rewritten without the key)")
            } else if crate::records::audit_hash(&entry.prev_hash, &entry) != entry.hash {
                report.unkeyed += 1;
                Some("its fields do not match its hash (it was changed)")
            } else {
                report.unkeyed += 1;
                None
            };
            if let Some(reason) = reason {
                broken(&mut report, entry.id, reason);
            }
            expected = entry.hash.clone();
            report.newest = Some((entry.id, entry.hash));
        }
    }
    // A checker holding the audit key expects the chain keyed: a log with no MAC at all was
    // blanked or recomputed without the key (or never written with it).
    if keys.current().is_some()
        && report.keyed == 0
        && let Some(id) = report.newest.as_ref().map(|(id, _)| *id)
    {
        broken(
            &mut report,
            id,
            "no entry carries a MAC: the chain was blanked or recomputed without the audit key \
             (or never written with it)",
        );
    }
    if let Some(cp) = checkpoint
        && !seen_checkpoint
    {
        // Entries leave from the start only by the audit purge: a checkpoint older than the
        // oldest entry left was purged; one newer was removed from the end (or the middle).
        let purged = oldest.is_some_and(|oldest| cp.id < oldest);
        if !purged {
            broken(
                &mut report,
                cp.id,
                "the checkpoint's entry is gone (entries were removed from the end)",
            );
        }
    }
    Ok(report)
}
