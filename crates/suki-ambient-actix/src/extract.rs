//! `SukiWebhook` and `VerifiedBody` extractors, and the bounded body read they share.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::ResponseError;
use actix_web::dev::Payload;
use actix_web::http::header::{CONTENT_LENGTH, HeaderMap};
use actix_web::{FromRequest, HttpRequest, web};
use bytes::Bytes;
use suki_ambient_core::adapter::single_header_text;
use suki_ambient_core::adapter::{self, log_rejection};
use suki_ambient_core::{
    GENERATED_AT_HEADER, SIGNATURE_HEADER, VerifiedDelivery, Verifier, WebhookError, WebhookEvent,
    WebhookMeta,
};

use crate::WebhookRejection;

/// Extracts a verified webhook delivery without parsing it: enqueue it and parse later with
/// [`Verified::parse`](suki_ambient_core::Verified::parse).
///
/// `R` is the rejection type, [`WebhookRejection`] by default; any `ResponseError +
/// From<WebhookError>` type can replace it to shape error responses (as with axum's extractors).
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
/// raw body. Rejects with `R` ([`WebhookRejection`], 4xx, by default; see [`VerifiedBody`]).
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

/// The verifier from app data (`web::Data<Verifier>` or `Verifier`).
fn verifier(req: &HttpRequest) -> Result<Verifier, actix_web::Error> {
    req.app_data::<web::Data<Verifier>>()
        .map(|data| Verifier::clone(data))
        .or_else(|| req.app_data::<Verifier>().cloned())
        .ok_or_else(|| {
            actix_web::error::ErrorInternalServerError(
                "suki-ambient: no Verifier in app data (add .app_data(web::Data::new(verifier)))",
            )
        })
}

impl<R> FromRequest for VerifiedBody<R>
where
    R: ResponseError + From<WebhookError> + 'static,
{
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let verifier = verifier(&req)?;
            match verify_request(req.headers(), payload, &verifier).await {
                Ok(delivery) => Ok(Self(delivery, PhantomData)),
                Err(err) => {
                    log_rejection(&err, &verifier);
                    Err(R::from(err).into())
                }
            }
        })
    }
}

impl<R> FromRequest for SukiWebhook<R>
where
    R: ResponseError + From<WebhookError> + 'static,
{
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let verified = VerifiedBody::<R>::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let delivery = verified.await?.into_inner();
            match delivery.parse() {
                Ok(event) => Ok(Self {
                    event,
                    meta: delivery.meta,
                    body: delivery.body,
                    _rejection: PhantomData,
                }),
                Err(err) => {
                    let err = WebhookError::Payload(err);
                    if let Ok(verifier) = verifier(&req) {
                        log_rejection(&err, &verifier);
                    }
                    Err(R::from(err).into())
                }
            }
        })
    }
}

/// Checks the head (rejecting before the body is read), reads the body within the limit and
/// deadline, verifies (not logged: each caller logs its own rejections).
pub(crate) async fn verify_request(
    headers: &HeaderMap,
    payload: Payload,
    verifier: &Verifier,
) -> Result<VerifiedDelivery, WebhookError> {
    // actix-web 4 is on `http` 0.2: the headers cross to the core as text.
    let text = |name: &str| single_header_text(headers.get_all(name).map(|v| v.as_bytes()));
    adapter::verify_request_parts(
        verifier,
        text(GENERATED_AT_HEADER),
        text(SIGNATURE_HEADER),
        headers.get(CONTENT_LENGTH).map(|v| v.as_bytes()),
        payload,
    )
    .await
}
