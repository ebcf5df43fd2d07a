//! Filters: `verified_body`, `suki_webhook`, and the ready-made `webhook_filter`.

use bytes::{Buf, Bytes};
use futures_util::Stream;
use suki_ambient_core::adapter::{self, EndpointResponse, log_rejection};
use suki_ambient_core::{
    EventHandler, VerifiedDelivery, Verifier, WebhookEndpoint, WebhookError, WebhookEvent,
    WebhookMeta,
};
use warp::http::HeaderMap;
use warp::{Filter, Rejection};

use crate::{WebhookRejection, WebhookResponse};

/// A verified webhook delivery, not yet parsed: enqueue it and parse later with
/// [`VerifiedDelivery::parse`].
#[derive(Debug, Clone)]
pub struct VerifiedBody(pub VerifiedDelivery);

impl VerifiedBody {
    /// The verified delivery.
    pub fn into_inner(self) -> VerifiedDelivery {
        self.0
    }
}

impl std::ops::Deref for VerifiedBody {
    type Target = VerifiedDelivery;
    fn deref(&self) -> &VerifiedDelivery {
        &self.0
    }
}

/// A verified and parsed webhook: the event, what verification established, and the raw body.
#[derive(Clone)]
pub struct SukiWebhook {
    /// The parsed event.
    pub event: WebhookEvent,
    /// Timestamp, matching secret and replay key.
    pub meta: WebhookMeta,
    /// The raw body, exactly as received.
    pub body: Bytes,
}

impl std::fmt::Debug for SukiWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SukiWebhook")
            .field("event", &self.event)
            .field("meta", &self.meta)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Extracts a [`VerifiedBody`]; rejects with [`WebhookRejection`] (handle it with
/// [`recover`](crate::recover): without it, warp answers an unhandled rejection with 500).
pub fn verified_body(
    verifier: Verifier,
) -> impl Filter<Extract = (VerifiedBody,), Error = Rejection> + Clone {
    verified(verifier.clone()).and_then(move |result: Result<VerifiedDelivery, WebhookError>| {
        let verifier = verifier.clone();
        async move {
            result
                .map(VerifiedBody)
                .map_err(|err| reject(err, &verifier))
        }
    })
}

/// Extracts a [`SukiWebhook`]; rejects with [`WebhookRejection`] (handle it with
/// [`recover`](crate::recover): without it, warp answers an unhandled rejection with 500).
pub fn suki_webhook(
    verifier: Verifier,
) -> impl Filter<Extract = (SukiWebhook,), Error = Rejection> + Clone {
    verified(verifier.clone()).and_then(move |result: Result<VerifiedDelivery, WebhookError>| {
        let verifier = verifier.clone();
        async move {
            let delivery = result.map_err(|err| reject(err, &verifier))?;
            let event = delivery
                .parse()
                .map_err(|err| reject(WebhookError::Payload(err), &verifier))?;
            Ok::<_, Rejection>(SukiWebhook {
                event,
                meta: delivery.meta,
                body: delivery.body,
            })
        }
    })
}

/// Logs a rejection and wraps it for warp.
fn reject(err: WebhookError, verifier: &Verifier) -> Rejection {
    log_rejection(&err, verifier);
    warp::reject::custom(WebhookRejection(err))
}

/// The ready-made `endpoint` as a filter (compose it with your path): verifies, deduplicates
/// through the endpoint's replay guard, dispatches to its handler, and answers 200 (also for
/// duplicates and unknown statuses), 4xx for bad input, 500 only when the handler fails.
///
/// It **never rejects**: every request that reaches it gets its answer from it (a method other
/// than `POST` gets `405 method_not_allowed`), so no [`recover`](crate::recover) is needed, and
/// a forgotten one cannot turn a bad signature into warp's 500 for unhandled rejections.
///
/// ```
/// use warp::Filter;
/// use suki_ambient_core::{NoopHandler, Verifier, WebhookEndpoint};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = Verifier::builder().secret("secret").build()?;
/// let endpoint = WebhookEndpoint::new(verifier, NoopHandler);
/// let route = warp::path!("webhooks" / "suki").and(suki_ambient_warp::webhook_filter(endpoint));
/// # let _ = route;
/// # Ok(())
/// # }
/// ```
pub fn webhook_filter<H: EventHandler>(
    endpoint: WebhookEndpoint<H>,
) -> impl Filter<Extract = (WebhookResponse,), Error = Rejection> + Clone {
    let verifier = endpoint.verifier().clone();
    warp::method()
        .and(verified(verifier))
        .and(warp::any().map(move || endpoint.clone()))
        .then(
            |method: warp::http::Method,
             result: Result<VerifiedDelivery, WebhookError>,
             endpoint: WebhookEndpoint<H>| async move {
                if method != warp::http::Method::POST {
                    return WebhookResponse(method_not_allowed());
                }
                WebhookResponse(match result {
                    Ok(delivery) => endpoint.handle_verified(delivery).await,
                    Err(err) => endpoint.reject(err),
                })
            },
        )
}

/// `405`, as JSON like every other answer.
fn method_not_allowed() -> EndpointResponse {
    EndpointResponse {
        status: warp::http::StatusCode::METHOD_NOT_ALLOWED,
        body: Bytes::from_static(
            br#"{"error":"method_not_allowed","message":"webhooks are delivered with POST"}"#,
        ),
    }
}

/// The verification outcome of a request, as a value (never a rejection).
fn verified(
    verifier: Verifier,
) -> impl Filter<Extract = (Result<VerifiedDelivery, WebhookError>,), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and(warp::body::stream())
        .and(warp::any().map(move || verifier.clone()))
        .then(|headers: HeaderMap, body, verifier: Verifier| async move {
            verify_request(&headers, body, &verifier).await
        })
}

/// Checks the head (rejecting before the body is read), reads the body within the limit and
/// deadline, verifies (not logged: each caller logs its own rejections).
async fn verify_request<S, B>(
    headers: &HeaderMap,
    body: S,
    verifier: &Verifier,
) -> Result<VerifiedDelivery, WebhookError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    adapter::verify_request(verifier, headers, body).await
}
