//! Log and error hygiene of SMART Backend Services: with a capturing `tracing` subscriber at
//! TRACE, a token fetched, expired and fetched again from an EHR without transactions (the
//! Medplum stand-in), and the same session then written to another chart (a conflict). Neither
//! the key, the client assertions (JWTs, `eyJ…`), the tokens nor the note show in any log line,
//! error message or `Debug` output. (A test binary of its own: the subscriber is global.)

use medplum_ehr::{Medplum, Options};
use suki_ambient::UnixMillis;
use suki_ambient::fhir::{
    EhrContext, FhirClient, Reference, SessionNote, SmartBackendAuth, SmartKey, transaction,
};
use suki_ambient::{SessionId, api::NoteContent};

const PHI: &str = "PHI-MARKER-Jane-Q-Public";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn no_key_assertion_token_or_note_in_logs_errors_or_debug() {
    let capture = suki_ambient::testing::LogCapture::default();
    tracing::subscriber::set_global_default(capture.trace_subscriber()).unwrap();
    let mut shown: Vec<String> = Vec::new();

    let note: NoteContent = serde_json::from_value(serde_json::json!({
        "summary": [{"title": "HPI", "content": format!("{PHI} <b>&</b>"), "loinc_code": "10164-2"}]
    }))
    .unwrap();
    let session = SessionId::from("hygiene-fhir");
    let fhir_note = SessionNote::new(&session, &note, UnixMillis::now());
    let ehr = EhrContext::new(Reference::parse("Patient/hygiene-patient").unwrap());
    let bundle = transaction(&fhir_note, &ehr, &Default::default()).unwrap();

    let pem = SmartKey::generate_pem("ES384").unwrap();
    let key = SmartKey::from_pem(&pem, "hygiene-kid").unwrap();
    let medplum = Medplum::start(
        Options::default()
            .transactions(false)
            .smart_client("hygiene-client", &key.jwks()),
    );
    let auth = SmartBackendAuth::builder(medplum.base_url(), "hygiene-client", key)
        .build()
        .unwrap();
    let smart = FhirClient::builder(medplum.base_url())
        .auth(auth.clone())
        .build()
        .unwrap();
    shown.push(format!(
        "{auth:?} {smart:?} {:?}",
        smart.plan().await.unwrap()
    ));
    shown.push(format!("{:?}", smart.write(&bundle).await.unwrap()));
    medplum.expire_tokens().await;
    shown.push(format!("{:?}", smart.write(&bundle).await.unwrap()));
    let elsewhere = EhrContext::new(Reference::parse("Patient/hygiene-other").unwrap());
    let moved = transaction(&fhir_note, &elsewhere, &Default::default()).unwrap();
    let err = smart.write(&moved).await.unwrap_err();
    assert_eq!(err.code(), "fhir_conflict");
    shown.push(format!("{err} {err:?}"));
    assert_eq!(auth.tokens_fetched(), 2);
    let pem_body: Vec<String> = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_owned)
        .collect();

    let logs = capture.text();
    assert!(
        logs.contains("smart: access token fetched")
            && logs.contains("fhir resources written one by one"),
        "the FHIR client's events were captured"
    );
    let everything = format!("{logs}\n{}", shown.join("\n"));
    integration_tests::assert_no_marker(
        &everything,
        [PHI, medplum.token(), "eyJ"]
            .into_iter()
            .chain(pem_body.iter().map(String::as_str)),
    );
}
