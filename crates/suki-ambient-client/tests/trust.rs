//! The client keeps its token home: redirects, link paths under a gateway prefix, and extreme
//! values from the server (`Retry-After`, a JWT `exp`) never send the token elsewhere or panic.

use std::sync::Arc;
use std::time::Duration;

use suki_ambient_client::{AmbientClient, ClientError, PartnerLogin, RetryPolicy};
use suki_ambient_core::Link;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const STATUS: &str = "/api/v1/ambient/session/s/status";

fn client(base: String) -> AmbientClient {
    AmbientClient::builder()
        .base_url(base)
        .token("tok-123")
        .retry(RetryPolicy::default().base_delay(Duration::from_millis(5)))
        .build()
        .unwrap()
}

fn redirect_to(location: String) -> ResponseTemplate {
    ResponseTemplate::new(302).insert_header("location", location.as_str())
}

fn ok_status() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(r#"{"status":"completed"}"#, "application/json")
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_refused_and_the_token_stays_home() {
    let ours = MockServer::start().await;
    let theirs = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(STATUS))
        .respond_with(redirect_to(format!("{}{STATUS}", theirs.uri())))
        .mount(&ours)
        .await;
    Mock::given(method("GET"))
        .respond_with(ok_status())
        .mount(&theirs)
        .await;
    let err = client(ours.uri())
        .session_status(&"s".into())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Redirect { status: 302, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(
        theirs.received_requests().await.unwrap().is_empty(),
        "nothing reached the other origin"
    );
}

#[tokio::test]
async fn a_redirect_out_of_the_base_path_is_refused_and_one_within_it_is_followed() {
    let server = MockServer::start().await;
    let base = format!("{}/suki/", server.uri());
    Mock::given(method("GET"))
        .and(path(format!("/suki{STATUS}")))
        .respond_with(redirect_to(format!("{}/suki/moved{STATUS}", server.uri())))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/suki/moved{STATUS}")))
        .respond_with(ok_status())
        .mount(&server)
        .await;
    let status = client(base.clone())
        .session_status(&"s".into())
        .await
        .unwrap();
    assert_eq!(status.status.as_str(), "completed");

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/suki{STATUS}")))
        .respond_with(redirect_to(format!("{}/admin", server.uri())))
        .mount(&server)
        .await;
    let err = client(format!("{}/suki/", server.uri()))
        .session_status(&"s".into())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Redirect { .. }), "{err:?}");
    let paths: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(paths, [format!("/suki{STATUS}")], "/admin was never asked");
}

#[tokio::test]
async fn a_redirect_loop_within_the_base_is_bounded() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(STATUS))
        .respond_with(redirect_to(format!("{}{STATUS}", server.uri())))
        .mount(&server)
        .await;
    let err = client(server.uri())
        .session_status(&"s".into())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Redirect { .. }), "{err:?}");
    assert!(server.received_requests().await.unwrap().len() <= 7);
}

#[tokio::test]
async fn with_a_client_of_your_own_an_answer_from_elsewhere_fails_the_call() {
    let ours = MockServer::start().await;
    let theirs = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(STATUS))
        .respond_with(redirect_to(format!("{}{STATUS}", theirs.uri())))
        .mount(&ours)
        .await;
    Mock::given(method("GET"))
        .respond_with(ok_status())
        .mount(&theirs)
        .await;
    // reqwest's default policy follows up to 10 redirects, anywhere.
    let c = AmbientClient::builder()
        .base_url(ours.uri())
        .token("tok-123")
        .with_client(reqwest::Client::new())
        .build()
        .unwrap();
    let err = c.session_status(&"s".into()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Redirect { status: 200, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn links_must_stay_under_the_base_path() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ok_status())
        .mount(&server)
        .await;
    let c = client(format!("{}/suki/", server.uri()));
    for href in [
        "/api/v1/ambient/session/s/status",
        "../admin",
        "../../auth/login",
        "%2e%2e/admin",
        "api/../../admin",
        "api/%2E%2E/%2e%2E/admin",
        "/suki/../admin",
        "//evil.example/suki/x",
    ] {
        let result = c.follow(&Link::get(href, "status")).await;
        let err = result.expect_err(href);
        assert!(
            matches!(err, ClientError::InvalidLink { .. }),
            "{href}: {err:?}"
        );
    }
    assert!(server.received_requests().await.unwrap().is_empty());
    for href in [
        "api/v1/ambient/session/s/status",
        "/suki/api/v1/ambient/session/s/status",
        &format!("{}/suki/api/v1/ambient/session/s/status", server.uri()),
    ] {
        c.follow(&Link::get(href, "status"))
            .await
            .unwrap_or_else(|e| panic!("{href}: {e:?}"));
    }
}

#[tokio::test]
async fn an_endless_retry_after_ends_the_call_instead_of_panicking() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(503).insert_header("retry-after", "18446744073709551615"),
        )
        .mount(&server)
        .await;
    let c = AmbientClient::builder()
        .base_url(server.uri())
        .token("tok-123")
        .retry(RetryPolicy::default().max_retry_after(Duration::MAX))
        .deadline(Duration::MAX)
        .build()
        .unwrap();
    let err = c.session_status(&"s".into()).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_login_token_with_a_far_future_exp_does_not_panic() {
    use base64::Engine as _;
    let server = MockServer::start().await;
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    for exp in [u64::MAX, u64::MAX - 1, 1 << 62] {
        let jwt = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"RS256"}"#),
            enc(&format!(r#"{{"exp":{exp}}}"#))
        );
        server.reset().await;
        Mock::given(method("POST"))
            .and(path("/api/v1/auth/login"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_raw(format!(r#"{{"suki_token":"{jwt}"}}"#), "application/json"),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(STATUS))
            .respond_with(ok_status())
            .mount(&server)
            .await;
        let login = Arc::new(PartnerLogin::new("partner-1", "partner-jwt"));
        let c = AmbientClient::builder()
            .base_url(server.uri())
            .auth_shared(login)
            .build()
            .unwrap();
        c.session_status(&"s".into()).await.unwrap();
        c.session_status(&"s".into()).await.unwrap();
    }
}

/// A redirect inside the base path whose path a gateway could decode into another one (an
/// encoded `/` or `\`, encoded dot segments) is refused like any other escape. (An encoded
/// dot segment alone is resolved by the URL parser before anything is sent, so it cannot hide.)
#[tokio::test]
async fn a_redirect_with_encoded_separators_or_dot_segments_is_refused() {
    for target in [
        "/suki/api/v1/..%2f..%2fescape/",
        "/suki/api/v1/..%2F..%2Fadmin",
        "/suki/%2e%2e/admin",
        "/suki/api%5c..%5cadmin",
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("/suki{STATUS}")))
            .respond_with(redirect_to(format!("{}{target}", server.uri())))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ok_status())
            .mount(&server)
            .await;
        let err = client(format!("{}/suki/", server.uri()))
            .session_status(&"s".into())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Redirect { .. }),
            "{target}: {err:?}"
        );
        let asked = server.received_requests().await.unwrap();
        assert_eq!(asked.len(), 1, "{target}: the redirect was not followed");
    }
}
