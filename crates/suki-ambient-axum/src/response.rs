//! `WebhookResponse`: the ready-made endpoint's answer as an axum response.

use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use suki_ambient_core::adapter::EndpointResponse;

/// What the ready-made endpoint answers (status and a small JSON body), as an axum response.
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

impl IntoResponse for WebhookResponse {
    fn into_response(self) -> Response {
        let mut response = (self.0.status, self.0.body).into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}
