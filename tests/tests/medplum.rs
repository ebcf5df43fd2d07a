//! The write-back against a real FHIR server: Medplum's FHIR router (in memory; every resource
//! validated against R4 by @medplum/core) behind `tests/medplum/server.mjs`, in two modes —
//! transactions allowed, and transactions refused with only per-resource creates. Notes are
//! created once, a retried write creates nothing, a SMART token expiry is refreshed, and a
//! session moved to another chart is a dead letter `fhir_conflict`.
//!
//! These tests need Node.js and the server's packages (`npm ci --prefix tests/medplum`, which
//! `.ci/run` does): `cargo test -p integration-tests --test medplum -- --include-ignored`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use medplum_ehr::{Medplum, Options};
use serde_json::Value;
use suki_ambient::api::{NoteContent, StructuredData};
use suki_ambient::client::AmbientClient;
use suki_ambient::fhir::{
    BearerToken, EhrContext, FhirAuth, FhirClient, Mapping, Reference, SessionNote, SessionRef,
    SmartBackendAuth, SmartKey, TransactionBundle, WriteStrategy, transaction,
};
use suki_ambient::inbox::{FetchResults, Inbox, InboxWorker, State};
use suki_ambient::sandbox::{Fault, Sandbox};
use suki_ambient::{HandlerError, SessionId, UnixMillis};

fn typical(session: &str, patient: &str, structured: bool) -> TransactionBundle {
    let content: NoteContent = serde_json::from_str(include_str!(
        "../../testdata/fhir/session-content-typical.json"
    ))
    .expect("content");
    let data: StructuredData = serde_json::from_str(include_str!(
        "../../testdata/fhir/session-structured-data-typical.json"
    ))
    .expect("structured data");
    let session = SessionId::from(session);
    let mut note = SessionNote::new(&session, &content, UnixMillis(1_764_460_800_000));
    if structured {
        note = note.structured_data(&data);
    }
    let ehr = EhrContext::new(Reference::parse(patient).expect("patient"))
        .encounter(Reference::parse("Encounter/e-1").expect("encounter"));
    transaction(&note, &ehr, &Mapping::default()).expect("maps")
}

fn client(medplum: &Medplum, auth: impl FhirAuth) -> FhirClient {
    FhirClient::builder(medplum.base_url())
        .auth(auth)
        .strategy(WriteStrategy::Auto)
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci)"]
async fn medplum_takes_each_note_once_with_and_without_transactions() {
    for mode in ["on", "off"] {
        let medplum = Medplum::start(Options::default().transactions(mode == "on"));
        let fhir = client(&medplum, BearerToken::new(medplum.token()));
        let plan = fhir.plan().await.expect("plan");
        assert_eq!(plan.transaction, mode == "on", "{plan}");

        // The note alone (three resources): a transaction where the server takes them.
        let small = typical(&format!("s-small-{mode}"), "Patient/p-1", false);
        let first = fhir.write(&small).await.expect("written");
        assert_eq!((first.created(), first.matched()), (3, 0), "{mode}");
        let again = fhir.write(&small).await.expect("again");
        assert_eq!((again.created(), again.matched()), (0, 3), "{mode}");

        // The typical session (nine resources): more conditional entries than Medplum takes
        // in one transaction (eight), so `auto` writes them one at a time there too.
        let session = format!("s-typical-{mode}");
        let full = typical(&session, "Patient/p-1", true);
        let first = fhir.write(&full).await.expect("written");
        assert_eq!((first.created(), first.matched()), (9, 0), "{mode}");
        let again = fhir.write(&full).await.expect("again");
        assert_eq!((again.created(), again.matched()), (0, 9), "{mode}");
        assert_eq!(medplum.of_session("Condition", &session).await.len(), 4);
        assert_eq!(
            medplum
                .of_session("DocumentReference", &session)
                .await
                .len(),
            1
        );
        medplum.provenance_resolves(&session).await;

        // A transaction asked for where the server refuses it: an error, nothing written.
        if mode == "off" {
            let forced = FhirClient::builder(medplum.base_url())
                .auth(BearerToken::new(medplum.token()))
                .strategy(WriteStrategy::Transaction)
                .build()
                .expect("client");
            let err = forced
                .write(&typical("s-forced", "Patient/p-1", false))
                .await
                .expect_err("refused");
            assert_eq!(err.code(), "fhir_400_not-supported");
        }

        // The same session for another patient: a conflict, nothing new.
        let moved = typical(&session, "Patient/p-2", true);
        let err = fhir.write(&moved).await.expect_err("conflict");
        assert_eq!(err.code(), "fhir_conflict", "{err}");
        assert_eq!(
            medplum
                .of_session("DocumentReference", &session)
                .await
                .len(),
            1
        );
    }
}

/// The whole pipeline: the sandbox's Suki delivers completed sessions to a receiver with the
/// inbox; the worker writes each note to Medplum without transactions, with SMART Backend
/// Services tokens that the EHR expires mid-run; transcripts answer 404. Every note lands once,
/// nothing dead-letters; then the resolver names another chart for one session and the replayed
/// row is a dead letter `fhir_conflict`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci)"]
async fn the_write_back_reaches_medplum_once_through_a_token_expiry() {
    let dir = tempfile::tempdir().expect("dir");
    let pem = SmartKey::generate_pem("RS384").expect("key");
    let key = SmartKey::from_pem(&pem, "medplum-key").expect("key");
    let medplum = Medplum::start(
        Options::default()
            .transactions(false)
            .smart_client("suki-backend", &key.jwks()),
    );
    let auth = SmartBackendAuth::builder(medplum.base_url(), "suki-backend", key)
        .scopes("system/*.c system/*.rs")
        .build()
        .expect("auth");
    let ehr = client(&medplum, auth.clone());

    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let inbox = Inbox::connect(&format!("sqlite://{}", dir.path().join("i.db").display()))
        .await
        .expect("inbox");
    let server = integration_tests::serve_inbox(&sandbox, &inbox).await;
    let suki = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .build()
        .expect("suki client");
    let patient = Arc::new(Mutex::new("Patient/p-1".to_owned()));
    let resolve = {
        let patient = Arc::clone(&patient);
        move |session: SessionRef| {
            let patient = patient.lock().expect("lock").clone();
            async move {
                let encounter = format!("Encounter/{}", session.encounter_id.as_str());
                Ok::<_, HandlerError>(
                    EhrContext::new(Reference::parse(&patient)?)
                        .encounter(Reference::parse(&encounter)?),
                )
            }
        }
    };
    let write_back = Arc::new(suki_ambient::fhir::FhirWriteBack::new(ehr, resolve));
    let worker = || {
        InboxWorker::builder(
            inbox.clone(),
            FetchResults::new(suki.clone(), Arc::clone(&write_back)),
        )
        .backoff(Duration::from_millis(1), Duration::from_millis(10))
        .build()
    };

    let mut sessions = Vec::new();
    for round in 0..3 {
        let session = sandbox.create_session(None);
        sandbox.inject(
            Fault::status(404)
                .on(format!(
                    "/api/v1/ambient/session/{}/transcript",
                    session.session_id
                ))
                .times(100),
        );
        if round == 2 {
            medplum.expire_tokens().await;
        }
        sandbox
            .complete(&session.session_id)
            .await
            .expect("deliver");
        let started = Instant::now();
        worker()
            .drain(Duration::from_secs(30))
            .await
            .expect("drain");
        assert!(started.elapsed() < Duration::from_secs(30));
        sessions.push(session);
    }
    assert_eq!(
        auth.tokens_fetched(),
        2,
        "one token, then a fresh one after the expiry"
    );
    for session in &sessions {
        let id = session.session_id.as_str();
        assert_eq!(medplum.of_session("DocumentReference", id).await.len(), 1);
        medplum.provenance_resolves(id).await;
    }
    assert!(
        inbox
            .list(Some(State::Dead), 10)
            .await
            .expect("list")
            .is_empty(),
        "no dead letter"
    );

    // The resolver now names another chart; the rows replayed: each is a conflict, a dead
    // letter naming it, and the EHR is unchanged.
    *patient.lock().expect("lock") = "Patient/p-2".to_owned();
    integration_tests::replay_all(&inbox).await;
    worker()
        .drain(Duration::from_secs(30))
        .await
        .expect("drain");
    let dead = inbox.list(Some(State::Dead), 10).await.expect("list");
    assert_eq!(dead.len(), 3);
    assert!(
        dead.iter()
            .all(|row| row.last_error.as_deref() == Some("fhir_conflict")),
        "{:?}",
        dead.iter()
            .map(|r| r.last_error.clone())
            .collect::<Vec<_>>()
    );
    for session in &sessions {
        let notes = medplum
            .of_session("DocumentReference", session.session_id.as_str())
            .await;
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0]["subject"]["reference"], "Patient/p-1");
    }
    server.abort();
    sandbox.shutdown().await;
}

/// A session's note with a U+FEFF in a section title, a LOINC code and a diagnosis code.
fn with_byte_order_marks(session: &str) -> TransactionBundle {
    let mut content: Value = serde_json::from_str(include_str!(
        "../../testdata/fhir/session-content-typical.json"
    ))
    .expect("content");
    let section = &mut content["summary"][0];
    section["title"] = Value::from("\u{FEFF}CHIEF COMPLAINT");
    section["loinc_code"] = Value::from("10154-3\u{FEFF}");
    let mut data: Value = serde_json::from_str(include_str!(
        "../../testdata/fhir/session-structured-data-typical.json"
    ))
    .expect("structured data");
    data["structured_data"]["diagnoses"]["values"][0]["codes"][0]["code"] =
        Value::from("\u{FEFF}I10");
    let content: NoteContent = serde_json::from_value(content).expect("content");
    let data: StructuredData = serde_json::from_value(data).expect("structured data");
    let session = SessionId::from(session);
    let note =
        SessionNote::new(&session, &content, UnixMillis(1_764_460_800_000)).structured_data(&data);
    let ehr = EhrContext::new(Reference::parse("Patient/p-1").expect("patient"));
    transaction(&note, &ehr, &Mapping::default()).expect("maps")
}

/// Hostile values reach a validating server as FHIR wants them: a session id with a comma is
/// one search value in `ifNoneExist` (it once ORed two, matched another session's note and lost
/// its own), and U+FEFF is removed from codes and titles (one made the whole transaction fail
/// validation, dead forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci)"]
async fn ids_are_escaped_and_codes_cleaned_for_a_validating_server() {
    let medplum = Medplum::start(Options::default());
    let fhir = client(&medplum, BearerToken::new(medplum.token()));

    // `s-b` first; then `s-a,s-b`, whose identifiers unescaped read as `s-a` OR `s-b/…`.
    let b = fhir
        .write(&typical("s-b", "Patient/p-1", false))
        .await
        .expect("s-b");
    assert_eq!(b.created(), 3);
    let a = fhir
        .write(&typical("s-a,s-b", "Patient/p-1", false))
        .await
        .expect("s-a,s-b");
    assert_eq!((a.created(), a.matched()), (3, 0), "its own resources");
    let again = fhir
        .write(&typical("s-a,s-b", "Patient/p-1", false))
        .await
        .expect("again");
    assert_eq!((again.created(), again.matched()), (0, 3), "matched, once");
    let all = medplum.get("DocumentReference?_count=100").await;
    assert_eq!(
        all["entry"].as_array().map(Vec::len),
        Some(2),
        "one note each"
    );

    // Byte-order marks in a title and codes: the typical session is written whole.
    let session = "s-bom";
    let written = fhir
        .write(&with_byte_order_marks(session))
        .await
        .expect("a validating server takes it");
    assert_eq!(written.created(), 9);
    let conditions = medplum.of_session("Condition", session).await;
    assert!(
        conditions
            .iter()
            .flat_map(|c| c["code"]["coding"].as_array().cloned().unwrap_or_default())
            .any(|coding| coding["code"] == "I10"),
        "{conditions:?}"
    );
}

/// Corrections on a validating server: a changed note superseded (versioned updates, status
/// `superseded`), a second correction, and a re-recorded visit replacing the first session,
/// each leave exactly one current note of the encounter; searches carry the patient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci)"]
async fn corrections_on_medplum_leave_one_current_note() {
    use suki_ambient::fhir::OnConflict;

    let medplum = Medplum::start(Options::default().transactions(false));
    let fhir = client(&medplum, BearerToken::new(medplum.token()));
    let edited = |session: &str, text: &str, replaces: Option<&str>| {
        let mut content: NoteContent = serde_json::from_str(include_str!(
            "../../testdata/fhir/session-content-typical.json"
        ))
        .expect("content");
        let section = content
            .summary
            .iter_mut()
            .find(|s| s.content.is_some())
            .expect("a section with text");
        section.content = Some(text.to_owned());
        let session = SessionId::from(session);
        let note = SessionNote::new(&session, &content, UnixMillis(1_764_460_800_000));
        let mut ehr = EhrContext::new(Reference::parse("Patient/p-9").expect("patient"))
            .encounter(Reference::parse("Encounter/e-9").expect("encounter"));
        if let Some(earlier) = replaces {
            ehr = ehr.replaces(SessionId::from(earlier));
        }
        transaction(&note, &ehr, &Mapping::default()).expect("maps")
    };
    let current = |notes: Vec<Value>| -> Vec<Value> {
        notes
            .into_iter()
            .filter(|n| n["status"] == "current")
            .collect()
    };
    fhir.write(&edited("s-fix", "First.", None))
        .await
        .expect("written");
    for text in ["Second.", "Third."] {
        let err = fhir
            .write(&edited("s-fix", text, None))
            .await
            .expect_err("a changed note is a conflict");
        assert_eq!(err.code(), "fhir_conflict");
        fhir.write_with(&edited("s-fix", text, None), OnConflict::Supersede)
            .await
            .expect("superseded");
        let notes = medplum.of_session("DocumentReference", "s-fix").await;
        assert_eq!(current(notes.clone()).len(), 1, "{text}: one current note");
        assert!(notes.iter().any(|n| n["status"] == "superseded"));
    }
    // A re-recorded visit replaces the first session's note.
    fhir.write(&edited("s-again", "Re-recorded.", Some("s-fix")))
        .await
        .expect("written");
    assert!(
        current(medplum.of_session("DocumentReference", "s-fix").await).is_empty(),
        "the replaced session's note is superseded"
    );
    assert_eq!(
        current(medplum.of_session("DocumentReference", "s-again").await).len(),
        1
    );
}

/// The hand-written client assertion (`SmartKey::sign`) checked by an independent verifier:
/// Node's `crypto.verify` in the Medplum stand-in takes an RS384 and an ES384 assertion against
/// the JWKS `SmartKey::jwks` exported, and refuses one signed by a key it was not given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci)"]
async fn an_independent_verifier_takes_both_assertions_and_refuses_a_stranger() {
    for alg in ["RS384", "ES384"] {
        let key =
            SmartKey::from_pem(&SmartKey::generate_pem(alg).expect("key"), "k1").expect("key");
        let medplum = Medplum::start(Options::default().smart_client("suki-backend", &key.jwks()));
        let auth = SmartBackendAuth::builder(medplum.base_url(), "suki-backend", key)
            .scopes("system/*.c system/*.rs")
            .build()
            .expect("auth");
        let token = auth.bearer().await;
        assert!(token.is_ok_and(|t| !t.is_empty()), "{alg}: a token");
        // The same kid, another key: refused.
        let stranger =
            SmartKey::from_pem(&SmartKey::generate_pem(alg).expect("key"), "k1").expect("key");
        let refused = SmartBackendAuth::builder(medplum.base_url(), "suki-backend", stranger)
            .scopes("system/*.c system/*.rs")
            .build()
            .expect("auth")
            .bearer()
            .await;
        assert!(refused.is_err(), "{alg}: a stranger's assertion is refused");
    }
}
