//! `Inbox`: a store, the group commit that batches concurrent ingests, and the operations on it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use suki_ambient_core::{
    Clock, DeliverySink, SinkError, Stored, SystemClock, UnixMillis, VerifiedDelivery, WebhookEvent,
};
use tokio::sync::{Notify, oneshot};

use crate::StoreError;
use crate::{
    DeliveryRecord, State, records::Counts, records::InboxStatus, records::NewDelivery,
    records::Source, seam::Store,
};

/// The most deliveries one group commit writes in one transaction.
const MAX_BATCH: usize = 256;
/// How often at most a writer yields before taking the queue, so that deliveries being verified
/// at that moment join its commit; it stops as soon as a yield brought no new delivery.
const GATHER_YIELDS: usize = 8;

/// A durable inbox of verified deliveries: give it to
/// [`WebhookEndpoint::inbox`](suki_ambient_core::WebhookEndpoint::inbox) and run an
/// [`InboxWorker`](crate::InboxWorker) on it. Cheap to clone; clones share one store.
///
/// Concurrent ingests are written in one transaction (group commit): one disk flush for
/// every delivery that arrived while the previous one was being written. Clones share the
/// group commit; a separately connected `Inbox` on the same database commits on its own.
#[derive(Clone)]
pub struct Inbox {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Deliveries waiting for the next group commit.
    queue: Mutex<Queue>,
    /// Held by the caller writing a group commit.
    pub(crate) writer: tokio::sync::Mutex<()>,
    /// Wakes in-process workers when something new was stored.
    pub(crate) wake: Arc<Notify>,
    /// When a worker of this process last went round its loop (ms; 0: never).
    pub(crate) worker_seen: Arc<AtomicU64>,
    /// Set by [`Inbox::shutting_down`](crate::Inbox::shutting_down): readiness fails so that load balancers send no more.
    pub(crate) draining: Arc<std::sync::atomic::AtomicBool>,
    /// Whether the store's latest write succeeded (health's `store_unwritable`).
    pub(crate) writes: Arc<Writes>,
    /// The counts health checks share, and when they were read.
    pub(crate) health_cache: Arc<HealthCache>,
    /// The keys that seal stored bodies (`None`: bodies in clear).
    pub(crate) keys: Option<Arc<dyn crate::KeyProvider>>,
    /// How long audit entries are kept at least ([`Inbox::with_audit_floor`](crate::Inbox::with_audit_floor)).
    pub(crate) audit_floor: Duration,
    /// Whether stored bodies are sealed under keys this inbox does not hold, and when that
    /// was last read (health's `key_check`; an index read, at most every 10 minutes).
    pub(crate) keys_missing: tokio::sync::Mutex<Option<(tokio::time::Instant, Option<bool>)>>,
    /// The audit key given explicitly ([`Inbox::with_audit_key`](crate::Inbox::with_audit_key)).
    pub(crate) audit_key: Option<Arc<crate::AuditKey>>,
    /// Whether what an attempt fetched is kept in clear by an inbox without keys.
    pub(crate) keep_fetched_in_clear: bool,
    /// Whether the store holds sealed rows (a keyless inbox then refuses to write), once seen.
    pub(crate) sealed_seen: std::sync::atomic::AtomicBool,
    /// When the store was last found to hold no sealed row (read again after a second).
    pub(crate) clear_checked: Mutex<Option<std::time::Instant>>,
}

/// The audit log's retention floor by default: six years (HIPAA's retention for such
/// records), 2,192 days.
pub const AUDIT_FLOOR: Duration = Duration::from_secs(2_192 * 86_400);

/// The counts health checks share (held while they are read).
pub(crate) type HealthCache = tokio::sync::Mutex<
    Option<(
        tokio::time::Instant,
        Option<(Counts, Vec<crate::records::Pause>)>,
    )>,
>;

/// What the inbox knows of its store's writes: when its own writes (ingests, claims,
/// completions) last failed and last succeeded, and the health check's write probe.
#[derive(Default)]
pub(crate) struct Writes {
    state: Mutex<WriteState>,
    /// When the write probe last ran (held while it runs, so that concurrent checks wait for it
    /// rather than probing again).
    pub(crate) probed: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

#[derive(Default)]
struct WriteState {
    last_ok: Option<std::time::Instant>,
    last_failed: Option<std::time::Instant>,
    /// The latest ingest that succeeded, and that failed: another write succeeding (a claim on
    /// a full disk) does not make a failed ingest good.
    ingest_ok: Option<std::time::Instant>,
    ingest_failed: Option<std::time::Instant>,
    /// The latest probe failed.
    probe_failed: bool,
}

impl Writes {
    fn record(&self, ok: bool) {
        let mut state = lock(&self.state);
        let now = std::time::Instant::now();
        if ok {
            state.last_ok = Some(now);
        } else {
            state.last_failed = Some(now);
        }
    }

    fn record_ingest(&self, ok: bool) {
        self.record(ok);
        let mut state = lock(&self.state);
        let now = std::time::Instant::now();
        if ok {
            state.ingest_ok = Some(now);
        } else {
            state.ingest_failed = Some(now);
        }
    }

    pub(crate) fn record_probe(&self, ok: bool) {
        lock(&self.state).probe_failed = !ok;
    }

    /// Whether the store can commit: the latest probe succeeded, and no write of the inbox
    /// failed within `window` without one succeeding after it.
    pub(crate) fn writable(&self, window: Duration) -> bool {
        let state = lock(&self.state);
        let failing = |failed: Option<std::time::Instant>, ok: Option<std::time::Instant>| {
            failed
                .is_some_and(|failed| failed.elapsed() < window && ok.is_none_or(|ok| ok < failed))
        };
        !(failing(state.last_failed, state.last_ok)
            || failing(state.ingest_failed, state.ingest_ok)
            || state.probe_failed)
    }
}

/// Deliveries waiting for a group commit, and the callers waiting for its answer (in order).
#[derive(Default)]
struct Queue {
    deliveries: Vec<NewDelivery>,
    replies: Vec<oneshot::Sender<Result<Stored, StoreError>>>,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

impl Inbox {
    /// An inbox over another [`Store`](crate::store::Store).
    pub fn from_store(store: impl Store) -> Self {
        Self::with_store(Arc::new(store))
    }

    pub(crate) fn with_store(store: Arc<dyn Store>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock: Arc::new(SystemClock),
                queue: Mutex::new(Queue::default()),
                writer: tokio::sync::Mutex::new(()),
                wake: Arc::new(Notify::new()),
                worker_seen: Arc::new(AtomicU64::new(0)),
                draining: Arc::default(),
                writes: Arc::default(),
                health_cache: Arc::default(),
                keys: None,
                audit_floor: AUDIT_FLOOR,
                keys_missing: tokio::sync::Mutex::default(),
                audit_key: None,
                keep_fetched_in_clear: false,
                sealed_seen: std::sync::atomic::AtomicBool::new(false),
                clear_checked: Mutex::new(None),
            }),
        }
    }

    /// Creates or upgrades the inbox's schema (for an inbox built with `migrate(false)`); the
    /// built-in stores record their versions in `suki_inbox_migrations`. Idempotent.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.store.migrate().await
    }

    /// Uses `clock` for received-at times and operations (tests: a
    /// [`FixedClock`](suki_ambient_core::FixedClock)). Call it before cloning the inbox.
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        self.rebuilt(|inner| inner.clock = clock)
    }

    /// This inbox's store, wake-ups and health, with its settings changed by `change` and a
    /// group commit of its own.
    fn rebuilt(&self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            store: Arc::clone(&self.inner.store),
            clock: Arc::clone(&self.inner.clock),
            queue: Mutex::new(Queue::default()),
            writer: tokio::sync::Mutex::new(()),
            wake: Arc::clone(&self.inner.wake),
            worker_seen: Arc::clone(&self.inner.worker_seen),
            draining: Arc::clone(&self.inner.draining),
            writes: Arc::clone(&self.inner.writes),
            health_cache: Arc::default(),
            keys: self.inner.keys.clone(),
            audit_floor: self.inner.audit_floor,
            keys_missing: tokio::sync::Mutex::default(),
            audit_key: self.inner.audit_key.clone(),
            keep_fetched_in_clear: self.inner.keep_fetched_in_clear,
            sealed_seen: std::sync::atomic::AtomicBool::new(false),
            clear_checked: Mutex::new(None),
        };
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// This inbox keeping audit entries at least `floor` ([`AUDIT_FLOOR`], six years, by
    /// default): an [`Action::PurgeAudit`](crate::Action::PurgeAudit) that would delete a younger entry is refused, by
    /// the inbox and by the database itself (the built-in stores record the floor in
    /// `suki_inbox_audit_floors` and a trigger refuses a purge within it). A floor other than
    /// the last recorded is itself recorded in the audit log (`audit_floor`) before the first
    /// purge that uses it. Call it before cloning the inbox.
    #[must_use]
    pub fn with_audit_floor(self, floor: Duration) -> Self {
        self.rebuilt(|inner| inner.audit_floor = floor)
    }

    /// This inbox sealing the bodies it stores with `keys`' current key, and opening them with
    /// any of its keys ([`crypto`](crate::crypto): AES-256-GCM, a random nonce per row,
    /// the row's dedup key as associated data, the key's id stored with the row). Rows stored
    /// in clear before stay readable; `suki-ambient inbox rekey` seals them. A row whose key
    /// the provider does not have fails its attempt with `body_key_missing_<id>` and stays
    /// (retried, then dead, never dropped) until the key is given back. What an attempt
    /// fetched is sealed the same way; the audit log is chained under the audit key derived
    /// from the current key unless [`with_audit_key`](Self::with_audit_key) gives one.
    ///
    /// Give the worker's inbox the same keys as the receiver's.
    pub fn with_keys(self, keys: impl crate::KeyProvider) -> Self {
        let keys: Arc<dyn crate::KeyProvider> = Arc::new(keys);
        self.rebuilt(|inner| inner.keys = Some(keys))
    }

    /// This inbox chaining its audit log under `key` (`SUKI_AUDIT_KEY`:
    /// [`AuditKey::from_env`](crate::AuditKey::from_env)) rather than the key derived from its
    /// body keys: each entry's MAC, which a database user cannot recompute without it
    /// ([`audit`](crate::audit)). Keep it outside the database, as the body keys; give every
    /// process of the inbox the same one. A new key is recorded in the chain (`audit_key`)
    /// when the worker starts.
    #[must_use]
    pub fn with_audit_key(self, key: crate::AuditKey) -> Self {
        let key = Arc::new(key);
        self.rebuilt(|inner| inner.audit_key = Some(key))
    }

    /// Whether an inbox **without** body keys keeps what a failed attempt fetched (the note,
    /// its structured data and transcript: PHI) in its database for the next attempt (default
    /// `false`: the next attempt fetches it again). With keys it is always kept, sealed. Turn
    /// it on only where PHI at rest in clear in this database is acceptable.
    #[must_use]
    pub fn keep_fetched_in_clear(self, keep: bool) -> Self {
        self.rebuilt(|inner| inner.keep_fetched_in_clear = keep)
    }

    /// The audit keys this inbox holds.
    pub(crate) fn audit_keys(&self) -> crate::audit::AuditKeys {
        crate::audit::AuditKeys {
            explicit: self.inner.audit_key.clone(),
            body: self.inner.keys.clone(),
        }
    }

    /// Whether this inbox may write what it must seal: `Err(NoCurrentKey)` when it has keys
    /// but no current one, or has none while its store holds sealed rows (a row it wrote would
    /// be the one in clear). Every write checks this itself; call it to fail early (the CLI
    /// does before a sweep).
    pub async fn ensure_can_seal(&self) -> Result<(), StoreError> {
        self.sealing_key().await.map(drop)
    }

    /// The key this inbox seals what it writes with (`None`: in clear, for an inbox without
    /// keys whose store holds no sealed row); `Err(NoCurrentKey)` when it has keys but no
    /// current one, or has none beside sealed rows. Every write asks it: it never writes clear
    /// where it should seal.
    pub(crate) async fn sealing_key(&self) -> Result<Option<Arc<crate::BodyKey>>, StoreError> {
        match self.inner.keys.as_ref() {
            Some(keys) => keys.current().map(Some).ok_or_else(|| {
                tracing::error!(
                    "suki inbox refuses to store bodies: its key provider has no current key"
                );
                StoreError::NoCurrentKey
            }),
            None => self.refuse_clear_beside_sealed().await.map(|()| None),
        }
    }

    /// Refuses a write of a process without body keys to an inbox whose store holds sealed
    /// rows ([`StoreError::NoCurrentKey`]): a row it wrote would be the one in clear.
    pub(crate) async fn refuse_clear_beside_sealed(&self) -> Result<(), StoreError> {
        if self.inner.keys.is_some() {
            return Ok(());
        }
        if !self.inner.sealed_seen.load(Ordering::Relaxed) {
            // Read at most once a second: an index lookup, not one per write.
            if lock(&self.inner.clear_checked)
                .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
            {
                return Ok(());
            }
            if !self.inner.store.has_sealed().await? {
                *lock(&self.inner.clear_checked) = Some(std::time::Instant::now());
                return Ok(());
            }
            self.inner.sealed_seen.store(true, Ordering::Relaxed);
        }
        tracing::error!(
            "suki inbox refuses to write in clear: the inbox holds sealed bodies and this process has no keys (SUKI_INBOX_KEYS)"
        );
        Err(StoreError::NoCurrentKey)
    }

    /// A stored body as it was received: opened with its key when sealed. `Err` is the
    /// attempt's error code (`body_key_missing_<id>`, `body_unreadable`).
    pub(crate) fn open_body(
        &self,
        record: &DeliveryRecord,
        body: bytes::Bytes,
    ) -> Result<bytes::Bytes, String> {
        let Some(id) = record.key_id.as_deref() else {
            return Ok(body);
        };
        let id = crate::display::clean(id, 32);
        let key = self
            .inner
            .keys
            .as_ref()
            .and_then(|k| k.key(&id))
            .ok_or_else(|| format!("body_key_missing_{id}"))?;
        key.open(record.dedup_key.as_bytes(), &body)
            .map(bytes::Bytes::from)
            .ok_or_else(|| "body_unreadable".to_owned())
    }

    /// What an attempt fetched, sealed for keeping as bodies are (under the current key, the
    /// dedup key and `fetched` as associated data; clear without keys): a byte of key id
    /// length (0: clear), the key id, then the sealed or clear bytes. `None` when the inbox has
    /// keys but no usable current one: nothing is kept in clear.
    /// Without keys nothing is kept unless [`keep_fetched_in_clear`](Self::keep_fetched_in_clear).
    pub(crate) fn seal_fetched(&self, dedup_key: &str, plain: &[u8]) -> Option<Vec<u8>> {
        if self.inner.keys.is_none() && !self.inner.keep_fetched_in_clear {
            return None;
        }
        self.seal_blob(&fetched_aad(dedup_key), plain)
    }

    /// The partner's context of an expected session (its `additional_info`, JSON), sealed as
    /// [`seal_fetched`](Self::seal_fetched) seals, with the session and `context` as associated
    /// data. `Err(NoCurrentKey)` when the inbox has keys but no usable current one: the context
    /// is never stored in clear then.
    pub(crate) fn seal_context(&self, session: &str, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.seal_blob(&context_aad(session), plain)
            .ok_or(StoreError::NoCurrentKey)
    }

    /// [`seal_context`](Self::seal_context)'s bytes opened; `None` when its key is not held.
    pub(crate) fn open_context(&self, session: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        self.open_blob(&context_aad(session), sealed)
    }

    /// `plain` sealed under the current key with `aad`, or in clear without keys (see
    /// [`seal_fetched`](Self::seal_fetched) for the layout).
    fn seal_blob(&self, aad: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
        let Some(keys) = self.inner.keys.as_ref() else {
            let mut out = Vec::with_capacity(1 + plain.len());
            out.push(0);
            out.extend_from_slice(plain);
            return Some(out);
        };
        let key = keys
            .current()
            .filter(|k| !k.id().is_empty() && k.id().len() <= 255)?;
        let sealed = key.try_seal(aad, plain)?;
        let mut out = Vec::with_capacity(1 + key.id().len() + sealed.len());
        out.push(u8::try_from(key.id().len()).ok()?);
        out.extend_from_slice(key.id().as_bytes());
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// [`seal_fetched`](Self::seal_fetched)'s bytes opened; `None` when its key is not held or
    /// it does not open (the links are then fetched again).
    pub(crate) fn open_fetched(&self, dedup_key: &str, kept: &[u8]) -> Option<Vec<u8>> {
        self.open_blob(&fetched_aad(dedup_key), kept)
    }

    fn open_blob(&self, aad: &[u8], kept: &[u8]) -> Option<Vec<u8>> {
        let (&len, rest) = kept.split_first()?;
        if len == 0 {
            return Some(rest.to_vec());
        }
        let (id, sealed) = rest.split_at_checked(usize::from(len))?;
        let key = self
            .inner
            .keys
            .as_ref()?
            .key(std::str::from_utf8(id).ok()?)?;
        key.open(aad, sealed)
    }

    /// A worker of this process is alive (it calls this each time round its loop).
    pub(crate) fn worker_alive(&self) {
        self.inner
            .worker_seen
            .store(self.now().0.max(1), Ordering::Relaxed);
    }

    /// How long ago a worker of this process last went round its loop; `None` when none ran.
    pub(crate) fn worker_heartbeat_age(&self) -> Option<Duration> {
        match self.inner.worker_seen.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(self.now().0.saturating_sub(at))),
        }
    }

    /// Records whether a write to the store committed (health turns red while the latest one
    /// failed, and green with the next that succeeds).
    pub(crate) fn wrote<T>(&self, result: &Result<T, StoreError>) {
        self.inner.writes.record(result.is_ok());
    }

    pub(crate) fn writes(&self) -> &Writes {
        &self.inner.writes
    }

    pub(crate) fn health_cache(&self) -> &HealthCache {
        &self.inner.health_cache
    }

    /// What the store can tell (counts, rows, timelines, expectations, the audit log): read
    /// only. Everything that writes goes through the inbox's own methods, so that every body is
    /// sealed on the one path that writes it ([`ingest`](Self::ingest)) and every operator
    /// action is audited ([`act`](Self::act)).
    pub fn store(&self) -> &dyn crate::seam::ReadModel {
        &*self.inner.store
    }

    /// Registers `session` as expected, first checked at `first_check` (what
    /// [`Reconciler::register`](crate::Reconciler::register) does with its grace period);
    /// `false` when it was already registered.
    pub async fn register_expected(
        &self,
        session: &crate::ExpectedSession,
        first_check: UnixMillis,
    ) -> Result<bool, StoreError> {
        let context = match &session.additional_info {
            None => None,
            Some(info) => {
                let plain = serde_json::to_vec(info).map_err(|_| {
                    StoreError::Refused(
                        "the expected session's additional_info cannot be written as JSON".into(),
                    )
                })?;
                self.refuse_clear_beside_sealed().await?;
                Some(self.seal_context(session.session_id.as_str(), &plain)?)
            }
        };
        self.inner
            .store
            .register(crate::records::NewExpectation {
                expected: session,
                first_check,
                now: self.now(),
                context: context.as_deref(),
            })
            .await
    }

    /// The whole store, for the inbox's own parts (worker, reconciler, console).
    pub(crate) fn backend(&self) -> &dyn Store {
        &*self.inner.store
    }

    pub(crate) fn store_arc(&self) -> Arc<dyn Store> {
        Arc::clone(&self.inner.store)
    }

    pub(crate) fn wake(&self) -> &Notify {
        &self.inner.wake
    }

    /// Stores `delivery` durably (through the group commit), or reports its dedup key as
    /// already stored. Returns once the transaction holding it committed.
    ///
    /// Group commit without a background task: the caller that finds no write under way writes
    /// everything queued (its own delivery and those that arrived meanwhile) in one
    /// transaction; the others wait for that answer. One caller alone writes its own row
    /// directly, with no hand-over between tasks.
    pub async fn ingest(&self, delivery: NewDelivery) -> Result<Stored, StoreError> {
        let (reply, mut answer) = oneshot::channel();
        {
            let mut queue = lock(&self.inner.queue);
            queue.deliveries.push(delivery);
            queue.replies.push(reply);
        }
        loop {
            // Our answer (a writer took our delivery along), or the right to write.
            let writing = tokio::select! {
                biased;
                result = &mut answer => {
                    return match result {
                        Ok(stored) => stored,
                        Err(_) => Err(StoreError::Closed),
                    };
                }
                writing = self.inner.writer.lock() => writing,
            };
            if let Ok(result) = answer.try_recv() {
                return result;
            }
            // Let the requests that are being verified right now join this commit: yield while
            // the queue keeps growing (once when alone, so a lone delivery waits a single yield).
            let mut queued = lock(&self.inner.queue).deliveries.len();
            for _ in 0..GATHER_YIELDS {
                tokio::task::yield_now().await;
                let now = lock(&self.inner.queue).deliveries.len();
                if now == queued {
                    break;
                }
                queued = now;
            }
            let batch = {
                let mut queue = lock(&self.inner.queue);
                let n = queue.deliveries.len().min(MAX_BATCH);
                Queue {
                    deliveries: queue.deliveries.drain(..n).collect(),
                    replies: queue.replies.drain(..n).collect(),
                }
            };
            if !batch.deliveries.is_empty() {
                self.write(Requeue {
                    inner: &self.inner,
                    batch: Some(batch),
                })
                .await;
            }
            drop(writing);
        }
    }

    /// Stores `deliveries` in one transaction: the group commit's write, and the reconciler's
    /// (which already has a batch). Records the write for health, counts what was new, and wakes
    /// the workers of this process.
    pub(crate) async fn ingest_batch(
        &self,
        deliveries: &[NewDelivery],
    ) -> Result<Vec<Stored>, StoreError> {
        // Bodies are sealed as they are written, straight into the statement (see
        // `DeliveryQueue::insert_with_key`): sealing on each request's task instead cost a second
        // copy of every body, allocated on one thread and freed on another (ingest at c=64 on
        // SQLite: 0.95x of clear against 0.98x; docs/benchmarks.md).
        // An inbox given keys never stores a body in clear: without a current key the write is
        // refused (the receiver answers 503, health turns red), never done in clear.
        let key = match self.sealing_key().await {
            Ok(key) => key,
            Err(refused) => {
                self.inner.writes.record_ingest(false);
                return Err(refused);
            }
        };
        let result = self
            .inner
            .store
            .insert_with_key(deliveries, key.as_deref())
            .await;
        self.inner.writes.record_ingest(result.is_ok());
        let stored = result?;
        for (delivery, stored) in deliveries.iter().zip(&stored) {
            if *stored == Stored::Accepted {
                crate::metrics::enqueued(delivery.source);
            }
        }
        if stored.contains(&Stored::Accepted) {
            self.inner.wake.notify_waiters();
        }
        Ok(stored)
    }

    /// Writes `batch` in one transaction and answers each of its callers. If this caller goes
    /// away during the write (its client disconnected and the server dropped the request), the
    /// batch goes back to the queue for the next writer: at worst it was committed already, and
    /// writing it again answers `duplicate`, which is still "stored".
    async fn write(&self, mut batch: Requeue<'_>) {
        let Some(pending) = batch.batch.as_ref() else {
            return;
        };
        let result = self.ingest_batch(&pending.deliveries).await;
        let Some(Queue {
            deliveries,
            replies,
        }) = batch.batch.take()
        else {
            return;
        };
        match result {
            Ok(stored) => {
                for (reply, stored) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(stored));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, deliveries = deliveries.len(), "suki inbox could not store deliveries");
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// What [`ingest`](Self::ingest) stores for a verified webhook delivery.
    pub fn webhook_delivery(
        &self,
        delivery: &VerifiedDelivery,
        event: &WebhookEvent,
    ) -> NewDelivery {
        NewDelivery {
            dedup_key: dedup_key(delivery, event),
            source: Source::Webhook,
            kind: event.kind(),
            session_id: event.session_id().cloned(),
            encounter_id: event.encounter_id().cloned(),
            generated_at: delivery.meta.generated_at,
            received_at: self.now(),
            body: delivery.body.clone(),
            key_id: None,
        }
    }

    /// Counts by state and the age of the oldest unfinished row.
    pub async fn status(&self) -> Result<InboxStatus, StoreError> {
        let counts = self.inner.store.counts().await?;
        let status = self.status_of(counts);
        crate::metrics::depth(&status);
        Ok(status)
    }

    /// The destinations the workers found down (Suki's API, an EHR), and those back up since,
    /// each with the rows waiting for it (pending, no attempt spent), from the store that
    /// the workers of a fleet share. An open breaker is never a readiness failure: webhooks
    /// keep being stored while the notes wait.
    pub async fn destinations(&self) -> Result<Vec<crate::records::DestinationRecord>, StoreError> {
        self.inner.store.destinations().await
    }

    /// `counts` with the age of the oldest unfinished row as of now.
    pub(crate) fn status_of(&self, counts: Counts) -> InboxStatus {
        let oldest_unfinished_age = counts
            .oldest_unfinished_received_at
            .map(|at| Duration::from_millis(self.now().0.saturating_sub(at.0)));
        InboxStatus {
            counts,
            oldest_unfinished_age,
        }
    }

    /// The rows of sessions that ended without a note, of `kind` (`Failed`, `TimedOut` or
    /// `Cancelled`), newest first: the visits to document another way (`suki-ambient inbox
    /// list --kind failed`).
    pub async fn without_note(
        &self,
        kind: suki_ambient_core::EventKind,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.inner.store.without_note(kind, limit).await
    }

    /// How many sessions without a note (failed, timed out, cancelled) were received since
    /// `since` (the console's "sessions without a note (24 h)").
    pub async fn count_without_note(&self, since: UnixMillis) -> Result<u64, StoreError> {
        self.inner.store.count_without_note(since).await
    }

    /// Rows, newest first, optionally of one state.
    pub async fn list(
        &self,
        state: Option<State>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.inner.store.list(state, limit).await
    }

    /// The rows being retried (an attempt made or an error recorded, not finished), however
    /// many new rows are pending, the latest change first.
    pub async fn retrying(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.inner.store.retrying(limit).await
    }

    /// One row.
    pub async fn get(&self, id: i64) -> Result<Option<DeliveryRecord>, StoreError> {
        self.inner.store.get(id).await
    }

    /// Marks this process as shutting down: [`readiness`](Self::readiness) fails from now on,
    /// so a load balancer sends no more deliveries, while those it still sends are stored as
    /// before. Call it when your server starts its graceful shutdown.
    pub fn shutting_down(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Whether stored bodies are sealed under a key this inbox does not hold: read at most every
    /// 10 minutes (the bodies' key ids, through an index, given at most 500 ms). A read that
    /// fails or takes longer answers `Unknown`, or `Missing` when that was the last answer:
    /// never `Ok` unread. An inbox without keys answers `NotConfigured`.
    pub(crate) async fn key_check(&self) -> crate::records::KeyCheck {
        use crate::records::KeyCheck;
        const EVERY: Duration = Duration::from_secs(600);
        let Some(keys) = self.inner.keys.as_ref() else {
            return KeyCheck::NotConfigured;
        };
        let mut last = self.inner.keys_missing.lock().await;
        if let Some((at, Some(missing))) = *last
            && at.elapsed() < EVERY
        {
            return if missing {
                KeyCheck::Missing
            } else {
                KeyCheck::Ok
            };
        }
        let held = keys.ids();
        let read =
            tokio::time::timeout(Duration::from_millis(500), self.inner.store.key_counts()).await;
        let missing = match read {
            Ok(Ok(counts)) => Some(
                counts
                    .iter()
                    .any(|(id, _)| id.as_ref().is_some_and(|id| !held.contains(id))),
            ),
            _ => last.and_then(|(_, missing)| missing).filter(|m| *m),
        };
        *last = Some((tokio::time::Instant::now(), missing));
        match missing {
            Some(true) => KeyCheck::Missing,
            Some(false) => KeyCheck::Ok,
            None => KeyCheck::Unknown,
        }
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// The inbox's clock: the system's, or the one given to
    /// [`with_clock`](Self::with_clock) (a test's fixed clock).
    pub fn now(&self) -> UnixMillis {
        self.inner.clock.now()
    }
}

/// `<session id>/<kind>` for a known event (the same key a polled event of the session gets),
/// `delivery/<replay key>` for an unknown one.
pub fn dedup_key(delivery: &VerifiedDelivery, event: &WebhookEvent) -> String {
    match event.idempotency_key() {
        Some(key) => event_key(key.session_id.as_str(), key.kind),
        None => format!("delivery/{}", delivery.meta.replay_key()),
    }
}

/// The dedup key of a session's event of `kind`, whether it came by webhook or by poll.
pub(crate) fn event_key(session_id: &str, kind: suki_ambient_core::EventKind) -> String {
    format!("{session_id}/{}", kind.as_str())
}

#[async_trait]
impl DeliverySink for Inbox {
    async fn store(
        &self,
        delivery: &VerifiedDelivery,
        event: &WebhookEvent,
    ) -> Result<Stored, SinkError> {
        Ok(self.ingest(self.webhook_delivery(delivery, event)).await?)
    }
}

/// A batch being written; put back at the front of the queue if the write is dropped.
struct Requeue<'a> {
    inner: &'a Inner,
    batch: Option<Queue>,
}

impl Drop for Requeue<'_> {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take() {
            let mut queue = lock(&self.inner.queue);
            let later = std::mem::replace(&mut *queue, batch);
            queue.deliveries.extend(later.deliveries);
            queue.replies.extend(later.replies);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The associated data of a row's kept links: its dedup key and `fetched` (so that they cannot
/// pass for its body, or for another row's).
/// The associated data of an expected session's sealed context.
fn context_aad(session: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(session.len() + 16);
    aad.extend_from_slice(b"expect/");
    aad.extend_from_slice(session.as_bytes());
    aad.extend_from_slice(b"\0context");
    aad
}

/// The id of the key a kept blob ([`Inbox::seal_fetched`]) is sealed with (`Some("")`: in
/// clear; `None`: not a blob).
pub(crate) fn blob_key_id(kept: &[u8]) -> Option<&str> {
    let (&len, rest) = kept.split_first()?;
    let id = rest.get(..usize::from(len))?;
    std::str::from_utf8(id).ok()
}

fn fetched_aad(dedup_key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(dedup_key.len() + 8);
    aad.extend_from_slice(dedup_key.as_bytes());
    aad.extend_from_slice(b"\0fetched");
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed ingest keeps the store unwritable until an ingest succeeds: a claim or a probe
    /// that succeeds meanwhile (a full disk takes those) does not make it good.
    #[test]
    fn only_an_ingest_clears_a_failed_ingest() {
        let writes = Writes::default();
        let window = Duration::from_secs(60);
        assert!(writes.writable(window));
        writes.record_ingest(false);
        assert!(!writes.writable(window));
        writes.record(true);
        writes.record_probe(true);
        assert!(!writes.writable(window), "a claim is not an ingest");
        writes.record_ingest(true);
        assert!(writes.writable(window));
        // Another write's failure is cleared by any write that succeeds.
        writes.record(false);
        assert!(!writes.writable(window));
        writes.record(true);
        assert!(writes.writable(window));
    }
}
