//! `FhirClient` against the sandbox's FHIR server: a session posted twice creates each resource
//! once; a 503 is retried (and, when it lasts, is a retryable error); refused credentials and
//! other 4xx are not retried; the token shows nowhere.

mod common;

use std::time::Duration;

use suki_ambient_client::RetryPolicy;
use suki_ambient_fhir::{BearerToken, FhirClient, FhirError, TransactionBundle};
use suki_ambient_sandbox::{Fault, Sandbox, SandboxHandle};

fn bundle(session: &str) -> TransactionBundle {
    common::typical_bundle(session)
}

fn client(sandbox: &SandboxHandle, token: &str) -> FhirClient {
    FhirClient::builder(sandbox.fhir_base_url())
        .auth(BearerToken::new(token))
        .retry(
            RetryPolicy::default()
                .max_attempts(3)
                .base_delay(Duration::from_millis(10))
                // Every failure retried within the call (the default budget retries a tenth).
                .retry_budget(1_000),
        )
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posting_a_session_twice_creates_each_resource_once() {
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let fhir = client(&sandbox, sandbox.fhir_token());
    let first = fhir.post(&bundle("s-post-1")).await.expect("first post");
    assert_eq!((first.created(), first.matched()), (9, 0));
    let again = fhir.post(&bundle("s-post-1")).await.expect("second post");
    assert_eq!((again.created(), again.matched()), (0, 9));
    assert_eq!(first.entries.len(), again.entries.len());
    for (a, b) in first.entries.iter().zip(&again.entries) {
        assert_eq!(a.location, b.location, "the same resources");
    }
    assert_eq!(sandbox.fhir_resources(None).len(), 9);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_and_a_lasting_one_is_retryable() {
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let fhir = client(&sandbox, sandbox.fhir_token());
    sandbox.inject(Fault::status(503).retry_after("0").on("/fhir").times(1));
    let answer = fhir.post(&bundle("s-503")).await.expect("after one retry");
    assert_eq!(answer.created(), 9);
    assert_eq!(sandbox.requests("/fhir"), 2);

    sandbox.inject(Fault::status(503).on("/fhir").times(10));
    let err = fhir.post(&bundle("s-503b")).await.expect_err("lasting 503");
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(err, FhirError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.code().starts_with("fhir_503"), "{}", err.code());
    assert_eq!(sandbox.requests("/fhir"), 2 + 3, "three attempts");
    sandbox.clear_faults();

    sandbox.inject(Fault::status(422).on("/fhir").times(1));
    let err = fhir.post(&bundle("s-422")).await.expect_err("422");
    assert!(!err.is_retryable());
    assert_eq!(sandbox.requests("/fhir"), 5 + 1, "not retried");
    sandbox.shutdown().await;
}

/// With the default retry budget (a tenth of the writes, no reserve), an EHR that is down gets
/// about one request per write, not one per attempt; a long `Retry-After` ends the write at
/// once, carrying it (the inbox's row waits that long).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_gets_about_one_request_per_write() {
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let fhir = FhirClient::builder(sandbox.fhir_base_url())
        .auth(BearerToken::new(sandbox.fhir_token()))
        .retry(RetryPolicy::default().base_delay(Duration::from_millis(1)))
        .build()
        .expect("client");
    sandbox.inject(Fault::status(503).on("/fhir").times(1_000));
    for i in 0..20 {
        let err = fhir
            .post(&bundle(&format!("s-down-{i}")))
            .await
            .expect_err("down");
        assert!(err.is_outage(), "{err:?}");
    }
    let sent = sandbox.requests("/fhir");
    assert!(
        (20..=22).contains(&sent),
        "{sent} requests for 20 writes (4 attempts each would be 80)"
    );
    sandbox.clear_faults();
    sandbox.inject(
        Fault::status(503)
            .retry_after("10")
            .on("/fhir")
            .times(1_000),
    );
    let started = std::time::Instant::now();
    let err = fhir.post(&bundle("s-later")).await.expect_err("down");
    assert!(started.elapsed() < Duration::from_secs(5), "not slept");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_permanent_and_the_token_shows_nowhere() {
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let secret = "wrong-token-8d1f0c2a";
    let fhir = client(&sandbox, secret);
    let err = fhir.post(&bundle("s-auth")).await.expect_err("401");
    assert!(matches!(err, FhirError::Auth { status: 401 }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(sandbox.requests("/fhir"), 1);
    let shown = format!("{err} {err:?} {fhir:?} {:?}", BearerToken::new(secret));
    assert!(!shown.contains(secret), "{shown}");
    assert!(sandbox.fhir_resources(None).is_empty());

    for (base, why) in [
        ("not a url", "not a URL"),
        ("ftp://ehr.example/fhir", "http(s)"),
        ("https://user:pw@ehr.example/fhir", "credentials"),
    ] {
        let err = FhirClient::builder(base)
            .auth(BearerToken::new("t"))
            .build()
            .expect_err(base);
        assert!(err.to_string().contains(why), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
    }
    let err = FhirClient::builder("https://ehr.example/fhir")
        .build()
        .expect_err("no auth");
    assert!(matches!(err, FhirError::Config(_)));
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_ehr_times_out_retryably_and_a_later_post_completes_once() {
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    sandbox.inject(
        Fault::latency(Duration::from_millis(1_500))
            .on("/fhir")
            .times(2),
    );
    let fhir = FhirClient::builder(sandbox.fhir_base_url())
        .auth(BearerToken::new(sandbox.fhir_token()))
        .timeout(Duration::from_millis(200))
        .retry(
            RetryPolicy::default()
                .max_attempts(2)
                .base_delay(Duration::from_millis(10))
                .retry_budget(1_000),
        )
        .build()
        .expect("client");
    let err = fhir.post(&bundle("s-slow")).await.expect_err("too slow");
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.code(), "fhir_timeout");
    assert_eq!(sandbox.requests("/fhir"), 2, "two attempts");
    // Whether the EHR finished a write the client gave up on is the server's business (this
    // one drops the request with the connection): posting again completes the session, and
    // nothing is written twice either way.
    let again = fhir.post(&bundle("s-slow")).await.expect("post");
    assert_eq!(again.created() + again.matched(), 9);
    assert_eq!(sandbox.fhir_resources(None).len(), 9);
    sandbox.shutdown().await;
}

/// An EHR that answers every transaction with `answer` (status 200).
async fn ehr_answering(answer: serde_json::Value) -> (String, tokio::task::JoinHandle<()>) {
    let body = answer.to_string();
    let app = axum::Router::new().route(
        "/fhir",
        axum::routing::post(move || {
            let body = body.clone();
            async move { ([("content-type", "application/fhir+json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/fhir", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, server)
}

fn response(statuses: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": statuses
            .iter()
            .map(|s| serde_json::json!({"response": {"status": s}}))
            .collect::<Vec<_>>(),
    })
}

/// A 200 `transaction-response` that wrote nothing is not success: no entries, fewer than sent,
/// or an entry whose status is not 2xx is an error with a code (a dead letter in the inbox),
/// retryable where posting again may succeed.
#[tokio::test]
async fn an_answer_that_wrote_nothing_is_an_error_with_a_code() {
    let sent = bundle("s-hostile").len();
    let mut entry_400 = vec!["201 Created"; sent];
    entry_400[2] = "400 Bad Request";
    let mut entry_503 = vec!["200 OK"; sent];
    entry_503[0] = "503";
    let cases: Vec<(serde_json::Value, &str, bool)> = vec![
        (response(&[]), "fhir_entry_count", true),
        (
            response(&vec!["201 Created"; sent - 1]),
            "fhir_entry_count",
            true,
        ),
        (response(&entry_400), "fhir_entry_400", false),
        (response(&entry_503), "fhir_entry_503", true),
    ];
    for (answer, code, retryable) in cases {
        let (base, server) = ehr_answering(answer).await;
        let fhir = FhirClient::builder(base)
            .auth(BearerToken::new("t"))
            .build()
            .expect("client");
        let err = fhir
            .post(&bundle("s-hostile"))
            .await
            .expect_err("not success");
        assert_eq!(err.code(), code, "{err:?}");
        assert_eq!(err.is_retryable(), retryable, "{err:?}");
        server.abort();
    }
    // A full answer of 2xx entries is success.
    let (base, server) = ehr_answering(response(&vec!["201 Created"; sent])).await;
    let fhir = FhirClient::builder(base)
        .auth(BearerToken::new("t"))
        .build()
        .expect("client");
    let done = fhir.post(&bundle("s-hostile")).await.expect("success");
    assert_eq!(done.created(), sent);
    server.abort();
}
