//! Decoding JSON into the models without letting a value into an error: `decode_json`, and the
//! models' field names (`KNOWN_FIELDS`), the only keys an error path may show.

use crate::PayloadError;

/// Field names of the models; only these may appear in error paths and messages.
#[doc(hidden)]
pub const KNOWN_FIELDS: &[&str] = &[
    "status",
    "session_id",
    "encounter_id",
    "sessions",
    "additional_info",
    "_links",
    "contents",
    "encounter_content",
    "structured_data",
    "encounter_structured_data",
    "transcripts",
    "href",
    "method",
    "name",
    "type",
    "error_code",
    "error_detail",
    "final_transcript",
    "transcript",
    "transcript_id",
    "recording_id",
    "lang_id",
    "start_time",
    "end_time",
    "start_offset",
    "end_offset",
    "hours",
    "minutes",
    "seconds",
    "nanos",
    "summary",
    "title",
    "content",
    "loinc_code",
    "source_transcripts",
    "data",
    "diagnoses",
    "values",
    "codes",
    "code",
    "description",
    "diagnosis_note",
    "laterality_indicator",
    "post_coord_lex_flag",
    "orders",
    "medication_orders",
    "partial_values",
    "recordings",
    "presigned_url",
    "expires_at",
    "sequence_number",
    "is_streamable",
    "generated_values",
    "non_generated_values",
    "form_template_id",
    "message",
    "suki_token",
    "partner_id",
    "partner_token",
    "provider_id",
    "id",
    "medication",
    "dosage",
    "frequency",
    "route",
];

pub(crate) fn known_field(name: &str) -> Option<&'static str> {
    KNOWN_FIELDS.iter().copied().find(|k| *k == name)
}

/// Decodes JSON into `T` with a [`PayloadError`] that holds no value from the input: the shared
/// decoder of the webhook and API models (the client uses it for response bodies).
///
/// # Errors
/// [`PayloadError`] with category, position and JSON path.
pub fn decode_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, PayloadError> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        // Decode again, tracking the path, only to describe the failure.
        Err(first) => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(err) => Err(PayloadError::from_path_error(err)),
                Ok(_) => Err(PayloadError::from_json(&first)),
            }
        }
    }
}
