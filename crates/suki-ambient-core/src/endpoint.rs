//! `WebhookEndpoint`: verify → parse → deduplicate → dispatch → answer, shared by every adapter.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::error::error_json;
use crate::{
    DeliverySink, EventHandler, Freshness, MemoryReplayGuard, NoopHandler, ReplayGuard, ReplayKey,
    Stored, VerifiedDelivery, Verifier, WebhookError,
};

/// What a [`WebhookEndpoint`] does when its [`ReplayGuard`]'s store fails (e.g. Redis is down).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuardFailurePolicy {
    /// Process the event without deduplication and log a warning (the default): Suki does not
    /// re-deliver, so refusing would lose the only delivery, and processing twice is the lesser
    /// harm for an idempotent handler.
    #[default]
    ProcessAnyway,
    /// Refuse with 503 `replay_guard_unavailable`: for handlers that must never run twice and
    /// senders that retry.
    Reject,
}

/// How long processed events are remembered by default: 24 hours.
const DEFAULT_REPLAY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The framework-independent core of a ready-made webhook endpoint. Adapters read the headers
/// and a bounded body, call [`handle`](Self::handle) and send the [`EndpointResponse`].
///
/// Answers: 200 for a processed event, a duplicate or an unknown status; the 4xx of
/// [`WebhookError::status`] for bad input; 500 only when the application's handler fails.
///
/// Deduplication uses the event's [`IdempotencyKey`](crate::IdempotencyKey) (session id and
/// kind, so a re-sent event with a fresh signature is caught too), or the delivery's replay key
/// for unknown events. When the replay guard's store fails, the event is processed anyway
/// (fail-open) and a warning is logged: Suki does not re-deliver, so refusing would lose it.
/// [`on_guard_failure`](Self::on_guard_failure) changes that.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use suki_ambient_core::{
///     async_trait, EventHandler, HandlerError, SessionCompleted, SignedHeaders, UnixMillis,
///     Verifier, WebhookEndpoint, WebhookMeta, WebhookSecret,
/// };
///
/// struct Notes;
///
/// #[async_trait]
/// impl EventHandler for Notes {
///     async fn on_completed(&self, done: SessionCompleted, _meta: WebhookMeta) -> Result<(), HandlerError> {
///         println!("session {} completed", done.session_id);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Built once and shared (it is cheap to clone): one replay guard for every request.
/// let endpoint = WebhookEndpoint::new(Verifier::builder().secret("whsec").build()?, Notes)
///     .replay_ttl(Duration::from_secs(6 * 3600));
///
/// // What an adapter does with each request (axum's `router`, actix's `route`, warp's
/// // `webhook_filter` do it for you):
/// let body = suki_ambient_core::sample::completed("s-1", "e-1").to_vec();
/// let headers = SignedHeaders::new(&WebhookSecret::from("whsec"), UnixMillis::now(), &body).to_header_map();
/// let answer = endpoint.handle(&headers, body.into()).await;
/// assert_eq!(answer.status, 200);
/// let again = endpoint.handle(&headers, suki_ambient_core::sample::completed("s-1", "e-1").to_vec().into()).await;
/// assert_eq!(again.body, r#"{"status":"duplicate"}"#);
/// # Ok(())
/// # }
/// ```
pub struct WebhookEndpoint<H> {
    verifier: Verifier,
    handler: Arc<H>,
    guard: Arc<dyn ReplayGuard>,
    ttl: Duration,
    on_guard_failure: GuardFailurePolicy,
    /// With a sink, deliveries are stored for later processing instead of handled inline.
    sink: Option<Arc<dyn DeliverySink>>,
}

impl<H> Clone for WebhookEndpoint<H> {
    fn clone(&self) -> Self {
        Self {
            verifier: self.verifier.clone(),
            handler: Arc::clone(&self.handler),
            guard: Arc::clone(&self.guard),
            ttl: self.ttl,
            on_guard_failure: self.on_guard_failure,
            sink: self.sink.clone(),
        }
    }
}

impl<H> fmt::Debug for WebhookEndpoint<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("verifier", &self.verifier)
            .field("ttl", &self.ttl)
            .field("inbox", &self.sink.is_some())
            .finish_non_exhaustive()
    }
}

/// What an endpoint answers: a status and a small JSON body.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EndpointResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body (`{"status": ...}` on success, `{"error", "message"}` otherwise).
    pub body: Bytes,
}

impl EndpointResponse {
    fn ok(outcome: &'static str) -> Self {
        Self {
            status: StatusCode::OK,
            body: Bytes::from(format!(r#"{{"status":"{outcome}"}}"#)),
        }
    }

    /// The rejection for `err` (its [`public message`](WebhookError::public_message)).
    pub fn rejection(err: &WebhookError) -> Self {
        Self::error(err.status(), err.code(), &err.public_message())
    }

    fn guard_unavailable() -> Self {
        Self::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "replay_guard_unavailable",
            "the replay guard's store is unavailable; try again later",
        )
    }

    fn inbox_unavailable() -> Self {
        Self::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "inbox_unavailable",
            "the delivery could not be stored; try again later",
        )
    }

    fn handler_failed() -> Self {
        Self::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "handler_failed",
            "the application's event handler failed",
        )
    }

    /// `{"error": code, "message": message}` with `status`.
    fn error(status: StatusCode, code: &str, message: &str) -> Self {
        Self {
            status,
            body: Bytes::from(error_json(code, message)),
        }
    }
}

impl WebhookEndpoint<NoopHandler> {
    /// An endpoint that stores every verified delivery in `inbox` (e.g. `suki-ambient-inbox`'s
    /// `Inbox`) and answers `200 {"status":"accepted"}` once it is stored durably,
    /// `{"status":"duplicate"}` when its deduplication key already was, and
    /// `503 inbox_unavailable` (logged at ERROR) when the store could not commit: never a 200
    /// for a delivery that is not on disk. The inbox's worker processes what was stored; the
    /// inbox is the deduplication, so no replay guard is used.
    pub fn inbox(verifier: Verifier, inbox: impl DeliverySink) -> Self {
        let mut endpoint = Self::new(verifier, NoopHandler);
        endpoint.sink = Some(Arc::new(inbox));
        endpoint
    }
}

impl<H: EventHandler> WebhookEndpoint<H> {
    /// An endpoint with an in-memory replay guard and a 24-hour replay TTL.
    pub fn new(verifier: Verifier, handler: H) -> Self {
        Self {
            verifier,
            handler: Arc::new(handler),
            guard: Arc::new(MemoryReplayGuard::default()),
            ttl: DEFAULT_REPLAY_TTL,
            on_guard_failure: GuardFailurePolicy::default(),
            sink: None,
        }
    }

    /// What to do when the replay guard's store fails (default
    /// [`GuardFailurePolicy::ProcessAnyway`]).
    #[must_use]
    pub fn on_guard_failure(mut self, policy: GuardFailurePolicy) -> Self {
        self.on_guard_failure = policy;
        self
    }

    /// Uses `guard` to deduplicate (e.g. one shared by a fleet of receivers).
    #[must_use]
    pub fn replay_guard(mut self, guard: impl ReplayGuard) -> Self {
        self.guard = Arc::new(guard);
        self
    }

    /// How long a processed event is remembered (default 24 hours).
    #[must_use]
    pub fn replay_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The verifier (adapters read its body limit).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The application's handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// Handles a request given its headers and complete body.
    pub async fn handle(&self, headers: &HeaderMap, body: Bytes) -> EndpointResponse {
        match self.verifier.verify(headers, body) {
            Ok(verified) => self.handle_verified(verified).await,
            Err(err) => self.reject(WebhookError::Verify(err)),
        }
    }

    /// Handles a request given the header values as text (frameworks on other `http` versions).
    pub async fn handle_parts(
        &self,
        generated_at: Option<&str>,
        signature: Option<&str>,
        body: Bytes,
    ) -> EndpointResponse {
        match self.verifier.verify_parts(
            generated_at.unwrap_or_default(),
            signature.unwrap_or_default(),
            body,
        ) {
            Ok(verified) => self.handle_verified(verified).await,
            Err(err) => self.reject(WebhookError::Verify(err)),
        }
    }

    /// The answer for a request rejected before verification completed (e.g. the body
    /// exceeded the limit while reading), logged at WARN like every rejection
    /// ([`log_rejection`](crate::adapter::log_rejection)).
    pub fn reject(&self, err: WebhookError) -> EndpointResponse {
        crate::rejection::log_rejection(&err, &self.verifier);
        EndpointResponse::rejection(&err)
    }

    /// Parses, deduplicates and dispatches an already verified delivery.
    pub async fn handle_verified(&self, verified: VerifiedDelivery) -> EndpointResponse {
        let event = match verified.parse() {
            Ok(event) => event,
            Err(err) => return self.reject(WebhookError::Payload(err)),
        };
        let kind = event.kind();
        if let Some(sink) = &self.sink {
            return match sink.store(&verified, &event).await {
                Ok(Stored::Accepted) => {
                    crate::metrics::request("accepted");
                    tracing::debug!(kind = kind.as_str(), "suki webhook stored in the inbox");
                    EndpointResponse::ok("accepted")
                }
                Ok(Stored::Duplicate) => {
                    crate::metrics::request("duplicate");
                    tracing::debug!(kind = kind.as_str(), "suki webhook duplicate acknowledged");
                    EndpointResponse::ok("duplicate")
                }
                Err(err) => {
                    crate::metrics::request("inbox_unavailable");
                    tracing::error!(error = %err, kind = kind.as_str(), "suki webhook could not be stored in the inbox; answered 503");
                    EndpointResponse::inbox_unavailable()
                }
            };
        }
        let meta = verified.meta;
        let key = event
            .idempotency_key()
            .map_or_else(|| meta.replay_key(), |k| ReplayKey::for_event(&k));
        let claimed = match self.guard.check_and_mark(key, self.ttl).await {
            Ok(Freshness::Fresh) => true,
            Ok(Freshness::Duplicate | Freshness::InFlight) => {
                crate::metrics::request("duplicate");
                tracing::debug!(kind = kind.as_str(), "suki webhook duplicate acknowledged");
                return EndpointResponse::ok("duplicate");
            }
            Err(err) if self.on_guard_failure == GuardFailurePolicy::Reject => {
                crate::metrics::request("replay_guard_unavailable");
                tracing::warn!(error = %err, kind = kind.as_str(), "replay guard failed; refusing the delivery");
                return EndpointResponse::guard_unavailable();
            }
            Err(err) => {
                tracing::warn!(error = %err, kind = kind.as_str(), "replay guard failed; processing without deduplication");
                false
            }
        };
        let stopwatch = crate::metrics::Stopwatch::start();
        let handled = self.handler.handle(event, meta).await;
        stopwatch.record_handler(kind.as_str());
        match handled {
            Ok(()) => {
                crate::metrics::request("processed");
                if claimed && let Err(err) = self.guard.commit(key, self.ttl).await {
                    tracing::warn!(error = %err, "replay guard could not record a processed event");
                }
                tracing::debug!(kind = kind.as_str(), "suki webhook processed");
                EndpointResponse::ok("processed")
            }
            Err(_) => {
                crate::metrics::request("handler_failed");
                if claimed && let Err(err) = self.guard.release(key).await {
                    tracing::warn!(error = %err, "replay guard could not release a failed event");
                }
                // The handler's error text may hold payload content; it is not logged.
                tracing::error!(kind = kind.as_str(), "suki webhook handler failed");
                EndpointResponse::handler_failed()
            }
        }
    }
}
