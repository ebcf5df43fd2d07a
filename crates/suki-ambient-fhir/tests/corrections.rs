//! Corrections: a session written again to another chart, or with a changed note, is a
//! conflict: by default the write fails (`fhir_conflict`, nothing new written); `Keep` leaves
//! the chart as it is; `Supersede` writes new resources that replace the old ones, marks the old
//! ones entered-in-error, retires the diagnoses the new note no longer has and points the
//! Provenance at the new resources; writing the corrected session again creates nothing. On a
//! server that takes transactions and on one that takes creates only.

mod common;

use serde_json::Value;
use suki_ambient_core::api::{NoteContent, StructuredData};
use suki_ambient_core::{SessionId, UnixMillis};
use suki_ambient_fhir::{
    BearerToken, EhrContext, FhirClient, FhirError, Mapping, OnConflict, Reference, SessionNote,
    TransactionBundle, WriteStrategy, transaction,
};
use suki_ambient_sandbox::{FhirOptions, Sandbox, SandboxHandle};

/// The typical session for `patient`; `changed` edits the note's first section and drops the
/// first diagnosis.
fn bundle(session: &str, patient: &str, changed: bool) -> TransactionBundle {
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
        section.content = Some("Corrected by the clinician.".into());
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
    let ehr = EhrContext::new(Reference::parse(patient).expect("patient"))
        .encounter(Reference::parse("Encounter/e-1").expect("encounter"));
    transaction(&note, &ehr, &Mapping::default()).expect("maps")
}

fn client(sandbox: &SandboxHandle, strategy: WriteStrategy) -> FhirClient {
    common::client(sandbox, strategy, BearerToken::new(sandbox.fhir_token()))
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
        .filter(|r| r["resourceType"] == kind && status(r) != "entered-in-error")
        .collect()
}

/// Every Provenance target resolves to a live resource.
fn provenance_names_live_resources(sandbox: &SandboxHandle) {
    let all = sandbox.fhir_resources(None);
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
async fn a_session_moved_to_another_chart_fails_keeps_or_is_superseded() {
    for transactions in [true, false] {
        let sandbox = Sandbox::builder()
            .fhir(FhirOptions::default().transactions(transactions))
            .start()
            .await
            .expect("sandbox");
        let fhir = client(&sandbox, WriteStrategy::Auto);
        fhir.write(&bundle("s-move", "Patient/wrong", false))
            .await
            .expect("first write");
        let written = sandbox.fhir_resources(None).len();
        assert_eq!(written, 9);

        // The same session, now for the right patient: a conflict, nothing new.
        let corrected = bundle("s-move", "Patient/right", false);
        let err = fhir.write(&corrected).await.expect_err("conflict");
        assert_eq!(err.code(), "fhir_conflict");
        assert!(!err.is_retryable());
        let FhirError::Conflict { references } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(references.len(), 8, "every resource but the Provenance");
        assert!(
            references[0].starts_with("DocumentReference/"),
            "{references:?}"
        );
        assert!(!err.to_string().contains("Patient/"), "{err}");
        assert_eq!(sandbox.fhir_resources(None).len(), written);

        // Keep: success, the chart unchanged.
        fhir.write_with(&corrected, OnConflict::Keep)
            .await
            .expect("kept");
        assert_eq!(sandbox.fhir_resources(None).len(), written);

        // Supersede: new resources for the right patient; the old ones retired.
        let result = fhir
            .write_with(&corrected, OnConflict::Supersede)
            .await
            .expect("superseded");
        assert_eq!(result.corrected.len(), 8);
        let all = sandbox.fhir_resources(None);
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
        provenance_names_live_resources(&sandbox);

        // Again (a retried row): nothing new; and with the default policy too.
        let count = sandbox.fhir_resources(None).len();
        fhir.write_with(&corrected, OnConflict::Supersede)
            .await
            .expect("again");
        fhir.write(&corrected).await.expect("again, fail policy");
        assert_eq!(sandbox.fhir_resources(None).len(), count);
        sandbox.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_note_supersedes_the_note_and_retires_what_it_no_longer_says() {
    let sandbox = Sandbox::builder()
        .fhir(FhirOptions::default().transactions(false))
        .start()
        .await
        .expect("sandbox");
    let fhir = client(&sandbox, WriteStrategy::Auto);
    fhir.write(&bundle("s-edit", "Patient/p-1", false))
        .await
        .expect("first write");
    let changed = bundle("s-edit", "Patient/p-1", true);
    let err = fhir.write(&changed).await.expect_err("conflict");
    let FhirError::Conflict { references } = &err else {
        panic!("{err:?}")
    };
    // The note, its Composition, and the diagnosis the new note dropped.
    assert_eq!(references.len(), 3, "{references:?}");
    fhir.write_with(&changed, OnConflict::Supersede)
        .await
        .expect("superseded");
    let all = sandbox.fhir_resources(None);
    assert_eq!(live(&all, "DocumentReference").len(), 1);
    assert_eq!(live(&all, "Composition").len(), 1);
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
    provenance_names_live_resources(&sandbox);
    let count = all.len();
    fhir.write_with(&changed, OnConflict::Supersede)
        .await
        .expect("again");
    assert_eq!(sandbox.fhir_resources(None).len(), count, "nothing twice");
    sandbox.shutdown().await;
}
