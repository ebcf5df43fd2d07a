//! Every Bundle the mapping makes validates against the official FHIR R4 JSON schema
//! (`testdata/fhir/fhir.schema.json`, HL7, CC0): from Suki's documented fixtures, from a typical
//! 16 KiB session, and from property-generated results; and it says what docs/fhir.md says.

use std::sync::LazyLock;

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::Value;
use suki_ambient_core::api::{NoteContent, StructuredData};
use suki_ambient_core::{SessionId, UnixMillis};
use suki_ambient_fhir::{
    DocStatus, EhrContext, MapError, Mapping, NoteType, Reference, SessionNote, transaction,
};

static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value =
        serde_json::from_str(include_str!("../../../testdata/fhir/fhir.schema.json"))
            .expect("the R4 schema is JSON");
    jsonschema::draft6::new(&schema).expect("the R4 schema compiles")
});

const DOC_CONTENT: &str = include_str!("../../../testdata/fixtures/api/session-content.json");
const DOC_STRUCTURED: &str =
    include_str!("../../../testdata/fixtures/api/session-structured-data.json");
const TYPICAL_CONTENT: &str = include_str!("../../../testdata/fhir/session-content-typical.json");
const TYPICAL_STRUCTURED: &str =
    include_str!("../../../testdata/fhir/session-structured-data-typical.json");

/// `bundle` is valid R4 (every schema error listed otherwise).
fn assert_valid(bundle: &Value) {
    let errors: Vec<String> = SCHEMA
        .iter_errors(bundle)
        .take(10)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "not valid R4: {errors:#?}");
}

fn ehr() -> EhrContext {
    EhrContext::new(Reference::parse("Patient/p-123").expect("patient"))
        .encounter(Reference::parse("Encounter/e-456").expect("encounter"))
        .practitioner(Reference::parse("Practitioner/dr-7").expect("practitioner"))
}

fn map(content: &str, structured: Option<&str>, ehr: &EhrContext, mapping: &Mapping) -> Value {
    let content: NoteContent = serde_json::from_str(content).expect("content");
    let structured: Option<StructuredData> =
        structured.map(|s| serde_json::from_str(s).expect("structured data"));
    let session = SessionId::from("a953839a-ddcd-407d-b9b0-3ed4b6be4be2");
    let mut note = SessionNote::new(&session, &content, UnixMillis(1_764_460_800_123));
    if let Some(structured) = &structured {
        note = note.structured_data(structured);
    }
    let bundle = transaction(&note, ehr, mapping).expect("maps");
    let json: Value = serde_json::from_slice(&bundle.to_json()).expect("json");
    assert_eq!(json["entry"].as_array().map(Vec::len), Some(bundle.len()));
    json
}

fn entries<'a>(bundle: &'a Value, kind: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["resource"]["resourceType"] == kind)
        .collect()
}

#[test]
fn the_documented_fixtures_map_to_a_valid_bundle() {
    let bundle = map(
        DOC_CONTENT,
        Some(DOC_STRUCTURED),
        &ehr(),
        &Mapping::default(),
    );
    assert_valid(&bundle);
    assert_eq!(bundle["type"], "transaction");
    let kinds: Vec<&str> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().expect("type"))
        .collect();
    assert_eq!(
        kinds,
        [
            "DocumentReference",
            "Composition",
            "Condition",
            "Provenance"
        ]
    );

    let doc = &entries(&bundle, "DocumentReference")[0];
    let r = &doc["resource"];
    assert_eq!(r["status"], "current");
    assert_eq!(r["docStatus"], "preliminary");
    assert_eq!(r["type"]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(r["type"]["coding"][0]["code"], "11506-3");
    assert_eq!(r["category"][0]["coding"][0]["code"], "clinical-note");
    assert_eq!(r["subject"]["reference"], "Patient/p-123");
    assert_eq!(r["context"]["encounter"][0]["reference"], "Encounter/e-456");
    assert_eq!(r["author"][0]["reference"], "Practitioner/dr-7");
    assert_eq!(r["author"][1]["display"], "Suki Ambient (AI scribe)");
    assert_eq!(r["date"], "2025-11-30T00:00:00.123Z");
    assert_eq!(
        r["identifier"][0]["value"],
        "a953839a-ddcd-407d-b9b0-3ed4b6be4be2/note"
    );
    assert_eq!(
        doc["request"]["ifNoneExist"],
        "identifier=urn:suki:session|a953839a-ddcd-407d-b9b0-3ed4b6be4be2/note"
    );
    let attachment = &r["content"][0]["attachment"];
    assert_eq!(attachment["contentType"], "text/plain; charset=utf-8");
    let text = base64::engine::general_purpose::STANDARD
        .decode(attachment["data"].as_str().expect("data"))
        .expect("base64");
    assert_eq!(
        String::from_utf8(text).expect("utf-8"),
        "ASSESSMENT AND PLAN\nAsthma exacerbation\n"
    );
    assert_eq!(attachment["size"], 40);

    let composition = &entries(&bundle, "Composition")[0]["resource"];
    assert_eq!(composition["status"], "preliminary");
    assert_eq!(composition["encounter"]["reference"], "Encounter/e-456");
    let section = &composition["section"][0];
    assert_eq!(section["title"], "ASSESSMENT AND PLAN");
    assert_eq!(section["code"]["coding"][0]["code"], "18776-5");
    assert_eq!(
        section["text"]["div"],
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Asthma exacerbation</p></div>"
    );

    let condition = &entries(&bundle, "Condition")[0]["resource"];
    assert_eq!(
        condition["code"]["coding"][0]["system"],
        "http://imohealth.com/ontology/"
    );
    assert_eq!(condition["code"]["coding"][0]["code"], "30422");
    assert_eq!(condition["code"]["text"], "Essential hypertension");
    assert_eq!(
        condition["verificationStatus"]["coding"][0]["code"],
        "provisional"
    );
    assert_eq!(
        condition["category"][0]["coding"][0]["code"],
        "encounter-diagnosis"
    );
    assert_eq!(condition["encounter"]["reference"], "Encounter/e-456");
    assert!(
        condition["note"][0]["text"]
            .as_str()
            .expect("note")
            .starts_with("The management of essential hypertension")
    );
    assert_eq!(
        condition["extension"][0]["url"],
        "urn:suki:structured-data:laterality_indicator"
    );
    assert_eq!(condition["extension"][0]["valueInteger"], 4);

    let provenance = &entries(&bundle, "Provenance")[0];
    let targets: Vec<&Value> = provenance["resource"]["target"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| &t["reference"])
        .collect();
    let full_urls: Vec<&Value> = bundle["entry"].as_array().expect("entries")[..3]
        .iter()
        .map(|e| &e["fullUrl"])
        .collect();
    assert_eq!(
        targets, full_urls,
        "Suki is the author of every other entry"
    );
    assert_eq!(
        provenance["request"]["ifNoneExist"],
        "_tag=urn:suki:session|a953839a-ddcd-407d-b9b0-3ed4b6be4be2/provenance"
    );
    assert_eq!(
        provenance["resource"]["agent"][0]["onBehalfOf"]["reference"],
        "Practitioner/dr-7"
    );
}

#[test]
fn the_schema_refuses_what_r4_refuses() {
    let valid = map(
        DOC_CONTENT,
        Some(DOC_STRUCTURED),
        &ehr(),
        &Mapping::default(),
    );
    assert_valid(&valid);
    let broken = |path: &[&str], value: Value| {
        let mut bundle = valid.clone();
        let mut at = &mut bundle;
        for key in &path[..path.len() - 1] {
            at = match key.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*key],
            };
        }
        at[path[path.len() - 1]] = value;
        assert!(
            !SCHEMA.is_valid(&bundle),
            "{path:?} = broken, yet the schema accepts it"
        );
    };
    broken(&["entry", "0", "resource", "status"], "draft".into());
    broken(&["entry", "0", "resource", "madeUp"], "x".into());
    broken(&["entry", "1", "resource", "date"], "30 Nov 2025".into());
    broken(
        &["entry", "2", "resource", "code", "coding", "0", "code"],
        " I10".into(),
    );
    broken(&["entry", "0", "request", "method"], "FETCH".into());
    broken(&["entry", "3", "resource", "target"], "Patient/1".into());
}

#[test]
fn a_typical_session_maps_every_diagnosis_and_order() {
    let bundle = map(
        TYPICAL_CONTENT,
        Some(TYPICAL_STRUCTURED),
        &ehr(),
        &Mapping::default(),
    );
    assert_valid(&bundle);
    let conditions = entries(&bundle, "Condition");
    assert_eq!(conditions.len(), 4);
    let systems: Vec<&str> = conditions[0]["resource"]["code"]["coding"]
        .as_array()
        .expect("codings")
        .iter()
        .map(|c| c["system"].as_str().expect("system"))
        .collect();
    assert_eq!(
        systems,
        [
            "http://hl7.org/fhir/sid/icd-10-cm",
            "http://snomed.info/sct",
            "http://imohealth.com/ontology/"
        ]
    );
    // Identifiers from content: 12 hex digits of the diagnosis's SHA-256, all different.
    let ids: Vec<&str> = conditions
        .iter()
        .map(|c| {
            c["resource"]["identifier"][0]["value"]
                .as_str()
                .expect("id")
        })
        .collect();
    for id in &ids {
        let hash = id
            .strip_prefix("a953839a-ddcd-407d-b9b0-3ed4b6be4be2/condition/")
            .expect("prefix");
        assert!(
            hash.len() == 12 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
    }
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), 4);
    let orders = entries(&bundle, "MedicationRequest");
    assert_eq!(orders.len(), 2);
    let order = &orders[0]["resource"];
    assert_eq!(order["status"], "draft");
    assert_eq!(order["intent"], "proposal");
    assert_eq!(
        order["medicationCodeableConcept"]["coding"][0]["system"],
        "http://www.nlm.nih.gov/research/umls/rxnorm"
    );
    assert_eq!(
        order["medicationCodeableConcept"]["coding"][0]["code"],
        "314077"
    );
    assert_eq!(order["dosageInstruction"][0]["text"], "20 mg, once daily");
    assert_eq!(order["dosageInstruction"][0]["route"]["text"], "oral");
    let sections = entries(&bundle, "Composition")[0]["resource"]["section"]
        .as_array()
        .expect("sections")
        .len();
    assert_eq!(sections, 8);
}

#[test]
fn the_same_session_maps_to_the_same_bytes() {
    let a = map(
        TYPICAL_CONTENT,
        Some(TYPICAL_STRUCTURED),
        &ehr(),
        &Mapping::default(),
    );
    let b = map(
        TYPICAL_CONTENT,
        Some(TYPICAL_STRUCTURED),
        &ehr(),
        &Mapping::default(),
    );
    assert_eq!(a, b);
}

#[test]
fn serde_serializes_the_same_document_as_to_json() {
    let content: NoteContent = serde_json::from_str(TYPICAL_CONTENT).expect("content");
    let structured: StructuredData = serde_json::from_str(TYPICAL_STRUCTURED).expect("structured");
    let session = SessionId::from("s-1");
    let note = SessionNote::new(&session, &content, UnixMillis(1)).structured_data(&structured);
    let bundle = transaction(&note, &ehr(), &Mapping::default()).expect("maps");
    let written: Value = serde_json::from_slice(&bundle.to_json()).expect("json");
    assert_eq!(serde_json::to_value(&bundle).expect("serializes"), written);
    assert_eq!(
        serde_json::to_vec(&bundle).expect("serializes").len(),
        serde_json::to_vec(&written).expect("serializes").len()
    );
}

#[test]
fn choices_and_a_replaced_note() {
    let ehr = EhrContext::new(Reference::parse("Patient/p-123").expect("patient"))
        .replaces(SessionId::from("earlier-session"));
    let mapping = Mapping::default()
        .doc_status(DocStatus::Final)
        .note_type(NoteType::consult_note())
        .composition(false)
        .imo_system(Mapping::IMO_PROBLEM_IT);
    let bundle = map(DOC_CONTENT, Some(DOC_STRUCTURED), &ehr, &mapping);
    assert_valid(&bundle);
    assert!(entries(&bundle, "Composition").is_empty());
    let doc = &entries(&bundle, "DocumentReference")[0]["resource"];
    assert_eq!(doc["docStatus"], "final");
    assert_eq!(doc["type"]["coding"][0]["code"], "11488-4");
    assert_eq!(doc["relatesTo"][0]["code"], "replaces");
    assert_eq!(
        doc["relatesTo"][0]["target"]["identifier"]["value"],
        "earlier-session/note"
    );
    assert!(doc.get("context").is_none(), "no encounter given");
    assert_eq!(doc["author"].as_array().map(Vec::len), Some(1), "Suki only");
    let condition = &entries(&bundle, "Condition")[0]["resource"];
    assert_eq!(
        condition["code"]["coding"][0]["system"],
        "urn:oid:2.16.840.1.113883.3.247.1.1"
    );
    assert!(condition.get("encounter").is_none());
}

#[test]
fn bad_input_is_a_typed_error() {
    let content = NoteContent::default();
    let session = SessionId::from("s-1");
    let note = SessionNote::new(&session, &content, UnixMillis(0));
    assert_eq!(
        transaction(&note, &ehr(), &Mapping::default()).err(),
        Some(MapError::EmptyNote)
    );
    let content: NoteContent = serde_json::from_str(DOC_CONTENT).expect("content");
    let note = SessionNote::new(&session, &content, UnixMillis(u64::MAX));
    assert_eq!(
        transaction(&note, &ehr(), &Mapping::default().imo_system("not a uri")).err(),
        Some(MapError::CodeSystem)
    );
    // A time beyond what FHIR can write is clamped, not a panic.
    let bundle = transaction(&note, &ehr(), &Mapping::default()).expect("maps");
    let json: Value = serde_json::from_slice(&bundle.to_json()).expect("json");
    assert_eq!(
        json["entry"][0]["resource"]["date"],
        "9999-12-31T23:59:59.999Z"
    );
    assert_valid(&json);

    for good in [
        "Patient/123",
        "Encounter/abc-1.2",
        "Patient/123/_history/2",
        "https://ehr.example/fhir/R4/Patient/123",
    ] {
        assert!(Reference::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "123",
        "patient/123",
        "Patient/",
        "Patient/12 3",
        "Patient/123/extra",
        "https://ehr.example",
        "https://ehr.example/Patient/1 2",
        &"Patient/".repeat(200),
    ] {
        assert!(
            matches!(Reference::parse(bad), Err(MapError::Reference(_))),
            "{bad}"
        );
    }
    assert_eq!(
        Reference::parse("https://ehr.example/fhir/Patient/9")
            .expect("absolute")
            .resource_type(),
        "Patient"
    );
}

#[test]
fn debug_shows_sizes_never_content() {
    let content: NoteContent = serde_json::from_str(DOC_CONTENT).expect("content");
    let structured: StructuredData = serde_json::from_str(DOC_STRUCTURED).expect("structured");
    let session = SessionId::from("s-1");
    let note = SessionNote::new(&session, &content, UnixMillis(0)).structured_data(&structured);
    let bundle = transaction(&note, &ehr(), &Mapping::default()).expect("maps");
    let shown = format!("{bundle:?} {note:?} {:?} {:?}", ehr(), bundle.entries());
    for secret in ["Asthma", "hypertension", "30422", "p-123", "dr-7", "e-456"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("note_bytes: 40"), "{shown}");
}

/// Text as Suki might send it: any Unicode, controls, no-break spaces, markup, empty.
fn any_text() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        "\\PC{0,40}".prop_map(Some),
        "[ \u{00A0}\u{0001}\u{000B}<>&\"'a-z\n\r\t\u{2028}\u{FFFF}]{0,30}".prop_map(Some),
    ]
}

fn any_code() -> impl Strategy<Value = Value> {
    (
        "[ A-Z0-9.\u{00A0}]{0,8}",
        any_text(),
        prop_oneof![
            Just("ICD10"),
            Just("SNOMED"),
            Just("IMO"),
            Just("RXCUI"),
            Just("weird type/☃")
        ],
    )
        .prop_map(|(code, description, kind)| {
            serde_json::json!({"code": code, "description": description, "type": kind})
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_results_map_to_valid_r4_or_a_typed_error(
        sections in proptest::collection::vec((any_text(), any_text(), any_text()), 0..5),
        diagnoses in proptest::collection::vec(
            (proptest::collection::vec(any_code(), 0..3), any_text(), any::<Option<i64>>()),
            0..4,
        ),
        orders in proptest::collection::vec(
            (any_text(), any_text(), any_text(), proptest::collection::vec(any_code(), 0..2)),
            0..3,
        ),
        session in "\\PC{0,20}",
        at in any::<u64>(),
    ) {
        let content = serde_json::json!({"summary": sections.iter().map(|(title, text, loinc)| {
            serde_json::json!({"title": title, "content": text, "loinc_code": loinc})
        }).collect::<Vec<_>>()});
        let structured = serde_json::json!({"structured_data": {
            "diagnoses": {"values": diagnoses.iter().map(|(codes, note, laterality)| {
                serde_json::json!({"codes": codes, "diagnosis_note": note,
                    "laterality_indicator": laterality})
            }).collect::<Vec<_>>()},
            "orders": {"medication_orders": {"partial_values": orders.iter().map(
                |(medication, dosage, route, codes)| serde_json::json!({"medication": medication,
                    "dosage": dosage, "route": route, "codes": codes})
            ).collect::<Vec<_>>()}},
        }});
        let content: NoteContent = serde_json::from_value(content).expect("content");
        let structured: StructuredData = serde_json::from_value(structured).expect("structured");
        let session = SessionId::from(session.as_str());
        let note = SessionNote::new(&session, &content, UnixMillis(at)).structured_data(&structured);
        match transaction(&note, &ehr(), &Mapping::default()) {
            Ok(bundle) => {
                let json: Value = serde_json::from_slice(&bundle.to_json()).expect("json");
                assert_valid(&json);
            }
            Err(e) => prop_assert_eq!(e, MapError::EmptyNote),
        }
    }
}

/// A reordered list of diagnoses and orders names the same resources (identifiers come from
/// content, not position); the same diagnosis twice gets `-2`.
#[test]
fn identifiers_follow_content_not_position() {
    let content: NoteContent = serde_json::from_str(include_str!(
        "../../../testdata/fhir/session-content-typical.json"
    ))
    .expect("content");
    let structured: StructuredData = serde_json::from_str(include_str!(
        "../../../testdata/fhir/session-structured-data-typical.json"
    ))
    .expect("structured data");
    let mut reordered = structured.clone();
    let diagnoses = reordered
        .structured_data
        .diagnoses
        .as_mut()
        .expect("diagnoses");
    diagnoses.values.reverse();
    let repeated = diagnoses.values[0].clone();
    let session = SessionId::from("s-order");
    let ehr = EhrContext::new(Reference::parse("Patient/p-1").expect("patient"));
    let ids = |structured: &StructuredData| {
        let note = SessionNote::new(&session, &content, UnixMillis(1_764_460_800_000))
            .structured_data(structured);
        let bundle = transaction(&note, &ehr, &Mapping::default()).expect("maps");
        let mut ids: Vec<String> = bundle
            .entries()
            .iter()
            .map(|e| e.if_none_exist.clone())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&structured), ids(&reordered));
    reordered
        .structured_data
        .diagnoses
        .as_mut()
        .expect("diagnoses")
        .values
        .push(repeated);
    let with_repeat = ids(&reordered);
    assert_eq!(with_repeat.len(), ids(&structured).len() + 1);
    assert!(
        with_repeat.iter().any(|id| id.ends_with("-2")),
        "{with_repeat:?}"
    );
}
