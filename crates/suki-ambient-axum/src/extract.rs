//! `SukiWebhook` and `VerifiedBody` extractors, and the bounded body read they share.

use std::marker::PhantomData;

use axum::body::Body;
use axum::extract::{FromRef, FromRequest, Request};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use suki_ambient_core::{
    VerifiedDelivery, Verifier, VerifyError, WebhookError, WebhookEvent, WebhookMeta,
};

use crate::WebhookRejection;

/// Extracts a verified webhook delivery without parsing it: enqueue it and parse later with
/// [`VerifiedDelivery::parse`]. The [`Verifier`] comes from the router state (`FromRef`).
///
/// `R` is the rejection type, [`WebhookRejection`] by default; any `IntoResponse +
/// From<WebhookError>` type can replace it to shape error responses.
pub struct VerifiedBody<R = WebhookRejection>(pub VerifiedDelivery, PhantomData<fn() -> R>);

impl<R> VerifiedBody<R> {
    /// The verified delivery.
    pub fn into_inner(self) -> VerifiedDelivery {
        self.0
    }
}

impl<R> std::ops::Deref for VerifiedBody<R> {
    type Target = VerifiedDelivery;
    fn deref(&self) -> &VerifiedDelivery {
        &self.0
    }
}

impl<R> std::fmt::Debug for VerifiedBody<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("VerifiedBody").field(&self.0).finish()
    }
}

/// Extracts a verified and parsed webhook: the event, what verification established, and the
/// raw body. The [`Verifier`] comes from the router state (`FromRef`).
///
/// Rejects with 4xx ([`WebhookRejection`] by default, see [`VerifiedBody`] for `R`).
pub struct SukiWebhook<R = WebhookRejection> {
    /// The parsed event.
    pub event: WebhookEvent,
    /// Timestamp, matching secret and replay key.
    pub meta: WebhookMeta,
    /// The raw body, exactly as received.
    pub body: Bytes,
    _rejection: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for SukiWebhook<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SukiWebhook")
            .field("event", &self.event)
            .field("meta", &self.meta)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl<S, R> FromRequest<S> for VerifiedBody<R>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
    R: IntoResponse + From<WebhookError>,
{
    type Rejection = R;

    async fn from_request(req: Request, state: &S) -> Result<Self, R> {
        let verifier = Verifier::from_ref(state);
        match read_verified(req, &verifier).await {
            Ok(delivery) => Ok(Self(delivery, PhantomData)),
            Err(err) => Err(R::from(err)),
        }
    }
}

impl<S, R> FromRequest<S> for SukiWebhook<R>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
    R: IntoResponse + From<WebhookError>,
{
    type Rejection = R;

    async fn from_request(req: Request, state: &S) -> Result<Self, R> {
        let delivery = VerifiedBody::<R>::from_request(req, state)
            .await?
            .into_inner();
        let event = delivery
            .parse()
            .map_err(|e| R::from(WebhookError::Payload(e)))?;
        Ok(Self {
            event,
            meta: delivery.meta,
            body: delivery.body,
            _rejection: PhantomData,
        })
    }
}

/// Checks the head, reads the body up to the limit, verifies.
pub(crate) async fn read_verified(
    req: Request,
    verifier: &Verifier,
) -> Result<VerifiedDelivery, WebhookError> {
    let (parts, body) = req.into_parts();
    verify_request(&parts.headers, body, verifier).await
}

/// Checks the headers (rejecting before the body is read), reads the body up to the limit,
/// verifies.
pub(crate) async fn verify_request(
    headers: &http::HeaderMap,
    body: Body,
    verifier: &Verifier,
) -> Result<VerifiedDelivery, WebhookError> {
    let head = verifier.check_head(headers)?;
    let bytes = read_limited(body, verifier.max_body_bytes()).await?;
    Ok(verifier.verify_body_bytes(&head, bytes)?)
}

/// Reads a body into one buffer, failing with `BodyTooLarge` as soon as it passes `limit`.
pub(crate) async fn read_limited(body: Body, limit: usize) -> Result<Bytes, WebhookError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(WebhookError::Verify(VerifyError::BodyTooLarge { limit }))
        }
        Err(_) => Err(WebhookError::BodyRead),
    }
}
