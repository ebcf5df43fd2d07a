//! `Reconciler`: recovers every session whose webhook never arrived by polling Suki's status API
//! for the sessions the integrator said it expects.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use suki_ambient_client::AmbientClient;
use suki_ambient_core::api::SessionStatus;
use suki_ambient_core::{
    ErrorCode, EventKind, Links, SessionCompleted, SessionEnded, SessionFailed, WebhookEvent,
};

use crate::expect::{CheckOutcome, ExpectationRecord, ExpectedSession, FinishedCheck, SessionKind};
use crate::{Inbox, StoreError, worker::backoff};
use crate::{records::NewDelivery, records::Source};

const DEFAULT_GRACE: Duration = Duration::from_secs(5 * 60);
const DEFAULT_BASE: Duration = Duration::from_secs(30);
const DEFAULT_CAP: Duration = Duration::from_secs(15 * 60);
const DEFAULT_GIVE_UP: Duration = Duration::from_secs(24 * 60 * 60);
const DEFAULT_CONCURRENCY: usize = 4;
/// How long a pass holds the expectations it claimed: long enough for a whole pass of
/// [`PASS_ROUNDS`] rounds of checks that each time out.
const DEFAULT_LEASE: Duration = Duration::from_secs(5 * 60);
/// A pass claims this many times `concurrency` expectations (at most [`MAX_PASS`]) and checks
/// them `concurrency` at a time, so that its bookkeeping (claim, store the ended sessions'
/// events, record the checks: three commits) is shared by many sessions.
const PASS_ROUNDS: usize = 16;
const MAX_PASS: usize = 256;
const MIN_RECHECK: Duration = Duration::from_secs(1);
/// The most characters of a polled status kept.
const STATUS_TEXT: usize = 64;

/// The event kind a polled status stands for, or `None` while the session has not ended in a
/// way a webhook reports: [`SessionStatus::event_kind`], the same status table the webhook's
/// `status` goes through ([`EventKind::from_status`]): `completed` → completed, `failed` → failed,
/// `aborted`/`cancelled`/`canceled`/`cancel` → cancelled, `timeout`/`timed_out`/`time_out`/… →
/// timed out; anything else (`created`, `ready`, `running`, `paused`, `skipped`, `staged`, new
/// values) is checked again.
pub fn polled_kind(status: &SessionStatus) -> Option<EventKind> {
    status.event_kind()
}

/// The event a webhook would have carried for an ended session: links from core's route table,
/// no error detail for a failure (the status API gives none: `error_code` is `UNKNOWN`).
pub fn polled_event(expected: &ExpectationRecord, kind: EventKind) -> Option<WebhookEvent> {
    let session_id = expected.session_id.clone();
    let encounter_id = expected.encounter_id.clone();
    let ended = |status: &str| SessionEnded {
        status: status.to_owned(),
        session_id: session_id.clone(),
        encounter_id: encounter_id.clone(),
        additional_info: None,
    };
    Some(match kind {
        EventKind::Completed => WebhookEvent::Completed(SessionCompleted {
            links: match expected.kind {
                SessionKind::Ambient => Links::for_session(&session_id, &encounter_id),
                SessionKind::FormFilling => Links::for_form_filling(&session_id),
            },
            sessions: vec![session_id.clone()],
            session_id,
            encounter_id,
            additional_info: None,
        }),
        EventKind::Failed => WebhookEvent::Failed(SessionFailed {
            session_id,
            encounter_id,
            error_code: ErrorCode::Other("UNKNOWN".to_owned()),
            error_detail: String::new(),
        }),
        EventKind::TimedOut => WebhookEvent::TimedOut(ended("timeout")),
        EventKind::Cancelled => WebhookEvent::Cancelled(ended("cancelled")),
        _ => return None,
    })
}

type GaveUpCallback = Arc<dyn Fn(&ExpectationRecord) + Send + Sync>;
type CheckCallback = Arc<dyn Fn(&ExpectationRecord, &CheckOutcome) + Send + Sync>;

/// Recovers sessions whose webhook never arrived: tell it which sessions you expect
/// ([`register`](Self::register)); after a grace period it polls the status of those no webhook
/// resolved, and an ended one's event goes into the inbox with `source = poll` and the same
/// deduplication key as its webhook, so the handler runs once whichever arrives first.
///
/// Cheap to clone (its parts are shared): keep one where your application submits sessions,
/// to [`register`](Self::register) them, and [`spawn`](Self::spawn) a clone to poll.
#[derive(Clone)]
pub struct Reconciler {
    client: AmbientClient,
    inbox: Inbox,
    grace: Duration,
    base: Duration,
    cap: Duration,
    give_up: Duration,
    concurrency: usize,
    lease: Duration,
    owner: String,
    on_gave_up: Option<GaveUpCallback>,
    on_check: Option<CheckCallback>,
}

impl fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconciler")
            .field("grace", &self.grace)
            .field("give_up", &self.give_up)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// What one [`Reconciler::check_due`] pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Status checks made.
    pub checked: u64,
    /// Sessions found ended whose event this pass stored (recovered).
    pub recovered: u64,
    /// Sessions found ended whose event was already in the inbox.
    pub already_stored: u64,
    /// Sessions not ended yet (or not found, or Suki unavailable): checked again later.
    pub again: u64,
    /// Sessions given up.
    pub gave_up: u64,
}

/// Builds a [`Reconciler`]: `Reconciler::builder(client, inbox)…build()`.
#[must_use = "a ReconcilerBuilder does nothing until .build()"]
pub struct ReconcilerBuilder {
    reconciler: Reconciler,
}

impl fmt::Debug for ReconcilerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconcilerBuilder")
            .field("reconciler", &self.reconciler)
            .finish()
    }
}

impl Reconciler {
    /// A reconciler polling through `client`, storing into `inbox`. Defaults: grace 5 min,
    /// back-off 30 s doubling up to 15 min (full jitter), give up after 24 h, 4 checks at once.
    ///
    /// Each check is one request: `client`'s retries are not used (a check that fails, a `429`
    /// with `Retry-After: 30` included, is rescheduled with the reconciler's back-off instead of
    /// holding the pass while it waits).
    pub fn builder(client: AmbientClient, inbox: Inbox) -> ReconcilerBuilder {
        ReconcilerBuilder {
            reconciler: Self {
                client: client.with_retry(suki_ambient_client::RetryPolicy::none()),
                inbox,
                grace: DEFAULT_GRACE,
                base: DEFAULT_BASE,
                cap: DEFAULT_CAP,
                give_up: DEFAULT_GIVE_UP,
                concurrency: DEFAULT_CONCURRENCY,
                lease: DEFAULT_LEASE,
                owner: format!(
                    "reconciler-{}-{:08x}",
                    std::process::id(),
                    fastrand::u32(..)
                ),
                on_gave_up: None,
                on_check: None,
            },
        }
    }
}

impl ReconcilerBuilder {
    /// How long after a session ended its status is first checked (default 5 min).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.reconciler.grace = grace;
        self
    }

    /// Back-off between checks: up to `base` doubling per check, capped at `max`, full jitter,
    /// never less than a second (defaults 30 s and 15 min).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.reconciler.base = base;
        self.reconciler.cap = max.max(base);
        self
    }

    /// How long after a session ended it is given up (default 24 h).
    pub fn give_up_after(mut self, age: Duration) -> Self {
        self.reconciler.give_up = age;
        self
    }

    /// How many sessions are checked at once (default 4, at least 1). A pass claims up to 16
    /// times as many (at most 256) and records them together.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.reconciler.concurrency = n.max(1);
        self
    }

    /// Called for each expectation given up (also logged at WARN).
    pub fn on_gave_up(
        mut self,
        callback: impl Fn(&ExpectationRecord) + Send + Sync + 'static,
    ) -> Self {
        self.reconciler.on_gave_up = Some(Arc::new(callback));
        self
    }

    /// Called after each status check with what it concluded (e.g. to show progress).
    pub fn on_check(
        mut self,
        callback: impl Fn(&ExpectationRecord, &CheckOutcome) + Send + Sync + 'static,
    ) -> Self {
        self.reconciler.on_check = Some(Arc::new(callback));
        self
    }

    /// The reconciler.
    pub fn build(self) -> Reconciler {
        self.reconciler
    }
}

impl Reconciler {
    /// Registers `session` as expected to end with a webhook; its status is first checked a
    /// grace period after it ended, unless its webhook reaches the inbox first. `false` when it
    /// was already registered.
    pub async fn register(&self, session: ExpectedSession) -> Result<bool, StoreError> {
        let first_check = session.ended_at.saturating_add(self.grace);
        self.inbox.register_expected(&session, first_check).await
    }

    /// Runs on a new task: checks what is due every `every` (e.g. 30 s) until
    /// [`ReconcilerHandle::shutdown`], which lets the checks under way finish. A failing store
    /// is logged and retried at the next round.
    pub fn spawn(self, every: Duration) -> ReconcilerHandle {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let every = every.max(Duration::from_millis(10));
        let task = tokio::spawn(async move {
            loop {
                match self.check_due().await {
                    Ok(report) if report.checked > 0 => tracing::info!(
                        checked = report.checked,
                        recovered = report.recovered,
                        gave_up = report.gave_up,
                        "suki reconciler checked due sessions"
                    ),
                    Ok(_) => {}
                    Err(err) => {
                        tracing::error!(error = %err, "suki reconciler could not check due sessions; retrying")
                    }
                }
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
        ReconcilerHandle { stop, task }
    }

    /// Checks every expectation that is due now, `concurrency` at a time, until none is.
    pub async fn check_due(&self) -> Result<CheckReport, StoreError> {
        let mut report = CheckReport::default();
        loop {
            let claims = self
                .inbox
                .backend()
                .claim_expectations(crate::records::ClaimRequest {
                    owner: &self.owner,
                    now: self.inbox.now(),
                    lease: self.lease,
                    limit: u32::try_from((self.concurrency * PASS_ROUNDS).min(MAX_PASS))
                        .unwrap_or(u32::MAX),
                    paused: &[],
                })
                .await?;
            if claims.is_empty() {
                return Ok(report);
            }
            // `concurrency` checks at a time; each ended session's event is stored as soon as its
            // check ends (concurrent ones share a group commit), never held for the pass's
            // slowest check.
            let claimed = &claims;
            let mut outcomes: Vec<(usize, (CheckOutcome, bool))> =
                futures_util::stream::iter(0..claims.len())
                    .map(|i| async move {
                        let polled = self.check(&claimed[i]).await;
                        (i, self.store_ended(&claimed[i], polled).await)
                    })
                    .buffer_unordered(self.concurrency)
                    .collect()
                    .await;
            outcomes.sort_by_key(|(i, _)| *i);
            let mut finished = Vec::with_capacity(claims.len());
            for (claim, (_, (outcome, recorded))) in claims.iter().zip(outcomes) {
                report.checked += 1;
                match &outcome {
                    CheckOutcome::Recovered { .. } => report.recovered += 1,
                    CheckOutcome::AlreadyStored { .. } => report.already_stored += 1,
                    CheckOutcome::GaveUp { .. } => {
                        report.gave_up += 1;
                        tracing::warn!(session_id = %claim.session_id, checks = claim.checks, "suki reconciler gave up on a session that never ended");
                        if let Some(callback) = &self.on_gave_up {
                            callback(claim);
                        }
                    }
                    CheckOutcome::Again { .. } => report.again += 1,
                }
                crate::metrics::check(&outcome);
                if let Some(callback) = &self.on_check {
                    callback(claim, &outcome);
                }
                if !recorded {
                    finished.push(FinishedCheck {
                        lease: claim.lease(),
                        outcome,
                    });
                }
            }
            // The pass's bookkeeping in one transaction.
            let recorded = self
                .inbox
                .backend()
                .finish_checks(self.inbox.now(), &finished)
                .await?;
            for (check, recorded) in finished.iter().zip(recorded) {
                if !recorded {
                    tracing::warn!(session_id = %check.lease.session_id, "suki reconciler lost its lease on an expectation");
                }
            }
        }
    }

    /// Re-checks now every expectation of a session that ended within `window` before now and
    /// that no stored event resolved (given-up ones included), then checks what is due.
    pub async fn sweep(&self, window: Duration) -> Result<CheckReport, StoreError> {
        let now = self.inbox.now();
        let since = now.saturating_sub(window);
        self.inbox.backend().sweep(since, now).await?;
        self.check_due().await
    }

    /// Polls one expected session's status.
    async fn check(&self, expected: &ExpectationRecord) -> Polled {
        let id = expected.session_id.clone();
        let client = match &expected.provider_id {
            Some(provider) => match self.client.for_provider(provider) {
                Ok(client) => client,
                Err(_) => return Polled::Checked(self.again(expected, "invalid_provider_id")),
            },
            None => self.client.clone(),
        };
        let status = match expected.kind {
            SessionKind::Ambient => client.session_status(&id).await,
            SessionKind::FormFilling => client.form_filling_status(&id).await,
        };
        let seen = match status {
            // The status is the API's text: kept (in `last_status`, the logs, the CLI) as a
            // short, printable value only.
            Ok(answer) => match polled_kind(&answer.status).and_then(|k| polled_event(expected, k))
            {
                Some(mut event) => {
                    self.restore_context(expected, &mut event);
                    let status = crate::display::clean(answer.status.as_str(), STATUS_TEXT);
                    return Polled::Ended(Box::new(event), status);
                }
                None => crate::display::clean(answer.status.as_str(), STATUS_TEXT),
            },
            Err(err) => err
                .status()
                .map_or_else(|| "unreachable".to_owned(), |s| s.to_string()),
        };
        Polled::Checked(self.again(expected, &seen))
    }

    /// Gives a recovered event the partner's context registered with its session, as the
    /// webhook would have carried it. A context that does not open (its key is no longer
    /// held) is said with a WARN and left out: the handler then sees the event without it.
    fn restore_context(&self, expected: &ExpectationRecord, event: &mut WebhookEvent) {
        let Some(sealed) = &expected.context else {
            return;
        };
        let info = self
            .inbox
            .open_context(expected.session_id.as_str(), sealed.as_bytes())
            .and_then(|plain| {
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&plain).ok()
            });
        let Some(info) = info else {
            tracing::warn!(
                session_id = %expected.session_id,
                "suki reconciler: the session's registered context does not open (its key is not held); the recovered event goes without it"
            );
            return;
        };
        match event {
            WebhookEvent::Completed(done) => done.additional_info = Some(info),
            WebhookEvent::TimedOut(ended) | WebhookEvent::Cancelled(ended) => {
                ended.additional_info = Some(info);
            }
            _ => {}
        }
    }

    /// Stores the event of a session a check found ended (it resolves its expectation as
    /// `poll` through the store's rule; concurrent ones share the inbox's group commit); what
    /// the check concluded, and whether storing its event already recorded it.
    async fn store_ended(
        &self,
        expected: &ExpectationRecord,
        polled: Polled,
    ) -> (CheckOutcome, bool) {
        let (event, status) = match polled {
            Polled::Checked(checked) => return (checked, false),
            Polled::Ended(event, status) => (event, status),
        };
        let now = self.inbox.now();
        let delivery = NewDelivery {
            dedup_key: crate::inbox::event_key(expected.session_id.as_str(), event.kind()),
            source: Source::Poll,
            kind: event.kind(),
            session_id: Some(expected.session_id.clone()),
            encounter_id: Some(expected.encounter_id.clone()),
            generated_at: now,
            received_at: now,
            body: event.to_vec().into(),
            key_id: None,
        };
        match self.inbox.ingest(delivery).await {
            // The insert resolved the expectation with the event's kind as its status (the
            // store's rule and migration 0005/0006's trigger): nothing left to record unless
            // Suki spelled the status otherwise.
            Ok(suki_ambient_core::Stored::Accepted) => {
                let recorded = status == event.kind().as_str();
                (CheckOutcome::Recovered { status }, recorded)
            }
            Ok(_) => (CheckOutcome::AlreadyStored { status }, false),
            Err(err) => {
                tracing::warn!(error = %err, session_id = %expected.session_id, "suki reconciler could not store a polled event");
                (self.again(expected, "store_error"), false)
            }
        }
    }

    fn again(&self, expected: &ExpectationRecord, seen: &str) -> CheckOutcome {
        let now = self.inbox.now();
        let age = now.0.saturating_sub(expected.ended_at.0);
        if age >= suki_ambient_core::time::millis(self.give_up) {
            return CheckOutcome::GaveUp {
                status: seen.to_owned(),
            };
        }
        // Full jitter, but never sooner than a second: a pass must not poll the same session
        // again straight away (it checks until nothing is due).
        let delay = backoff(expected.checks, self.base, self.cap, None).max(MIN_RECHECK);
        CheckOutcome::Again {
            status: seen.to_owned(),
            next_check: now.saturating_add(delay),
        }
    }
}

/// A running [`Reconciler`].
#[derive(Debug)]
pub struct ReconcilerHandle {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ReconcilerHandle {
    /// Stops after the round under way.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What a status poll found, before the pass stores the ended sessions' events.
enum Polled {
    /// Ended: the event a webhook would have carried, and the status seen.
    Ended(Box<WebhookEvent>, String),
    /// Not ended (or the poll failed): what to record.
    Checked(CheckOutcome),
}
