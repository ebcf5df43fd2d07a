//! The client's metrics, through the [`metrics`](https://docs.rs/metrics) facade with the
//! `metrics` feature; without it these calls compile to nothing. The route label is the route
//! table's template (`/api/v1/ambient/session/{id}/status`), never a path with an id.

use crate::ClientError;

/// Counter: attempts, by `route` (template) and `status`: `2xx`, the HTTP status of an error
/// answer (`503`, `401`, …), `timeout`, `transport`, `redirect`.
pub const CLIENT_REQUESTS: &str = "suki_client_requests_total";
/// Counter: attempts made again, by `reason`: the status that caused it (`503`, `429`, …),
/// `timeout`, `transport`, or `token_refused` (a 401 answered by one fresh login).
pub const CLIENT_RETRIES: &str = "suki_client_retries_total";

/// What an attempt's outcome is called in the labels.
pub(crate) fn outcome(err: &ClientError) -> std::borrow::Cow<'static, str> {
    match err {
        ClientError::Api { status, .. } | ClientError::Auth { status, .. } => {
            status.to_string().into()
        }
        ClientError::Timeout { .. } => "timeout".into(),
        ClientError::Transport { .. } => "transport".into(),
        ClientError::Redirect { .. } => "redirect".into(),
        ClientError::ResponseTooLarge { .. } => "response_too_large".into(),
        _ => "error".into(),
    }
}

#[inline]
pub(crate) fn request(
    route: &'static str,
    status: impl FnOnce() -> std::borrow::Cow<'static, str>,
) {
    #[cfg(feature = "metrics")]
    metrics::counter!(CLIENT_REQUESTS, "route" => route, "status" => status()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (route, status);
}

#[inline]
pub(crate) fn retry(reason: impl FnOnce() -> std::borrow::Cow<'static, str>) {
    #[cfg(feature = "metrics")]
    metrics::counter!(CLIENT_RETRIES, "reason" => reason()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = reason;
}
