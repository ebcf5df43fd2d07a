//! `WebhookRejection`: the response for a refused webhook request.

use axum::response::{IntoResponse, Response};
use suki_ambient_core::adapter::EndpointResponse;
use suki_ambient_core::{PayloadError, VerifyError, WebhookError};

use crate::WebhookResponse;

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

impl std::error::Error for WebhookRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
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

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        WebhookResponse(EndpointResponse::rejection(&self.0)).into_response()
    }
}
