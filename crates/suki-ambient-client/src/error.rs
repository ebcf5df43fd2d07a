//! `ClientError`: why a follow-up API call failed. Never holds a token, a body or PHI.

use suki_ambient_core::PayloadError;

/// The message of a Suki error body. It may carry a server-side detail, so `Debug` shows only
/// its length; read it with [`as_str`](Self::as_str) where it is safe to.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerMessage(pub String);

impl ServerMessage {
    /// The message text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ServerMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerMessage(<{} bytes>)", self.0.len())
    }
}

/// Which time limit expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// One attempt took longer than the per-attempt timeout (and no retry was left).
    Attempt,
    /// The total deadline of the call passed.
    Deadline,
}

/// What kind of transport failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// The connection could not be made (refused, DNS, TLS).
    Connect,
    /// The connection broke during the request or response.
    Io,
}

/// Why a call to Suki's API failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Suki answered an error status with its error body `{"code", "message"}`.
    #[error("Suki API error {status}: {code}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error id: the message up to the first `:` (e.g. `permission_denied`), or the
        /// status text when the body was not Suki's error shape.
        code: String,
        /// The full message (may carry a server-side detail: not shown by `Display` or `Debug`).
        message: ServerMessage,
        /// The server's `Retry-After`, when it sent one: the earliest time to ask again.
        retry_after: Option<std::time::Duration>,
    },
    /// Authentication failed: the token was refused after one fresh login, or the login failed.
    #[error("authentication failed ({status}: {code})")]
    Auth {
        /// HTTP status (401 for a refused token).
        status: u16,
        /// The error id, e.g. `invalid_sdp_token` or `provider_not_registered`.
        code: String,
    },
    /// A time limit expired.
    #[error("timed out ({kind:?})")]
    Timeout {
        /// Which one.
        kind: TimeoutKind,
    },
    /// The request could not be sent or the response not received.
    #[error("transport error ({kind:?})")]
    Transport {
        /// What kind.
        kind: TransportKind,
        /// The underlying error, without its URL.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The response body did not decode into the expected model (no body content is kept).
    #[error("could not decode the {what} response: {source}")]
    Decode {
        /// Which response (e.g. `transcript`).
        what: &'static str,
        /// Category, position and path of the problem.
        #[source]
        source: PayloadError,
    },
    /// A `_links` entry that cannot be followed safely (another origin, not GET, not a URL).
    #[error("link refused: {reason}")]
    InvalidLink {
        /// Why.
        reason: &'static str,
    },
    /// The server redirected the call away from the API base URL (another origin, https to
    /// http, or a path outside the base path), or too often. The client follows no such redirect,
    /// so the token went nowhere else; with a client of your own
    /// ([`with_client`](crate::AmbientClientBuilder::with_client)) that followed it, the call
    /// fails once the answer comes from elsewhere.
    #[error("redirect refused ({status}): {reason}")]
    Redirect {
        /// The redirect status (3xx), or the status of the answer that came from elsewhere.
        status: u16,
        /// Why.
        reason: &'static str,
    },
    /// A response body was larger than the client's limit
    /// ([`max_response_bytes`](crate::AmbientClientBuilder::max_response_bytes)): it was not
    /// read past the limit, and the call is not retried (the same answer would come again).
    #[error("response larger than the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// A session or encounter id that cannot be one path segment (empty, or only dots).
    #[error("invalid id: it must be a non-empty path segment other than `.` or `..`")]
    InvalidId,
    /// The client is misconfigured (e.g. an invalid base URL).
    #[error("client configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl ClientError {
    /// Whether trying the same call again later may succeed: transport errors, timeouts, the
    /// statuses 429, 500, 502, 503 and 504, and `409 content_not_ready` (right after a session
    /// completes its content can lag the webhook by a moment: a race, not a failure).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Api {
                status: 409, code, ..
            } => code == "content_not_ready",
            Self::Api { status, .. } => is_retryable_status(*status),
            _ => false,
        }
    }

    /// Whether the error says the API itself is unavailable, not that this call is wrong: a
    /// transport error, a timeout, or `408`, `429`, `500`, `502`, `503`, `504`. The inbox's
    /// worker then makes the row wait for the API (its circuit breaker) without spending an
    /// attempt.
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Api { status, .. } => *status == 408 || is_retryable_status(*status),
            _ => false,
        }
    }

    /// The server's `Retry-After` (seconds or an HTTP date), when it sent one with the error.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Auth { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error id Suki sent (`Api` and `Auth`).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } | Self::Auth { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A `reqwest` failure as a `Timeout` or a `Transport` error, without its URL.
    pub fn transport(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            return Self::Timeout {
                kind: TimeoutKind::Attempt,
            };
        }
        let kind = if err.is_connect() {
            TransportKind::Connect
        } else {
            TransportKind::Io
        };
        Self::Transport {
            kind,
            source: Some(err.without_url()),
        }
    }
}

/// The statuses worth retrying.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}
