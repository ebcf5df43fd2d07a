//! `SukiWebhook` and `VerifiedBody` extractors, and the bounded body read they share.

use std::marker::PhantomData;

use axum::body::Body;
use axum::extract::{FromRef, FromRequest, Request};
use axum::response::IntoResponse;
use bytes::Bytes;
use suki_ambient_core::adapter::{self, log_rejection};
use suki_ambient_core::{VerifiedDelivery, Verifier, WebhookError, WebhookEvent, WebhookMeta};

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
            Err(err) => {
                log_rejection(&err, &verifier);
                Err(R::from(err))
            }
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
        let event = delivery.parse().map_err(|e| {
            let err = WebhookError::Payload(e);
            log_rejection(&err, &Verifier::from_ref(state));
            R::from(err)
        })?;
        Ok(Self {
            event,
            meta: delivery.meta,
            body: delivery.body,
            _rejection: PhantomData,
        })
    }
}

/// Checks the head, reads the body within the limit and deadline, verifies (not logged: each
/// caller logs its own rejections).
pub(crate) async fn read_verified(
    req: Request,
    verifier: &Verifier,
) -> Result<VerifiedDelivery, WebhookError> {
    let (parts, body) = req.into_parts();
    verify_request(&parts.headers, body, verifier).await
}

/// [`read_verified`] for a request already split into head and body.
pub(crate) async fn verify_request(
    headers: &http::HeaderMap,
    body: Body,
    verifier: &Verifier,
) -> Result<VerifiedDelivery, WebhookError> {
    adapter::verify_request(verifier, headers, body.into_data_stream()).await
}
