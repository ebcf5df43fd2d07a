//! Tokens, partner tokens and response bodies never reach logs or errors, even at TRACE level;
//! the `suki_api` span records method, path template, status and attempt.

use std::time::Duration;

use suki_ambient_client::{AmbientClient, PartnerLogin, RetryPolicy};
use suki_ambient_core::SessionId;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn no_secret_or_phi_in_logs_or_errors() {
    let capture = suki_ambient_core::testing::LogCapture::default();
    let subscriber = capture.trace_subscriber();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/auth/login"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(r#"{"suki_token":"SUKI-TOKEN-MARKER"}"#, "application/json"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/ambient/session/s/transcript"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"final_transcript":[{"transcript":"PHI-MARKER patient Jane Roe","transcript_id":"t","recording_id":"r"}]}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/ambient/session/s/content"))
        .respond_with(ResponseTemplate::new(500).set_body_raw(
            r#"{"code":500,"message":"internal_server_error: PHI-MARKER"}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/ambient/session/s/structured-data"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(r#"{"structured_data":"PHI-MARKER"}"#, "application/json"),
        )
        .mount(&server)
        .await;

    let client = AmbientClient::builder()
        .base_url(server.uri())
        .auth(PartnerLogin::new("partner", "PARTNER-TOKEN-MARKER"))
        .retry(
            RetryPolicy::default()
                .max_attempts(2)
                .base_delay(Duration::from_millis(5)),
        )
        .build()
        .unwrap();
    let id = SessionId::from("s");
    let transcript = client.session_transcript(&id).await.unwrap();
    let content_err = client.session_content(&id, false).await.unwrap_err();
    let decode_err = client.session_structured_data(&id).await.unwrap_err();

    let logs = capture.text();
    let shown = format!(
        "{logs}\n{transcript:?}\n{content_err}\n{content_err:?}\n{decode_err}\n{decode_err:?}\n{client:?}"
    );
    for marker in [
        "SUKI-TOKEN-MARKER",
        "PARTNER-TOKEN-MARKER",
        "PHI-MARKER",
        "Jane Roe",
    ] {
        assert!(!shown.contains(marker), "{marker} leaked:\n{shown}");
    }
    // The span carries what operators need.
    assert!(
        logs.contains("path=\"/api/v1/ambient/session/{id}/transcript\""),
        "{logs}"
    );
    assert!(logs.contains("status=200"), "{logs}");
    assert!(logs.contains("status=500"), "{logs}");
    assert!(logs.contains("attempt=2"), "{logs}");
}
