//! `WebhookRejection`: the response for a refused webhook request.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use suki_ambient_core::{PayloadError, VerifyError, WebhookError};

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

/// actix-web 4 uses `http` 0.2: statuses cross by number.
pub(crate) fn status(code: suki_ambient_core::StatusCode) -> StatusCode {
    StatusCode::from_u16(code.as_u16()).unwrap_or(StatusCode::BAD_REQUEST)
}

/// A JSON response with `status` and `body`.
pub(crate) fn json_response(
    code: suki_ambient_core::StatusCode,
    body: bytes::Bytes,
) -> HttpResponse {
    HttpResponse::build(status(code))
        .content_type("application/json")
        .body(body)
}

impl ResponseError for WebhookRejection {
    fn status_code(&self) -> StatusCode {
        status(self.0.status())
    }

    fn error_response(&self) -> HttpResponse {
        json_response(self.0.status(), self.0.to_json().into())
    }
}
