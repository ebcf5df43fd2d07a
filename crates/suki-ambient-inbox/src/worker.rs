//! `InboxWorker`: claims due rows under a lease, heartbeats while the handler runs, completes
//! or fails a row only with its own fencing token, backs off with full jitter.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use suki_ambient_core::{UnixMillis, WebhookEvent};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub(crate) use crate::handler::Failure;

mod job;
use crate::handler::{InboxHandler, InboxMeta};
use crate::{Inbox, StoreError};
use crate::{records::Claim, records::Lease, records::Next, seam::Store};
use job::Job;

/// Defaults of [`InboxWorkerBuilder`]: the adaptive limit starts at 16 rows at once and grows
/// up to 256.
const DEFAULT_CONCURRENCY: usize = 16;
const DEFAULT_MAX_CONCURRENCY: usize = 256;
const DEFAULT_LEASE: Duration = Duration::from_secs(60);
const DEFAULT_MAX_ATTEMPTS: u32 = 12;
const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(1);
const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30 * 60);
const DEFAULT_POLL: Duration = Duration::from_secs(1);
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);
const DEFAULT_BODY_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How often the worker asks for the maintenance lease and, holding it, refreshes the depth
/// gauges (feature `metrics`); the lease lasts three times as long, so a stopped leader is
/// replaced within 45 s.
const CHORES_EVERY: Duration = Duration::from_secs(15);
/// The longest a worker waits before subscribing to wake-ups again after a failure.
const LISTEN_RETRY_CAP: Duration = Duration::from_secs(60);
/// How long the maintenance lease lasts once taken or renewed: three rounds of chores.
const MAINTENANCE_LEASE_MS: u64 = 3 * CHORES_EVERY.as_secs() * 1_000;
/// The fleet-wide chores' lease ([`DeliveryQueue::lead`](crate::store::DeliveryQueue::lead)).
const MAINTENANCE: &str = "maintenance";
/// How often done rows past the retention are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60 * 60);
/// The most snoozes a row takes without spending attempts, and the longest one.
const DEFAULT_MAX_SNOOZES: u32 = 24;
const DEFAULT_LONGEST_SNOOZE: Duration = Duration::from_secs(24 * 60 * 60);

/// What the worker runs for a claimed row.
#[derive(Clone)]
pub(crate) enum Runner {
    Plain(Arc<dyn InboxHandler>),
    Transactional(Arc<dyn crate::transaction::ErasedTransactional>),
}

/// Processes what an [`Inbox`] holds: claims due rows, calls the handler, and completes,
/// retries (exponential back-off with full jitter, capped; a [`RetryAfter`](crate::RetryAfter)
/// honoured) or dead-letters them. Several workers (threads, processes, hosts on Postgres) may
/// share one inbox: a row is held by one lease at a time, and a worker whose lease expired
/// cannot complete or fail the row another worker took over (fencing token).
///
/// # Example
///
/// ```no_run
/// use suki_ambient_core::{HandlerError, WebhookEvent};
/// use suki_ambient_inbox::{Inbox, InboxMeta, InboxWorker};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let inbox = Inbox::connect("sqlite://suki-inbox.db").await?;
/// let worker = InboxWorker::builder(inbox, |event: WebhookEvent, meta: InboxMeta| async move {
///     println!("processing {} ({}), attempt {}", meta.dedup_key, event.kind(), meta.attempt);
///     Ok::<(), HandlerError>(())
/// })
/// .concurrency(8)
/// .build();
/// let running = worker.spawn();
/// // … on shutdown: finishes or releases what it holds.
/// running.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub struct InboxWorker {
    inbox: Inbox,
    runner: Runner,
    options: Options,
    breakers: Arc<crate::flow::Breakers>,
}

#[derive(Clone, Debug)]
struct Options {
    owner: String,
    /// The owner was named by the application (so a restart can take its rows back).
    stable_owner: bool,
    /// Rows at once: where the adaptive limit starts, or the fixed number.
    concurrency: usize,
    /// The adaptive limit's cap; `None`: fixed at `concurrency`.
    max_concurrency: Option<usize>,
    breaker: crate::flow::BreakerSettings,
    lease: Duration,
    heartbeat: Duration,
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    poll: Duration,
    /// Wake on the store's signal (Postgres LISTEN/NOTIFY) as well as by polling.
    listen: bool,
    grace: Duration,
    retention: Duration,
    body_retention: Duration,
    max_snoozes: u32,
    longest_snooze: Duration,
    /// Handler calls spaced at least this far apart (shared by the worker's tasks).
    rate_limit: Option<Arc<RateLimit>>,
}

/// Spaces handler calls evenly: at most one per `every`, with no burst.
#[derive(Debug)]
struct RateLimit {
    every: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl RateLimit {
    /// Waits for this call's slot.
    async fn wait(&self) {
        let at = {
            let mut next = lock(&self.next);
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + self.every;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// The pauses a worker obeys, read from the store at most once per poll interval.
#[derive(Default)]
struct Paused {
    all: bool,
    kinds: Vec<suki_ambient_core::EventKind>,
    read_at: Option<tokio::time::Instant>,
}

impl Paused {
    /// Reads the pauses again when a poll interval has passed; a store that cannot answer
    /// leaves them as they were (the claim that follows reports the store's failure).
    async fn refresh(&mut self, worker: &InboxWorker) {
        if self
            .read_at
            .is_some_and(|at| at.elapsed() < worker.options.poll)
        {
            return;
        }
        self.read_at = Some(tokio::time::Instant::now());
        if let Ok(pauses) = worker.inbox.backend().pauses().await {
            let all = pauses.iter().any(|p| p.kind.is_none());
            let kinds: Vec<_> = pauses.into_iter().filter_map(|p| p.kind).collect();
            if all != self.all || kinds != self.kinds {
                if all {
                    tracing::info!("suki inbox is paused: the worker claims nothing until resumed");
                } else if kinds.is_empty() {
                    tracing::info!("suki inbox resumed: the worker claims again");
                } else {
                    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                    tracing::info!(kinds = ?kinds, "suki inbox paused for some kinds: the worker claims the others");
                }
            }
            self.all = all;
            self.kinds = kinds;
        }
    }
}

impl fmt::Debug for InboxWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxWorker")
            .field("inbox", &self.inbox)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Builds an [`InboxWorker`].
pub struct InboxWorkerBuilder {
    inbox: Inbox,
    runner: Runner,
    options: Options,
}

impl fmt::Debug for InboxWorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxWorkerBuilder")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl InboxWorker {
    /// A worker calling `handler` for each stored event.
    pub fn builder(inbox: Inbox, handler: impl InboxHandler) -> InboxWorkerBuilder {
        InboxWorkerBuilder::new(inbox, Runner::Plain(Arc::new(handler)))
    }

    /// A worker whose handler writes in the transaction that completes the row: the
    /// application's writes and the completion commit together, so each stored event's effect
    /// happens exactly once even when workers crash or lose their lease.
    ///
    /// Works on both built-in stores however the inbox was built ([`Inbox::connect`],
    /// [`Inbox::from_pool`], [`Inbox::from_store`]), with a handler that takes the store's
    /// connection (`sqlx::PgConnection` or `sqlx::SqliteConnection`), and on a store of your
    /// own that [has transactions](crate::store::Store::transactions). Fails with
    /// [`StoreError::NoTransactions`] when the store has none, and with
    /// [`StoreError::ConnectionMismatch`] when the handler takes another connection type.
    pub fn transactional<C: Send + 'static>(
        inbox: Inbox,
        handler: impl crate::TransactionalHandler<C>,
    ) -> Result<InboxWorkerBuilder, StoreError> {
        let Some(transactions) = inbox.backend().transactions() else {
            return Err(StoreError::NoTransactions);
        };
        if transactions.connection_type() != std::any::TypeId::of::<C>() {
            return Err(StoreError::ConnectionMismatch {
                store: transactions.connection_name(),
                handler: std::any::type_name::<C>(),
            });
        }
        let handler = crate::transaction::Erased(handler, std::marker::PhantomData);
        Ok(InboxWorkerBuilder::new(
            inbox,
            Runner::Transactional(Arc::new(handler)),
        ))
    }

    /// Runs on a new task until [`WorkerHandle::shutdown`].
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run_until(async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        }));
        WorkerHandle { stop, task }
    }

    /// Runs until `shutdown` completes, then stops claiming, lets the handlers it is running
    /// finish within the grace period, and releases (back to pending, the attempt not counted)
    /// what is still running after it.
    ///
    /// A failing store does not stop it: it logs, waits a poll interval, and tries again. It
    /// returns the store's error when the store was failing as it stopped: its latest claim
    /// failed, or a row it held could not be released (that row's lease expires and another
    /// worker takes it over); `Ok` when it stopped cleanly.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StoreError> {
        let mut shutdown = std::pin::pin!(shutdown);
        self.take_back().await;
        // A key added, retired or dropped since the last start shows in the audit log.
        if let Err(err) = self.inbox.record_keys().await {
            tracing::warn!(error = %err, "suki inbox: could not record the body keys in the audit log");
        }
        let mut pool = Pool::new(&self);
        let mut paused = Paused::default();
        let mut synced: Option<tokio::time::Instant> = None;
        let mut last_purge: Option<tokio::time::Instant> = None;
        let mut last_chores: Option<tokio::time::Instant> = None;
        let mut failing: Option<StoreError>;
        let _listener = self
            .options
            .listen
            .then(|| AbortOnDrop(tokio::spawn(listen(self.inbox.clone(), self.options.poll))));
        loop {
            self.inbox.worker_alive();
            if last_chores.is_none_or(|at| at.elapsed() >= CHORES_EVERY) {
                last_chores = Some(tokio::time::Instant::now());
                if self.lead().await {
                    if cfg!(feature = "metrics") {
                        // Refreshes the depth gauges; a failure shows in the next claim's log.
                        let _ = self.inbox.status().await;
                    }
                    if last_purge.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
                        last_purge = Some(tokio::time::Instant::now());
                        self.purge().await;
                    }
                }
            }
            // Registered before the claim, so a delivery stored in between still wakes us.
            let wake = self.inbox.wake().notified();
            let mut wake = std::pin::pin!(wake);
            wake.as_mut().enable();
            paused.refresh(&self).await;
            // The fleet's breakers, read once per poll interval.
            if synced.is_none_or(|at| at.elapsed() >= self.options.poll) {
                synced = Some(tokio::time::Instant::now());
                self.breakers.sync().await;
            }
            let claimed = if paused.all {
                Ok(0)
            } else {
                pool.fill(&self, &paused.kinds).await
            };
            let idle = match claimed {
                Ok(n) => {
                    failing = None;
                    n == 0
                }
                Err(err) => {
                    tracing::error!(error = %err, "suki inbox worker could not claim rows; retrying");
                    failing = Some(err);
                    true
                }
            };
            if !idle && pool.has_room() {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = &mut wake, if idle => {}
                // The poll, or sooner when a destination's next probe is due before it.
                () = tokio::time::sleep(self.breakers.next_wake(self.options.poll)), if idle => {}
                Some(_) = pool.tasks.join_next(), if !pool.tasks.is_empty() => {}
            }
        }
        let released = pool.shutdown(&self).await;
        match failing {
            Some(err) => Err(err),
            None => released,
        }
    }

    /// Whether this worker holds the fleet's maintenance lease (taking or renewing it): the one
    /// worker that purges and refreshes the depth gauges. A store that cannot answer leaves the
    /// chores to later.
    async fn lead(&self) -> bool {
        let now = self.inbox.now();
        let lead = crate::records::ChoreLease {
            task: MAINTENANCE,
            owner: &self.options.owner,
            now,
            until: UnixMillis(now.0.saturating_add(MAINTENANCE_LEASE_MS)),
        };
        let leading = match self.inbox.backend().lead(lead).await {
            Ok(leading) => leading,
            Err(err) => {
                tracing::warn!(error = %err, "suki inbox worker could not take the maintenance lease");
                false
            }
        };
        crate::metrics::maintenance_leader(leading);
        leading
    }

    async fn purge(&self) {
        match self.inbox.erase_bodies(self.options.body_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                erased = n,
                "suki inbox erased the bodies of done rows past the body retention"
            ),
            Err(err) => tracing::warn!(error = %err, "suki inbox could not erase bodies"),
        }
        match self.inbox.purge(self.options.retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "suki inbox purged done rows past retention"),
            Err(err) => tracing::warn!(error = %err, "suki inbox purge failed"),
        }
    }

    /// With a stable [`owner`](InboxWorkerBuilder::owner) name, takes back at once what a
    /// crashed earlier run under that name still holds.
    async fn take_back(&self) {
        if !self.options.stable_owner {
            return;
        }
        match self
            .inbox
            .backend()
            .release_owner(&self.options.owner, self.inbox.now())
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(rows = n, owner = %self.options.owner, "suki inbox worker took back the rows its previous run held")
            }
            Err(err) => {
                tracing::warn!(error = %err, "suki inbox worker could not take back its previous run's rows; their leases will expire")
            }
        }
    }

    /// Processes the rows that are due, and those that become due (retries) until `wait` has
    /// passed since the call; returns the number of attempts made once no row is pending or
    /// running any more, or at `wait`. `Duration::ZERO` processes what is due now only. For
    /// tests, demos and one-shot jobs; a service runs [`spawn`](Self::spawn).
    pub async fn drain(self, wait: Duration) -> Result<u64, StoreError> {
        let until = tokio::time::Instant::now() + wait;
        self.take_back().await;
        let mut pool = Pool::new(&self);
        let mut paused = Paused::default();
        let mut attempts = 0;
        loop {
            paused.refresh(&self).await;
            let n = if paused.all {
                0
            } else {
                pool.fill(&self, &paused.kinds).await?
            };
            attempts += n as u64;
            if n > 0 && pool.has_room() {
                continue;
            }
            if !pool.tasks.is_empty() {
                pool.tasks.join_next().await;
                continue;
            }
            if n == 0 {
                let counts = self.inbox.backend().counts().await?;
                let left = tokio::time::Instant::now() < until;
                if counts.pending + counts.running == 0 || !left {
                    return Ok(attempts);
                }
                tokio::time::sleep(self.options.poll.min(until - tokio::time::Instant::now()))
                    .await;
            }
        }
    }
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
}

impl WorkerHandle {
    /// Stops at once, as a crash would: nothing is released, and the rows it held are taken
    /// over by other workers when their leases expire. For tests of exactly that.
    pub fn kill(self) {
        self.task.abort();
    }

    /// Stops claiming, waits for running handlers within the grace period, releases the rest.
    pub async fn shutdown(self) -> Result<(), StoreError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(StoreError::WorkerPanicked),
            Err(_) => Err(StoreError::Closed),
        }
    }
}

impl InboxWorkerBuilder {
    fn new(inbox: Inbox, runner: Runner) -> Self {
        Self {
            inbox,
            runner,
            options: Options {
                owner: default_owner(),
                stable_owner: false,
                concurrency: DEFAULT_CONCURRENCY,
                max_concurrency: Some(DEFAULT_MAX_CONCURRENCY),
                breaker: crate::flow::BreakerSettings::default(),
                lease: DEFAULT_LEASE,
                heartbeat: DEFAULT_LEASE / 3,
                max_attempts: DEFAULT_MAX_ATTEMPTS,
                base_delay: DEFAULT_BASE_DELAY,
                max_delay: DEFAULT_MAX_DELAY,
                poll: DEFAULT_POLL,
                listen: true,
                grace: DEFAULT_GRACE,
                retention: DEFAULT_RETENTION,
                body_retention: DEFAULT_BODY_RETENTION,
                max_snoozes: DEFAULT_MAX_SNOOZES,
                longest_snooze: DEFAULT_LONGEST_SNOOZE,
                rate_limit: None,
            },
        }
    }

    /// Processes exactly `n` rows at once (at least 1), instead of the adaptive limit.
    ///
    /// By default the limit adapts (AIMD): it starts at 16 and, while due rows are waiting
    /// for room and the handler's latency holds, grows by one per completed row (then by one
    /// per round once it first shrank), up to 256 ([`max_concurrency`](Self::max_concurrency));
    /// it shrinks by a tenth when a destination fails (an outage, a 503, a timeout) and by a
    /// twentieth when latency passes twice its recent best. Handlers mostly wait on the
    /// network: with an EHR answering in 150 ms, a session's writes take ~350 ms, and 100
    /// sessions a second need ~35 at once (`bench/inbox_e2e`). `SUKI_WORKER_CONCURRENCY` in
    /// the examples sets this.
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.options.concurrency = n.max(1);
        self.options.max_concurrency = None;
        self
    }

    /// The adaptive limit's cap (default 256; at least its start, 16 or
    /// [`concurrency`](Self::concurrency)'s), keeping the limit adaptive.
    #[must_use]
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.options.max_concurrency = Some(n.max(1));
        self.options.concurrency = self.options.concurrency.min(n.max(1));
        self
    }

    /// The destinations' circuit breakers: `failures` consecutive failures of a destination
    /// (Suki's API, an EHR: transport errors, timeouts, 5xx, 429, 408) open its breaker
    /// (default 3); while it is open the rows that need it wait without spending attempts,
    /// and one probe (one row, for the whole fleet) is sent after `probe_every` (default 1 s),
    /// doubled after every fourth failed probe up to `longest_probe` (default 30 s; a `Retry-After`
    /// is honoured up to it), drawn in the last tenth of the interval. A probe that succeeds
    /// closes it and makes the waiting rows due at once. Before it opens, a row that met a
    /// failure waits a fifth of `probe_every` (or its `Retry-After`), no attempt spent.
    #[must_use]
    pub fn breaker(
        mut self,
        failures: u32,
        probe_every: Duration,
        longest_probe: Duration,
    ) -> Self {
        let probe_every = probe_every.max(Duration::from_millis(10));
        self.options.breaker = crate::flow::BreakerSettings {
            threshold: failures.max(1),
            probe_every,
            longest_probe: longest_probe.max(probe_every),
            ..self.options.breaker
        };
        self
    }

    /// How long a claim holds a row without a heartbeat (default 60 s); the heartbeat is set to
    /// a third of it.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        let lease = lease.max(Duration::from_millis(30));
        self.options.lease = lease;
        self.options.heartbeat = lease / 3;
        self
    }

    /// How often a running row's lease is extended (default a third of the lease; at most
    /// half of it).
    #[must_use]
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.options.heartbeat = every.clamp(Duration::from_millis(10), self.options.lease / 2);
        self
    }

    /// Attempts before a row goes to `dead` (default 12, at least 1).
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.options.max_attempts = n.max(1);
        self
    }

    /// The most times a row may be [snoozed](crate::Snooze) without spending an attempt
    /// (default 24), and the longest one snooze (default 24 h; a longer one is cut to it).
    /// Past `max_snoozes`, a snooze counts as a failed attempt with the snooze's code, so the
    /// row ends dead and visible after the attempts allowed.
    #[must_use]
    pub fn snooze_limits(mut self, max_snoozes: u32, longest: Duration) -> Self {
        self.options.max_snoozes = max_snoozes;
        self.options.longest_snooze = longest;
        self
    }

    /// At most `per_second` handler calls a second from this worker, evenly spaced (default:
    /// no limit; 0 means none), for an EHR that throttles writes. Rows wait for their turn
    /// while leased (the heartbeat keeps their leases). The limit is per worker: a fleet of
    /// `n` workers makes up to `n × per_second` calls a second, so give each worker the EHR's
    /// limit divided by the number of workers.
    #[must_use]
    pub fn rate_limit(mut self, per_second: u32) -> Self {
        self.options.rate_limit = (per_second > 0).then(|| {
            Arc::new(RateLimit {
                every: Duration::from_secs(1) / per_second,
                next: Mutex::new(tokio::time::Instant::now()),
            })
        });
        self
    }

    /// Back-off: the first retry waits up to `base`, doubling per attempt, never more than
    /// `max` (defaults 1 s and 30 min), drawn uniformly below that bound (full jitter).
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.options.base_delay = base;
        self.options.max_delay = max.max(base);
        self
    }

    /// How often an idle worker looks for due rows (default 1 s; deliveries stored by this
    /// process wake it at once).
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.options.poll = every.max(Duration::from_millis(1));
        self
    }

    /// Whether an idle worker also wakes on the store's signal that another process stored a
    /// delivery (Postgres `LISTEN suki_inbox`, on one connection of its own; default `true`),
    /// rather than only at its next poll. The poll stays: it covers a signal lost with a
    /// connection. SQLite has no such signal (deliveries stored by this process wake it).
    #[must_use]
    pub fn listen(mut self, listen: bool) -> Self {
        self.options.listen = listen;
        self
    }

    /// How long shutdown waits for running handlers before releasing their rows (default 30 s).
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.options.grace = grace;
        self
    }

    /// How long done rows (their metadata and timelines) are kept (default 30 days); the
    /// audit log is kept apart, until you purge it.
    #[must_use]
    pub fn retention(mut self, keep: Duration) -> Self {
        self.options.retention = keep;
        self
    }

    /// How long the stored bodies of done rows are kept (default 7 days): after it, a body
    /// (the webhook's ids, links and `additional_info`) is erased while its row's metadata and
    /// timeline stay for the [`retention`](Self::retention). A body retention longer than the
    /// retention changes nothing (the row goes first).
    #[must_use]
    pub fn body_retention(mut self, keep: Duration) -> Self {
        self.options.body_retention = keep;
        self
    }

    /// A stable name for this worker (default `<host>-<pid>-<random>`, new for each run),
    /// shown by `inbox list`. With a stable name, a restarted worker takes back at once the rows
    /// its crashed previous run held, instead of waiting for their leases to expire: give each
    /// live worker its own name (e.g. the host or pod name), never two at once the same.
    #[must_use]
    pub fn owner(mut self, name: impl Into<String>) -> Self {
        self.options.owner = name.into();
        self.options.stable_owner = true;
        self
    }

    /// The worker.
    pub fn build(self) -> InboxWorker {
        let mut breaker = self.options.breaker;
        // A probe outlives neither the row's lease nor the longest back-off.
        breaker.probe_lease = self.options.lease;
        let breakers = Arc::new(crate::flow::Breakers::new(
            self.inbox.clone(),
            self.options.owner.clone(),
            breaker,
            self.options.max_delay,
        ));
        InboxWorker {
            inbox: self.inbox,
            runner: self.runner,
            options: self.options,
            breakers,
        }
    }
}

fn default_owner() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

/// The rows a worker is running: their tasks and leases (to release on shutdown), and the
/// limit on how many at once.
struct Pool {
    tasks: JoinSet<()>,
    limiter: Arc<Mutex<Limiter>>,
    held: Arc<Mutex<HashMap<i64, Lease>>>,
}

impl Pool {
    fn new(worker: &InboxWorker) -> Self {
        Self {
            tasks: JoinSet::new(),
            limiter: Arc::new(Mutex::new(Limiter::new(
                worker.options.concurrency,
                worker.options.max_concurrency,
            ))),
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn room(&self) -> usize {
        lock(&self.limiter).room()
    }

    fn has_room(&self) -> bool {
        self.room() > 0
    }

    /// Claims as many due rows as there is room for and starts them; how many.
    async fn fill(
        &mut self,
        worker: &InboxWorker,
        paused: &[suki_ambient_core::EventKind],
    ) -> Result<usize, StoreError> {
        while self.tasks.try_join_next().is_some() {}
        let room = self.room();
        if room == 0 {
            // Rows may be due that there is no room for: a backlog, if the limit may grow.
            lock(&self.limiter).backlog = true;
            return Ok(0);
        }
        let store = worker.inbox.store_arc();
        let claims = store
            .claim(crate::records::ClaimRequest {
                owner: &worker.options.owner,
                now: worker.inbox.now(),
                lease: worker.options.lease,
                limit: u32::try_from(room).unwrap_or(u32::MAX),
                paused,
            })
            .await;
        worker.inbox.wrote(&claims);
        let claims = claims?;
        let n = claims.len();
        {
            let mut limiter = lock(&self.limiter);
            // A full claim: more rows were due than there was room for.
            limiter.backlog = n == room;
            limiter.running += n;
            crate::metrics::in_flight(limiter.running, limiter.limit());
        }
        for claim in claims {
            lock(&self.held).insert(claim.record.id, claim.lease());
            let held = Arc::clone(&self.held);
            let limiter = Arc::clone(&self.limiter);
            let job = Job {
                inbox: worker.inbox.clone(),
                runner: worker.runner.clone(),
                options: worker.options.clone(),
                breakers: Arc::clone(&worker.breakers),
            };
            self.tasks.spawn(async move {
                let id = claim.record.id;
                // Counted out even when the task is aborted at shutdown.
                let done = Finished(limiter);
                let sample = job.run(claim).await;
                lock(&held).remove(&id);
                lock(&done.0).sample(sample);
            });
        }
        Ok(n)
    }

    /// Waits for running handlers within the grace period, then releases the rows of those
    /// still running.
    /// Waits for the running handlers within the grace period, then releases what is left;
    /// the first release that failed.
    async fn shutdown(mut self, worker: &InboxWorker) -> Result<(), StoreError> {
        let all_done = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(worker.options.grace, all_done)
            .await
            .is_err()
        {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        let leftover: Vec<Lease> = lock(&self.held).drain().map(|(_, l)| l).collect();
        let mut result = Ok(());
        for lease in leftover {
            match worker
                .inbox
                .backend()
                .release(lease, worker.inbox.now())
                .await
            {
                Ok(_) => tracing::info!(
                    id = lease.id,
                    "suki inbox worker released a row at shutdown"
                ),
                Err(err) => {
                    tracing::warn!(id = lease.id, error = %err, "suki inbox worker could not release a row at shutdown; its lease will expire");
                    if result.is_ok() {
                        result = Err(err);
                    }
                }
            }
        }
        result
    }
}

/// Counts a row out of the limiter when its task ends, however it ends.
struct Finished(Arc<Mutex<Limiter>>);

impl Drop for Finished {
    fn drop(&mut self) {
        let mut limiter = lock(&self.0);
        limiter.running = limiter.running.saturating_sub(1);
        crate::metrics::in_flight(limiter.running, limiter.limit());
    }
}

/// How many rows a worker runs at once: fixed, or adaptive (additive increase while rows wait
/// for room and latency holds, multiplicative decrease when a destination fails or latency
/// doubles), like TCP's congestion window or Netflix's `concurrency-limits` AIMD.
#[derive(Debug)]
struct Limiter {
    running: usize,
    limit: f64,
    /// `None`: fixed.
    max: Option<usize>,
    /// The latest claim filled the room: rows are waiting for it.
    backlog: bool,
    /// Growing by one per completion until the first decrease, then by one per round.
    slow_start: bool,
    /// The best latency of this window and of the one before (the baseline).
    best: Option<Duration>,
    best_before: Option<Duration>,
    samples: u32,
    last_decrease: Option<std::time::Instant>,
}

/// Samples per window of the latency baseline.
const WINDOW: u32 = 500;

impl Limiter {
    fn new(start: usize, max: Option<usize>) -> Self {
        Self {
            running: 0,
            limit: start.max(1) as f64,
            max: max.map(|m| m.max(start.max(1))),
            backlog: false,
            slow_start: true,
            best: None,
            best_before: None,
            samples: 0,
            last_decrease: None,
        }
    }

    fn limit(&self) -> usize {
        self.limit as usize
    }

    fn room(&self) -> usize {
        self.limit().saturating_sub(self.running)
    }

    fn baseline(&self) -> Option<Duration> {
        match (self.best, self.best_before) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn sample(&mut self, sample: job::Sample) {
        let Some(max) = self.max else {
            return;
        };
        match sample {
            job::Sample::Nothing => {}
            // A destination failed: fewer at once, but an outage is the breaker's to wait out,
            // so the limit grows back fast (slow start) once it answers again.
            job::Sample::Overloaded => self.decrease(0.9, false),
            job::Sample::Resumed(latency) => {
                self.slow_start = true;
                self.sample(job::Sample::Ran(latency));
            }
            job::Sample::Ran(latency) => {
                let baseline = self.baseline();
                self.samples += 1;
                self.best = Some(self.best.map_or(latency, |b| b.min(latency)));
                if self.samples >= WINDOW {
                    self.samples = 0;
                    self.best_before = self.best.take();
                }
                let rising = baseline
                    .is_some_and(|b| latency > b.saturating_mul(2) + Duration::from_millis(20));
                if rising {
                    self.decrease(0.95, true);
                } else if self.backlog && self.running + 1 >= self.limit() {
                    self.limit += if self.slow_start {
                        1.0
                    } else {
                        1.0 / self.limit
                    };
                    self.limit = self.limit.min(max as f64);
                }
            }
        }
    }

    /// Shrinks the limit by `factor`, at most once per baseline latency (and at least a
    /// second apart: the rows that failed together count once); `settle` ends the slow start
    /// (latency rose: the limit is found).
    fn decrease(&mut self, factor: f64, settle: bool) {
        let now = std::time::Instant::now();
        let every = self
            .baseline()
            .unwrap_or(Duration::from_millis(100))
            .max(Duration::from_secs(1));
        if self
            .last_decrease
            .is_some_and(|at| now.duration_since(at) < every)
        {
            return;
        }
        self.last_decrease = Some(now);
        if settle {
            self.slow_start = false;
        }
        self.limit = (self.limit * factor).max(1.0);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wakes the inbox's idle workers on each signal of the store (another process stored a
/// delivery); subscribes again a poll interval after the subscription fails.
async fn listen(inbox: Inbox, pause: Duration) {
    // A subscription that keeps failing (e.g. LISTEN refused by a pooler in transaction mode)
    // is tried again less and less often, up to once a minute, so that it warns without
    // flooding the log; the poll carries the work meanwhile.
    let mut wait = pause.max(Duration::from_millis(100));
    loop {
        match inbox.backend().subscribe().await {
            Ok(None) => return,
            Ok(Some(mut wakeups)) => {
                wait = pause.max(Duration::from_millis(100));
                loop {
                    match wakeups.wait().await {
                        Ok(()) => inbox.wake().notify_waiters(),
                        Err(err) => {
                            tracing::warn!(error = %err, "suki inbox worker lost its wake-up subscription; polling until it is back");
                            break;
                        }
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?wait, "suki inbox worker could not subscribe to wake-ups; polling");
            }
        }
        // Whatever the lost subscription announced, the poll finds.
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LISTEN_RETRY_CAP);
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Extends the lease every `every` until aborted.
async fn heartbeat(
    store: Arc<dyn Store>,
    inbox: Inbox,
    lease: Lease,
    every: Duration,
    length: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let until = UnixMillis(
            inbox
                .now()
                .0
                .saturating_add(suki_ambient_core::time::millis(length)),
        );
        match store.heartbeat(lease, until).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(id = lease.id, "suki inbox lease lost during processing");
                return;
            }
            Err(err) => tracing::warn!(id = lease.id, error = %err, "suki inbox heartbeat failed"),
        }
    }
}

/// The delay before attempt `attempt + 1`: uniform in `[0, min(max, base · 2^(attempt-1))]`
/// (full jitter), and at least `retry_after` (itself capped by `max`).
pub fn backoff(
    attempt: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = attempt.saturating_sub(1).min(63);
    let bound = base
        .checked_mul(1u32.checked_shl(exp.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    let jittered = bound.mul_f64(fastrand::f64());
    match retry_after {
        Some(after) => jittered.max(after.min(max)),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On tokio's paused clock a call starts exactly at its slot: one per `every`, no burst,
    /// and a limiter left idle does not save up calls.
    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_spaces_calls_evenly() {
        let limit = Arc::new(RateLimit {
            every: Duration::from_millis(50),
            next: Mutex::new(tokio::time::Instant::now()),
        });
        let start = tokio::time::Instant::now();
        let mut calls = JoinSet::new();
        for _ in 0..5 {
            let limit = Arc::clone(&limit);
            calls.spawn(async move {
                limit.wait().await;
                tokio::time::Instant::now()
            });
        }
        let mut at: Vec<Duration> = calls.join_all().await.iter().map(|t| *t - start).collect();
        at.sort();
        let ms: Vec<u128> = at.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 50, 100, 150, 200]);
        // Idle for a second: the next call goes at once, the one after 50 ms later.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = tokio::time::Instant::now();
        limit.wait().await;
        limit.wait().await;
        assert_eq!((tokio::time::Instant::now() - idle).as_millis(), 50);
    }
}
