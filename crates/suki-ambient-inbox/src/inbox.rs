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
use crate::store::{
    Action, Actor, Counts, DeliveryRecord, NewDelivery, Selection, Source, State, Store,
};

/// The most rows [`Inbox::trace`] returns.
const TRACE_LIMIT: u32 = 100;

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
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Deliveries waiting for the next group commit.
    queue: Mutex<Queue>,
    /// Held by the caller writing a group commit.
    writer: tokio::sync::Mutex<()>,
    /// Wakes in-process workers when something new was stored.
    wake: Arc<Notify>,
    /// When a worker of this process last went round its loop (ms; 0: never).
    worker_seen: Arc<AtomicU64>,
    /// Set by [`Inbox::shutting_down`]: readiness fails so that load balancers send no more.
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// Whether the store's latest write succeeded (health's `store_unwritable`).
    writes: Arc<Writes>,
    /// The counts health checks share, and when they were read.
    health_cache: Arc<HealthCache>,
    /// The keys that seal stored bodies (`None`: bodies in clear).
    keys: Option<Arc<dyn crate::KeyProvider>>,
    /// How long audit entries are kept at least ([`Inbox::with_audit_floor`]).
    audit_floor: Duration,
    /// Whether stored bodies are sealed under keys this inbox does not hold, and when that
    /// was last read (health's `body_keys_missing`; a scan, so at most every 10 minutes).
    pub(crate) keys_missing: tokio::sync::Mutex<Option<(tokio::time::Instant, bool)>>,
}

/// The audit log's retention floor by default: six years (HIPAA's retention for such
/// records), 2,192 days.
pub const AUDIT_FLOOR: Duration = Duration::from_secs(2_192 * 86_400);

/// The counts health checks share (held while they are read).
pub(crate) type HealthCache =
    tokio::sync::Mutex<Option<(tokio::time::Instant, Option<(Counts, Vec<crate::Pause>)>)>>;

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

    pub(crate) fn record_probe(&self, ok: bool) {
        lock(&self.state).probe_failed = !ok;
    }

    /// Whether the store can commit: the latest probe succeeded, and no write of the inbox
    /// failed within `window` without one succeeding after it.
    pub(crate) fn writable(&self, window: Duration) -> bool {
        let state = lock(&self.state);
        let failing = match (state.last_failed, state.last_ok) {
            (Some(failed), ok) => failed.elapsed() < window && ok.is_none_or(|ok| ok < failed),
            (None, _) => false,
        };
        !(failing || state.probe_failed)
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
    /// Opens the inbox at `url` and creates or migrates its schema: `sqlite://path` (feature
    /// `sqlite`, the default; the file is created if missing) or `postgres://…` (feature
    /// `postgres`). [`builder`](Self::builder) takes settings (pool size, Postgres schema, …).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// Opens an **existing** inbox at `url` only (migrating it to this version's schema), and
    /// never creates one: a mistyped path, database or schema is [`StoreError::NotFound`]
    /// (`no inbox at sqlite://typo.db`). For tools that read an inbox, like the CLI;
    /// applications create theirs with [`connect`](Self::connect).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).open().await
    }

    /// An inbox at `url` with settings: pool size, acquire timeout, Postgres schema, and
    /// whether to migrate.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), suki_ambient_inbox::StoreError> {
    /// use std::time::Duration;
    /// let inbox = suki_ambient_inbox::Inbox::builder("postgres://app@db/app")
    ///     .max_connections(8)
    ///     .acquire_timeout(Duration::from_secs(2))
    ///     .schema("suki_inbox")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(url: impl Into<String>) -> InboxBuilder {
        InboxBuilder {
            target: Target::Url(url.into()),
            settings: Settings::default(),
        }
    }

    /// The inbox in your application's own pool ([`sqlx::SqlitePool`] or [`sqlx::PgPool`]),
    /// sharing its connections, its tables beside yours; migrated in the inbox's own history
    /// table (`suki_inbox_migrations`), never in `_sqlx_migrations`.
    /// [`pool_builder`](Self::pool_builder) takes a schema or `migrate(false)`.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub async fn from_pool(pool: impl Into<InboxPool>) -> Result<Self, StoreError> {
        Self::pool_builder(pool).connect().await
    }

    /// [`from_pool`](Self::from_pool) with settings (a Postgres schema, `migrate(false)`; the
    /// pool's own size and timeouts are yours).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn pool_builder(pool: impl Into<InboxPool>) -> InboxBuilder {
        InboxBuilder {
            target: Target::Pool(pool.into()),
            settings: Settings::default(),
        }
    }

    /// An inbox over another [`Store`].
    pub fn from_store(store: impl Store) -> Self {
        Self::with_store(Arc::new(store))
    }

    fn with_store(store: Arc<dyn Store>) -> Self {
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
        self.rebuilt(Arc::new(clock), self.inner.keys.clone())
    }

    /// This inbox's store, wake-ups and health, with a clock and keys of its own and a group
    /// commit of its own.
    fn rebuilt(&self, clock: Arc<dyn Clock>, keys: Option<Arc<dyn crate::KeyProvider>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: Arc::clone(&self.inner.store),
                clock,
                queue: Mutex::new(Queue::default()),
                writer: tokio::sync::Mutex::new(()),
                wake: Arc::clone(&self.inner.wake),
                worker_seen: Arc::clone(&self.inner.worker_seen),
                draining: Arc::clone(&self.inner.draining),
                writes: Arc::clone(&self.inner.writes),
                health_cache: Arc::default(),
                keys,
                audit_floor: self.inner.audit_floor,
                keys_missing: tokio::sync::Mutex::default(),
            }),
        }
    }

    /// This inbox keeping audit entries at least `floor` ([`AUDIT_FLOOR`], six years, by
    /// default): an [`Action::PurgeAudit`] that would delete a younger entry is refused. A floor
    /// other than the last recorded is itself recorded in the audit log (`audit_floor`) before
    /// the first purge that uses it. Call it before cloning the inbox.
    #[must_use]
    pub fn with_audit_floor(self, floor: Duration) -> Self {
        let mut inbox = self.rebuilt(Arc::clone(&self.inner.clock), self.inner.keys.clone());
        if let Some(inner) = Arc::get_mut(&mut inbox.inner) {
            inner.audit_floor = floor;
        }
        inbox
    }

    /// This inbox sealing the bodies it stores with `keys`' current key, and opening them with
    /// any of its keys ([`crypto`](crate::crypto): AES-256-GCM, a random nonce per row,
    /// the row's dedup key as associated data, the key's id stored with the row). Rows stored
    /// in clear before stay readable; `suki-ambient inbox rekey` seals them. A row whose key
    /// the provider does not have fails its attempt with `body_key_missing_<id>` and stays
    /// (retried, then dead, never dropped) until the key is given back.
    ///
    /// Give the worker's inbox the same keys as the receiver's.
    pub fn with_keys(self, keys: impl crate::KeyProvider) -> Self {
        self.rebuilt(Arc::clone(&self.inner.clock), Some(Arc::new(keys)))
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
    pub(crate) fn seal_fetched(&self, dedup_key: &str, plain: &[u8]) -> Option<Vec<u8>> {
        let Some(keys) = self.inner.keys.as_ref() else {
            let mut out = Vec::with_capacity(1 + plain.len());
            out.push(0);
            out.extend_from_slice(plain);
            return Some(out);
        };
        let key = keys
            .current()
            .filter(|k| !k.id().is_empty() && k.id().len() <= 255)?;
        let sealed = key.try_seal(&fetched_aad(dedup_key), plain)?;
        let mut out = Vec::with_capacity(1 + key.id().len() + sealed.len());
        out.push(u8::try_from(key.id().len()).ok()?);
        out.extend_from_slice(key.id().as_bytes());
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// [`seal_fetched`](Self::seal_fetched)'s bytes opened; `None` when its key is not held or
    /// it does not open (the links are then fetched again).
    pub(crate) fn open_fetched(&self, dedup_key: &str, kept: &[u8]) -> Option<Vec<u8>> {
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
        key.open(&fetched_aad(dedup_key), sealed)
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
    pub fn store(&self) -> &dyn crate::ReadModel {
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
        self.inner
            .store
            .register(crate::NewExpectation {
                expected: session,
                first_check,
                now: self.now(),
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
        let key = match self.inner.keys.as_ref() {
            None => None,
            Some(keys) => match keys.current() {
                Some(key) => Some(key),
                None => {
                    let refused = Err(StoreError::NoCurrentKey);
                    self.wrote(&refused);
                    tracing::error!(
                        "suki inbox refuses to store bodies: its key provider has no current key"
                    );
                    return refused;
                }
            },
        };
        let result = self
            .inner
            .store
            .insert_with_key(deliveries, key.as_deref())
            .await;
        self.wrote(&result);
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
        let n = self
            .inner
            .store
            .act(crate::Act {
                action: &action,
                actor,
                now: self.now(),
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
        self.inner
            .store
            .act(crate::Act {
                action: &action,
                actor: &Actor::application(),
                now: self.now(),
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
        self.record_if_changed(
            Action::KeysSeen { current, others },
            self.inner.keys.is_some(),
        )
        .await
    }

    /// Walks the audit log's hash chain from its oldest entry (or the latest purge's anchor)
    /// to its newest: the first entry that does not chain to the one before it, or whose
    /// fields no longer match its hash, is [`AuditVerification::broken`]. Entries written
    /// before the chain existed are counted, not checked. (An entry deleted from the end
    /// leaves no break: compare [`AuditVerification::newest`] with a copy kept elsewhere.)
    pub async fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        verify_chain(&*self.inner.store).await
    }

    /// Everything known about a session or an encounter id: its rows (at most 100), their
    /// timelines and its expected sessions. Empty when nothing is known.
    pub async fn trace(&self, id: &str) -> Result<crate::Trace, StoreError> {
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
                if stored.key_id.as_deref() == Some(current.id()) {
                    report.current += 1;
                    continue;
                }
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
                resealed.push(crate::Resealed {
                    id: stored.id,
                    was: stored.key_id,
                    key_id: current.id().to_owned(),
                    body: bytes::Bytes::from(sealed),
                });
            }
            report.resealed += self.inner.store.reseal(&resealed).await?;
            progress(report);
        }
    }

    /// The pauses in force.
    pub async fn pauses(&self) -> Result<Vec<crate::Pause>, StoreError> {
        self.inner.store.pauses().await
    }

    /// Dead rows grouped by error code, the group that died latest first.
    pub async fn dead_groups(&self, limit: u32) -> Result<Vec<crate::DeadGroup>, StoreError> {
        self.inner.store.dead_groups(limit).await
    }

    /// The audit log's entries at or after `since`, oldest first, at most `limit`.
    pub async fn audit(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<crate::AuditEntry>, StoreError> {
        self.inner.store.audit(since, limit).await
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

    /// Marks this process as shutting down: [`readiness`](Self::readiness) fails from now on,
    /// so a load balancer sends no more deliveries, while those it still sends are stored as
    /// before. Call it when your server starts its graceful shutdown.
    pub fn shutting_down(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Whether stored bodies are sealed under a key this inbox does not hold: read at most every
    /// 10 minutes (a scan of the bodies' key ids, given at most 500 ms; the last answer is kept
    /// when it takes longer or fails).
    pub(crate) async fn body_keys_missing(&self) -> bool {
        const EVERY: Duration = Duration::from_secs(600);
        let mut last = self.inner.keys_missing.lock().await;
        if let Some((at, missing)) = *last
            && at.elapsed() < EVERY
        {
            return missing;
        }
        let held: Vec<String> = self
            .inner
            .keys
            .as_ref()
            .map(|k| k.ids())
            .unwrap_or_default();
        let read =
            tokio::time::timeout(Duration::from_millis(500), self.inner.store.key_counts()).await;
        let missing = match read {
            Ok(Ok(counts)) => counts
                .iter()
                .any(|(id, _)| id.as_ref().is_some_and(|id| !held.contains(id))),
            _ => last.map(|(_, missing)| missing).unwrap_or(false),
        };
        *last = Some((tokio::time::Instant::now(), missing));
        missing
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

/// Walks the audit chain of `store` ([`Inbox::verify_audit`]).
pub(crate) async fn verify_chain(
    store: &(impl crate::ReadModel + ?Sized),
) -> Result<AuditVerification, StoreError> {
    let anchor = store.audit_anchor().await?.unwrap_or_default();
    let mut report = AuditVerification::default();
    let mut expected = anchor;
    let mut chained = false;
    let mut after = 0;
    loop {
        let page = store.audit_chain(after, 500).await?;
        let Some(last) = page.last() else {
            return Ok(report);
        };
        after = last.id;
        for entry in page {
            report.entries += 1;
            if entry.hash.is_empty() && !chained {
                report.unchained += 1;
                expected = String::new();
                report.newest = Some((entry.id, entry.hash));
                continue;
            }
            chained = true;
            let reason = if entry.hash.is_empty() {
                Some("no hash after the chain began")
            } else if entry.prev_hash != expected {
                Some("does not chain to the entry before it (an entry was removed or inserted)")
            } else if crate::audit_hash(&entry.prev_hash, &entry) != entry.hash {
                Some("its fields do not match its hash (it was changed)")
            } else {
                None
            };
            if let Some(reason) = reason
                && report.broken.is_none()
            {
                report.broken = Some(BrokenLink {
                    id: entry.id,
                    reason,
                });
            }
            expected = entry.hash.clone();
            report.newest = Some((entry.id, entry.hash));
        }
    }
}

/// What [`Inbox::verify_audit`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AuditVerification {
    /// Entries read.
    pub entries: u64,
    /// Of them, entries written before the chain existed (not checked).
    pub unchained: u64,
    /// The first broken link, if any.
    pub broken: Option<BrokenLink>,
    /// The newest entry's id and hash (keep it elsewhere to detect entries removed from the
    /// end).
    pub newest: Option<(i64, String)>,
}

/// Where the audit chain breaks ([`AuditVerification::broken`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BrokenLink {
    /// The entry.
    pub id: i64,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// What [`Inbox::rekey`] did.
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

/// How an [`Inbox`] is built: [`Inbox::builder`] (a URL) or [`Inbox::pool_builder`] (your
/// pool).
#[derive(Debug)]
#[must_use = "an InboxBuilder does nothing until .connect() or .open()"]
pub struct InboxBuilder {
    target: Target,
    settings: Settings,
}

#[derive(Debug)]
enum Target {
    Url(String),
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    Pool(InboxPool),
}

/// A pool of your application's that the inbox can share ([`Inbox::from_pool`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub enum InboxPool {
    /// A SQLite pool (WAL, `synchronous=FULL`).
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    /// A Postgres pool.
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

#[cfg(feature = "sqlite")]
impl From<sqlx::SqlitePool> for InboxPool {
    fn from(pool: sqlx::SqlitePool) -> Self {
        Self::Sqlite(pool)
    }
}

#[cfg(feature = "postgres")]
impl From<sqlx::PgPool> for InboxPool {
    fn from(pool: sqlx::PgPool) -> Self {
        Self::Postgres(pool)
    }
}

/// The settings an [`InboxBuilder`] collects.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) max_connections: Option<u32>,
    pub(crate) acquire_timeout: Option<Duration>,
    pub(crate) schema: Option<String>,
    pub(crate) migrate: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout: None,
            schema: None,
            migrate: true,
        }
    }
}

impl Settings {
    /// The schema setting, checked for `dialect`: SQLite keeps the inbox in its file and takes
    /// none; a Postgres schema name must be one the inbox accepts.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn schema_for(&self, dialect: crate::Dialect) -> Result<Option<&str>, StoreError> {
        match (&self.schema, dialect) {
            (None, _) => Ok(None),
            (Some(_), crate::Dialect::Sqlite) => Err(StoreError::Unsupported(
                "a schema (SQLite keeps the inbox in its database file)",
            )),
            (Some(schema), crate::Dialect::Postgres) if crate::migrate::valid_schema(schema) => {
                Ok(Some(schema))
            }
            (Some(schema), crate::Dialect::Postgres) => Err(StoreError::InvalidSchema {
                schema: schema.clone(),
            }),
        }
    }
}

impl InboxBuilder {
    /// The most connections the inbox's own pool opens (SQLite 4, Postgres 16 by default).
    /// Not for a pool of yours ([`Inbox::pool_builder`]): size that one yourself.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.settings.max_connections = Some(n.max(1));
        self
    }

    /// How long a statement waits for a free connection of the inbox's own pool before it
    /// fails (SQLite 30 s, Postgres 5 s by default).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.settings.acquire_timeout = Some(timeout);
        self
    }

    /// Postgres: keeps the inbox's tables, functions and migration history in `schema`
    /// (created if missing), rather than the connection's current schema. Letters, digits and
    /// `_`. A SQLite inbox refuses it ([`StoreError::Unsupported`]).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.settings.schema = Some(schema.into());
        self
    }

    /// Whether to create or upgrade the schema when connecting (default `true`). With `false`
    /// you apply the migrations yourself: [`Inbox::migrate`], or the `.sql` files with your own
    /// tool ([`migrations`](crate::migrations)).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.settings.migrate = migrate;
        self
    }

    /// Builds the inbox, creating its database (SQLite file) and schema if missing.
    pub async fn connect(self) -> Result<Inbox, StoreError> {
        self.build(true).await
    }

    /// Builds the inbox only if one exists there ([`Inbox::open`]).
    pub async fn open(self) -> Result<Inbox, StoreError> {
        self.build(false).await
    }

    async fn build(self, create: bool) -> Result<Inbox, StoreError> {
        let settings = &self.settings;
        // Without a store feature only the last arm is left.
        let _ = (create, settings);
        let store: Result<Arc<dyn Store>, StoreError> = match self.target {
            #[cfg(feature = "sqlite")]
            Target::Url(url) if url.starts_with("sqlite:") => Ok(Arc::new(
                crate::SqliteStore::with_settings(&url, create, settings).await?,
            )),
            #[cfg(feature = "postgres")]
            Target::Url(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => {
                Ok(Arc::new(
                    crate::PostgresStore::with_settings(&url, create, settings).await?,
                ))
            }
            #[cfg(feature = "sqlite")]
            Target::Pool(InboxPool::Sqlite(pool)) => Ok(Arc::new(
                crate::SqliteStore::from_pool_with(pool, settings).await?,
            )),
            #[cfg(feature = "postgres")]
            Target::Pool(InboxPool::Postgres(pool)) => Ok(Arc::new(
                crate::PostgresStore::from_pool_with(pool, settings).await?,
            )),
            Target::Url(_other) => Err(StoreError::UnsupportedUrl),
        };
        store.map(Inbox::with_store)
    }
}

/// [`Inbox::status`]: the counts and how long the oldest unfinished row has waited.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InboxStatus {
    /// Rows by state.
    #[serde(flatten)]
    pub counts: Counts,
    /// How long the oldest pending or running row has been in the inbox.
    pub oldest_unfinished_age: Option<Duration>,
}

/// `url` as it can be shown: without a password or a query string (which may carry one).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn redact_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => format!("{scheme}://{user_info}@{host}{path}"),
        },
        None => format!("{scheme}://{rest}"),
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
fn fetched_aad(dedup_key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(dedup_key.len() + 8);
    aad.extend_from_slice(dedup_key.as_bytes());
    aad.extend_from_slice(b"\0fetched");
    aad
}
