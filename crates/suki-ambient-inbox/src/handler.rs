//! What the worker calls: `InboxHandler` (any async closure works), `FetchResults`, and the
//! errors that tell the worker to give up or when to try again.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use suki_ambient_client::{AmbientClient, ClientError, SessionResults};
use suki_ambient_core::{HandlerError, SessionCompleted, UnixMillis, WebhookEvent};

use crate::store::Source;

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
}

impl InboxMeta {
    /// Where the event came from.
    pub fn source(&self) -> Source {
        self.source
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

/// How the worker treats a handler's error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Stored as the row's last error: a code and a status, never content.
    pub(crate) code: String,
    pub(crate) permanent: bool,
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    pub(crate) fn retryable(code: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            permanent: false,
            retry_after: None,
        }
    }

    pub(crate) fn permanent(code: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            permanent: true,
            retry_after: None,
        }
    }

    /// Classifies a handler's error (its text is never stored: it may hold content).
    pub(crate) fn classify(err: &HandlerError) -> Self {
        if let Some(link) = Self::from_link(err) {
            return link;
        }
        if let Some(p) = err.downcast_ref::<Permanent>() {
            return Self::permanent(p.0);
        }
        if let Some(r) = err.downcast_ref::<RetryAfter>() {
            return Self {
                code: r.code.to_owned(),
                permanent: false,
                retry_after: Some(r.after),
            };
        }
        if let Some(c) = err.downcast_ref::<ClientError>() {
            return Self::client(c);
        }
        Self {
            code: "handler_failed".to_owned(),
            permanent: false,
            retry_after: None,
        }
    }

    fn client(err: &ClientError) -> Self {
        let code = match (err.status(), err.code()) {
            (Some(status), Some(code)) => format!("client_{status}_{}", sanitize(code)),
            (Some(status), None) => format!("client_{status}"),
            _ if matches!(err, ClientError::Timeout { .. }) => "client_timeout".to_owned(),
            _ if matches!(err, ClientError::Transport { .. }) => "client_transport".to_owned(),
            _ => "client_error".to_owned(),
        };
        Self {
            code,
            permanent: !err.is_retryable(),
            retry_after: None,
        }
    }
}

/// An error id from a server, kept to a short identifier.
fn sanitize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

/// What [`FetchResults`] calls: the completed session with everything its links point to, and
/// the other events as they are.
#[async_trait]
pub trait ResultsHandler: Send + Sync + 'static {
    /// A completed session and its fetched results. Links that failed retryably have already
    /// made the worker retry the row, so every error left in `results` is permanent (e.g. a
    /// `404` for content Suki no longer has).
    async fn on_results(
        &self,
        event: SessionCompleted,
        results: SessionResults,
        meta: InboxMeta,
    ) -> Result<(), HandlerError>;

    /// Any other event (failed, timed out, cancelled, unknown). Does nothing by default.
    async fn on_other(&self, event: WebhookEvent, meta: InboxMeta) -> Result<(), HandlerError> {
        let _ = (event, meta);
        Ok(())
    }
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

    async fn on_other(&self, event: WebhookEvent, meta: InboxMeta) -> Result<(), HandlerError> {
        (**self).on_other(event, meta).await
    }
}

/// An [`InboxHandler`] that fetches a completed session's results through `client` before
/// calling `handler`; when a link fails retryably (a `503` burst longer than the client's own
/// retries, a timeout), the row is retried later by the worker, so the note is not lost.
pub struct FetchResults<H> {
    client: AmbientClient,
    handler: H,
}

impl<H> fmt::Debug for FetchResults<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchResults")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl<H: ResultsHandler> FetchResults<H> {
    /// Fetches with `client`, then calls `handler`.
    pub fn new(client: AmbientClient, handler: H) -> Self {
        Self { client, handler }
    }
}

/// The first retryable link failure of `results`, as the worker's error.
fn retryable_failure(results: &SessionResults) -> Option<HandlerError> {
    let (kind, err) = results
        .errors()
        .into_iter()
        .find(|(_, err)| err.is_retryable())?;
    let failure = Failure::client(err);
    Some(Box::new(LinkFailed {
        link: kind.key(),
        code: failure.code,
    }))
}

/// A link of a completed session failed retryably.
#[derive(Debug)]
struct LinkFailed {
    link: &'static str,
    code: String,
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
            code: format!("fetch_{}_{}", link.link, link.code),
            permanent: false,
            retry_after: None,
        })
    }
}

#[async_trait]
impl<H: ResultsHandler> InboxHandler for FetchResults<H> {
    async fn handle(&self, event: WebhookEvent, meta: InboxMeta) -> Result<(), HandlerError> {
        match event {
            WebhookEvent::Completed(done) => {
                let results = self.client.fetch_results(&done).await;
                if let Some(err) = retryable_failure(&results) {
                    return Err(err);
                }
                self.handler.on_results(done, results, meta).await
            }
            other => self.handler.on_other(other, meta).await,
        }
    }
}
