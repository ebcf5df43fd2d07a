//! Replay protection: `ReplayKey`, the `ReplayGuard` trait and the in-memory `MemoryReplayGuard`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::{Clock, IdempotencyKey, Signature, SystemClock, UnixMillis};

/// Identifies a delivery or an event for deduplication: a SHA-256 over authenticated data only
/// (never over an unauthenticated header), so an attacker cannot pick keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayKey(pub [u8; 32]);

impl ReplayKey {
    /// The key of one signed delivery: SHA-256 of its authenticated `generated-at` and signature.
    pub fn for_delivery(generated_at: UnixMillis, signature: &Signature) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"suki-ambient/delivery\0");
        hash.update(generated_at.0.to_be_bytes());
        hash.update(signature.0);
        Self(hash.finalize().into())
    }

    /// The key of an event across re-sends: SHA-256 of (session id, kind). Only build it from a
    /// verified event.
    pub fn for_event(key: &IdempotencyKey) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"suki-ambient/event\0");
        hash.update(key.kind.as_str().as_bytes());
        hash.update(b"\0");
        hash.update(key.session_id.as_str().as_bytes());
        Self(hash.finalize().into())
    }

    /// Lowercase hex, e.g. for a Redis key.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<&IdempotencyKey> for ReplayKey {
    fn from(key: &IdempotencyKey) -> Self {
        Self::for_event(key)
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayKey({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The answer of [`ReplayGuard::check_and_mark`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Freshness {
    /// First sight: the key is now claimed; call `commit` after success or `release` after failure.
    Fresh,
    /// Already processed successfully within the TTL.
    Duplicate,
    /// Claimed by a delivery still being processed.
    InFlight,
}

/// The replay guard's storage failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The backend could not be reached or answered an error. The reason must never hold a
    /// secret (implementations strip credentials from connection errors).
    #[error("replay guard unavailable: {reason}")]
    Unavailable {
        /// What went wrong, without secrets.
        reason: String,
    },
}

/// Remembers which deliveries were processed, so a replayed or re-sent one is not processed twice.
///
/// Protocol: `check_and_mark` atomically claims a fresh key; after the handler succeeded,
/// `commit` marks it processed for the TTL; after it failed, `release` forgets it so a
/// re-delivery is processed.
#[async_trait]
pub trait ReplayGuard: Send + Sync + 'static {
    /// Claims `key` if it is fresh.
    async fn check_and_mark(&self, key: ReplayKey, ttl: Duration)
    -> Result<Freshness, ReplayError>;
    /// Marks `key` processed for `ttl`.
    async fn commit(&self, key: ReplayKey, ttl: Duration) -> Result<(), ReplayError>;
    /// Forgets a claim on `key`.
    async fn release(&self, key: ReplayKey) -> Result<(), ReplayError>;
}

#[async_trait]
impl<T: ReplayGuard + ?Sized> ReplayGuard for Arc<T> {
    async fn check_and_mark(
        &self,
        key: ReplayKey,
        ttl: Duration,
    ) -> Result<Freshness, ReplayError> {
        (**self).check_and_mark(key, ttl).await
    }
    async fn commit(&self, key: ReplayKey, ttl: Duration) -> Result<(), ReplayError> {
        (**self).commit(key, ttl).await
    }
    async fn release(&self, key: ReplayKey) -> Result<(), ReplayError> {
        (**self).release(key).await
    }
}

/// Default capacity of [`MemoryReplayGuard`].
const DEFAULT_CAPACITY: usize = 100_000;

/// An in-process [`ReplayGuard`]: bounded (oldest entries evicted first once full), with TTL.
///
/// Right for one receiver instance; a fleet behind a load balancer needs a shared store.
pub struct MemoryReplayGuard {
    state: Mutex<State>,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct State {
    entries: HashMap<ReplayKey, Entry>,
    /// Keys in the order their current expiry was set; stale records are skipped.
    order: VecDeque<(ReplayKey, u64)>,
}

#[derive(Clone, Copy)]
struct Entry {
    expires_at: u64,
    done: bool,
}

impl fmt::Debug for MemoryReplayGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayGuard")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryReplayGuard {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl MemoryReplayGuard {
    /// A guard remembering at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` for expiry (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many keys are held (expired ones included until the next access purges them).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters (worst case a stale record), so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        self.clock.now().0
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    crate::time::millis(ttl)
}

impl State {
    fn is_current(&self, key: &ReplayKey, expires_at: u64) -> bool {
        self.entries.get(key).map(|e| e.expires_at) == Some(expires_at)
    }

    /// Drops expired entries, then the oldest ones while over capacity, and compacts the order
    /// queue when stale records (left by re-set expiries) pile up.
    fn purge(&mut self, now: u64, capacity: usize) {
        while let Some(&(key, expires_at)) = self.order.front() {
            if expires_at > now && self.entries.len() <= capacity {
                break;
            }
            self.order.pop_front();
            if self.is_current(&key, expires_at) {
                self.entries.remove(&key);
            }
        }
        if self.order.len() > 2 * capacity + 16 {
            let entries = &self.entries;
            self.order.retain(|(key, expires_at)| {
                entries.get(key).map(|e| e.expires_at) == Some(*expires_at)
            });
        }
    }

    fn set(&mut self, key: ReplayKey, entry: Entry) {
        self.entries.insert(key, entry);
        self.order.push_back((key, entry.expires_at));
    }
}

#[async_trait]
impl ReplayGuard for MemoryReplayGuard {
    async fn check_and_mark(
        &self,
        key: ReplayKey,
        ttl: Duration,
    ) -> Result<Freshness, ReplayError> {
        let now = self.now();
        let mut state = self.lock();
        state.purge(now, self.capacity);
        if let Some(entry) = state.entries.get(&key)
            && entry.expires_at > now
        {
            return Ok(if entry.done {
                Freshness::Duplicate
            } else {
                Freshness::InFlight
            });
        }
        state.set(
            key,
            Entry {
                expires_at: now.saturating_add(ttl_ms(ttl)),
                done: false,
            },
        );
        state.purge(now, self.capacity);
        Ok(Freshness::Fresh)
    }

    async fn commit(&self, key: ReplayKey, ttl: Duration) -> Result<(), ReplayError> {
        let now = self.now();
        let mut state = self.lock();
        state.set(
            key,
            Entry {
                expires_at: now.saturating_add(ttl_ms(ttl)),
                done: true,
            },
        );
        state.purge(now, self.capacity);
        Ok(())
    }

    async fn release(&self, key: ReplayKey) -> Result<(), ReplayError> {
        self.lock().entries.remove(&key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, FixedClock, SessionId};

    fn key(n: u8) -> ReplayKey {
        ReplayKey([n; 32])
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn claim_commit_release_and_expiry() {
        block_on(async {
            let clock = FixedClock::new(UnixMillis(1_000));
            let guard = MemoryReplayGuard::new(10).with_clock(clock.clone());
            assert_eq!(
                guard.check_and_mark(key(1), TTL).await,
                Ok(Freshness::Fresh)
            );
            assert_eq!(
                guard.check_and_mark(key(1), TTL).await,
                Ok(Freshness::InFlight)
            );
            guard.release(key(1)).await.unwrap();
            assert_eq!(
                guard.check_and_mark(key(1), TTL).await,
                Ok(Freshness::Fresh)
            );
            guard.commit(key(1), TTL).await.unwrap();
            assert_eq!(
                guard.check_and_mark(key(1), TTL).await,
                Ok(Freshness::Duplicate)
            );
            clock.advance(TTL);
            assert_eq!(
                guard.check_and_mark(key(1), TTL).await,
                Ok(Freshness::Fresh)
            );
        });
    }

    #[test]
    fn bounded_and_evicts_oldest() {
        block_on(async {
            let guard = MemoryReplayGuard::new(3).with_clock(FixedClock::new(UnixMillis(0)));
            for n in 0..10 {
                assert_eq!(
                    guard.check_and_mark(key(n), TTL).await,
                    Ok(Freshness::Fresh)
                );
                guard.commit(key(n), TTL).await.unwrap();
                assert!(guard.len() <= 3);
                assert!(guard.lock().order.len() <= 2 * 3 + 16);
            }
            assert_eq!(
                guard.check_and_mark(key(9), TTL).await,
                Ok(Freshness::Duplicate)
            );
            assert_eq!(
                guard.check_and_mark(key(0), TTL).await,
                Ok(Freshness::Fresh)
            );
        });
    }

    #[test]
    fn keys_separate_deliveries_and_events() {
        let sig = Signature([7; 32]);
        assert_ne!(
            ReplayKey::for_delivery(UnixMillis(1), &sig),
            ReplayKey::for_delivery(UnixMillis(2), &sig)
        );
        let a = IdempotencyKey {
            session_id: SessionId::from("s"),
            kind: EventKind::Completed,
        };
        let b = IdempotencyKey {
            session_id: SessionId::from("s"),
            kind: EventKind::Failed,
        };
        assert_ne!(ReplayKey::for_event(&a), ReplayKey::for_event(&b));
        assert_eq!(ReplayKey::from(&a), ReplayKey::for_event(&a));
    }
}
