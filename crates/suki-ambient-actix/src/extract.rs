//! `SukiWebhook` and `VerifiedBody` extractors, and the bounded body read they share.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{CONTENT_LENGTH, HeaderMap};
use actix_web::{FromRequest, HttpRequest, web};
use bytes::Bytes;
use futures_util::StreamExt;
use suki_ambient_core::{
    BodyBuffer, GENERATED_AT_HEADER, SIGNATURE_HEADER, VerifiedDelivery, Verifier, WebhookError,
    WebhookEvent, WebhookMeta, single_header_text,
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
        Box::pin(async move {
            let delivery = verified.await?.into_inner();
            let event = delivery.parse().map_err(WebhookRejection::from)?;
            Ok(Self {
                event,
                meta: delivery.meta,
                body: delivery.body,
            })
        })
    }
}

/// Checks the headers (rejecting before the body is read), reads the body up to the limit,
/// verifies.
pub(crate) async fn verify_request(
    headers: &HeaderMap,
    payload: Payload,
    verifier: &Verifier,
) -> Result<VerifiedDelivery, WebhookError> {
    let text = |name: &str| single_header_text(headers.get_all(name).map(|v| v.as_bytes()));
    let generated_at = text(GENERATED_AT_HEADER);
    let signature = text(SIGNATURE_HEADER);
    let content_length = headers
        .get(CONTENT_LENGTH)
        .map(|v| v.to_str().unwrap_or("!"));
    let head = verifier.check_head_parts(generated_at, signature, content_length)?;
    let declared = content_length.and_then(|v| v.parse::<u64>().ok());
    let body = read_limited(payload, verifier.max_body_bytes(), declared).await?;
    Ok(verifier.verify_body_bytes(&head, body)?)
}

/// Reads a payload into one buffer, failing with `BodyTooLarge` as soon as it passes `limit`.
pub(crate) async fn read_limited(
    mut payload: Payload,
    limit: usize,
    declared: Option<u64>,
) -> Result<Bytes, WebhookError> {
    let mut buffer = BodyBuffer::new(limit, declared);
    while let Some(chunk) = payload.next().await {
        buffer.push(chunk.map_err(|_| WebhookError::BodyRead)?)?;
    }
    Ok(buffer.finish())
}
