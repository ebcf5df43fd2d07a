//! Corrections: a session written again to another chart, or with a changed note, is a
//! conflict decided on the note before anything else is written: by default the write fails
//! (`fhir_conflict`, nothing new written to either chart); `Keep` leaves the chart as it is;
//! `Supersede` writes new resources that replace the old ones, marks the old note `superseded`
//! (a changed note) or `entered-in-error` (the wrong chart), retires the diagnoses the new note
//! no longer has and every earlier live version, and points the Provenance at the new
//! resources; writing the corrected session again creates nothing. On a server that takes
//! transactions, one that takes creates only, and one that keeps notes in a `Binary`.

mod common;

use medplum_ehr::{Fault, Medplum, Options};
use serde_json::Value;
use suki_ambient_core::api::{NoteContent, StructuredData};
use suki_ambient_core::{SessionId, UnixMillis};
use suki_ambient_fhir::{
    BearerToken, EhrContext, FhirClient, FhirError, Mapping, OnConflict, Reference, SessionNote,
    TransactionBundle, WriteStrategy, transaction,
};

/// The typical session for `patient`; `changed` edits the note's first section and drops the
/// first diagnosis.
fn bundle(session: &str, patient: &str, changed: bool) -> TransactionBundle {
    bundle_with(
        session,
        patient,
        changed.then_some("Corrected by the clinician."),
        None,
    )
}

/// The typical session for `patient`, its first section's text `edit` (and its first diagnosis
/// dropped) when given, replacing `replaces`' note when given.
fn bundle_with(
    session: &str,
    patient: &str,
    edit: Option<&str>,
    replaces: Option<&str>,
) -> TransactionBundle {
    let changed = edit.is_some();
    let mut content: NoteContent = serde_json::from_str(include_str!(
        "../../../testdata/fhir/session-content-typical.json"
    ))
    .expect("content");
    let mut structured: StructuredData = serde_json::from_str(include_str!(
        "../../../testdata/fhir/session-structured-data-typical.json"
    ))
    .expect("structured data");
    if changed {
        let section = content
            .summary
            .iter_mut()
            .find(|s| s.content.is_some())
            .expect("a section with text");
        section.content = edit.map(Into::into);
        structured
            .structured_data
            .diagnoses
            .as_mut()
            .expect("diagnoses")
            .values
            .remove(0);
    }
    let session = SessionId::from(session);
    let note = SessionNote::new(&session, &content, UnixMillis(1_764_460_800_000))
        .structured_data(&structured);
    let mut ehr = EhrContext::new(Reference::parse(patient).expect("patient"))
        .encounter(Reference::parse("Encounter/e-1").expect("encounter"));
    if let Some(earlier) = replaces {
        ehr = ehr.replaces(SessionId::from(earlier));
    }
    transaction(&note, &ehr, &Mapping::default()).expect("maps")
}

fn client(ehr: &Medplum, strategy: WriteStrategy) -> FhirClient {
    common::client(ehr, strategy, BearerToken::new(ehr.token()))
}

fn status(resource: &Value) -> &str {
    resource["status"]
        .as_str()
        .or_else(|| {
            resource["verificationStatus"]["coding"][0]["code"]
                .as_str()
                .filter(|c| *c == "entered-in-error")
        })
        .unwrap_or("")
}

fn live<'a>(resources: &'a [Value], kind: &str) -> Vec<&'a Value> {
    resources
        .iter()
        .filter(|r| {
            r["resourceType"] == kind && !matches!(status(r), "entered-in-error" | "superseded")
        })
        .collect()
}

/// Every Provenance target resolves to a live resource.
async fn provenance_names_live_resources(ehr: &Medplum) {
    let all = ehr.resources(None).await;
    let provenance = live(&all, "Provenance");
    assert_eq!(provenance.len(), 1);
    for target in provenance[0]["target"].as_array().expect("targets") {
        let (kind, id) = target["reference"]
            .as_str()
            .and_then(|r| r.split_once('/'))
            .expect("Type/id");
        let resource = all
            .iter()
            .find(|r| r["resourceType"] == kind && r["id"] == id)
            .expect("resolves");
        assert_ne!(status(resource), "entered-in-error", "{kind}/{id} is live");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn a_session_moved_to_another_chart_fails_keeps_or_is_superseded() {
    for transactions in [true, false] {
        let ehr = Medplum::start(Options::default().transactions(transactions));
        let fhir = client(&ehr, WriteStrategy::Auto);
        fhir.write(&bundle("s-move", "Patient/wrong", false))
            .await
            .expect("first write");
        let written = ehr.resources(None).await.len();
        assert_eq!(written, 9);

        // The same session, now for the right patient: a conflict decided on the note, nothing
        // new in either chart.
        let corrected = bundle("s-move", "Patient/right", false);
        let err = fhir.write(&corrected).await.expect_err("conflict");
        assert_eq!(err.code(), "fhir_conflict");
        assert!(!err.is_retryable());
        let FhirError::Conflict { references } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(references.len(), 1, "the note: {references:?}");
        assert!(
            references[0].starts_with("DocumentReference/"),
            "{references:?}"
        );
        assert!(!err.to_string().contains("Patient/"), "{err}");
        assert_eq!(ehr.resources(None).await.len(), written);

        // Keep: success, the chart unchanged.
        fhir.write_with(&corrected, OnConflict::Keep)
            .await
            .expect("kept");
        assert_eq!(ehr.resources(None).await.len(), written);

        // Supersede: new resources for the right patient; the old ones retired.
        let result = fhir
            .write_with(&corrected, OnConflict::Supersede)
            .await
            .expect("superseded");
        assert_eq!(result.corrected.len(), 8);
        let all = ehr.resources(None).await;
        let notes = live(&all, "DocumentReference");
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0]["subject"]["reference"], "Patient/right");
        let old = all
            .iter()
            .find(|r| {
                r["resourceType"] == "DocumentReference"
                    && r["subject"]["reference"] == "Patient/wrong"
            })
            .expect("the old note");
        assert_eq!(old["status"], "entered-in-error");
        assert_eq!(
            notes[0]["relatesTo"]
                .as_array()
                .expect("relatesTo")
                .last()
                .expect("one")["target"]["reference"],
            format!("DocumentReference/{}", old["id"].as_str().expect("id"))
        );
        for kind in ["Composition", "Condition", "MedicationRequest"] {
            for resource in live(&all, kind) {
                assert_eq!(
                    resource["subject"]["reference"], "Patient/right",
                    "{kind} in the right chart"
                );
            }
        }
        assert_eq!(live(&all, "Condition").len(), 4);
        provenance_names_live_resources(&ehr).await;

        // Again (a retried row): nothing new; and with the default policy too.
        let count = ehr.resources(None).await.len();
        fhir.write_with(&corrected, OnConflict::Supersede)
            .await
            .expect("again");
        fhir.write(&corrected).await.expect("again, fail policy");
        assert_eq!(ehr.resources(None).await.len(), count);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn a_changed_note_supersedes_the_note_and_retires_what_it_no_longer_says() {
    let ehr = Medplum::start(Options::default().transactions(false));
    let fhir = client(&ehr, WriteStrategy::Auto);
    fhir.write(&bundle("s-edit", "Patient/p-1", false))
        .await
        .expect("first write");
    let changed = bundle("s-edit", "Patient/p-1", true);
    let err = fhir.write(&changed).await.expect_err("conflict");
    let FhirError::Conflict { references } = &err else {
        panic!("{err:?}")
    };
    // Decided on the note, before anything else is written.
    assert_eq!(references.len(), 1, "{references:?}");
    assert!(references[0].starts_with("DocumentReference/"));
    assert_eq!(ehr.resources(None).await.len(), 9, "nothing written");
    fhir.write_with(&changed, OnConflict::Supersede)
        .await
        .expect("superseded");
    let all = ehr.resources(None).await;
    assert_eq!(live(&all, "DocumentReference").len(), 1);
    assert_eq!(live(&all, "Composition").len(), 1);
    assert_eq!(
        all.iter()
            .filter(|r| r["resourceType"] == "DocumentReference" && status(r) == "superseded")
            .count(),
        1,
        "a changed note is superseded, not entered-in-error"
    );
    assert_eq!(
        live(&all, "Condition").len(),
        3,
        "the dropped diagnosis is retired"
    );
    let retired = all
        .iter()
        .filter(|r| r["resourceType"] == "Condition" && status(r) == "entered-in-error")
        .collect::<Vec<_>>();
    assert_eq!(retired.len(), 1);
    assert!(retired[0].get("clinicalStatus").is_none(), "con-5");
    provenance_names_live_resources(&ehr).await;
    let count = all.len();
    fhir.write_with(&changed, OnConflict::Supersede)
        .await
        .expect("again");
    assert_eq!(ehr.resources(None).await.len(), count, "nothing twice");
}

/// Three successive corrections of one session, on a server that keeps notes in a `Binary`
/// (no `data` and no `hash` on a read): each is seen as a change (never a silent success),
/// and the chart ends with exactly one current note and one current Composition, holding the
/// last text; writing the last one again creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn successive_corrections_of_a_binary_backed_note_leave_one_current_note() {
    for transactions in [true, false] {
        let ehr = Medplum::start(
            Options::default()
                .transactions(transactions)
                .externalize_notes(true),
        );
        let fhir = client(&ehr, WriteStrategy::Auto);
        fhir.write(&bundle("s-bin", "Patient/p-1", false))
            .await
            .expect("first write");
        let stored = ehr.resources(Some("DocumentReference")).await;
        assert!(
            stored[0]["content"][0]["attachment"]["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("Binary/"))
                && stored[0]["content"][0]["attachment"].get("data").is_none(),
            "the server keeps the note in a Binary"
        );
        for (round, text) in ["Second text.", "Third text.", "Fourth text."]
            .into_iter()
            .enumerate()
        {
            let changed = bundle_with("s-bin", "Patient/p-1", Some(text), None);
            let err = fhir
                .write(&changed)
                .await
                .expect_err("a change, not unchanged");
            assert_eq!(err.code(), "fhir_conflict", "round {round}");
            fhir.write_with(&changed, OnConflict::Supersede)
                .await
                .expect("superseded");
            let all = ehr.resources(None).await;
            let notes = live(&all, "DocumentReference");
            assert_eq!(notes.len(), 1, "round {round}: one current note");
            assert_eq!(live(&all, "Composition").len(), 1, "round {round}");
            // The current note holds this round's text (in its Binary).
            let url = notes[0]["content"][0]["attachment"]["url"]
                .as_str()
                .expect("url");
            let id = url.trim_start_matches("Binary/");
            let binary = all
                .iter()
                .find(|r| r["resourceType"] == "Binary" && r["id"] == id)
                .expect("the Binary");
            let decoded = base64_decode(binary["data"].as_str().expect("data"));
            assert!(decoded.contains(text), "round {round}");
        }
        let count = ehr.resources(None).await.len();
        let last = bundle_with("s-bin", "Patient/p-1", Some("Fourth text."), None);
        fhir.write_with(&last, OnConflict::Supersede)
            .await
            .expect("again");
        fhir.write(&last)
            .await
            .expect("again, fail policy: unchanged");
        assert_eq!(ehr.resources(None).await.len(), count, "nothing twice");
    }
}

fn base64_decode(text: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64"),
    )
    .expect("utf-8")
}

/// The patient changes between two attempts of a row: the first wrote the note to the wrong
/// chart and failed on the rest; the second is decided on the note before anything else is
/// written: a conflict, and the full note text (the Composition) reaches neither chart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn a_patient_changed_between_attempts_writes_nothing_to_either_chart() {
    let ehr = Medplum::start(Options::default().transactions(false));
    let fhir = client(&ehr, WriteStrategy::Auto);
    fhir.plan().await.expect("the statement");
    ehr.inject(Fault::status(503).on("/fhir/Composition").times(4))
        .await;
    fhir.write(&bundle("s-moved", "Patient/wrong", false))
        .await
        .expect_err("the EHR failed part-way");
    let written = ehr.resources(None).await.len();
    assert!(
        ehr.resources(Some("Composition")).await.is_empty(),
        "part-way: no Composition"
    );
    let err = fhir
        .write(&bundle("s-moved", "Patient/right", false))
        .await
        .expect_err("conflict");
    assert_eq!(err.code(), "fhir_conflict");
    let all = ehr.resources(None).await;
    assert_eq!(all.len(), written, "nothing written to either chart");
    assert!(ehr.resources(Some("Composition")).await.is_empty());
    assert!(
        all.iter()
            .all(|r| r["subject"]["reference"] == "Patient/wrong")
    );
}

/// A retirement is a versioned update: when the EHR answers `412` (the resource changed since
/// it was read, a clinician's edit), the correction fails permanently instead of overwriting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn a_retirement_refused_as_changed_since_read_is_permanent() {
    let ehr = Medplum::start(Options::default());
    let fhir = client(&ehr, WriteStrategy::Auto);
    fhir.write(&bundle("s-412", "Patient/p-1", false))
        .await
        .expect("first write");
    ehr.inject(
        Fault::status(412)
            .method("PUT")
            .on("/fhir/DocumentReference/")
            .times(1),
    )
    .await;
    let err = fhir
        .write_with(&bundle("s-412", "Patient/p-1", true), OnConflict::Supersede)
        .await
        .expect_err("412");
    assert!(err.code().starts_with("fhir_412"), "{}", err.code());
    assert!(!err.is_retryable());
}

/// A re-recorded visit: the new session's note replaces the earlier session's, which is
/// superseded with its Composition, and the earlier session's diagnoses are retired (the new
/// session carries its own): one current note and one set of Conditions in the chart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn a_re_recorded_visit_leaves_one_current_note() {
    for transactions in [true, false] {
        let ehr = Medplum::start(Options::default().transactions(transactions));
        let fhir = client(&ehr, WriteStrategy::Auto);
        fhir.write(&bundle("s-first", "Patient/p-1", false))
            .await
            .expect("first session");
        let again = bundle_with(
            "s-second",
            "Patient/p-1",
            Some("Re-recorded."),
            Some("s-first"),
        );
        let result = fhir.write(&again).await.expect("second session");
        assert!(!result.corrected.is_empty(), "{result}");
        let all = ehr.resources(None).await;
        let notes = live(&all, "DocumentReference");
        assert_eq!(notes.len(), 1, "one current note");
        assert_eq!(
            notes[0]["identifier"][0]["value"], "s-second/note",
            "the new session's"
        );
        assert_eq!(live(&all, "Composition").len(), 1);
        assert_eq!(live(&all, "Condition").len(), 3, "the new session's only");
        let count = all.len();
        fhir.write(&again).await.expect("again");
        assert_eq!(ehr.resources(None).await.len(), count, "nothing twice");
    }
}
