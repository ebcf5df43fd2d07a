//! A partner with many providers: `for_provider`, per-provider tokens, a chosen subset of links,
//! retrying only what failed, and the `409 content_not_ready` race.

mod common;

use std::sync::Arc;

use common::{error, fast_retry, json};
use suki_ambient_client::{AmbientClient, PartnerLogin};
use suki_ambient_core::api::Route;
use suki_ambient_core::testing::{completed, fixture};
use suki_ambient_core::{LinkKind, SessionId, WebhookEvent};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer};

fn status_path(id: &str) -> String {
    Route::SessionStatus.path(id)
}

#[tokio::test]
async fn for_provider_shares_one_client_and_sends_its_own_provider_id() {
    let server = MockServer::start().await;
    for provider in ["prov-a", "prov-b"] {
        Mock::given(method("GET"))
            .and(path(status_path("s")))
            .and(header("sdp_provider_id", provider))
            .and(header("sdp_suki_token", "shared-token"))
            .respond_with(json(fixture("api/session-status.json")))
            .expect(1)
            .mount(&server)
            .await;
    }
    let client = AmbientClient::builder()
        .base_url(server.uri())
        .token("shared-token")
        .build()
        .unwrap();
    assert_eq!(client.provider_id(), None);
    let a = client.for_provider("prov-a").unwrap();
    let b = client.for_provider("prov-b").unwrap();
    assert_eq!(a.provider_id(), Some("prov-a"));
    a.session_status(&SessionId::from("s")).await.unwrap();
    b.session_status(&SessionId::from("s")).await.unwrap();
    assert!(client.for_provider("bad\nvalue").is_err());
}

#[tokio::test]
async fn a_token_per_provider_logs_in_once_per_provider() {
    let server = MockServer::start().await;
    for provider in ["prov-a", "prov-b"] {
        Mock::given(method("POST"))
            .and(path(Route::Login.path("")))
            .and(body_partial_json(
                serde_json::json!({"provider_id": provider}),
            ))
            .respond_with(json(
                format!(r#"{{"suki_token":"token-for-{provider}"}}"#).into_bytes(),
            ))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(status_path("s")))
            .and(header(
                "sdp_suki_token",
                format!("token-for-{provider}").as_str(),
            ))
            .respond_with(json(fixture("api/session-status.json")))
            .expect(3)
            .mount(&server)
            .await;
    }
    let login = Arc::new(PartnerLogin::new("partner-1", "partner-jwt").token_per_provider());
    let client = AmbientClient::builder()
        .base_url(server.uri())
        .auth_shared(Arc::clone(&login) as Arc<dyn suki_ambient_client::TokenProvider>)
        .build()
        .unwrap();
    for _ in 0..3 {
        for provider in ["prov-a", "prov-b"] {
            client
                .for_provider(provider)
                .unwrap()
                .session_status(&SessionId::from("s"))
                .await
                .unwrap();
        }
    }
    assert_eq!(login.logins(), 2);
}

fn completed_event() -> suki_ambient_core::SessionCompleted {
    match completed("s", "e") {
        WebhookEvent::Completed(done) => done,
        _ => unreachable!("a completed event"),
    }
}

#[tokio::test]
async fn fetch_results_with_fetches_only_the_chosen_links() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(Route::SessionContent.path("s")))
        .respond_with(json(fixture("api/session-content.json")))
        .expect(1)
        .mount(&server)
        .await;
    let client = AmbientClient::builder()
        .base_url(server.uri())
        .token("t")
        .build()
        .unwrap();
    let results = client
        .fetch_results_with(&completed_event(), &[LinkKind::Contents])
        .await;
    assert!(results.is_ok());
    assert_eq!(results.fetched(), 1);
    assert!(results.contents.is_some() && results.transcript.is_none());
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn retry_failed_fetches_again_only_what_failed() {
    let server = MockServer::start().await;
    // The transcript fails through every retry of the first round, then works.
    Mock::given(method("GET"))
        .and(path(Route::SessionTranscript.path("s")))
        .respond_with(error(503, "service_unavailable"))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(Route::SessionTranscript.path("s")))
        .respond_with(json(fixture("api/session-transcript.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(Route::SessionStatus.path("s")))
        .respond_with(json(fixture("api/session-status.json")))
        .expect(1)
        .mount(&server)
        .await;
    let client = AmbientClient::builder()
        .base_url(server.uri())
        .token("t")
        .retry(fast_retry().max_attempts(2))
        .build()
        .unwrap();
    let mut results = client
        .fetch_results_with(
            &completed_event(),
            &[LinkKind::Status, LinkKind::Transcripts],
        )
        .await;
    assert_eq!(results.errors().len(), 1);
    assert_eq!(results.errors()[0].0, LinkKind::Transcripts);
    results.retry_failed(&client).await;
    assert!(results.is_ok(), "{:?}", results.errors());
    assert!(results.status.as_ref().is_some_and(Result::is_ok));
}

#[tokio::test]
async fn content_not_ready_right_after_completion_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(Route::SessionContent.path("s")))
        .respond_with(error(409, "content_not_ready"))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(Route::SessionContent.path("s")))
        .respond_with(json(fixture("api/session-content.json")))
        .mount(&server)
        .await;
    let client = AmbientClient::builder()
        .base_url(server.uri())
        .token("t")
        .retry(fast_retry())
        .build()
        .unwrap();
    let note = client
        .session_content(&SessionId::from("s"), false)
        .await
        .unwrap();
    assert!(!note.summary.is_empty());
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}
