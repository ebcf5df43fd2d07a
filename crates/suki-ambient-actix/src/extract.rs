//! `SukiWebhook` and `VerifiedBody` extractors, and the bounded body read they share.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{CONTENT_LENGTH, HeaderMap};
use actix_web::{FromRequest, HttpRequest, web};
use bytes::Bytes;
use suki_ambient_core::adapter::{self, log_rejection};
use suki_ambient_core::{
    GENERATED_AT_HEADER, SIGNATURE_HEADER, VerifiedDelivery, Verifier, WebhookError, WebhookEvent,
    WebhookMeta, single_header_text,
};

use crate::WebhookRejection;

/// Extracts a verified webhook delivery without parsing it: enqueue it and parse later with
/// [`VerifiedDelivery::parse`].
#[derive(Debug)]
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

/// Extracts a verified and parsed webhook: the event, what verification established, and the
/// raw body. Rejects with [`WebhookRejection`] (4xx).
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

impl FromRequest for VerifiedBody {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let verifier = verifier(&req)?;
            let delivery = verify_request(req.headers(), payload, &verifier)
                .await
                .inspect_err(|err| log_rejection(err, &verifier))
                .map_err(WebhookRejection)?;
            Ok(Self(delivery))
        })
    }
}

impl FromRequest for SukiWebhook {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let verified = VerifiedBody::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let delivery = verified.await?.into_inner();
            let event = delivery.parse().map_err(|e| {
                let err = WebhookError::Payload(e);
                if let Ok(verifier) = verifier(&req) {
                    log_rejection(&err, &verifier);
                }
                WebhookRejection(err)
            })?;
            Ok(Self {
                event,
                meta: delivery.meta,
                body: delivery.body,
            })
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
