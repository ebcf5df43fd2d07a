//! Follow-up API models: the bodies of Suki's session, encounter, recording, form-filling and
//! login endpoints. Shared by the client (decodes) and the sandbox (encodes).
//!
//! Every response may gain fields: unknown fields are ignored or kept, never an error. Types
//! holding clinical content (PHI) or credentials print no content in `Debug`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::redact::{Count, RedactedStr, opt_str};

mod route;

pub use route::{Route, RouteId};

/// A session's state (`GET .../session/{id}/status`). Case-insensitive; unknown values kept.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum SessionStatus {
    /// `created`.
    Created,
    /// `ready`.
    Ready,
    /// `running`.
    Running,
    /// `paused` (no longer used by Suki).
    Paused,
    /// `aborted`: cancelled by the user or client.
    Aborted,
    /// `skipped`: no usable audio; a normal outcome, not an error.
    Skipped,
    /// `failed`.
    Failed,
    /// `completed`: content is ready.
    Completed,
    /// `staged` (form filling).
    Staged,
    /// Any other value, as sent.
    Other(String),
}

impl SessionStatus {
    /// The lowercase wire name (the raw text for `Other`).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Created => "created",
            Self::Ready => "ready",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Aborted => "aborted",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::Completed => "completed",
            Self::Staged => "staged",
            Self::Other(s) => s,
        }
    }

    /// The event a webhook reports for this status, from the one status table
    /// ([`EventKind::from_status`](crate::EventKind::from_status)): `completed`, `failed`,
    /// `aborted` (cancelled) and the timeout and cancellation spellings; `None` for a session
    /// that has not ended in a way a webhook reports (`created`, `ready`, `running`, `paused`,
    /// `staged`, `skipped`, new values).
    pub fn event_kind(&self) -> Option<crate::EventKind> {
        match crate::EventKind::from_status(self.as_str()) {
            crate::EventKind::Unknown => None,
            kind => Some(kind),
        }
    }

    /// Whether the session will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Aborted | Self::Skipped | Self::Failed | Self::Completed
        )
    }
}

impl From<&str> for SessionStatus {
    fn from(s: &str) -> Self {
        const KNOWN: [SessionStatus; 9] = [
            SessionStatus::Created,
            SessionStatus::Ready,
            SessionStatus::Running,
            SessionStatus::Paused,
            SessionStatus::Aborted,
            SessionStatus::Skipped,
            SessionStatus::Failed,
            SessionStatus::Completed,
            SessionStatus::Staged,
        ];
        KNOWN
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .unwrap_or_else(|| Self::Other(s.to_owned()))
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SessionStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SessionStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Self::from(&*s))
    }
}

/// Body of the status endpoints: `{"status": "completed"}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StatusResponse {
    /// The state.
    pub status: SessionStatus,
}

/// A duration as Suki sends it: `{hours, minutes, seconds, nanos}`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Offset {
    /// Hours.
    pub hours: i64,
    /// Minutes.
    pub minutes: i64,
    /// Seconds.
    pub seconds: i64,
    /// Nanoseconds.
    pub nanos: i64,
}

impl Offset {
    /// The offset as a [`std::time::Duration`] (negative parts count as zero).
    pub fn to_duration(self) -> std::time::Duration {
        let secs = self.hours.max(0) * 3600 + self.minutes.max(0) * 60 + self.seconds.max(0);
        std::time::Duration::new(
            u64::try_from(secs).unwrap_or(0),
            u32::try_from(self.nanos.clamp(0, 999_999_999)).unwrap_or(0),
        )
    }
}

/// Body of `GET .../session/{id}/transcript`.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Transcript {
    /// The final transcript, segment by segment.
    #[serde(default)]
    pub final_transcript: Vec<TranscriptSegment>,
}

/// One transcript segment. Its text is PHI.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TranscriptSegment {
    /// The spoken text.
    pub transcript: String,
    /// Segment id.
    pub transcript_id: String,
    /// The recording it comes from.
    pub recording_id: String,
    /// Language id, e.g. `en`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang_id: Option<String>,
    /// Wall-clock start (RFC 3339 with nanoseconds), as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Wall-clock end (RFC 3339 with nanoseconds), as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Offset of the start within the recording.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_offset: Option<Offset>,
    /// Offset of the end within the recording.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_offset: Option<Offset>,
}

/// Body of the session and encounter content endpoints: the note.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NoteContent {
    /// Note sections.
    pub summary: Vec<SummarySection>,
    /// Structured blocks of the note.
    pub structured_data: Vec<StructuredBlock>,
}

/// One section of a note (PHI).
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SummarySection {
    /// Section title, e.g. `ASSESSMENT AND PLAN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Section text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// LOINC code of the section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loinc_code: Option<String>,
    /// Transcript excerpts the section draws on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_transcripts: Option<Vec<String>>,
}

/// A structured block of a note: a title and free-form data (PHI).
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StructuredBlock {
    /// Block title, e.g. `MEDICATIONS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Free-form data.
    pub data: Map<String, Value>,
}

/// Body of the session and encounter structured-data endpoints.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StructuredData {
    /// The data.
    pub structured_data: StructuredDataBody,
}

/// Structured data: typed diagnoses and medication orders; everything else kept as JSON.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StructuredDataBody {
    /// Diagnoses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnoses: Option<Diagnoses>,
    /// Orders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders: Option<Orders>,
    /// Other sections, as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `diagnoses: {values: [...]}`.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Diagnoses {
    /// The diagnoses.
    pub values: Vec<Diagnosis>,
    /// Other fields, as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One diagnosis (PHI).
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Diagnosis {
    /// Codes in one or more systems.
    pub codes: Vec<Code>,
    /// The clinician-facing note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis_note: Option<String>,
    /// Laterality indicator, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub laterality_indicator: Option<i64>,
    /// Post-coordination flag, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_coord_lex_flag: Option<i64>,
    /// Other fields, as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A clinical code: `{code, description, type}`.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Code {
    /// The code.
    pub code: String,
    /// Its description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The code system (`type` on the wire).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub system: Option<CodeSystem>,
}

/// A code system. Open set.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum CodeSystem {
    /// `IMO`.
    Imo,
    /// `ICD10`.
    Icd10,
    /// `SNOMED`.
    Snomed,
    /// `RXCUI`.
    Rxcui,
    /// Any other, as sent.
    Other(String),
}

impl CodeSystem {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Imo => "IMO",
            Self::Icd10 => "ICD10",
            Self::Snomed => "SNOMED",
            Self::Rxcui => "RXCUI",
            Self::Other(s) => s,
        }
    }
}

impl From<&str> for CodeSystem {
    fn from(s: &str) -> Self {
        match s.to_ascii_uppercase().as_str() {
            "IMO" => Self::Imo,
            "ICD10" | "ICD-10" | "ICD10CM" | "ICD-10-CM" => Self::Icd10,
            "SNOMED" | "SNOMEDCT" | "SNOMED-CT" => Self::Snomed,
            "RXCUI" | "RXNORM" => Self::Rxcui,
            _ => Self::Other(s.to_owned()),
        }
    }
}

impl Serialize for CodeSystem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CodeSystem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Self::from(&*s))
    }
}

/// `orders: {medication_orders: {partial_values: [...]}, ...}`.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Orders {
    /// Medication orders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medication_orders: Option<MedicationOrders>,
    /// Other order kinds, as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `medication_orders: {partial_values: [...]}`.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MedicationOrders {
    /// Orders extracted from the visit (possibly incomplete, hence "partial").
    pub partial_values: Vec<MedicationOrder>,
    /// Other fields, as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One medication order (PHI). Suki documents no field list for it: the common fields are
/// typed when present, the rest kept as JSON.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MedicationOrder {
    /// Medication name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medication: Option<String>,
    /// Dosage, e.g. `10 mg`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dosage: Option<String>,
    /// Frequency, e.g. `once daily`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency: Option<String>,
    /// Route, e.g. `oral`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Codes (e.g. `RXCUI`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<Code>,
    /// Other fields, as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Body of `GET .../session/{id}/recording`.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Recording {
    /// The audio files.
    pub recordings: Vec<RecordingFile>,
    /// Whether the audio can be streamed.
    pub is_streamable: bool,
}

/// One audio file. Its presigned URL grants access to PHI and is never printed.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordingFile {
    /// Recording id.
    pub recording_id: String,
    /// Time-limited download URL.
    pub presigned_url: String,
    /// Expiry of the URL, Unix seconds.
    pub expires_at: i64,
    /// Order of this file.
    pub sequence_number: i64,
}

/// Body of `GET /api/v1/form-filling/session/{id}/structured-data`.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FormFillingStructuredData {
    /// The data.
    pub structured_data: FormFillingBody,
}

/// Generated and not generated form values.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FormFillingBody {
    /// Forms filled from the visit.
    pub generated_values: Vec<GeneratedForm>,
    /// Templates that could not be filled.
    pub non_generated_values: Vec<NonGeneratedForm>,
}

/// A filled form (PHI).
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GeneratedForm {
    /// Form id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Template id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form_template_id: Option<String>,
    /// Title, e.g. `Adult Vitals`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Form type, e.g. `VITALS_ASSESSMENT`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub form_type: Option<String>,
    /// Form status, e.g. `MEDICAL_FORM_STATUS_COMPLETED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The filled values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Other fields (`correlation_id`, `patient_id`, `metadata`, ...), as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A template that could not be filled.
#[derive(Clone, PartialEq, Eq, Default, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct NonGeneratedForm {
    /// Template id.
    pub form_template_id: String,
}

/// Suki's error body: `{"code": <HTTP status>, "message": "<error_id>[: detail]"}`.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiErrorBody {
    /// Mirrors the HTTP status.
    pub code: u16,
    /// `<error_id>` or `<error_id>: <detail>`.
    pub message: String,
}

impl ApiErrorBody {
    /// The error id: the message up to the first `:`, trimmed (e.g. `invalid_sdp_token`).
    pub fn error_id(&self) -> &str {
        self.message.split(':').next().unwrap_or_default().trim()
    }

    /// A body for `code` with message `error_id` (sandbox and tests).
    pub fn new(code: u16, error_id: impl Into<String>) -> Self {
        Self {
            code,
            message: error_id.into(),
        }
    }
}

impl fmt::Debug for ApiErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The detail after `:` is free text from the server; only the id is shown.
        f.debug_struct("ApiErrorBody")
            .field("code", &self.code)
            .field("error_id", &self.error_id())
            .finish_non_exhaustive()
    }
}

/// Body of `POST /api/v1/auth/login`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The partner id from onboarding.
    pub partner_id: String,
    /// A JWT from the partner's identity provider (a credential: never printed).
    pub partner_token: String,
    /// The provider the token is for, when the partner logs in per provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
}

/// Answer of `POST /api/v1/auth/login`: a token valid for one hour.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// The `sdp_suki_token` value (a credential: never printed).
    pub suki_token: String,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("partner_id", &self.partner_id)
            .field("partner_token", &"<redacted>")
            .field("provider_id", &self.provider_id)
            .finish()
    }
}

impl fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginResponse { suki_token: <redacted> }")
    }
}

impl fmt::Debug for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transcript")
            .field("final_transcript", &self.final_transcript)
            .finish()
    }
}

impl fmt::Debug for TranscriptSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TranscriptSegment")
            .field("transcript", &RedactedStr(self.transcript.len()))
            .field("transcript_id", &self.transcript_id)
            .field("recording_id", &self.recording_id)
            .field("lang_id", &self.lang_id)
            .field("start_offset", &self.start_offset)
            .field("end_offset", &self.end_offset)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for NoteContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteContent")
            .field("summary", &self.summary)
            .field("structured_data", &self.structured_data)
            .finish()
    }
}

impl fmt::Debug for SummarySection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SummarySection")
            .field("title", &self.title)
            .field(
                "content",
                &self.content.as_ref().map(|c| RedactedStr(c.len())),
            )
            .field("loinc_code", &self.loinc_code)
            .field(
                "source_transcripts",
                &self.source_transcripts.as_ref().map(|s| Count(s.len())),
            )
            .finish()
    }
}

impl fmt::Debug for StructuredBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StructuredBlock")
            .field("title", &self.title)
            .field("data", &Count(self.data.len()))
            .finish()
    }
}

impl fmt::Debug for StructuredData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StructuredData")
            .field("structured_data", &self.structured_data)
            .finish()
    }
}

impl fmt::Debug for StructuredDataBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StructuredDataBody")
            .field(
                "diagnoses",
                &self.diagnoses.as_ref().map(|d| Count(d.values.len())),
            )
            .field(
                "medication_orders",
                &self
                    .orders
                    .as_ref()
                    .and_then(|o| o.medication_orders.as_ref())
                    .map(|m| Count(m.partial_values.len())),
            )
            .field("other", &Count(self.other.len()))
            .finish()
    }
}

macro_rules! redacted_debug {
    ($($ty:ident),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($ty), " { <redacted> }"))
            }
        }
    )*};
}

redacted_debug!(
    Diagnoses,
    Diagnosis,
    Orders,
    MedicationOrders,
    MedicationOrder,
    GeneratedForm,
    FormFillingStructuredData,
    FormFillingBody
);

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code")
            .field("code", &self.code)
            .field("system", &self.system)
            .field("description", opt_str(&self.description))
            .finish()
    }
}

impl fmt::Debug for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording")
            .field("recordings", &self.recordings)
            .field("is_streamable", &self.is_streamable)
            .finish()
    }
}

impl fmt::Debug for RecordingFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingFile")
            .field("recording_id", &self.recording_id)
            .field("presigned_url", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("sequence_number", &self.sequence_number)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_case_insensitive_and_open() {
        for (text, status) in [
            ("completed", SessionStatus::Completed),
            ("SKIPPED", SessionStatus::Skipped),
            ("Failed", SessionStatus::Failed),
            ("staged", SessionStatus::Staged),
        ] {
            let parsed: StatusResponse =
                serde_json::from_str(&format!(r#"{{"status":"{text}"}}"#)).unwrap();
            assert_eq!(parsed.status, status);
        }
        let other: StatusResponse = serde_json::from_str(r#"{"status":"archived"}"#).unwrap();
        assert_eq!(other.status, SessionStatus::Other("archived".into()));
        assert_eq!(
            serde_json::to_string(&other).unwrap(),
            r#"{"status":"archived"}"#
        );
    }

    #[test]
    fn error_id_is_before_the_first_colon() {
        let body = ApiErrorBody::new(403, "permission_denied: MARKER detail");
        assert_eq!(body.error_id(), "permission_denied");
        assert!(!format!("{body:?}").contains("MARKER"));
    }
}
