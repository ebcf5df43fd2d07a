//! The FHIR R4 elements this crate writes: a small serde model of the resources it emits, not a
//! general FHIR model (a generated one costs minutes of build for five resources).

use serde::Serialize;

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

#[derive(Clone, Default, Serialize)]
pub(crate) struct Coding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) display: Option<String>,
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
    pub(crate) data: String,
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
    pub(crate) div: String,
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
