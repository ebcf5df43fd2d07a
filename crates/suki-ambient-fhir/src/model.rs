//! The FHIR R4 elements this crate writes: a small serde model of the resources it emits, not a
//! general FHIR model (a generated one costs minutes of build for five resources).

use std::borrow::Cow;

use serde::Serialize;

/// A large string (the note as base64, a section's XHTML) written into the JSON as it was
/// escaped once when built, not scanned again by the serializer.
#[derive(Clone)]
pub(crate) enum JsonText {
    /// Already a JSON string literal.
    Raw(Box<serde_json::value::RawValue>),
    /// Escaped by the serializer (text with control characters).
    Plain(String),
}

impl JsonText {
    /// `text` as a JSON string: quotes and backslashes escaped with a vector search; text with
    /// control characters is left to the serializer.
    pub(crate) fn new(text: String) -> Self {
        let bytes = text.as_bytes();
        if crate::text::has_control(bytes) {
            return Self::Plain(text);
        }
        let mut json = String::with_capacity(text.len() + 16);
        json.push('"');
        let mut start = 0;
        for i in memchr::memchr2_iter(b'"', b'\\', bytes) {
            json.push_str(&text[start..i]);
            json.push('\\');
            start = i;
        }
        json.push_str(&text[start..]);
        json.push('"');
        Self::raw(json).unwrap_or(Self::Plain(text))
    }

    /// `bytes` in base64, written straight into a JSON string of the exact size.
    pub(crate) fn base64(bytes: &[u8]) -> Self {
        use base64::Engine as _;
        let engine = &base64::engine::general_purpose::STANDARD;
        let mut json = String::with_capacity(bytes.len().div_ceil(3) * 4 + 2);
        json.push('"');
        engine.encode_string(bytes, &mut json);
        json.push('"');
        Self::raw(json).unwrap_or_else(|| Self::Plain(engine.encode(bytes)))
    }

    /// The narrative `div` of `text` (see [`crate::text::xhtml`]).
    pub(crate) fn xhtml(text: &str) -> Self {
        crate::text::xhtml_json(text)
            .and_then(Self::raw)
            .unwrap_or_else(|| Self::new(crate::text::xhtml(text)))
    }

    fn raw(json: String) -> Option<Self> {
        serde_json::value::RawValue::from_string(json)
            .ok()
            .map(Self::Raw)
    }
}

impl Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Raw(raw) => raw.serialize(s),
            Self::Plain(text) => text.serialize(s),
        }
    }
}

/// `Bundle` of type `transaction`.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Bundle {
    pub(crate) resource_type: &'static str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) entry: Vec<Entry>,
}

/// One entry: the resource, its placeholder `fullUrl`, and its conditional create.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    pub(crate) full_url: String,
    pub(crate) resource: Resource,
    pub(crate) request: Request,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Request {
    pub(crate) method: &'static str,
    pub(crate) url: &'static str,
    pub(crate) if_none_exist: String,
}

/// The resources written.
#[derive(Clone, Serialize)]
#[serde(tag = "resourceType")]
pub(crate) enum Resource {
    DocumentReference(DocumentReference),
    Composition(Composition),
    Condition(Condition),
    MedicationRequest(MedicationRequest),
    Provenance(Provenance),
}

impl Resource {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Self::DocumentReference(_) => "DocumentReference",
            Self::Composition(_) => "Composition",
            Self::Condition(_) => "Condition",
            Self::MedicationRequest(_) => "MedicationRequest",
            Self::Provenance(_) => "Provenance",
        }
    }
}

#[derive(Clone, Default, Serialize)]
pub(crate) struct Meta {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) security: Vec<Coding>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) tag: Vec<Coding>,
}

#[derive(Clone, Serialize)]
pub(crate) struct Identifier {
    pub(crate) system: &'static str,
    pub(crate) value: String,
}

/// A coding: most of its strings are constants, borrowed rather than allocated per Bundle.
#[derive(Clone, Default, Serialize)]
pub(crate) struct Coding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) system: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) display: Option<Cow<'static, str>>,
}

#[derive(Clone, Default, Serialize)]
pub(crate) struct CodeableConcept {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) coding: Vec<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<String>,
}

/// A reference: literal (`Patient/123`, `urn:uuid:…`) or logical (an identifier and a display).
#[derive(Clone, Default, Serialize)]
pub(crate) struct Reference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reference: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) identifier: Option<Identifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) display: Option<&'static str>,
}

#[derive(Clone, Serialize)]
pub(crate) struct Annotation {
    pub(crate) text: String,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Extension {
    pub(crate) url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value_integer: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value_string: Option<String>,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DocumentReference {
    pub(crate) meta: Meta,
    pub(crate) identifier: Vec<Identifier>,
    pub(crate) status: &'static str,
    pub(crate) doc_status: &'static str,
    #[serde(rename = "type")]
    pub(crate) kind: CodeableConcept,
    pub(crate) category: Vec<CodeableConcept>,
    pub(crate) subject: Reference,
    pub(crate) date: String,
    pub(crate) author: Vec<Reference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) relates_to: Vec<RelatesTo>,
    pub(crate) description: &'static str,
    pub(crate) content: Vec<Content>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) context: Option<DocumentContext>,
}

#[derive(Clone, Serialize)]
pub(crate) struct RelatesTo {
    pub(crate) code: &'static str,
    pub(crate) target: Reference,
}

#[derive(Clone, Serialize)]
pub(crate) struct Content {
    pub(crate) attachment: Attachment,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Attachment {
    pub(crate) content_type: &'static str,
    pub(crate) language: &'static str,
    pub(crate) data: JsonText,
    pub(crate) size: u64,
    pub(crate) title: &'static str,
    pub(crate) creation: String,
}

#[derive(Clone, Serialize)]
pub(crate) struct DocumentContext {
    pub(crate) encounter: Vec<Reference>,
}

#[derive(Clone, Serialize)]
pub(crate) struct Composition {
    pub(crate) meta: Meta,
    pub(crate) identifier: Identifier,
    pub(crate) status: &'static str,
    #[serde(rename = "type")]
    pub(crate) kind: CodeableConcept,
    pub(crate) subject: Reference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encounter: Option<Reference>,
    pub(crate) date: String,
    pub(crate) author: Vec<Reference>,
    pub(crate) title: &'static str,
    pub(crate) section: Vec<Section>,
}

#[derive(Clone, Serialize)]
pub(crate) struct Section {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<CodeableConcept>,
    pub(crate) text: Narrative,
}

#[derive(Clone, Serialize)]
pub(crate) struct Narrative {
    pub(crate) status: &'static str,
    pub(crate) div: JsonText,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Condition {
    pub(crate) meta: Meta,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) extension: Vec<Extension>,
    pub(crate) identifier: Vec<Identifier>,
    pub(crate) verification_status: CodeableConcept,
    pub(crate) category: Vec<CodeableConcept>,
    pub(crate) code: CodeableConcept,
    pub(crate) subject: Reference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encounter: Option<Reference>,
    pub(crate) recorded_date: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) note: Vec<Annotation>,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MedicationRequest {
    pub(crate) meta: Meta,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) extension: Vec<Extension>,
    pub(crate) identifier: Vec<Identifier>,
    pub(crate) status: &'static str,
    pub(crate) intent: &'static str,
    pub(crate) medication_codeable_concept: CodeableConcept,
    pub(crate) subject: Reference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encounter: Option<Reference>,
    pub(crate) authored_on: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) dosage_instruction: Vec<Dosage>,
}

#[derive(Clone, Serialize)]
pub(crate) struct Dosage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) route: Option<CodeableConcept>,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Provenance {
    pub(crate) meta: Meta,
    pub(crate) target: Vec<Reference>,
    pub(crate) recorded: String,
    pub(crate) reason: Vec<CodeableConcept>,
    pub(crate) agent: Vec<Agent>,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Agent {
    #[serde(rename = "type")]
    pub(crate) kind: CodeableConcept,
    pub(crate) who: Reference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) on_behalf_of: Option<Reference>,
}
