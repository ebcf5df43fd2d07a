//! What the client's test files share: canned answers and a fast retry policy.

use std::time::Duration;

use suki_ambient_client::RetryPolicy;
use wiremock::ResponseTemplate;

/// 200 with a JSON body.
pub(crate) fn json(bytes: impl Into<Vec<u8>>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(bytes.into(), "application/json")
}

/// Suki's error body for `status` and error id `id`.
pub(crate) fn error(status: u16, id: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(
        format!(r#"{{"code":{status},"message":"{id}"}}"#),
        "application/json",
    )
}

/// Retries with short back-offs, so tests do not wait.
pub(crate) fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(50))
}
