//! `WebhookRejection`: the response for a refused webhook request.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use suki_ambient_core::adapter::EndpointResponse;
use suki_ambient_core::{PayloadError, VerifyError, WebhookError};

use crate::WebhookResponse;
use crate::response::status;

/// Why a request was refused; answers the status of [`WebhookError::status`] with
/// `{"error": "<code>", "message": "..."}`. Never holds payload content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRejection(pub WebhookError);

impl WebhookRejection {
    /// The underlying error.
    pub fn into_inner(self) -> WebhookError {
        self.0
    }
}

impl std::fmt::Display for WebhookRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
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

impl ResponseError for WebhookRejection {
    fn status_code(&self) -> StatusCode {
        status(self.0.status())
    }

    fn error_response(&self) -> HttpResponse {
        WebhookResponse(EndpointResponse::rejection(&self.0)).to_http_response()
    }
}
