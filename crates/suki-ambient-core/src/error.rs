//! Errors of verification (`VerifyError`), payload parsing (`PayloadError`) and configuration.
//!
//! No message here ever contains a header value, a byte of the body or a secret.

use std::fmt;

use http::StatusCode;

/// Why a delivery failed verification. Each variant maps to a stable [`code`](Self::code) and the
/// HTTP [`status`](Self::status) every adapter answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A required header is absent or empty.
    #[error("missing `{name}` header")]
    MissingHeader {
        /// The header name (`generated-at` or `x-api-key`).
        name: &'static str,
    },
    /// `generated-at` is not 1 to 19 ASCII digits (or the header was sent twice).
    #[error("`generated-at` must be Unix time in milliseconds (1 to 19 ASCII digits)")]
    InvalidTimestamp,
    /// `generated-at` is older than the tolerance allows.
    #[error("`generated-at` is {age_ms} ms old; the tolerance is {tolerance_ms} ms")]
    TimestampTooOld {
        /// How old the timestamp is, in milliseconds.
        age_ms: u64,
        /// The configured tolerance, in milliseconds.
        tolerance_ms: u64,
    },
    /// `generated-at` lies further in the future than the tolerance allows.
    #[error("`generated-at` is {skew_ms} ms in the future; the tolerance is {tolerance_ms} ms")]
    TimestampInFuture {
        /// How far ahead the timestamp is, in milliseconds.
        skew_ms: u64,
        /// The configured tolerance, in milliseconds.
        tolerance_ms: u64,
    },
    /// `X-API-Key` is not 64 hex digits (32 bytes), or the header was sent twice.
    #[error("`x-api-key` must be a hex-encoded HMAC-SHA-256 (64 hex digits)")]
    InvalidSignature,
    /// The signature is well formed but matches none of the configured secrets.
    #[error("signature does not match")]
    SignatureMismatch,
    /// The body is larger than the verifier's limit.
    #[error("body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
}

impl VerifyError {
    /// A stable snake_case code, used in rejection bodies and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader { name } if *name == crate::GENERATED_AT_HEADER => {
                "missing_timestamp"
            }
            Self::MissingHeader { .. } => "missing_signature",
            Self::InvalidTimestamp => "malformed_timestamp",
            Self::TimestampTooOld { .. } => "stale",
            Self::TimestampInFuture { .. } => "future",
            Self::InvalidSignature => "malformed_signature",
            Self::SignatureMismatch => "mismatch",
            Self::BodyTooLarge { .. } => "body_too_large",
        }
    }

    /// The HTTP status an endpoint answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidTimestamp => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// What kind of JSON problem a [`PayloadError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadErrorCategory {
    /// Not syntactically valid JSON (including invalid UTF-8 and nesting deeper than 128).
    Syntax,
    /// Valid JSON that does not fit the model (wrong type, missing field).
    Data,
    /// The input ended in the middle of a value (an empty body, for instance).
    Eof,
}

impl fmt::Display for PayloadErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Syntax => "syntax",
            Self::Data => "data",
            Self::Eof => "unexpected end of input",
        })
    }
}

/// A verified body that is not a valid webhook payload (HTTP 400, code `invalid_payload`).
///
/// serde's own messages can quote values from the payload (PHI), so only the category, the
/// position, the JSON path (with unknown object keys replaced by `<key>`) and, for a missing
/// field, the field's name are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    category: PayloadErrorCategory,
    line: usize,
    column: usize,
    path: String,
    missing_field: Option<&'static str>,
}

impl PayloadError {
    pub(crate) fn from_path_error(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let mut path = String::new();
        for segment in err.path().iter() {
            use serde_path_to_error::Segment;
            match segment {
                Segment::Seq { index } => path.push_str(&format!("[{index}]")),
                Segment::Map { key } | Segment::Enum { variant: key } => {
                    path.push('.');
                    path.push_str(crate::fields::known_field(key).unwrap_or("<key>"));
                }
                Segment::Unknown => path.push_str(".?"),
            }
        }
        if path.is_empty() {
            path.push('.');
        }
        let mut out = Self::from_json(err.inner());
        out.path = path;
        out
    }

    /// A payload error from a serde_json error, keeping nothing of its message but a missing
    /// field's name when it is one of the models' own.
    pub(crate) fn from_json(err: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let category = match err.classify() {
            Category::Syntax | Category::Io => PayloadErrorCategory::Syntax,
            Category::Data => PayloadErrorCategory::Data,
            Category::Eof => PayloadErrorCategory::Eof,
        };
        // serde's message for a missing field is "missing field `name`": the name is ours.
        let missing_field = err
            .to_string()
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .and_then(crate::fields::known_field);
        Self {
            category,
            line: err.line(),
            column: err.column(),
            path: String::from("."),
            missing_field,
        }
    }

    /// A payload whose `status` is known but which lacks a required field.
    pub(crate) fn missing(field: &'static str) -> Self {
        Self {
            category: PayloadErrorCategory::Data,
            line: 0,
            column: 0,
            path: format!(".{field}"),
            missing_field: Some(field),
        }
    }

    /// A body that is JSON but not an object.
    pub(crate) fn not_an_object() -> Self {
        Self {
            category: PayloadErrorCategory::Data,
            line: 0,
            column: 0,
            path: String::from("."),
            missing_field: None,
        }
    }

    /// The kind of problem.
    pub fn category(&self) -> PayloadErrorCategory {
        self.category
    }

    /// 1-based line of the problem (0 when not known).
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column of the problem (0 when not known).
    pub fn column(&self) -> usize {
        self.column
    }

    /// The JSON path of the problem, e.g. `._links.contents[0].href`; object keys that are not
    /// field names of the models are shown as `<key>`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The missing field, when the problem is one.
    pub fn missing_field(&self) -> Option<&'static str> {
        self.missing_field
    }

    /// Always `invalid_payload`.
    pub fn code(&self) -> &'static str {
        "invalid_payload"
    }

    /// Always 400 Bad Request.
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid webhook payload: {} error", self.category)?;
        if let Some(field) = self.missing_field {
            write!(f, " (missing field `{field}`)")?;
        }
        write!(f, " at {}", self.path)?;
        if self.line > 0 {
            write!(f, ", line {} column {}", self.line, self.column)?;
        }
        Ok(())
    }
}

impl std::error::Error for PayloadError {}

/// A [`crate::VerifierBuilder`] or endpoint configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No secret was given.
    #[error("no webhook secret configured")]
    NoSecret,
    /// A secret is empty (index among the configured secrets).
    #[error("webhook secret #{index} is empty")]
    EmptySecret {
        /// Which secret, in the order they were added.
        index: usize,
    },
    /// The body limit is zero.
    #[error("max_body_bytes must be greater than zero")]
    ZeroBodyLimit,
    /// The body timeout is zero.
    #[error("body_timeout must be greater than zero")]
    ZeroBodyTimeout,
    /// The environment variable meant to hold a secret is unset or not UTF-8.
    #[error("environment variable {name} is {}", if *not_unicode { "not valid UTF-8" } else { "not set" })]
    SecretEnv {
        /// The variable's name.
        name: String,
        /// Set, but not valid UTF-8.
        not_unicode: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_follow_the_design_table() {
        let table = [
            (
                VerifyError::MissingHeader { name: "x-api-key" },
                "missing_signature",
                401,
            ),
            (
                VerifyError::MissingHeader {
                    name: "generated-at",
                },
                "missing_timestamp",
                401,
            ),
            (VerifyError::InvalidTimestamp, "malformed_timestamp", 400),
            (
                VerifyError::TimestampTooOld {
                    age_ms: 1,
                    tolerance_ms: 0,
                },
                "stale",
                401,
            ),
            (
                VerifyError::TimestampInFuture {
                    skew_ms: 1,
                    tolerance_ms: 0,
                },
                "future",
                401,
            ),
            (VerifyError::InvalidSignature, "malformed_signature", 401),
            (VerifyError::SignatureMismatch, "mismatch", 401),
            (
                VerifyError::BodyTooLarge { limit: 1 },
                "body_too_large",
                413,
            ),
        ];
        for (err, code, status) in table {
            assert_eq!(err.code(), code);
            assert_eq!(err.status().as_u16(), status, "{code}");
        }
    }
}

/// Any reason a webhook request is rejected: what every adapter's `WebhookRejection` carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// Verification failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The body verified but is not a valid payload.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The body could not be read (connection closed or broken framing).
    #[error("could not read the request body")]
    BodyRead,
    /// The body did not arrive within the verifier's
    /// [`body_timeout`](crate::VerifierBuilder::body_timeout).
    #[error("the request body did not arrive within {} ms", timeout.as_millis())]
    BodyTimeout {
        /// The configured deadline.
        timeout: std::time::Duration,
    },
    /// The request declared a body but none was left to read: something in the application read
    /// it before the webhook extractor (e.g. actix-web's `web::Json`/`web::Bytes`, or another
    /// middleware). A configuration error, answered with 500 so that it is noticed.
    #[error(
        "the request body was already consumed before the webhook extractor ran (an extractor \
         such as web::Json, web::Bytes or String, or a middleware, read it first)"
    )]
    BodyAlreadyConsumed,
}

impl WebhookError {
    /// The stable code: [`VerifyError::code`], `invalid_payload`, `body_read_failed`,
    /// `body_timeout` or `body_already_consumed`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Verify(e) => e.code(),
            Self::Payload(e) => e.code(),
            Self::BodyRead => "body_read_failed",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::BodyAlreadyConsumed => "body_already_consumed",
        }
    }

    /// The HTTP status to answer with: 4xx for anything the sender did, 500 only for
    /// [`BodyAlreadyConsumed`](Self::BodyAlreadyConsumed), the application's own mistake.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Verify(e) => e.status(),
            Self::Payload(e) => e.status(),
            Self::BodyRead => StatusCode::BAD_REQUEST,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::BodyAlreadyConsumed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message sent over HTTP: the [`Display`](std::fmt::Display) text, except that the
    /// freshness errors do not say by how much the timestamp was off (that would tell anyone
    /// the server's clock); logs and the error value keep the figures.
    pub fn public_message(&self) -> String {
        match self {
            Self::Verify(VerifyError::TimestampTooOld { .. }) => {
                "`generated-at` is older than the tolerance allows".to_owned()
            }
            Self::Verify(VerifyError::TimestampInFuture { .. }) => {
                "`generated-at` is further in the future than the tolerance allows".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// The rejection body: `{"error": "<code>", "message": "<public message>"}`.
    pub fn to_json(&self) -> String {
        error_json(self.code(), &self.public_message())
    }
}

/// `{"error": code, "message": message}` as a JSON string.
pub(crate) fn error_json(code: &str, message: &str) -> String {
    serde_json::json!({ "error": code, "message": message }).to_string()
}
