//! The Bundles' bytes, pinned: every fixture and edge the mapping writes, compared with the
//! files in `testdata/fhir/golden/` byte for byte. `SUKI_BLESS=1 cargo test -p
//! suki-ambient-fhir golden` writes them again (review the diff: each change is a change to
//! what EHRs receive).

use std::path::PathBuf;

use suki_ambient_core::SessionId;
use suki_ambient_core::api::{NoteContent, StructuredData};

use super::*;
use crate::context::{DocStatus, NoteType};
use crate::{EhrContext, Mapping, Reference};

fn golden(name: &str, bytes: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/fhir/golden")
        .join(name);
    if std::env::var_os("SUKI_BLESS").is_some() {
        std::fs::write(&path, bytes).expect("write the golden file");
        return;
    }
    let expected = std::fs::read(&path).expect("the golden file (SUKI_BLESS=1 writes it)");
    assert!(
        expected == bytes,
        "{name} differs from its golden file:\n{}",
        String::from_utf8_lossy(bytes)
    );
}

fn ehr() -> EhrContext {
    EhrContext::new(Reference::parse("Patient/p-123").expect("patient"))
        .encounter(Reference::parse("Encounter/e-456").expect("encounter"))
        .practitioner(Reference::parse("Practitioner/dr-7").expect("practitioner"))
}

/// The Bundle, then each resource alone and the Provenance for server ids, one per line.
fn all_bytes(bundle: &TransactionBundle) -> Vec<u8> {
    let mut out = bundle.to_json();
    for index in 0..bundle.len() {
        out.push(b'\n');
        out.extend_from_slice(&bundle.resource(index).expect("an entry"));
    }
    out.push(b'\n');
    out.extend_from_slice(
        &bundle
            .provenance_for(&["DocumentReference/1", "Condition/2"])
            .expect("json"),
    );
    out
}

fn map(content: &str, structured: Option<&str>, ehr: &EhrContext, mapping: &Mapping) -> Vec<u8> {
    let content: NoteContent = serde_json::from_str(content).expect("content");
    let structured: Option<StructuredData> =
        structured.map(|s| serde_json::from_str(s).expect("structured data"));
    let session = SessionId::from("a953839a-ddcd-407d-b9b0-3ed4b6be4be2");
    let mut note = SessionNote::new(&session, &content, UnixMillis(1_764_460_800_123));
    if let Some(structured) = &structured {
        note = note.structured_data(structured);
    }
    all_bytes(&transaction(&note, ehr, mapping).expect("maps"))
}

#[test]
fn golden_documented_fixtures() {
    golden(
        "documented.json",
        &map(
            include_str!("../../../../testdata/fixtures/api/session-content.json"),
            Some(include_str!(
                "../../../../testdata/fixtures/api/session-structured-data.json"
            )),
            &ehr(),
            &Mapping::default(),
        ),
    );
}

#[test]
fn golden_typical_session_with_choices_and_a_replaced_note() {
    let ehr = EhrContext::new(Reference::parse("Patient/p-123").expect("patient"))
        .replaces(SessionId::from("earlier-session"));
    let mapping = Mapping::default()
        .doc_status(DocStatus::Final)
        .note_type(NoteType::consult_note())
        .imo_system(Mapping::IMO_PROBLEM_IT);
    golden(
        "typical.json",
        &map(
            include_str!("../../../../testdata/fhir/session-content-typical.json"),
            Some(include_str!(
                "../../../../testdata/fhir/session-structured-data-typical.json"
            )),
            &ehr,
            &mapping,
        ),
    );
}

#[test]
fn golden_hostile_text() {
    let nasty = "Quote \" back\\slash <b>bold</b> & amp; tab\tbell\u{7} nul-free \u{1f} é 😀 \u{2028}\r\nnext line\n\n  second paragraph  \n\u{FFFE}";
    let content = serde_json::json!({
        "summary": [
            {"title": "Plan <1> & \"2\"", "loinc_code": "18776-5", "content": nasty},
            {"title": null, "content": "   "},
            {"title": "Only text", "content": "a\u{0}b"}
        ]
    })
    .to_string();
    let structured = serde_json::json!({
        "structured_data": {
            "diagnoses": {"values": [
                {"codes": [{"code": "E11.9", "description": "Type 2 \"diabetes\"", "type": "ICD10"},
                           {"code": "44054006", "type": "SNOMED"},
                           {"code": "x|y", "type": "Weird type"}],
                 "diagnosis_note": "note <x>", "laterality_indicator": 9_999_999_999_i64,
                 "post_coord_lex_flag": -1},
                {"codes": [], "diagnosis_note": "only a note"},
                {"codes": []}
            ]},
            "orders": {"medication_orders": {"partial_values": [
                {"medication": "Metformin \"ER\"", "dosage": "500 mg", "frequency": "twice daily",
                 "route": "oral", "codes": [{"code": "860975", "type": "RXNORM"}]},
                {"medication": "Metformin \"ER\"", "dosage": "500 mg", "frequency": "twice daily",
                 "route": "oral", "codes": [{"code": "860975", "type": "RXNORM"}]},
                {"medication": null, "codes": []}
            ]}}
        }
    })
    .to_string();
    golden(
        "hostile.json",
        &map(&content, Some(&structured), &ehr(), &Mapping::default()),
    );
}

#[cfg(feature = "inbox")]
#[test]
fn golden_no_note_resources() {
    let session = SessionId::from("s-\"1\"");
    for (resource, name) in [
        (NoNoteResource::Communication, "no-note-communication.json"),
        (NoNoteResource::Task, "no-note-task.json"),
    ] {
        let bundle = no_note(
            &session,
            suki_ambient_core::EventKind::Failed,
            Some("E42"),
            UnixMillis(1_764_460_800_123),
            &ehr(),
            resource,
        )
        .expect("maps");
        golden(name, &all_bytes(&bundle));
    }
}
