//! The sandbox against the real client: Suki's paths, auth rules, errors, content, webhooks and
//! faults.

use std::time::Duration;

use suki_ambient_client::{AmbientClient, ClientError, PartnerLogin, RetryPolicy};
use suki_ambient_core::api::SessionStatus;
use suki_ambient_core::{EventKind, SessionId, WebhookEvent};
use suki_ambient_sandbox::{
    DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN, Fault, Sandbox, SandboxError,
};

fn client(base: &str, token: String) -> AmbientClient {
    AmbientClient::builder()
        .base_url(base)
        .token(token)
        .retry(
            RetryPolicy::default()
                .base_delay(Duration::from_millis(5))
                .max_delay(Duration::from_millis(20)),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn login_then_every_endpoint() {
    let sandbox = Sandbox::builder().start().await.unwrap();
    let c = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .auth(PartnerLogin::new(DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN))
        // `409 content_not_ready` is retried (a race right after completion): keep it short.
        .retry(
            RetryPolicy::default()
                .base_delay(Duration::from_millis(5))
                .max_attempts(2),
        )
        .build()
        .unwrap();
    let first = sandbox.create_session(None);
    let second = sandbox.create_session(Some(&first.encounter_id));
    let id = &first.session_id;

    assert_eq!(
        c.session_status(id).await.unwrap().status,
        SessionStatus::Running
    );
    // Content is not ready before completion.
    let err = c.session_content(id, false).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(409), Some("content_not_ready"))
    );
    let err = c.session_recording(id, false).await.unwrap_err();
    assert_eq!(err.status(), Some(404));

    sandbox.complete_silently(id).unwrap();
    sandbox.complete_silently(&second.session_id).unwrap();
    assert_eq!(
        c.session_status(id).await.unwrap().status,
        SessionStatus::Completed
    );
    let note = c.session_content(id, false).await.unwrap();
    assert_eq!(note.summary.len(), 2);
    assert!(
        note.summary
            .iter()
            .all(|s| s.content.as_deref().unwrap().starts_with("SYNTHETIC"))
    );
    let cumulative = c.session_content(&second.session_id, true).await.unwrap();
    assert_eq!(
        cumulative.summary.len(),
        4,
        "both sessions of the encounter"
    );
    let sd = c.session_structured_data(id).await.unwrap();
    assert_eq!(sd.structured_data.diagnoses.unwrap().values.len(), 1);
    assert_eq!(
        sd.structured_data
            .orders
            .unwrap()
            .medication_orders
            .unwrap()
            .partial_values
            .len(),
        1
    );
    let t = c.session_transcript(id).await.unwrap();
    assert_eq!(t.final_transcript.len(), 4);
    let enc = c.encounter_content(&first.encounter_id).await.unwrap();
    assert_eq!(enc.summary.len(), 4);
    let enc_sd = c
        .encounter_structured_data(&first.encounter_id)
        .await
        .unwrap();
    assert_eq!(enc_sd.structured_data.diagnoses.unwrap().values.len(), 2);
    let rec = c.session_recording(id, true).await.unwrap();
    assert_eq!(rec.recordings.len(), 1);

    let form = sandbox.create_form_session();
    sandbox.complete_silently(&form.session_id).unwrap();
    assert_eq!(
        c.form_filling_status(&form.session_id)
            .await
            .unwrap()
            .status,
        SessionStatus::Completed
    );
    assert_eq!(
        c.form_filling_structured_data(&form.session_id)
            .await
            .unwrap()
            .structured_data
            .generated_values
            .len(),
        1
    );

    let err = c
        .session_status(&SessionId::from("no-such-session"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(404), Some("session_not_found"))
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn auth_rules() {
    let sandbox = Sandbox::builder()
        .require_provider_id(true)
        .start()
        .await
        .unwrap();
    let s = sandbox.create_session(None);
    // A made-up token.
    let err = client(sandbox.base_url(), "nope".into())
        .session_status(&s.session_id)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Auth { status: 401, code } if code == "invalid_sdp_token"),
        "{err:?}"
    );
    // A shared token without sdp_provider_id.
    let shared = sandbox.issue_token(None);
    let err = client(sandbox.base_url(), shared.clone())
        .session_status(&s.session_id)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(400), Some("missing_sdp_provider_id_header"))
    );
    let with_provider = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(shared)
        .provider_id("prov-1")
        .build()
        .unwrap();
    with_provider.session_status(&s.session_id).await.unwrap();
    // A provider token used for another provider.
    let bound = sandbox.issue_token(Some("prov-1"));
    let wrong = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(bound)
        .provider_id("prov-2")
        .build()
        .unwrap();
    let err = wrong.session_status(&s.session_id).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(400), Some("invalid_sdp_provider_id"))
    );
    // Bad partner credentials.
    let bad = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .auth(PartnerLogin::new(DEFAULT_PARTNER_ID, "wrong"))
        .build()
        .unwrap();
    assert!(matches!(
        bad.session_status(&s.session_id).await.unwrap_err(),
        ClientError::Auth { .. }
    ));
}

#[tokio::test]
async fn expired_tokens_trigger_one_relogin() {
    let sandbox = Sandbox::builder().start().await.unwrap();
    let s = sandbox.create_session(None);
    let login = std::sync::Arc::new(PartnerLogin::new(DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN));
    let c = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .auth_shared(login.clone())
        .build()
        .unwrap();
    c.session_status(&s.session_id).await.unwrap();
    sandbox.expire_tokens();
    c.session_status(&s.session_id).await.unwrap();
    assert_eq!(login.logins(), 2);
}

#[tokio::test]
async fn faults_status_retry_after_latency_and_dropped_connections() {
    let sandbox = Sandbox::builder().start().await.unwrap();
    let s = sandbox.create_session(None);
    let c = client(sandbox.base_url(), sandbox.issue_token(None));
    sandbox.inject(Fault::status(503).retry_after("0").times(2));
    c.session_status(&s.session_id).await.unwrap();
    assert_eq!(
        sandbox.requests("/api/v1/ambient/session/"),
        3,
        "two faults, then success"
    );

    sandbox.inject(
        Fault::drop_connection()
            .on("/api/v1/ambient/session/")
            .times(1),
    );
    c.session_status(&s.session_id).await.unwrap();

    sandbox.inject(Fault::status(404).on("/api/v1/ambient/session/").times(1));
    let err = c.session_status(&s.session_id).await.unwrap_err();
    assert_eq!(
        err.status(),
        Some(404),
        "non-retryable faults surface at once"
    );

    sandbox.inject(Fault::latency(Duration::from_millis(300)).times(1));
    let slow = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .timeout(Duration::from_millis(100))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    assert!(matches!(
        slow.session_status(&s.session_id).await.unwrap_err(),
        ClientError::Timeout { .. }
    ));

    sandbox.inject(Fault::status(500).share(1.0));
    assert_eq!(
        c.session_status(&s.session_id).await.unwrap_err().status(),
        Some(500)
    );
    sandbox.clear_faults();
    c.session_status(&s.session_id).await.unwrap();
}

#[tokio::test]
async fn webhooks_are_signed_and_point_back() {
    // A tiny receiver that verifies with the sandbox's secret and records the event.
    let sandbox = Sandbox::builder().start().await.unwrap();
    let verifier = sandbox.verifier_builder().build().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
                let verifier = verifier.clone();
                let tx = tx.clone();
                async move {
                    match verifier.verify(&headers, &body) {
                        Ok(v) => {
                            tx.send(v.parse().unwrap()).unwrap();
                            axum::http::StatusCode::OK
                        }
                        Err(e) => e.status(),
                    }
                }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });
    let s = sandbox.create_session(None);
    assert!(matches!(
        sandbox.complete(&s.session_id).await,
        Err(SandboxError::NoWebhookUrl)
    ));
    sandbox.set_webhook_url(Some(format!("http://{addr}/hook")));
    let s = sandbox.create_session(None);
    let delivery = sandbox.complete(&s.session_id).await.unwrap();
    assert!(delivery.acknowledged(), "{delivery:?}");
    let WebhookEvent::Completed(done) = rx.recv().await.unwrap() else {
        panic!()
    };
    assert_eq!(done.session_id, s.session_id);
    assert_eq!(done.links.iter().count(), 6);
    // The links lead back to the sandbox.
    let c = client(sandbox.base_url(), sandbox.issue_token(None));
    assert!(c.fetch_results(&done).await.is_ok());

    for (session, kind) in [
        (sandbox.create_session(None), EventKind::Failed),
        (sandbox.create_session(None), EventKind::TimedOut),
        (sandbox.create_session(None), EventKind::Cancelled),
    ] {
        let d = match kind {
            EventKind::Failed => sandbox.fail(&session.session_id).await,
            EventKind::TimedOut => sandbox.time_out(&session.session_id).await,
            _ => sandbox.cancel(&session.session_id).await,
        }
        .unwrap();
        assert_eq!((d.kind, d.status), (kind, 200));
        assert_eq!(rx.recv().await.unwrap().kind(), kind);
    }
    assert!(matches!(
        sandbox.cancel(&s.session_id).await,
        Err(SandboxError::AlreadyEnded { .. })
    ));
    let tampered = sandbox
        .deliver_tampered(&WebhookEvent::Completed(done))
        .await
        .unwrap();
    assert_eq!(tampered.status, 401);

    sandbox.set_webhook_url(Some("http://127.0.0.1:9/unreachable".into()));
    let s = sandbox.create_session(None);
    assert!(matches!(
        sandbox.complete(&s.session_id).await,
        Err(SandboxError::Delivery { .. })
    ));
}

#[tokio::test]
async fn admin_routes_drive_the_sandbox_over_http() {
    let sandbox = Sandbox::builder().start().await.unwrap();
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", sandbox.admin_token()).parse().unwrap(),
    );
    let http = reqwest::Client::builder()
        .default_headers(auth)
        .build()
        .unwrap();
    let base = sandbox.base_url().to_owned();
    let created = http
        .post(format!("{base}sandbox/sessions"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let created: serde_json::Value = serde_json::from_slice(&created).unwrap();
    let id = created["session_id"].as_str().unwrap().to_owned();
    // No receiver configured: the action says so (502) but the session completed.
    let answer = http
        .post(format!("{base}sandbox/sessions/{id}/complete"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 502);
    let c = client(&base, sandbox.issue_token(None));
    assert_eq!(
        c.session_status(&SessionId::from(id.as_str()))
            .await
            .unwrap()
            .status,
        SessionStatus::Completed
    );
    let again = http
        .post(format!("{base}sandbox/sessions/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let unknown = http
        .post(format!("{base}sandbox/sessions/nope/fail"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let fault = http
        .post(format!("{base}sandbox/faults"))
        .body(r#"{"status":503,"retry_after":"0","times":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), 204);
    c.session_status(&SessionId::from(id.as_str()))
        .await
        .unwrap();
    assert_eq!(
        sandbox.requests("/api/v1/ambient/session/"),
        3,
        "one call, then a faulted one and its retry"
    );
    assert_eq!(
        http.delete(format!("{base}sandbox/tokens"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert!(matches!(
        c.session_status(&SessionId::from(id.as_str()))
            .await
            .unwrap_err(),
        ClientError::Auth { .. }
    ));
}

#[tokio::test]
async fn the_admin_routes_are_not_an_open_door() {
    let sandbox = Sandbox::builder().start().await.unwrap();
    let base = sandbox.base_url().to_owned();
    let http = reqwest::Client::new();
    let bearer = format!("Bearer {}", sandbox.admin_token());
    // No token, a wrong token, a cross-site "simple" form POST: refused.
    for auth in [None, Some("Bearer wrong"), Some("Basic abc")] {
        let mut request = http
            .post(format!("{base}sandbox/sessions"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", "https://evil.example")
            .body("x=1");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "{auth:?}");
    }
    // A rebinding page sends its own name as Host: refused, even with the token.
    let rebound = http
        .post(format!("{base}sandbox/sessions"))
        .header("host", "evil.example")
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 421);
    let api = http
        .get(format!("{base}api/v1/ambient/session/x/status"))
        .header("host", "rebound.example:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 421);
    // Every fault value is bounded: an endless latency is refused over HTTP...
    for fault in [
        format!(r#"{{"latency_ms":{}}}"#, u64::MAX),
        r#"{"status":1000}"#.to_owned(),
        r#"{"status":503,"share":7.5}"#.to_owned(),
        format!(r#"{{"status":503,"retry_after":"{}"}}"#, "9".repeat(100)),
    ] {
        let answer = http
            .post(format!("{base}sandbox/faults"))
            .header("authorization", &bearer)
            .body(fault.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{fault}");
    }
    // ...capped in the API, and never applied to the admin routes, so faults can always be
    // cleared.
    assert_eq!(
        Fault::latency(Duration::MAX),
        Fault::latency(suki_ambient_sandbox::MAX_FAULT_LATENCY)
    );
    sandbox.inject(
        Fault::latency(suki_ambient_sandbox::MAX_FAULT_LATENCY)
            .on("/")
            .share(1.0),
    );
    let cleared = tokio::time::timeout(
        Duration::from_secs(10),
        http.delete(format!("{base}sandbox/faults"))
            .header("authorization", &bearer)
            .send(),
    )
    .await
    .expect("the admin route is not delayed by the fault")
    .unwrap();
    assert_eq!(cleared.status(), 204);
}

#[tokio::test]
async fn a_404_from_the_receiver_is_not_a_delivery_and_says_why() {
    let sandbox = Sandbox::builder().start().await.unwrap();
    // The sandbox's own fallback answers 404: a receiver with its route mounted elsewhere.
    sandbox.set_webhook_url(Some(format!("{}webhooks/suki/", sandbox.base_url())));
    let s = sandbox.create_session(None);
    match sandbox.complete(&s.session_id).await {
        Err(SandboxError::Delivery { reason }) => {
            assert!(
                reason.contains("404") && reason.contains(".nest"),
                "{reason}"
            );
        }
        other => panic!("expected a failed delivery, got {other:?}"),
    }
}

/// A receiver on loopback that records the session ids of verified webhooks.
async fn recording_receiver(
    sandbox: &suki_ambient_sandbox::SandboxHandle,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let verifier = sandbox.verifier_builder().build().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    sandbox.set_webhook_url(Some(format!(
        "http://{}/hook",
        listener.local_addr().unwrap()
    )));
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
                let verifier = verifier.clone();
                let tx = tx.clone();
                async move {
                    match verifier.verify(&headers, &body) {
                        Ok(v) => {
                            let event = v.parse().unwrap();
                            tx.send(event.session_id().unwrap().to_string()).unwrap();
                            axum::http::StatusCode::OK
                        }
                        Err(e) => e.status(),
                    }
                }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });
    rx
}

#[tokio::test]
async fn webhook_faults_lose_and_delay_and_support_redelivers() {
    use suki_ambient_sandbox::{Fate, WebhookFault};
    let sandbox = Sandbox::builder().start().await.unwrap();
    let mut received = recording_receiver(&sandbox).await;

    // One chosen session's webhook is lost; the others still arrive.
    let lost = sandbox.create_session(None);
    sandbox.inject_webhook(WebhookFault::lose().session(&lost.session_id));
    let d = sandbox.complete(&lost.session_id).await.unwrap();
    assert_eq!((d.fate, d.status), (Fate::Lost, 0));
    assert!(!d.acknowledged());
    let other = sandbox.create_session(None);
    assert!(
        sandbox
            .complete(&other.session_id)
            .await
            .unwrap()
            .acknowledged()
    );
    assert_eq!(received.recv().await.unwrap(), other.session_id.to_string());

    // Support re-sends the lost one (signed now, whatever the faults).
    let again = sandbox.redeliver(&lost.session_id).await.unwrap();
    assert!(again.acknowledged(), "{again:?}");
    assert_eq!(received.recv().await.unwrap(), lost.session_id.to_string());
    let running = sandbox.create_session(None);
    assert!(matches!(
        sandbox.redeliver(&running.session_id).await,
        Err(SandboxError::NotEnded)
    ));
    assert!(matches!(
        sandbox.redeliver(&SessionId::new("no-such-session")).await,
        Err(SandboxError::UnknownSession)
    ));

    // A share: about 30 % of 400 webhooks lost (never all, never none).
    sandbox.clear_webhook_faults();
    sandbox.inject_webhook(WebhookFault::lose().share(0.3));
    let mut lost_count = 0;
    for _ in 0..400 {
        let s = sandbox.create_session(None);
        match sandbox.complete(&s.session_id).await.unwrap().fate {
            Fate::Lost => lost_count += 1,
            Fate::Sent => assert_eq!(received.recv().await.unwrap(), s.session_id.to_string()),
            other => panic!("{other:?}"),
        }
    }
    assert!((60..=180).contains(&lost_count), "{lost_count} of 400 lost");

    // A delay: the webhook arrives later, not now.
    sandbox.clear_webhook_faults();
    sandbox.inject_webhook(WebhookFault::delay(Duration::from_millis(1000)));
    let late = sandbox.create_session(None);
    let started = std::time::Instant::now();
    let d = sandbox.complete(&late.session_id).await.unwrap();
    assert_eq!(d.fate, Fate::Delayed(Duration::from_millis(1000)));
    assert!(received.try_recv().is_err(), "not yet");
    assert_eq!(received.recv().await.unwrap(), late.session_id.to_string());
    assert!(started.elapsed() >= Duration::from_millis(1000));
    // Bounded: an hour at most.
    let capped = WebhookFault::delay(Duration::MAX);
    assert_eq!(
        capped,
        WebhookFault::delay(suki_ambient_sandbox::MAX_WEBHOOK_DELAY)
    );
}

#[tokio::test]
async fn webhook_faults_and_redelivery_over_the_admin_api() {
    let sandbox = Sandbox::builder().start().await.unwrap();
    let mut received = recording_receiver(&sandbox).await;
    let http = reqwest::Client::new();
    let base = sandbox.base_url().to_owned();
    let auth = format!("Bearer {}", sandbox.admin_token());
    let post = |path: &str, body: &str| {
        http.post(format!("{base}{path}"))
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    assert_eq!(
        post("sandbox/webhook-faults", r#"{"lose":true}"#)
            .await
            .unwrap()
            .status(),
        201
    );
    for bad in [
        r#"{}"#,
        r#"{"lose":true,"delay_ms":5}"#,
        r#"{"lose":"yes"}"#,
        r#"{"oops":1}"#,
    ] {
        assert_eq!(
            post("sandbox/webhook-faults", bad).await.unwrap().status(),
            400,
            "{bad}"
        );
    }
    let s = sandbox.create_session(None);
    let answer: serde_json::Value =
        post(&format!("sandbox/sessions/{}/complete", s.session_id), "")
            .await
            .unwrap()
            .bytes()
            .await
            .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
            .unwrap();
    assert_eq!(
        (answer["delivered"].as_bool(), answer["fate"].as_str()),
        (Some(false), Some("lost"))
    );
    let answer: serde_json::Value =
        post(&format!("sandbox/sessions/{}/redeliver", s.session_id), "")
            .await
            .unwrap()
            .bytes()
            .await
            .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
            .unwrap();
    assert_eq!(answer["fate"], "sent");
    assert_eq!(answer["receiver_status"], 200);
    assert_eq!(received.recv().await.unwrap(), s.session_id.to_string());
    let cleared = http
        .delete(format!("{base}sandbox/webhook-faults"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    let running = sandbox.create_session(None);
    let refused = post(
        &format!("sandbox/sessions/{}/redeliver", running.session_id),
        "",
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 409);
}
