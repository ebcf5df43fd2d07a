//! Log and error hygiene: with a capturing `tracing` subscriber at TRACE, run every adapter and
//! the client through success and failure paths with marker strings in the secret, the tokens and
//! the payloads; no marker may appear in any log line, error message, `Debug` output or HTTP
//! response.

use std::time::Duration;

use integration_tests::{FRAMEWORKS, Forward, start_receiver};
use suki_ambient::client::{AmbientClient, PartnerLogin, RetryPolicy};
use suki_ambient::sandbox::{Fault, Sandbox};
use suki_ambient::{
    EncounterId, ErrorCode, SessionFailed, SessionId, SignedHeaders, UnixMillis, Verifier,
    WebhookEvent,
};

const SECRET: &str = "SECRET-MARKER-9f2c";
const PARTNER_TOKEN: &str = "PARTNER-TOKEN-MARKER-77aa";
const PHI: &str = "PHI-MARKER-Jane-Q-Public";
const FHIR_TOKEN: &str = "FHIR-TOKEN-MARKER-31c7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_token_or_payload_in_logs_errors_debug_or_responses() {
    let capture = suki_ambient::testing::LogCapture::default();
    let subscriber = capture.trace_subscriber();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let mut shown: Vec<String> = Vec::new();
    let sandbox = Sandbox::builder()
        .webhook_secret(SECRET)
        .partner("partner", PARTNER_TOKEN)
        .start()
        .await
        .unwrap();
    let issued = sandbox.issue_token(None);

    for framework in FRAMEWORKS {
        let (handler, mut events) = Forward::new();
        let verifier = Verifier::builder().secret(SECRET).build().unwrap();
        shown.push(format!("{verifier:?}"));
        sandbox.set_webhook_url(Some(start_receiver(framework, verifier, handler)));

        // Success, with PHI in the free-form fields.
        let s = sandbox.create_session(None);
        let WebhookEvent::Completed(mut done) = sandbox.complete_silently(&s.session_id).unwrap()
        else {
            unreachable!()
        };
        done.additional_info = Some(
            serde_json::json!({ "note": PHI })
                .as_object()
                .cloned()
                .unwrap(),
        );
        let event = WebhookEvent::Completed(done);
        let d = sandbox.deliver(&event).await.unwrap();
        assert_eq!(d.status, 200);
        shown.push(format!("{d:?} {event:?}"));
        shown.push(format!("{:?}", events.recv().await));
        // Failure event with PHI in the detail.
        let failed = WebhookEvent::Failed(SessionFailed {
            session_id: SessionId::from("hygiene-failed"),
            encounter_id: EncounterId::from("e"),
            error_code: ErrorCode::Other(format!("CODE_{framework}")),
            error_detail: PHI.into(),
        });
        shown.push(format!("{:?}", sandbox.deliver(&failed).await.unwrap()));
        shown.push(format!("{:?}", events.recv().await));
        // Mismatch (tampered body full of PHI).
        shown.push(format!(
            "{:?}",
            sandbox.deliver_tampered(&event).await.unwrap()
        ));
        // Verified but not JSON, and a wrong field type quoting PHI.
        for body in [
            format!("not json {PHI}"),
            format!(
                r#"{{"status":"success","session_id":"s","encounter_id":"e","sessions":"{PHI}"}}"#
            ),
        ] {
            let headers = SignedHeaders::new(&SECRET.into(), UnixMillis::now(), body.as_bytes());
            let d = sandbox
                .deliver_signed(
                    suki_ambient::EventKind::Unknown,
                    &headers,
                    body.into_bytes(),
                )
                .await
                .unwrap();
            assert_eq!(d.status, 400);
            shown.push(format!("{d:?}"));
        }
        // Unknown status with PHI.
        let body = format!(r#"{{"status":"{PHI}","session_id":"u-{framework}","note":"{PHI}"}}"#);
        let headers = SignedHeaders::new(&SECRET.into(), UnixMillis::now(), body.as_bytes());
        let d = sandbox
            .deliver_signed(
                suki_ambient::EventKind::Unknown,
                &headers,
                body.into_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(d.status, 200);
        shown.push(format!("{d:?} {:?}", events.recv().await));
    }

    // The client: login with a marker partner token, success and API errors.
    let client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .auth(PartnerLogin::new("partner", PARTNER_TOKEN))
        .retry(
            RetryPolicy::default()
                .max_attempts(2)
                .base_delay(Duration::from_millis(5)),
        )
        .build()
        .unwrap();
    let s = sandbox.create_session(None);
    let WebhookEvent::Completed(done) = sandbox.complete_silently(&s.session_id).unwrap() else {
        unreachable!()
    };
    let results = client.fetch_results(&done).await;
    assert!(results.is_ok());
    shown.push(format!("{results:?} {client:?}"));
    sandbox.inject(Fault::status(500).times(2));
    let err = client.session_status(&s.session_id).await.unwrap_err();
    shown.push(format!("{err} {err:?}"));
    let err = client
        .session_transcript(&SessionId::from(PHI))
        .await
        .unwrap_err();
    shown.push(format!("{err} {err:?}"));
    let static_client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(issued.clone())
        .build()
        .unwrap();
    sandbox.expire_tokens();
    let err = static_client
        .session_status(&s.session_id)
        .await
        .unwrap_err();
    shown.push(format!("{err} {err:?} {static_client:?}"));

    // The FHIR write-back: a note full of PHI mapped and posted, then refused (a marker token)
    // and failing (503): nothing of the note or the tokens in logs, errors or Debug.
    let note: suki_ambient::api::NoteContent = serde_json::from_value(serde_json::json!({
        "summary": [{"title": "HPI", "content": format!("{PHI} <b>&</b>"), "loinc_code": "10164-2"}]
    }))
    .unwrap();
    let session = SessionId::from("hygiene-fhir");
    let fhir_note = suki_ambient::fhir::SessionNote::new(&session, &note, UnixMillis::now());
    let ehr = suki_ambient::fhir::EhrContext::new(
        suki_ambient::fhir::Reference::parse("Patient/hygiene-patient").unwrap(),
    );
    let bundle = suki_ambient::fhir::transaction(&fhir_note, &ehr, &Default::default()).unwrap();
    shown.push(format!(
        "{bundle:?} {fhir_note:?} {ehr:?} {:?}",
        bundle.entries()
    ));
    let fhir = |token: &str| {
        suki_ambient::fhir::FhirClient::builder(sandbox.fhir_base_url())
            .auth(suki_ambient::fhir::BearerToken::new(token))
            .retry(RetryPolicy::default().max_attempts(1))
            .build()
            .unwrap()
    };
    let written = fhir(sandbox.fhir_token()).post(&bundle).await.unwrap();
    shown.push(format!("{written:?}"));
    let err = fhir(FHIR_TOKEN).post(&bundle).await.unwrap_err();
    shown.push(format!("{err} {err:?} {:?}", fhir(FHIR_TOKEN)));
    sandbox.inject(Fault::status(503).on("/fhir").times(1));
    let err = fhir(sandbox.fhir_token()).post(&bundle).await.unwrap_err();
    shown.push(format!("{err} {err:?}"));

    // SMART Backend Services: tests/hygiene_smart.rs (its EHR is the Medplum stand-in).

    let logs = capture.text();
    assert!(
        logs.contains("suki_api"),
        "the client's spans were captured"
    );
    assert!(
        logs.contains("suki webhook"),
        "the endpoints' events were captured"
    );
    assert!(
        logs.contains("fhir request failed") && logs.contains("fhir transaction posted"),
        "the FHIR client's events were captured"
    );
    let everything = format!("{logs}\n{}", shown.join("\n"));
    let synthetic_note = "SYNTHETIC: follow-up of blood pressure";
    integration_tests::assert_no_marker(
        &everything,
        [
            SECRET,
            PARTNER_TOKEN,
            PHI,
            FHIR_TOKEN,
            sandbox.fhir_token(),
            issued.as_str(),
            synthetic_note,
            "eyJ",
        ],
    );
}
