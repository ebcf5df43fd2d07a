//! `WebhookRejection` (a warp `Reject`) and `recover`, which answers only those.

use suki_ambient_core::{PayloadError, VerifyError, WebhookError};
use warp::Rejection;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// Why a request was refused: a warp rejection carrying the core error. [`recover`] turns it
/// into the status of [`WebhookError::status`] with `{"error": "<code>", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRejection(pub WebhookError);

impl warp::reject::Reject for WebhookRejection {}

impl WebhookRejection {
    /// The underlying error.
    pub fn into_inner(self) -> WebhookError {
        self.0
    }

    /// The JSON answer for this rejection.
    pub fn to_response(&self) -> Response {
        json_response(self.0.status(), self.0.to_json().into())
    }
}

impl From<WebhookError> for WebhookRejection {
    fn from(err: WebhookError) -> Self {
        Self(err)
    }
}

impl From<VerifyError> for WebhookRejection {
    fn from(err: VerifyError) -> Self {
        Self(WebhookError::Verify(err))
    }
}

impl From<PayloadError> for WebhookRejection {
    fn from(err: PayloadError) -> Self {
        Self(WebhookError::Payload(err))
    }
}

/// A JSON response with `status` and `body`.
pub(crate) fn json_response(status: StatusCode, body: bytes::Bytes) -> Response {
    warp::reply::with_header(
        warp::reply::with_status(Response::new(body.into()), status),
        "content-type",
        "application/json",
    )
    .into_response()
}

/// Recovers this crate's [`WebhookRejection`]s as 4xx JSON answers; any other rejection is
/// passed on unchanged (for your own `recover`, or warp's default handling).
///
/// # Errors
/// The same rejection, when it is not a [`WebhookRejection`].
pub async fn recover(rejection: Rejection) -> Result<Response, Rejection> {
    match rejection.find::<WebhookRejection>() {
        Some(ours) => Ok(ours.to_response()),
        None => Err(rejection),
    }
}
