//! What adapter authors need, and only they: the head check, the bounded body read with its
//! deadline, single-header reading, the endpoint's response, and rejection logging. Users of the
//! axum, actix-web and warp adapters never need this module.
//!
//! # Writing an adapter for another framework
//!
//! The three adapters of this workspace are built from these pieces, each in a few dozen lines
//! (async-graphql's integrations are the model):
//!
//! 1. **Verify-only extractor** (`VerifiedBody`): take the request's headers and body stream and
//!    call [`verify_request`] (an `http` 1.x `HeaderMap`) or [`verify_request_parts`] (headers
//!    of another `http` version, read with [`single_header_text`]). It checks the head first
//!    (a missing header or a declared length over the limit is refused before any body byte is
//!    read), reads the body within [`Verifier::max_body_bytes`] and
//!    [`Verifier::body_timeout`], and verifies. On error, call [`log_rejection`] and answer
//!    `err.status()` with `err.to_json()` (or turn it into your framework's rejection).
//! 2. **Parsing extractor** (`SukiWebhook`): the same, then
//!    [`Verified::parse`](crate::Verified::parse); a [`PayloadError`](crate::PayloadError) is a
//!    rejection too.
//! 3. **Ready-made endpoint**: hold a [`WebhookEndpoint`](crate::WebhookEndpoint); on a verified
//!    delivery call [`WebhookEndpoint::handle_verified`](crate::WebhookEndpoint::handle_verified),
//!    on an error [`WebhookEndpoint::reject`](crate::WebhookEndpoint::reject) (which logs), and
//!    send the [`EndpointResponse`] (status, JSON body, `Content-Type: application/json`) as your
//!    framework's response type.
//! 4. Run [`run_conformance`](crate::testing::run_conformance) (feature `testing`) against each
//!    entry point over real HTTP.
//!
//! Frameworks whose body arrives in one piece can call [`check_head`] and
//! [`CheckedHead::verify_body`] themselves; [`BodyBuffer`] gathers chunks within a limit.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use bytes::{Buf, Bytes};
use futures_core::Stream;
use http::HeaderMap;

pub use crate::body::BodyBuffer;
pub use crate::endpoint::EndpointResponse;
pub use crate::headers::single_header_text;
use crate::headers::{GENERATED_AT_NAME, SIGNATURE_NAME, header_text};
pub use crate::rejection::log_rejection;
pub use crate::verify::CheckedHead;
use crate::{VerifiedDelivery, Verifier, VerifyError, WebhookError};

/// Checks a request's head before its body is read: both headers present and well formed, the
/// timestamp fresh, and a declared `Content-Length` within the body limit. Finish with
/// [`CheckedHead::verify_body`] once the body is read: the headers are not parsed twice.
///
/// # Errors
/// The first check that fails.
pub fn check_head<'h>(
    verifier: &Verifier,
    headers: &'h HeaderMap,
) -> Result<CheckedHead<'h>, VerifyError> {
    let content_length = headers
        .get(http::header::CONTENT_LENGTH)
        .map(|v| v.to_str().unwrap_or("!"));
    verifier.check_head_parts(
        header_text(headers, &GENERATED_AT_NAME),
        header_text(headers, &SIGNATURE_NAME),
        content_length,
    )
}

/// [`check_head`] for header values as text (`""` = absent; see [`single_header_text`]). A
/// `Content-Length` that is not a number is left for the HTTP layer to refuse.
///
/// # Errors
/// The first check that fails.
pub fn check_head_parts<'h>(
    verifier: &Verifier,
    generated_at: &'h str,
    signature: &str,
    content_length: Option<&str>,
) -> Result<CheckedHead<'h>, VerifyError> {
    verifier.check_head_parts(generated_at, signature, content_length)
}

/// Verifies a request whose headers are an `http` 1.x [`HeaderMap`] and whose body is a stream
/// of chunks: checks the head before reading anything (a missing header or a declared
/// Content-Length over the limit is refused without reading the body), reads the body within
/// the verifier's limit and [`body_timeout`](Verifier::body_timeout), then verifies it (the
/// freshness window is checked again once the body is complete).
///
/// # Errors
/// The first check that fails, as a [`WebhookError`].
pub async fn verify_request<S, B, E>(
    verifier: &Verifier,
    headers: &HeaderMap,
    body: S,
) -> Result<VerifiedDelivery, WebhookError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
{
    let head = check_head(verifier, headers)?;
    let declared = declared_length(
        headers
            .get(http::header::CONTENT_LENGTH)
            .map(http::HeaderValue::as_bytes),
    );
    finish(verifier, &head, body, declared).await
}

/// [`verify_request`] for frameworks on another `http` version: the two header texts as
/// [`single_header_text`] gives them, and the raw Content-Length.
///
/// # Errors
/// The first check that fails, as a [`WebhookError`].
pub async fn verify_request_parts<S, B, E>(
    verifier: &Verifier,
    generated_at: &str,
    signature: &str,
    content_length: Option<&[u8]>,
    body: S,
) -> Result<VerifiedDelivery, WebhookError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
{
    let length_text = content_length.map(|v| std::str::from_utf8(v).unwrap_or("!"));
    let head = check_head_parts(verifier, generated_at, signature, length_text)?;
    finish(verifier, &head, body, declared_length(content_length)).await
}

async fn finish<S, B, E>(
    verifier: &Verifier,
    head: &CheckedHead<'_>,
    body: S,
    declared: Option<u64>,
) -> Result<VerifiedDelivery, WebhookError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
{
    let (bytes, waited) = read(verifier, body, declared).await?;
    if waited {
        Ok(head.verify_body(verifier, bytes)?)
    } else {
        // The body was already complete when the head was checked, microseconds ago: the
        // head's freshness check holds for it (as in `Verifier::verify`).
        Ok(verifier.authenticate(head, bytes)?)
    }
}

fn declared_length(value: Option<&[u8]>) -> Option<u64> {
    value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads a body stream into one buffer (a body arriving in one chunk is not copied):
/// - [`VerifyError::BodyTooLarge`] as soon as it passes [`Verifier::max_body_bytes`];
/// - [`WebhookError::BodyTimeout`] when it is not complete within [`Verifier::body_timeout`],
///   however slowly its bytes trickle in;
/// - [`WebhookError::BodyAlreadyConsumed`] when `declared` says a body was sent but the stream is
///   empty (something read it before the adapter);
/// - [`WebhookError::BodyRead`] when the stream fails.
///
/// # Errors
/// As above.
pub async fn read_body<S, B, E>(
    verifier: &Verifier,
    body: S,
    declared: Option<u64>,
) -> Result<Bytes, WebhookError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
{
    Ok(read(verifier, body, declared).await?.0)
}

/// [`read_body`], and whether it had to wait for the body (it was not complete at once).
async fn read<S, B, E>(
    verifier: &Verifier,
    body: S,
    declared: Option<u64>,
) -> Result<(Bytes, bool), WebhookError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
{
    let timeout = verifier.body_timeout();
    let limit = verifier.max_body_bytes();
    let read = async {
        let mut body = pin!(body);
        let mut buffer = BodyBuffer::new(limit, declared);
        while let Some(chunk) = poll_fn(|cx| body.as_mut().poll_next(cx)).await {
            let mut chunk = chunk.map_err(|_| WebhookError::BodyRead)?;
            buffer.push(chunk.copy_to_bytes(chunk.remaining()))?;
        }
        if buffer.is_empty() && declared.is_some_and(|len| len > 0) {
            return Err(WebhookError::BodyAlreadyConsumed);
        }
        Ok(buffer.finish())
    };
    // A body that is already in needs no timer: poll once before arming one.
    let mut read = pin!(read);
    if let Poll::Ready(done) = poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await {
        return done.map(|bytes| (bytes, false));
    }
    match tokio::time::timeout(timeout, read).await {
        Ok(done) => done.map(|bytes| (bytes, true)),
        Err(_) => Err(WebhookError::BodyTimeout { timeout }),
    }
}
