//! Filters: `verified_body`, `suki_webhook`, and the ready-made `webhook_filter`.

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use suki_ambient_core::{
    BodyBuffer, EventHandler, VerifiedDelivery, Verifier, WebhookEndpoint, WebhookError,
    WebhookEvent, WebhookMeta,
};
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::WebhookRejection;
use crate::rejection::json_response;

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
/// [`recover`](crate::recover)).
pub fn verified_body(
    verifier: Verifier,
) -> impl Filter<Extract = (VerifiedBody,), Error = Rejection> + Clone {
    verified(verifier).and_then(
        |result: Result<VerifiedDelivery, WebhookError>| async move {
            result
                .map(VerifiedBody)
                .map_err(|e| warp::reject::custom(WebhookRejection(e)))
        },
    )
}

/// Extracts a [`SukiWebhook`]; rejects with [`WebhookRejection`] (handle it with
/// [`recover`](crate::recover)).
pub fn suki_webhook(
    verifier: Verifier,
) -> impl Filter<Extract = (SukiWebhook,), Error = Rejection> + Clone {
    verified(verifier).and_then(
        |result: Result<VerifiedDelivery, WebhookError>| async move {
            let delivery = result.map_err(|e| warp::reject::custom(WebhookRejection(e)))?;
            let event = delivery
                .parse()
                .map_err(|e| warp::reject::custom(WebhookRejection::from(e)))?;
            Ok::<_, Rejection>(SukiWebhook {
                event,
                meta: delivery.meta,
                body: delivery.body,
            })
        },
    )
}

/// A ready-made endpoint for `POST` requests (compose it with your path): verifies,
/// deduplicates through an in-memory replay guard, dispatches to `handler`, and answers 200
/// (also for duplicates and unknown statuses), 4xx for bad input, 500 only when `handler`
/// fails. It answers every POST itself: no rejection to recover.
///
/// ```
/// use warp::Filter;
/// use suki_ambient_core::{NoopHandler, Verifier};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = Verifier::builder().secret("secret").build()?;
/// let route = warp::path!("webhooks" / "suki").and(suki_ambient_warp::webhook_filter(verifier, NoopHandler));
/// # let _ = route;
/// # Ok(())
/// # }
/// ```
pub fn webhook_filter<H: EventHandler>(
    verifier: Verifier,
    handler: H,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    webhook_filter_with(WebhookEndpoint::new(verifier, handler))
}

/// [`webhook_filter`] for a configured [`WebhookEndpoint`] (e.g. a shared replay guard).
pub fn webhook_filter_with<H: EventHandler>(
    endpoint: WebhookEndpoint<H>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let verifier = endpoint.verifier().clone();
    warp::post()
        .and(verified(verifier))
        .and(warp::any().map(move || endpoint.clone()))
        .then(|result: Result<VerifiedDelivery, WebhookError>, endpoint: WebhookEndpoint<H>| async move {
            let response = match result {
                Ok(delivery) => endpoint.handle_verified(delivery).await,
                Err(err) => endpoint.reject(err),
            };
            json_response(response.status, response.body)
        })
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

/// Checks the headers (rejecting before the body is read), reads the body up to the limit,
/// verifies.
async fn verify_request<S, B>(
    headers: &HeaderMap,
    body: S,
    verifier: &Verifier,
) -> Result<VerifiedDelivery, WebhookError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let head = verifier.check_head(headers)?;
    let bytes = read_limited(body, verifier.max_body_bytes()).await?;
    Ok(verifier.verify_body_bytes(&head, bytes)?)
}

/// Reads the body stream into one buffer, failing with `BodyTooLarge` as soon as it passes
/// `limit`.
async fn read_limited<S, B>(body: S, limit: usize) -> Result<Bytes, WebhookError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut buffer = BodyBuffer::new(limit, None);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| WebhookError::BodyRead)?;
        buffer.push(chunk.copy_to_bytes(chunk.remaining()))?;
    }
    Ok(buffer.finish())
}
