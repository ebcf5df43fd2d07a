//! Suki's documented JSON examples parse into their typed models and round-trip through serde.

use serde::Serialize;
use serde::de::DeserializeOwned;
use suki_ambient_core::api::{
    ApiErrorBody, CodeSystem, FormFillingStructuredData, LoginResponse, NoteContent, SessionStatus,
    StatusResponse, StructuredData, Transcript,
};
use suki_ambient_core::testing::{fixture, fixtures_in};
use suki_ambient_core::{ErrorCode, EventKind, LinkKind, WebhookEvent};

/// deserialize → serialize → deserialize gives the same value, and nothing of the original
/// JSON that the model keeps is lost.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq>(bytes: &[u8]) -> T {
    let first: T = serde_json::from_slice(bytes).unwrap();
    let json = serde_json::to_vec(&first).unwrap();
    let second: T = serde_json::from_slice(&json).unwrap();
    assert!(first == second, "round trip changed the value");
    first
}

#[test]
fn success_webhook() {
    let bytes = fixture("webhooks/success.json");
    let event = WebhookEvent::from_slice(&bytes).unwrap();
    assert_eq!(event, round_trip::<WebhookEvent>(&bytes));
    let WebhookEvent::Completed(done) = &event else {
        panic!("expected Completed, got {:?}", event.kind())
    };
    assert_eq!(
        done.session_id.as_str(),
        "a953839a-ddcd-407d-b9b0-3ed4b6be4be2"
    );
    assert_eq!(
        done.encounter_id.as_str(),
        "4d753ce1-bbff-43e1-950a-82dea2d86873"
    );
    assert_eq!(done.sessions.len(), 2);
    assert_eq!(done.additional_info.as_ref().unwrap()["priority"], "high");
    assert_eq!(done.links.contents().len(), 1);
    assert_eq!(done.links.contents()[0].href, "/path/to/resource");
    assert_eq!(
        done.links.contents()[0].media_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(done.links.transcripts().len(), 1);
    assert!(done.links.structured_data().is_empty());
    assert_eq!(done.links.iter().count(), 4);
    assert_eq!(event.kind(), EventKind::Completed);
    // Serialized form is the documented one, value for value.
    let original: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(serde_json::to_value(&event).unwrap(), original);
}

#[test]
fn failure_webhook() {
    let bytes = fixture("webhooks/failure.json");
    let event: WebhookEvent = round_trip(&bytes);
    let WebhookEvent::Failed(failed) = &event else {
        panic!("expected Failed")
    };
    assert_eq!(failed.error_code, ErrorCode::Transcription);
    assert_eq!(failed.error_detail, "Error in transcription");
    let original: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(serde_json::to_value(&event).unwrap(), original);
}

#[test]
fn api_fixtures() {
    let names: Vec<String> = fixtures_in("api").into_iter().map(|(n, _)| n).collect();
    for (name, bytes) in fixtures_in("api") {
        match name.as_str() {
            "error.json" => {
                let body: ApiErrorBody = round_trip(&bytes);
                assert_eq!((body.code, body.error_id()), (401, "invalid_sdp_token"));
            }
            "form-filling-structured-data.json" => {
                let data: FormFillingStructuredData = round_trip(&bytes);
                let form = &data.structured_data.generated_values[0];
                assert_eq!(form.title.as_deref(), Some("Adult Vitals"));
                assert_eq!(form.form_type.as_deref(), Some("VITALS_ASSESSMENT"));
                assert_eq!(form.other["patient_id"], "patient-123");
                assert_eq!(data.structured_data.non_generated_values.len(), 1);
                let original: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(
                    serde_json::to_value(&data).unwrap(),
                    original,
                    "nothing lost"
                );
            }
            "login-response.json" => {
                let login: LoginResponse = round_trip(&bytes);
                assert!(login.suki_token.starts_with("eyJ"));
            }
            "session-content.json" => {
                let note: NoteContent = round_trip(&bytes);
                assert_eq!(note.summary[0].loinc_code.as_deref(), Some("18776-5"));
                assert_eq!(note.structured_data[0].data["medication"], "albuterol");
                let original: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(
                    serde_json::to_value(&note).unwrap(),
                    original,
                    "nothing lost"
                );
            }
            "session-status.json" => {
                let status: StatusResponse = round_trip(&bytes);
                assert_eq!(status.status, SessionStatus::Completed);
            }
            "session-structured-data.json" => {
                let data: StructuredData = round_trip(&bytes);
                let dx = &data.structured_data.diagnoses.as_ref().unwrap().values[0];
                assert_eq!(dx.codes[0].code, "30422");
                assert_eq!(dx.codes[0].system, Some(CodeSystem::Imo));
                assert_eq!(dx.laterality_indicator, Some(4));
                let original: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(
                    serde_json::to_value(&data).unwrap(),
                    original,
                    "nothing lost"
                );
            }
            "session-transcript.json" => {
                let t: Transcript = round_trip(&bytes);
                let seg = &t.final_transcript[0];
                assert_eq!(seg.lang_id.as_deref(), Some("en"));
                assert_eq!(seg.end_offset.unwrap().seconds, 42);
                assert_eq!(
                    seg.end_time.as_deref(),
                    Some("2024-12-04T09:40:48.792948332Z")
                );
                let original: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(serde_json::to_value(&t).unwrap(), original, "nothing lost");
            }
            other => panic!("fixture {other} has no typed model in this test: add one"),
        }
    }
    assert_eq!(names.len(), 7, "{names:?}");
    assert_eq!(LinkKind::ALL.len(), 6);
}

#[test]
fn the_embedded_fixtures_are_every_file_of_testdata() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fixtures");
    let mut on_disk = Vec::new();
    for dir in ["api", "webhooks"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            on_disk.push(format!("{dir}/{name}"));
        }
    }
    on_disk.sort();
    let embedded: Vec<_> = suki_ambient_core::testing::FIXTURES
        .iter()
        .map(|(name, bytes)| {
            assert_eq!(bytes.to_vec(), std::fs::read(root.join(name)).unwrap());
            (*name).to_owned()
        })
        .collect();
    assert_eq!(embedded, on_disk);
}

/// Every key of Suki's documented JSON (the shapes the models follow), outside free-form
/// objects, at any depth.
fn keys(value: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                out.insert(key.clone());
                // Free-form (kept as JSON by the models): any key may appear inside.
                if !matches!(key.as_str(), "additional_info" | "data" | "metadata") {
                    keys(inner, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| keys(item, out)),
        _ => {}
    }
}

#[test]
fn known_fields_are_exactly_the_models_field_names() {
    let mut documented = std::collections::BTreeSet::new();
    for (_, bytes) in suki_ambient_core::testing::FIXTURES {
        keys(&serde_json::from_slice(bytes).unwrap(), &mut documented);
    }
    // Shapes with no fixture: the login request, and every `_links` key and link field.
    let login = suki_ambient_core::api::LoginRequest {
        partner_id: "p".into(),
        partner_token: "t".into(),
        provider_id: Some("v".into()),
    };
    keys(&serde_json::to_value(&login).unwrap(), &mut documented);
    let links = suki_ambient_core::Links::for_session(&"s".into(), &"e".into());
    keys(&serde_json::to_value(&links).unwrap(), &mut documented);
    // Shapes with no fixture, through the typed models (so only the fields they keep).
    let recording: suki_ambient_core::api::Recording = serde_json::from_str(
        r#"{"recordings":[{"recording_id":"r","presigned_url":"u","expires_at":1,"sequence_number":1}],"is_streamable":true}"#,
    )
    .unwrap();
    keys(&serde_json::to_value(&recording).unwrap(), &mut documented);
    let orders: suki_ambient_core::api::StructuredData = serde_json::from_str(
        r#"{"structured_data":{"orders":{"medication_orders":{"partial_values":[{"medication":"m","dosage":"d","frequency":"f","route":"r","codes":[]}]}}}}"#,
    )
    .unwrap();
    keys(&serde_json::to_value(&orders).unwrap(), &mut documented);
    // Kept as sent (the models' `other` maps), not typed fields: never shown in error paths.
    for kept in ["correlation_id", "created_at", "patient_id", "metadata"] {
        documented.remove(kept);
    }
    let known: std::collections::BTreeSet<String> = suki_ambient_core::KNOWN_FIELDS
        .iter()
        .map(|k| (*k).to_owned())
        .collect();
    let missing: Vec<_> = documented.difference(&known).collect();
    let extra: Vec<_> = known.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "model fields missing from KNOWN_FIELDS: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "KNOWN_FIELDS names that no model has: {extra:?}"
    );
}
