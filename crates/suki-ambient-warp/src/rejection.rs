//! `WebhookRejection` (a warp `Reject`) and `recover`, which answers only those.

use suki_ambient_core::adapter::EndpointResponse;
use suki_ambient_core::{PayloadError, VerifyError, WebhookError};
use warp::Rejection;
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
        WebhookResponse(EndpointResponse::rejection(&self.0)).into_response()
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

/// What the ready-made endpoint answers (status and a small JSON body), as a warp [`Reply`].
/// Use it when you call [`WebhookEndpoint`](suki_ambient_core::WebhookEndpoint) yourself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookResponse(pub EndpointResponse);

impl WebhookResponse {
    /// The endpoint's answer.
    pub fn into_inner(self) -> EndpointResponse {
        self.0
    }
}

impl From<EndpointResponse> for WebhookResponse {
    fn from(response: EndpointResponse) -> Self {
        Self(response)
    }
}

impl Reply for WebhookResponse {
    fn into_response(self) -> Response {
        let mut response = Response::new(self.0.body.into());
        *response.status_mut() = self.0.status;
        response.headers_mut().insert(
            warp::http::header::CONTENT_TYPE,
            warp::http::HeaderValue::from_static("application/json"),
        );
        response
    }
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
