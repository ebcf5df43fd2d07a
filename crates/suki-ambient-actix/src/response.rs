//! `WebhookResponse`: the ready-made endpoint's answer as an actix-web response.

use actix_web::body::BoxBody;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Responder};
use suki_ambient_core::adapter::EndpointResponse;

/// What the ready-made endpoint answers (status and a small JSON body), as an actix-web
/// [`Responder`]. Use it when you call
/// [`WebhookEndpoint`](suki_ambient_core::WebhookEndpoint) yourself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookResponse(pub EndpointResponse);

impl WebhookResponse {
    /// The endpoint's answer.
    pub fn into_inner(self) -> EndpointResponse {
        self.0
    }

    /// The answer as an `HttpResponse`.
    pub fn to_http_response(&self) -> HttpResponse {
        HttpResponse::build(status(self.0.status))
            .content_type("application/json")
            .body(self.0.body.clone())
    }
}

impl From<EndpointResponse> for WebhookResponse {
    fn from(response: EndpointResponse) -> Self {
        Self(response)
    }
}

impl Responder for WebhookResponse {
    type Body = BoxBody;

    fn respond_to(self, _req: &HttpRequest) -> HttpResponse {
        self.to_http_response()
    }
}

/// actix-web 4 uses `http` 0.2: statuses cross by number.
pub(crate) fn status(code: suki_ambient_core::StatusCode) -> StatusCode {
    StatusCode::from_u16(code.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
