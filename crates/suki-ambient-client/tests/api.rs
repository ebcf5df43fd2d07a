//! The client against a real local HTTP server (wiremock on 127.0.0.1): paths, headers,
//! decoding of Suki's documented examples, links, retries, deadlines and login.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{error, fast_retry, json};
use suki_ambient_client::{
    AmbientClient, ClientError, PartnerLogin, RetryPolicy, TimeoutKind, TransportKind,
};
use suki_ambient_core::api::{CodeSystem, SessionStatus};
use suki_ambient_core::testing::{fixture, links_for};
use suki_ambient_core::{EncounterId, Link, SessionCompleted, SessionId};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn client(server: &MockServer) -> AmbientClient {
    AmbientClient::builder()
        .base_url(server.uri())
        .token("tok-123")
        .provider_id("prov-9")
        .retry(fast_retry())
        .build()
        .unwrap()
}

/// A GET mock that also checks both auth headers.
fn get(p: &str) -> wiremock::MockBuilder {
    Mock::given(method("GET"))
        .and(path(p))
        .and(header("sdp_suki_token", "tok-123"))
        .and(header("sdp_provider_id", "prov-9"))
}

#[tokio::test]
async fn every_endpoint_sends_the_right_request_and_decodes_the_fixture() {
    let server = MockServer::start().await;
    let s = SessionId::from("sess-1");
    let e = EncounterId::from("enc-1");
    get("/api/v1/ambient/session/sess-1/status")
        .respond_with(json(fixture("api/session-status.json")))
        .expect(1)
        .mount(&server)
        .await;
    get("/api/v1/ambient/session/sess-1/transcript")
        .respond_with(json(fixture("api/session-transcript.json")))
        .expect(1)
        .mount(&server)
        .await;
    get("/api/v1/ambient/session/sess-1/content")
        .and(query_param("cumulative", "true"))
        .respond_with(json(fixture("api/session-content.json")))
        .expect(1)
        .mount(&server)
        .await;
    get("/api/v1/ambient/session/sess-1/structured-data")
        .respond_with(json(fixture("api/session-structured-data.json")))
        .expect(1)
        .mount(&server)
        .await;
    get("/api/v1/ambient/encounter/enc-1/content")
        .respond_with(json(fixture("api/session-content.json")))
        .expect(1)
        .mount(&server)
        .await;
    get("/api/v1/ambient/encounter/enc-1/structured-data")
        .respond_with(json(fixture("api/session-structured-data.json")))
        .expect(1)
        .mount(&server)
        .await;
    get("/api/v1/ambient/session/sess-1/recording")
        .and(query_param("download", "false"))
        .respond_with(json(br#"{"recordings":[{"recording_id":"r1","presigned_url":"https://audio.example/r1?sig=MARKER","expires_at":1766122020,"sequence_number":1}],"is_streamable":true}"#.to_vec()))
        .expect(1)
        .mount(&server)
        .await;
    get("/api/v1/form-filling/session/sess-1/status")
        .respond_with(json(br#"{"status":"STAGED"}"#.to_vec()))
        .expect(1)
        .mount(&server)
        .await;
    get("/api/v1/form-filling/session/sess-1/structured-data")
        .respond_with(json(fixture("api/form-filling-structured-data.json")))
        .expect(1)
        .mount(&server)
        .await;

    let c = client(&server);
    assert_eq!(
        c.session_status(&s).await.unwrap().status,
        SessionStatus::Completed
    );
    let t = c.session_transcript(&s).await.unwrap();
    assert_eq!(
        t.final_transcript[0].transcript,
        "The patient has shown an allergy to pollen"
    );
    let note = c.session_content(&s, true).await.unwrap();
    assert_eq!(
        note.summary[0].title.as_deref(),
        Some("ASSESSMENT AND PLAN")
    );
    let sd = c.session_structured_data(&s).await.unwrap();
    assert_eq!(
        sd.structured_data.diagnoses.unwrap().values[0].codes[0].system,
        Some(CodeSystem::Imo)
    );
    assert_eq!(
        c.encounter_content(&e).await.unwrap().structured_data.len(),
        1
    );
    assert!(
        c.encounter_structured_data(&e)
            .await
            .unwrap()
            .structured_data
            .diagnoses
            .is_some()
    );
    let rec = c.session_recording(&s, false).await.unwrap();
    assert!(rec.is_streamable);
    assert!(
        !format!("{rec:?}").contains("MARKER"),
        "presigned URL is redacted"
    );
    assert_eq!(
        c.form_filling_status(&s).await.unwrap().status,
        SessionStatus::Staged
    );
    let ff = c.form_filling_structured_data(&s).await.unwrap();
    assert_eq!(
        ff.structured_data.generated_values[0].title.as_deref(),
        Some("Adult Vitals")
    );
    // `expect(1)` on every mock is verified when the server drops.
}

#[tokio::test]
async fn ids_are_percent_encoded() {
    let server = MockServer::start().await;
    get("/api/v1/ambient/session/a%2Fb%20c/status")
        .respond_with(json(fixture("api/session-status.json")))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .session_status(&SessionId::from("a/b c"))
        .await
        .unwrap();
}

#[tokio::test]
async fn retries_503_503_then_succeeds_in_three_attempts() {
    let server = MockServer::start().await;
    get("/api/v1/ambient/session/s/status")
        .respond_with(error(503, "unavailable"))
        .up_to_n_times(2)
        .expect(2)
        .with_priority(1)
        .mount(&server)
        .await;
    get("/api/v1/ambient/session/s/status")
        .respond_with(json(fixture("api/session-status.json")))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    let status = client(&server)
        .session_status(&SessionId::from("s"))
        .await
        .unwrap();
    assert_eq!(status.status, SessionStatus::Completed);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = MockServer::start().await;
    get("/api/v1/ambient/session/s/status")
        .respond_with(error(429, "too_many_requests").insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    get("/api/v1/ambient/session/s/status")
        .respond_with(json(fixture("api/session-status.json")))
        .with_priority(2)
        .mount(&server)
        .await;
    let started = Instant::now();
    client(&server)
        .session_status(&SessionId::from("s"))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
}

/// A `Retry-After` longer than the policy's is not slept within the call: the call ends at
/// once with the server's error, which carries it, and is an outage (the inbox's worker makes
/// the row wait that long, for Suki's breaker).
#[tokio::test]
async fn a_long_retry_after_is_the_callers_to_honour() {
    let server = MockServer::start().await;
    get("/api/v1/ambient/session/s/status")
        .respond_with(error(503, "service_unavailable").insert_header("Retry-After", "10"))
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    let err = client(&server)
        .session_status(&SessionId::from("s"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "not slept");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
    assert!(err.is_outage() && err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn not_found_and_forbidden_are_not_retried() {
    let server = MockServer::start().await;
    get("/api/v1/ambient/session/s/recording")
        .respond_with(error(404, "not_found"))
        .expect(1)
        .mount(&server)
        .await;
    get("/api/v1/ambient/session/s/status")
        .respond_with(error(403, "permission_denied: MARKER detail"))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let err = c
        .session_recording(&SessionId::from("s"), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status: 404, code, .. } if code == "not_found"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let err = c.session_status(&SessionId::from("s")).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(403), Some("permission_denied"))
    );
    assert!(!err.to_string().contains("MARKER"));
}

#[tokio::test]
async fn retries_are_bounded() {
    let server = MockServer::start().await;
    get("/api/v1/ambient/session/s/status")
        .respond_with(error(500, "internal_server_error"))
        .expect(4)
        .mount(&server)
        .await;
    let err = client(&server)
        .session_status(&SessionId::from("s"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert!(err.is_retryable());
}

#[tokio::test]
async fn slow_server_hits_the_attempt_timeout_and_the_deadline() {
    let server = MockServer::start().await;
    get("/api/v1/ambient/session/s/status")
        .respond_with(json(fixture("api/session-status.json")).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let one = AmbientClient::builder()
        .base_url(server.uri())
        .token("tok-123")
        .provider_id("prov-9")
        .retry(RetryPolicy::none())
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = one.session_status(&SessionId::from("s")).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                kind: TimeoutKind::Attempt
            }
        ),
        "{err:?}"
    );

    let bounded = AmbientClient::builder()
        .base_url(server.uri())
        .token("tok-123")
        .provider_id("prov-9")
        .retry(fast_retry().max_attempts(100))
        .timeout(Duration::from_millis(300))
        .deadline(Duration::from_millis(700))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = bounded
        .session_status(&SessionId::from("s"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    // Far less than the 5 s the server takes, and far less than 100 attempts would take.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let attempts = server.received_requests().await.unwrap().len();
    assert!((2..=4).contains(&attempts), "{attempts} requests in total");
}

#[tokio::test]
async fn connection_refused_is_a_retryable_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = AmbientClient::builder()
        .base_url(format!("http://{addr}"))
        .token("t")
        .retry(fast_retry().max_attempts(2))
        .build()
        .unwrap();
    let err = c.session_status(&SessionId::from("s")).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn bad_json_is_a_decode_error_without_content() {
    let server = MockServer::start().await;
    get("/api/v1/ambient/session/s/transcript")
        .respond_with(json(
            br#"{"final_transcript":"MARKER patient text"}"#.to_vec(),
        ))
        .mount(&server)
        .await;
    let err = client(&server)
        .session_transcript(&SessionId::from("s"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Decode {
                what: "transcript",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("MARKER"));
}

/// Issues JWT-shaped tokens `token-N` that expire `lifetime` after issue.
struct LoginResponder {
    issued: Arc<AtomicUsize>,
    lifetime: Duration,
}

impl Respond for LoginResponder {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        use base64::Engine as _;
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let exp = (SystemTime::now() + self.lifetime)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            .ceil() as u64;
        let enc = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"RS256"}"#.into()),
            enc(format!(r#"{{"sub":"token-{n}","exp":{exp}}}"#))
        );
        json(format!(r#"{{"suki_token":"{jwt}"}}"#).into_bytes())
    }
}

async fn login_server(lifetime: Duration) -> (MockServer, Arc<AtomicUsize>) {
    let server = MockServer::start().await;
    let issued = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/api/v1/auth/login"))
        .and(body_partial_json(
            serde_json::json!({"partner_id": "partner-1", "partner_token": "partner-jwt"}),
        ))
        .respond_with(LoginResponder {
            issued: Arc::clone(&issued),
            lifetime,
        })
        .mount(&server)
        .await;
    (server, issued)
}

fn login_client(server: &MockServer, login: Arc<PartnerLogin>) -> AmbientClient {
    AmbientClient::builder()
        .base_url(server.uri())
        .auth_shared(login)
        .retry(fast_retry())
        .build()
        .unwrap()
}

#[tokio::test]
async fn fifty_concurrent_calls_with_an_expired_token_log_in_once() {
    // Tokens live 1 s (up to 2 s: `exp` is rounded up to whole seconds).
    let (server, issued) = login_server(Duration::from_secs(1)).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/ambient/session/s/status"))
        .respond_with(json(fixture("api/session-status.json")))
        .mount(&server)
        .await;
    let login = Arc::new(PartnerLogin::new("partner-1", "partner-jwt"));
    let c = login_client(&server, Arc::clone(&login));
    c.session_status(&SessionId::from("s")).await.unwrap();
    assert_eq!(issued.load(Ordering::SeqCst), 1);
    // Let the token pass its refresh time.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let calls = (0..50).map(|_| {
        let c = c.clone();
        tokio::spawn(async move { c.session_status(&SessionId::from("s")).await })
    });
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(
        issued.load(Ordering::SeqCst),
        2,
        "exactly one login for the 50 calls"
    );
    assert_eq!(login.logins(), 2);
}

#[tokio::test]
async fn a_refused_token_causes_one_relogin_and_one_retry() {
    let (server, issued) = login_server(Duration::from_secs(3600)).await;
    // The first token is refused; any later one is accepted.
    let first = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&first);
    Mock::given(method("GET"))
        .and(path("/api/v1/ambient/session/s/status"))
        .respond_with(move |req: &Request| {
            let token = req
                .headers
                .get("sdp_suki_token")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                assert!(!token.is_empty());
                error(401, "invalid_sdp_token")
            } else {
                json(fixture("api/session-status.json"))
            }
        })
        .mount(&server)
        .await;
    let login = Arc::new(PartnerLogin::new("partner-1", "partner-jwt"));
    let c = login_client(&server, Arc::clone(&login));
    c.session_status(&SessionId::from("s")).await.unwrap();
    assert_eq!(issued.load(Ordering::SeqCst), 2, "one re-login");
    assert_eq!(first.load(Ordering::SeqCst), 2, "one retry");
}

#[tokio::test]
async fn a_second_refusal_surfaces_as_auth() {
    let (server, issued) = login_server(Duration::from_secs(3600)).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/ambient/session/s/status"))
        .respond_with(error(401, "invalid_sdp_token"))
        .expect(2)
        .mount(&server)
        .await;
    let login = Arc::new(PartnerLogin::new("partner-1", "partner-jwt"));
    let err = login_client(&server, login)
        .session_status(&SessionId::from("s"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Auth { status: 401, code } if code == "invalid_sdp_token"),
        "{err:?}"
    );
    assert_eq!(issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_static_token_that_is_refused_is_not_retried() {
    let server = MockServer::start().await;
    get("/api/v1/ambient/session/s/status")
        .respond_with(error(401, "invalid_sdp_token"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .session_status(&SessionId::from("s"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Auth { .. }));
}

#[tokio::test]
async fn login_failures_are_auth_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/auth/login"))
        .respond_with(error(401, "provider_not_registered"))
        .mount(&server)
        .await;
    let c = login_client(
        &server,
        Arc::new(PartnerLogin::new("partner-1", "partner-jwt").provider_id("p")),
    );
    let err = c.session_status(&SessionId::from("s")).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Auth { code, .. } if code == "provider_not_registered"),
        "{err:?}"
    );
}

fn completed(session: &str, encounter: &str) -> SessionCompleted {
    SessionCompleted {
        session_id: SessionId::from(session),
        encounter_id: EncounterId::from(encounter),
        sessions: vec![SessionId::from(session)],
        additional_info: None,
        links: links_for(session, encounter),
    }
}

#[tokio::test]
async fn fetch_results_follows_every_link_and_keeps_each_outcome() {
    let server = MockServer::start().await;
    for (p, file) in [
        (
            "/api/v1/ambient/session/s/status",
            "api/session-status.json",
        ),
        (
            "/api/v1/ambient/session/s/content",
            "api/session-content.json",
        ),
        (
            "/api/v1/ambient/encounter/e/content",
            "api/session-content.json",
        ),
        (
            "/api/v1/ambient/session/s/structured-data",
            "api/session-structured-data.json",
        ),
        (
            "/api/v1/ambient/session/s/transcript",
            "api/session-transcript.json",
        ),
    ] {
        get(p)
            .respond_with(json(fixture(file)))
            .expect(1)
            .mount(&server)
            .await;
    }
    // One link fails; the others must still arrive.
    get("/api/v1/ambient/encounter/e/structured-data")
        .respond_with(error(409, "not_ready"))
        .expect(1)
        .mount(&server)
        .await;
    let results = client(&server).fetch_results(&completed("s", "e")).await;
    assert_eq!(results.fetched(), 6);
    assert!(results.status.as_ref().unwrap().is_ok());
    assert!(results.contents.as_ref().unwrap().is_ok());
    assert!(results.encounter_content.as_ref().unwrap().is_ok());
    assert!(results.structured_data.as_ref().unwrap().is_ok());
    assert!(results.transcript.as_ref().unwrap().is_ok());
    let errors = results.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].1.status(), Some(409));
    assert!(!results.is_ok());
}

#[tokio::test]
async fn links_to_another_origin_are_refused_and_nothing_is_sent() {
    let ours = MockServer::start().await;
    let theirs = MockServer::start().await;
    let c = client(&ours);
    let link = Link::get(
        format!("{}/api/v1/ambient/session/s/status", theirs.uri()),
        "status",
    );
    let err = c.follow(&link).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidLink { .. }));
    assert!(theirs.received_requests().await.unwrap().is_empty());
    // A relative link with a query keeps it.
    get("/api/v1/ambient/session/s/content")
        .and(query_param("cumulative", "true"))
        .respond_with(json(fixture("api/session-content.json")))
        .expect(1)
        .mount(&ours)
        .await;
    let value = c
        .follow(&Link::get(
            "/api/v1/ambient/session/s/content?cumulative=true",
            "contents",
        ))
        .await
        .unwrap();
    assert!(value["summary"].is_array());
}
