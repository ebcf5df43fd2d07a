//! What the worker calls: `InboxHandler` (any async closure works), `FetchResults`, and the
//! errors that tell the worker to give up or when to try again.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use suki_ambient_client::{AmbientClient, ClientError, SessionResults};
use suki_ambient_core::{
    EventKind, HandlerError, LinkKind, SessionCompleted, SessionEnded, SessionFailed, UnixMillis,
    UnknownEvent, WebhookEvent,
};

use crate::records::Source;

/// What the worker knows about the row it is processing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboxMeta {
    /// The row id (`suki-ambient inbox show ID`).
    pub id: i64,
    /// The deduplication key: `<session id>/<kind>`, or `delivery/<replay key>`.
    pub dedup_key: String,
    /// Where the event came from: a webhook, or a status poll of the reconciler.
    pub source: Source,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// The event's authenticated `generated-at` (for a polled event, when it was polled).
    pub generated_at: UnixMillis,
    /// When the inbox stored it.
    pub received_at: UnixMillis,
    /// What this attempt fetched, for the row's timeline (written by [`FetchResults`]).
    pub(crate) fetched: FetchLog,
    /// What the handler did, for the row's timeline ([`record`](Self::record)).
    pub(crate) outcome: FetchLog,
    /// The links an earlier attempt fetched, and what this one fetched (kept if it fails).
    pub(crate) kept: FetchedLinks,
    /// The worker's breakers, and the destinations this attempt reached.
    pub(crate) passage: crate::flow::Passage,
}

impl InboxMeta {
    /// Where the event came from.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Records what the handler did with the row (`DocumentReference/12 created, Condition/7
    /// matched`), for the row's timeline: `suki-ambient inbox trace`, `--json` and the console
    /// show it with the attempt, whether it ended done or failed. A later call replaces an
    /// earlier one. Ids, statuses and codes only, never content: the text is kept to printable
    /// ASCII and 2,000 characters.
    pub fn record(&self, outcome: &str) {
        let clean: String = outcome
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
            .take(MAX_OUTCOME)
            .collect();
        self.outcome.set(clean);
    }

    /// Asks the worker's breaker for `destination` (`suki`, `ehr:<host>`, or a name of your
    /// own) before calling it: `Ok` when it may be called now (it answers, or this attempt is
    /// the one probe the fleet sends while it is down); [`Unavailable`](crate::Unavailable)
    /// when it is down, which the handler returns as its error, so that the row waits for the
    /// destination without spending an attempt and nothing is sent. The worker counts a
    /// destination the attempt reached as answering unless the attempt ends `Unavailable` for
    /// it. [`FetchResults`] and `FhirWriteBack` ask for theirs.
    pub async fn reach(&self, destination: &str) -> Result<(), crate::Unavailable> {
        self.passage.enter(destination).await
    }

    /// What the attempt fetched and what the handler recorded, as the row's attempt detail.
    pub(crate) fn take_detail(&self) -> Option<String> {
        match (self.fetched.take(), self.outcome.take()) {
            (Some(fetched), Some(outcome)) => Some(format!("{fetched}; {outcome}")),
            (fetched, outcome) => fetched.or(outcome),
        }
    }
}

/// The longest outcome [`InboxMeta::record`] keeps, in characters.
pub(crate) const MAX_OUTCOME: usize = 2_000;

/// What an attempt fetched: links and their answers (`contents 200, transcripts 503`), shared
/// between the handler's copy of [`InboxMeta`] and the worker. Compares equal always: it is
/// a record of the attempt, not part of the row's identity.
#[derive(Clone, Default)]
pub(crate) struct FetchLog(Arc<Mutex<Option<String>>>);

impl FetchLog {
    pub(crate) fn set(&self, detail: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(detail);
    }

    pub(crate) fn take(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl PartialEq for FetchLog {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for FetchLog {}

impl fmt::Debug for FetchLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FetchLog")
    }
}

/// The JSON of a completed session's links: what an earlier attempt of the row fetched (given to
/// [`FetchResults`] so that it does not fetch them again), and what this attempt fetched (kept
/// by the worker, sealed like the body, when the attempt fails). Compares equal always.
#[derive(Clone, Default)]
pub(crate) struct FetchedLinks(Arc<Mutex<FetchedParts>>);

#[derive(Default)]
struct FetchedParts {
    earlier: Vec<(LinkKind, bytes::Bytes)>,
    now: Vec<(LinkKind, bytes::Bytes)>,
}

impl FetchedLinks {
    fn lock(&self) -> std::sync::MutexGuard<'_, FetchedParts> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_earlier(&self, links: Vec<(LinkKind, bytes::Bytes)>) {
        self.lock().earlier = links;
    }

    fn earlier(&self) -> Vec<(LinkKind, bytes::Bytes)> {
        self.lock().earlier.clone()
    }

    fn set_now(&self, links: Vec<(LinkKind, bytes::Bytes)>) {
        self.lock().now = links;
    }

    /// What this attempt fetched, encoded (`None` when nothing): each link's key (a byte of
    /// length, then the key) and its JSON (four bytes of length, big-endian, then the JSON).
    pub(crate) fn take_now(&self) -> Option<Vec<u8>> {
        let links = std::mem::take(&mut self.lock().now);
        if links.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(links.iter().map(|(_, b)| b.len() + 32).sum());
        for (kind, body) in links {
            let key = kind.key().as_bytes();
            out.push(u8::try_from(key.len()).ok()?);
            out.extend_from_slice(key);
            out.extend_from_slice(&u32::try_from(body.len()).ok()?.to_be_bytes());
            out.extend_from_slice(&body);
        }
        Some(out)
    }

    /// [`take_now`](Self::take_now)'s encoding read back; `None` when it is not one.
    pub(crate) fn decode(mut bytes: &[u8]) -> Option<Vec<(LinkKind, bytes::Bytes)>> {
        let mut links = Vec::new();
        while let Some((&len, rest)) = bytes.split_first() {
            let (key, rest) = rest.split_at_checked(usize::from(len))?;
            let kind = LinkKind::from_key(std::str::from_utf8(key).ok()?)?;
            let (size, rest) = rest.split_at_checked(4)?;
            let size = usize::try_from(u32::from_be_bytes(size.try_into().ok()?)).ok()?;
            let (body, rest) = rest.split_at_checked(size)?;
            links.push((kind, bytes::Bytes::copy_from_slice(body)));
            bytes = rest;
        }
        Some(links)
    }
}

impl PartialEq for FetchedLinks {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for FetchedLinks {}

impl fmt::Debug for FetchedLinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FetchedLinks")
    }
}

/// What the worker does with each stored event. Return `Ok` when it is processed; an error
/// retries the row later (with back-off) unless it is [`Permanent`]; [`RetryAfter`] sets the
/// earliest next attempt; a [`ClientError`] retries when
/// [`is_retryable`](ClientError::is_retryable) and is permanent otherwise.
///
/// It runs at least once per stored event (more often only after a crash or a lost lease), so
/// make its effect idempotent, e.g. keyed by [`InboxMeta::dedup_key`]; on Postgres the
/// `TransactionalHandler` makes the effect exactly-once.
///
/// Any `Fn(WebhookEvent, InboxMeta) -> impl Future<Output = Result<(), HandlerError>>` is one.
#[async_trait]
pub trait InboxHandler: Send + Sync + 'static {
    /// Processes one event.
    async fn handle(&self, event: WebhookEvent, meta: InboxMeta) -> Result<(), HandlerError>;
}

#[async_trait]
impl<F, Fut> InboxHandler for F
where
    F: Fn(WebhookEvent, InboxMeta) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    async fn handle(&self, event: WebhookEvent, meta: InboxMeta) -> Result<(), HandlerError> {
        self(event, meta).await
    }
}

#[async_trait]
impl<T: InboxHandler + ?Sized> InboxHandler for Arc<T> {
    async fn handle(&self, event: WebhookEvent, meta: InboxMeta) -> Result<(), HandlerError> {
        (**self).handle(event, meta).await
    }
}

/// A handler error that must not be retried: the row goes to `dead` with `code` (a constant,
/// so that no content can reach the stored error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permanent(pub &'static str);

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "permanent failure: {}", self.0)
    }
}

impl std::error::Error for Permanent {}

/// A handler error to retry no sooner than `after` (e.g. a `Retry-After` the handler saw);
/// capped by the worker's maximum back-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter {
    /// The earliest next attempt, from now.
    pub after: Duration,
    /// The error code stored with the row (a constant).
    pub code: &'static str,
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (retry after {:?})", self.code, self.after)
    }
}

impl std::error::Error for RetryAfter {}

/// A handler error with a code made at run time, e.g. from another API the handler calls
/// (`fhir_503_transient`): retried with back-off, or, when [`permanent`](Self::permanent), a
/// dead letter at once. The code is cleaned before it is stored (64 characters of
/// `[A-Za-z0-9_.-]`), so that no content can reach the row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coded {
    code: String,
    permanent: bool,
    retry_after: Option<Duration>,
}

impl Coded {
    /// A failure worth retrying, with `code`.
    pub fn retryable(code: &str) -> Self {
        Self {
            code: code
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                .take(64)
                .collect(),
            permanent: false,
            retry_after: None,
        }
    }

    /// A failure not worth retrying (the row becomes a dead letter), with `code`.
    pub fn permanent(code: &str) -> Self {
        Self {
            permanent: true,
            ..Self::retryable(code)
        }
    }

    /// Retry no sooner than `after` (a `Retry-After` the handler saw; capped by the worker's
    /// maximum back-off).
    #[must_use]
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The cleaned code.
    pub fn code(&self) -> &str {
        &self.code
    }
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.permanent {
            "permanent"
        } else {
            "retryable"
        };
        write!(f, "{kind} failure: {}", self.code)
    }
}

impl std::error::Error for Coded {}

/// A handler's answer: not now, try this row again after `after`, **without spending an
/// attempt** (e.g. the encounter is not open in the EHR yet). The worker bounds it: each snooze
/// is capped ([`InboxWorkerBuilder::snooze_limits`](crate::InboxWorkerBuilder::snooze_limits),
/// default 24 h), and past the most snoozes a row may take (default 24) a snooze counts as a
/// failed attempt, so that the row ends dead and visible rather than snoozing forever. Each
/// snooze is in the row's timeline with its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snooze {
    /// How long from now.
    pub after: Duration,
    /// Why, stored as the row's code (a constant: `encounter_not_open`).
    pub reason: &'static str,
}

impl Snooze {
    /// Try again after `after`, for `reason` (a constant code).
    pub fn new(after: Duration, reason: &'static str) -> Self {
        Self { after, reason }
    }
}

impl fmt::Display for Snooze {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snoozed for {:?}: {}", self.after, self.reason)
    }
}

impl std::error::Error for Snooze {}

/// How the worker treats a handler's error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Stored as the row's last error: a code and a status, never content.
    pub(crate) code: String,
    pub(crate) permanent: bool,
    pub(crate) retry_after: Option<Duration>,
    /// The handler snoozed the row for this long.
    pub(crate) snooze: Option<Duration>,
    /// A destination the row needs is unavailable: the row waits for it, no attempt spent.
    pub(crate) waiting_for: Option<String>,
    /// The breaker said so before any request: the row waits until then.
    pub(crate) gated_until: Option<UnixMillis>,
}

impl Failure {
    pub(crate) fn retryable(code: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            permanent: false,
            retry_after: None,
            snooze: None,
            waiting_for: None,
            gated_until: None,
        }
    }

    pub(crate) fn permanent(code: impl Into<String>) -> Self {
        Self {
            permanent: true,
            ..Self::retryable(code)
        }
    }

    /// The row waits for `destination`.
    pub(crate) fn unavailable(u: &crate::Unavailable) -> Self {
        Self {
            retry_after: u.retry_after_value(),
            waiting_for: Some(u.destination().to_owned()),
            gated_until: u.gated_until(),
            ..Self::retryable(u.code())
        }
    }

    /// Classifies a handler's error (its text is never stored: it may hold content).
    pub(crate) fn classify(err: &HandlerError) -> Self {
        if let Some(link) = Self::from_link(err) {
            return link;
        }
        if let Some(u) = err.downcast_ref::<crate::Unavailable>() {
            return Self::unavailable(u);
        }
        if let Some(p) = err.downcast_ref::<Permanent>() {
            return Self::permanent(p.0);
        }
        if let Some(r) = err.downcast_ref::<RetryAfter>() {
            return Self {
                retry_after: Some(r.after),
                ..Self::retryable(r.code)
            };
        }
        if let Some(z) = err.downcast_ref::<Snooze>() {
            return Self {
                snooze: Some(z.after),
                ..Self::retryable(z.reason)
            };
        }
        if let Some(c) = err.downcast_ref::<ClientError>() {
            return Self::client(c);
        }
        if let Some(c) = err.downcast_ref::<Coded>() {
            let code = if c.code.is_empty() {
                "handler_failed"
            } else {
                c.code.as_str()
            };
            return Self {
                permanent: c.permanent,
                retry_after: c.retry_after,
                ..Self::retryable(code)
            };
        }
        Self::retryable("handler_failed")
    }

    fn client(err: &ClientError) -> Self {
        Self {
            permanent: !err.is_retryable(),
            waiting_for: err.is_outage().then(|| SUKI.to_owned()),
            retry_after: err.retry_after(),
            ..Self::retryable(format!("client_{}", client_code(err)))
        }
    }
}

/// A client error as a short code: `<status>_<error id>` when the server answered
/// (`401_invalid_sdp_token`), else what failed (`timeout`, `transport`, `decode`, …). Never
/// content: the error id is kept to 40 identifier characters.
fn client_code(err: &ClientError) -> String {
    match (err.status(), err.code()) {
        (Some(status), Some(code)) if !sanitize(code).is_empty() => {
            format!("{status}_{}", sanitize(code))
        }
        (Some(status), _) => status.to_string(),
        _ => match err {
            ClientError::Timeout { .. } => "timeout",
            ClientError::Transport { .. } => "transport",
            ClientError::Decode { .. } => "decode",
            ClientError::InvalidLink { .. } => "invalid_link",
            ClientError::Redirect { .. } => "redirect",
            ClientError::ResponseTooLarge { .. } => "response_too_large",
            ClientError::InvalidId => "invalid_id",
            ClientError::Config { .. } => "config",
            _ => "error",
        }
        .to_owned(),
    }
}

/// An error id from a server, kept to a short identifier.
fn sanitize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

/// What [`FetchResults`] calls, once per stored event. Every kind of event is handled on
/// purpose: a completed session reaches [`on_results`](Self::on_results) with the results its
/// links point to; a failed, timed-out or cancelled session (a note that will never come) must be
/// handled too, so the compiler asks for [`on_failed`](Self::on_failed) and
/// [`on_ended`](Self::on_ended); a status this SDK does not know goes to
/// [`on_unknown`](Self::on_unknown), which by default makes the row a dead letter
/// (`unknown_status`) that an upgrade can retry.
///
/// # Example
///
/// ```
/// use suki_ambient_client::SessionResults;
/// use suki_ambient_core::{
///     EventKind, HandlerError, SessionCompleted, SessionEnded, SessionFailed, async_trait,
/// };
/// use suki_ambient_inbox::{InboxMeta, ResultsHandler};
///
/// struct Notes;
///
/// #[async_trait]
/// impl ResultsHandler for Notes {
///     async fn on_results(
///         &self,
///         done: SessionCompleted,
///         results: SessionResults,
///         meta: InboxMeta,
///     ) -> Result<(), HandlerError> {
///         // Write the note to the EHR, keyed by meta.dedup_key (it runs at least once).
///         let _ = (done, results, meta);
///         Ok(())
///     }
///
///     async fn on_failed(&self, failed: SessionFailed, _meta: InboxMeta) -> Result<(), HandlerError> {
///         // No note will come: tell the clinician (ids and codes only in logs).
///         tracing::warn!(session = %failed.session_id, code = %failed.error_code, "session failed");
///         Ok(())
///     }
///
///     async fn on_ended(
///         &self,
///         kind: EventKind,
///         ended: SessionEnded,
///         _meta: InboxMeta,
///     ) -> Result<(), HandlerError> {
///         tracing::warn!(session = %ended.session_id, %kind, "session ended without a note");
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait ResultsHandler: Send + Sync + 'static {
    /// A completed session and its fetched results. Every link the handler requires (by
    /// default every link the event carries; see [`FetchResults::optional`]) was fetched:
    /// a required link that failed retryably has made the worker retry the row, and one that
    /// failed permanently has made it a dead letter, so an error in `results` is one of an
    /// optional link.
    async fn on_results(
        &self,
        event: SessionCompleted,
        results: SessionResults,
        meta: InboxMeta,
    ) -> Result<(), HandlerError>;

    /// A failed session (`status: "failure"`): no note will come.
    async fn on_failed(&self, event: SessionFailed, meta: InboxMeta) -> Result<(), HandlerError>;

    /// A session that timed out (`kind` [`EventKind::TimedOut`]) or was cancelled
    /// ([`EventKind::Cancelled`]): no note will come.
    async fn on_ended(
        &self,
        kind: EventKind,
        event: SessionEnded,
        meta: InboxMeta,
    ) -> Result<(), HandlerError>;

    /// An event whose status this SDK does not know (Suki's API is Early Access: new statuses
    /// may ship). By default the row becomes a dead letter with code `unknown_status` (retry it
    /// after an upgrade), with a WARN naming the status (once per status value an hour) and the
    /// counter `suki_inbox_unknown_status_total`. Override it to handle such events yourself.
    async fn on_unknown(&self, event: UnknownEvent, meta: InboxMeta) -> Result<(), HandlerError> {
        let _ = meta;
        unknown_status(&event);
        Err(Box::new(Permanent(UNKNOWN_STATUS)))
    }

    /// The links this handler reads, asked once by [`FetchResults::new`]: only those are
    /// fetched, the required ones hold the row back when they fail, the optional ones reach
    /// [`on_results`](Self::on_results) as errors. `None` (the default): every link the event
    /// carries is fetched and required.
    fn links(&self) -> Option<LinkNeeds> {
        None
    }
}

/// Which of a completed session's links a [`ResultsHandler`] reads (see
/// [`ResultsHandler::links`]): a link it does not name is not fetched at all, so a
/// transcript that answers `404` cannot hold back a note the handler writes without it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkNeeds {
    required: Vec<LinkKind>,
    optional: Vec<LinkKind>,
    /// Optional links fetched only for an encounter of several sessions.
    encounter: Vec<LinkKind>,
}

impl LinkNeeds {
    /// `links` are required: fetched, and a failure holds the row back (retried, or a dead
    /// letter when permanent).
    pub fn required(links: &[LinkKind]) -> Self {
        let mut needs = Self::default();
        for link in links {
            if !needs.required.contains(link) {
                needs.required.push(*link);
            }
        }
        needs
    }

    /// `links` are fetched too, but their failures are handed to the handler.
    #[must_use]
    pub fn optional(mut self, links: &[LinkKind]) -> Self {
        for link in links {
            if !self.required.contains(link) && !self.optional.contains(link) {
                self.optional.push(*link);
            }
        }
        self
    }

    /// `links` (`EncounterContent`, `EncounterStructuredData`) are fetched as optional ones, but
    /// only when the event's encounter has more than one session (its `sessions` lists
    /// several): a single-session encounter's note is the session's own, and costs Suki no
    /// second request.
    #[must_use]
    pub fn encounter(mut self, links: &[LinkKind]) -> Self {
        for link in links {
            if !self.required.contains(link) && !self.encounter.contains(link) {
                self.encounter.push(*link);
                if !self.optional.contains(link) {
                    self.optional.push(*link);
                }
            }
        }
        self
    }

    /// Whether `link` is required.
    pub fn is_required(&self, link: LinkKind) -> bool {
        self.required.contains(&link)
    }

    /// Whether `link` is fetched only for encounters of several sessions.
    pub fn is_encounter_only(&self, link: LinkKind) -> bool {
        self.encounter.contains(&link)
    }

    /// Every link named, required first.
    pub fn all(&self) -> Vec<LinkKind> {
        self.required
            .iter()
            .chain(&self.optional)
            .copied()
            .collect()
    }
}

/// The destination name of Suki's API, for its breaker.
pub(crate) const SUKI: &str = "suki";

/// The dead-letter code of an event of unknown status.
pub(crate) const UNKNOWN_STATUS: &str = "unknown_status";

/// How often at most each unknown status value is logged.
const UNKNOWN_WARN_EVERY: Duration = Duration::from_secs(60 * 60);

/// Logs (once per status value per [`UNKNOWN_WARN_EVERY`]; at most 64 values remembered) and
/// counts an event of unknown status. The status is shown as a short identifier only.
fn unknown_status(event: &UnknownEvent) {
    static SEEN: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);
    crate::metrics::unknown_status();
    let status = sanitize(&event.status);
    let now = Instant::now();
    let mut seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let seen = seen.get_or_insert_with(HashMap::new);
    if seen
        .get(&status)
        .is_some_and(|at| now.duration_since(*at) < UNKNOWN_WARN_EVERY)
    {
        return;
    }
    if seen.len() >= 64 {
        seen.retain(|_, at| now.duration_since(*at) < UNKNOWN_WARN_EVERY);
        if seen.len() >= 64 {
            return;
        }
    }
    tracing::warn!(
        status = %status,
        session = event.session_id.as_ref().map(|s| s.as_str()),
        "suki inbox: an event of a status this SDK does not know becomes a dead letter \
         (unknown_status); handle it in ResultsHandler::on_unknown, or upgrade and retry it"
    );
    seen.insert(status, now);
}

#[async_trait]
impl<T: ResultsHandler + ?Sized> ResultsHandler for Arc<T> {
    async fn on_results(
        &self,
        event: SessionCompleted,
        results: SessionResults,
        meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        (**self).on_results(event, results, meta).await
    }

    async fn on_failed(&self, event: SessionFailed, meta: InboxMeta) -> Result<(), HandlerError> {
        (**self).on_failed(event, meta).await
    }

    async fn on_ended(
        &self,
        kind: EventKind,
        event: SessionEnded,
        meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        (**self).on_ended(kind, event, meta).await
    }

    async fn on_unknown(&self, event: UnknownEvent, meta: InboxMeta) -> Result<(), HandlerError> {
        (**self).on_unknown(event, meta).await
    }

    fn links(&self) -> Option<LinkNeeds> {
        (**self).links()
    }
}

/// An [`InboxHandler`] that fetches a completed session's results through `client` before
/// calling `handler`, and completes the row only with them:
///
/// - every link the event carries is **required**, unless made [`optional`](Self::optional);
/// - a required link that fails retryably (a `503` burst longer than the client's own retries,
///   a timeout, `409 content_not_ready`) retries the row later: the note is delayed, not lost;
/// - a required link that fails permanently (`401`/`403` after the client's own fresh login,
///   `404`, `410`, a body that does not decode, a link refused) makes the row a **dead
///   letter** at once, with a code naming the link and the answer
///   (`fetch_contents_401_invalid_sdp_token`), a WARN with ids and codes only, and the
///   counter `suki_inbox_link_failures_total`. Fix the cause (e.g. a new token) and
///   `suki-ambient inbox retry --dead` processes it again.
///
/// An authentication failure goes dead at once rather than retrying: the client has already
/// logged in afresh once ([`PartnerLogin`](suki_ambient_client::PartnerLogin)), and a static
/// token that was refused stays refused until the process gets a new one; the dead letter shows
/// from the first failure, and one `retry --dead` recovers every row it held back.
pub struct FetchResults<H> {
    client: AmbientClient,
    handler: H,
    optional: Vec<LinkKind>,
    /// The links fetched: the handler's [`LinkNeeds`], or every kind.
    fetch: Vec<LinkKind>,
    /// Those fetched only for an encounter of several sessions ([`LinkNeeds::encounter`]).
    encounter_only: Vec<LinkKind>,
}

impl<H> fmt::Debug for FetchResults<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchResults")
            .field("client", &self.client)
            .field("optional", &self.optional)
            .field("fetch", &self.fetch)
            .finish_non_exhaustive()
    }
}

impl<H: ResultsHandler> FetchResults<H> {
    /// Fetches with `client`, then calls `handler`: the links the handler declares
    /// ([`ResultsHandler::links`]), or every link the event carries, all required.
    pub fn new(client: AmbientClient, handler: H) -> Self {
        let (fetch, optional, encounter_only) = match handler.links() {
            Some(needs) => {
                let all = needs.all();
                let optional = all
                    .iter()
                    .copied()
                    .filter(|l| !needs.is_required(*l))
                    .collect();
                let encounter_only = all
                    .iter()
                    .copied()
                    .filter(|l| needs.is_encounter_only(*l))
                    .collect();
                (all, optional, encounter_only)
            }
            None => (LinkKind::ALL.to_vec(), Vec::new(), Vec::new()),
        };
        Self {
            client,
            handler,
            optional,
            fetch,
            encounter_only,
        }
    }

    /// Makes `link` optional: fetched when the event carries it, but its failure (retryable or
    /// not) is handed to [`on_results`](ResultsHandler::on_results) in `results` instead of
    /// holding the row back, e.g. `.optional(LinkKind::Transcripts)` when the note is what
    /// matters. Call it once per link.
    #[must_use]
    pub fn optional(mut self, link: LinkKind) -> Self {
        if !self.optional.contains(&link) {
            self.optional.push(link);
        }
        self
    }

    /// What a required link's failure makes of the row: `None` when every required link was
    /// fetched. A retryable failure wins over a permanent one (the row is retried and the
    /// permanent one is seen again); within each, the first in [`LINK_ORDER`].
    fn link_failure(&self, results: &SessionResults, meta: &InboxMeta) -> Option<HandlerError> {
        let mut required: Vec<(LinkKind, &ClientError)> = results
            .errors()
            .into_iter()
            .filter(|(kind, _)| !self.optional.contains(kind))
            .collect();
        // The code names the note first when several links failed alike.
        required.sort_by_key(|(kind, _)| LINK_ORDER.iter().position(|k| k == kind));
        let (kind, err) = required
            .iter()
            .find(|(_, err)| err.is_retryable())
            .or_else(|| required.first())?;
        let failed = LinkFailed {
            link: kind.key(),
            code: client_code(err),
            permanent: !err.is_retryable(),
            outage: err.is_outage(),
            retry_after: err.retry_after(),
        };
        crate::metrics::link_failure(failed.link, err.status(), failed.permanent);
        if failed.permanent {
            tracing::warn!(
                id = meta.id,
                session = %results.session_id,
                link = failed.link,
                error = %failed.code,
                "suki inbox: a required link failed permanently; the row becomes a dead letter"
            );
        }
        Some(Box::new(failed))
    }
}

/// What was fetched, for the row's timeline: each link the event carried and its answer
/// (`ok`, or the error's code), never content.
fn fetched(results: &SessionResults) -> String {
    fn one<T>(key: &str, result: &Option<Result<T, ClientError>>) -> Option<String> {
        result.as_ref().map(|r| match r {
            Ok(_) => format!("{key} ok"),
            Err(e) => format!("{key} {}", client_code(e)),
        })
    }
    [
        one(LinkKind::Status.key(), &results.status),
        one(LinkKind::Contents.key(), &results.contents),
        one(LinkKind::EncounterContent.key(), &results.encounter_content),
        one(LinkKind::StructuredData.key(), &results.structured_data),
        one(
            LinkKind::EncounterStructuredData.key(),
            &results.encounter_structured_data,
        ),
        one(LinkKind::Transcripts.key(), &results.transcript),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ")
}

/// Which failed link a row's error code names when several failed alike: the note first.
const LINK_ORDER: [LinkKind; 6] = [
    LinkKind::Contents,
    LinkKind::EncounterContent,
    LinkKind::StructuredData,
    LinkKind::EncounterStructuredData,
    LinkKind::Transcripts,
    LinkKind::Status,
];

/// A required link of a completed session failed.
#[derive(Debug)]
struct LinkFailed {
    link: &'static str,
    code: String,
    permanent: bool,
    /// Suki's API did not answer (or answered 5xx, 429, 408): the row waits for it.
    outage: bool,
    retry_after: Option<Duration>,
}

impl fmt::Display for LinkFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fetching {} failed: {}", self.link, self.code)
    }
}

impl std::error::Error for LinkFailed {}

impl Failure {
    fn from_link(err: &HandlerError) -> Option<Self> {
        let link = err.downcast_ref::<LinkFailed>()?;
        Some(Self {
            permanent: link.permanent,
            waiting_for: link.outage.then(|| SUKI.to_owned()),
            retry_after: link.retry_after,
            ..Self::retryable(format!("fetch_{}_{}", link.link, link.code))
        })
    }
}

#[async_trait]
impl<H: ResultsHandler> InboxHandler for FetchResults<H> {
    async fn handle(&self, event: WebhookEvent, meta: InboxMeta) -> Result<(), HandlerError> {
        match event {
            WebhookEvent::Completed(done) => {
                // What an earlier attempt fetched is not fetched again (a retry the handler
                // caused, such as an EHR down, costs Suki nothing).
                let earlier = meta.kept.earlier();
                // Encounter-level links only for an encounter of several sessions.
                let fetch: Vec<LinkKind> = if done.sessions.len() > 1 {
                    self.fetch.clone()
                } else {
                    self.fetch
                        .iter()
                        .copied()
                        .filter(|l| !self.encounter_only.contains(l))
                        .collect()
                };
                // Suki's breaker is asked only when something is to be fetched.
                let all_kept = fetch.iter().all(|kind| {
                    done.links.get(*kind).is_empty() || earlier.iter().any(|(k, _)| k == kind)
                });
                if !all_kept {
                    meta.reach(SUKI).await?;
                }
                let (results, answered) = self
                    .client
                    .fetch_results_keeping(&done, &fetch, &earlier)
                    .await;
                meta.kept.set_now(answered);
                let mut detail = fetched(&results);
                if !earlier.is_empty() {
                    let kept: Vec<&str> = earlier.iter().map(|(kind, _)| kind.key()).collect();
                    detail.push_str(&format!(
                        " (kept from an earlier attempt: {})",
                        kept.join(", ")
                    ));
                }
                meta.fetched.set(detail);
                if let Some(err) = self.link_failure(&results, &meta) {
                    return Err(err);
                }
                self.handler.on_results(done, results, meta).await
            }
            WebhookEvent::Failed(failed) => self.handler.on_failed(failed, meta).await,
            WebhookEvent::TimedOut(ended) => {
                self.handler
                    .on_ended(EventKind::TimedOut, ended, meta)
                    .await
            }
            WebhookEvent::Cancelled(ended) => {
                self.handler
                    .on_ended(EventKind::Cancelled, ended, meta)
                    .await
            }
            WebhookEvent::Unknown(unknown) => self.handler.on_unknown(unknown, meta).await,
            // A kind added to core later: never completed unseen.
            _ => Err(Box::new(Permanent(UNKNOWN_STATUS))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coded_failures_keep_a_clean_code_and_their_kind() {
        let err: HandlerError = Box::new(Coded::retryable("fhir_503_transient"));
        assert_eq!(
            Failure::classify(&err),
            Failure::retryable("fhir_503_transient")
        );
        let err: HandlerError = Box::new(
            Coded::permanent("fhir_422 <b>Patient Smith</b>\n").retry_after(Duration::ZERO),
        );
        let failure = Failure::classify(&err);
        assert!(failure.permanent);
        assert_eq!(failure.code, "fhir_422bPatientSmithb");
        let err: HandlerError = Box::new(Coded::retryable("!!!"));
        assert_eq!(Failure::classify(&err).code, "handler_failed");
        let err: HandlerError = Box::new(Coded::retryable("x").retry_after(Duration::from_secs(3)));
        assert_eq!(
            Failure::classify(&err).retry_after,
            Some(Duration::from_secs(3))
        );
    }
}
