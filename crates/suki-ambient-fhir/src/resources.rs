//! The FHIR R4 resources the write-back posts, as serde structs: the seven resources
//! (DocumentReference, Composition, Condition, MedicationRequest, Provenance, Communication,
//! Task), the transaction Bundle, and the data types they use. Only the elements the mapping
//! writes are here; the field order is the order they are written in (the golden files in
//! `testdata/fhir/golden/` pin the bytes). Every value is borrowed from the mapping, and the two
//! large strings (the note in base64, its XHTML narrative) are written straight into the output
//! by their `Display` (`collect_str`), never built as a `String` first.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A transaction Bundle.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Bundle<'a> {
    pub(crate) resource_type: &'static str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) entry: Vec<BundleEntry<'a>>,
}

/// One entry of a [`Bundle`]: a conditional create.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BundleEntry<'a> {
    pub(crate) full_url: &'a str,
    pub(crate) resource: Resource<'a>,
    pub(crate) request: BundleRequest<'a>,
}

/// One of the resources the write-back posts (serialized as the resource itself).
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum Resource<'a> {
    DocumentReference(DocumentReference<'a>),
    Composition(Composition<'a>),
    Condition(Condition<'a>),
    MedicationRequest(MedicationRequest<'a>),
    Provenance(Provenance<'a>),
    #[cfg(feature = "inbox")]
    Communication(Communication<'a>),
    #[cfg(feature = "inbox")]
    Task(Task<'a>),
}

/// An entry's `request`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BundleRequest<'a> {
    pub(crate) method: &'static str,
    pub(crate) url: &'static str,
    pub(crate) if_none_exist: &'a str,
}

/// `Coding`.
#[derive(Serialize, Clone)]
pub(crate) struct Coding<'a> {
    pub(crate) system: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) display: Option<Cow<'a, str>>,
}

impl Coding<'static> {
    /// One constant coding.
    pub(crate) const fn constant(
        system: &'static str,
        code: &'static str,
        display: &'static str,
    ) -> Self {
        Self {
            system: Cow::Borrowed(system),
            code: Some(Cow::Borrowed(code)),
            display: Some(Cow::Borrowed(display)),
        }
    }
}

/// `CodeableConcept`: its codings (left out when none) and its text.
#[derive(Serialize, Default)]
pub(crate) struct CodeableConcept<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) coding: Vec<Coding<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<&'a str>,
}

impl<'a> CodeableConcept<'a> {
    /// One coding, no text.
    pub(crate) fn of(coding: Coding<'a>) -> Self {
        Self {
            coding: vec![coding],
            text: None,
        }
    }

    /// Text alone.
    pub(crate) fn text(text: &'a str) -> Self {
        Self {
            coding: Vec::new(),
            text: Some(text),
        }
    }
}

/// `Identifier`: a system and a value.
#[derive(Serialize)]
pub(crate) struct Identifier<'a> {
    pub(crate) system: &'static str,
    pub(crate) value: Cow<'a, str>,
}

/// `Reference`: literal (`reference`) or logical (`type`, `identifier`, `display`).
#[derive(Serialize, Default)]
pub(crate) struct Reference<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reference: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) identifier: Option<Identifier<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) display: Option<&'static str>,
}

impl<'a> Reference<'a> {
    /// A literal reference (`Patient/123`, `urn:uuid:…`).
    pub(crate) fn to(reference: &'a str) -> Self {
        Self {
            reference: Some(reference),
            ..Self::default()
        }
    }

    /// A logical reference to a resource of `kind` by its identifier.
    pub(crate) fn logical(
        kind: &'static str,
        identifier: Identifier<'a>,
        display: Option<&'static str>,
    ) -> Self {
        Self {
            reference: None,
            kind: Some(kind),
            identifier: Some(identifier),
            display,
        }
    }
}

/// `meta`: the session's tag, and on the AI-written resources the AIAST security label.
#[derive(Serialize)]
pub(crate) struct Meta<'a> {
    pub(crate) tag: [Coding<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) security: Option<[Coding<'a>; 1]>,
}

/// `DocumentReference` (US Core): the note as a base64 attachment.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DocumentReference<'a> {
    pub(crate) resource_type: &'static str,
    pub(crate) meta: Meta<'a>,
    pub(crate) identifier: [Identifier<'a>; 1],
    pub(crate) status: &'static str,
    pub(crate) doc_status: &'static str,
    #[serde(rename = "type")]
    pub(crate) kind: &'a CodeableConcept<'a>,
    pub(crate) category: [CodeableConcept<'a>; 1],
    pub(crate) subject: Reference<'a>,
    pub(crate) date: &'a str,
    pub(crate) author: &'a [Reference<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) relates_to: Option<[RelatesTo<'a>; 1]>,
    pub(crate) description: &'static str,
    pub(crate) content: [DocumentContent<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) context: Option<DocumentContext<'a>>,
}

/// `DocumentReference.relatesTo`.
#[derive(Serialize)]
pub(crate) struct RelatesTo<'a> {
    pub(crate) code: &'static str,
    pub(crate) target: Reference<'a>,
}

/// `DocumentReference.content`.
#[derive(Serialize)]
pub(crate) struct DocumentContent<'a> {
    pub(crate) attachment: Attachment<'a>,
}

/// `DocumentReference.context`.
#[derive(Serialize)]
pub(crate) struct DocumentContext<'a> {
    pub(crate) encounter: [Reference<'a>; 1],
}

/// `Attachment`: the data in base64, its size and SHA-1 hash (R4's `hash`, base64).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Attachment<'a> {
    pub(crate) content_type: &'static str,
    pub(crate) language: &'static str,
    pub(crate) data: Base64<'a>,
    pub(crate) size: u64,
    pub(crate) hash: Base64<'a>,
    pub(crate) title: &'static str,
    pub(crate) creation: &'a str,
}

/// Bytes as a base64 string. Base64 needs no JSON escape: the string is encoded once and
/// handed to serde_json as a [`RawValue`] (whose check is a fast scan for quotes), rather than
/// escaped byte by byte.
pub(crate) struct Base64<'a>(pub(crate) &'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        let mut json = String::with_capacity(self.0.len().div_ceil(3) * 4 + 2);
        json.push('"');
        base64::engine::general_purpose::STANDARD.encode_string(self.0, &mut json);
        json.push('"');
        RawValue::from_string(json)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

/// `Composition`: the note's sections, each with its narrative.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Composition<'a> {
    pub(crate) resource_type: &'static str,
    pub(crate) meta: Meta<'a>,
    pub(crate) identifier: Identifier<'a>,
    pub(crate) status: &'static str,
    #[serde(rename = "type")]
    pub(crate) kind: &'a CodeableConcept<'a>,
    pub(crate) subject: Reference<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encounter: Option<Reference<'a>>,
    pub(crate) date: &'a str,
    pub(crate) author: &'a [Reference<'a>],
    pub(crate) title: &'static str,
    pub(crate) section: Vec<Section<'a>>,
}

/// `Composition.section`.
#[derive(Serialize)]
pub(crate) struct Section<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<CodeableConcept<'a>>,
    pub(crate) text: Narrative<'a>,
}

/// `Narrative`: generated XHTML.
#[derive(Serialize)]
pub(crate) struct Narrative<'a> {
    pub(crate) status: &'static str,
    pub(crate) div: Xhtml<'a>,
}

/// Cleaned text as a narrative `div`, written into the output by its `Display`
/// ([`crate::text::Xhtml`]).
pub(crate) struct Xhtml<'a>(pub(crate) crate::text::Xhtml<'a>);

impl Serialize for Xhtml<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `Condition`: an encounter diagnosis, provisional.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Condition<'a> {
    pub(crate) resource_type: &'static str,
    pub(crate) meta: Meta<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) extension: Vec<Extension>,
    pub(crate) identifier: [Identifier<'a>; 1],
    pub(crate) verification_status: CodeableConcept<'a>,
    pub(crate) category: [CodeableConcept<'a>; 1],
    pub(crate) code: CodeableConcept<'a>,
    pub(crate) subject: Reference<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encounter: Option<Reference<'a>>,
    pub(crate) recorded_date: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<[Annotation<'a>; 1]>,
}

/// An extension with an integer value.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Extension {
    pub(crate) url: String,
    pub(crate) value_integer: i64,
}

/// `Annotation`: text.
#[derive(Serialize)]
pub(crate) struct Annotation<'a> {
    pub(crate) text: &'a str,
}

/// `MedicationRequest`: a draft proposal.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MedicationRequest<'a> {
    pub(crate) resource_type: &'static str,
    pub(crate) meta: Meta<'a>,
    pub(crate) identifier: [Identifier<'a>; 1],
    pub(crate) status: &'static str,
    pub(crate) intent: &'static str,
    pub(crate) medication_codeable_concept: CodeableConcept<'a>,
    pub(crate) subject: Reference<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encounter: Option<Reference<'a>>,
    pub(crate) authored_on: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dosage_instruction: Option<[Dosage<'a>; 1]>,
}

/// `Dosage`: its text and route.
#[derive(Serialize)]
pub(crate) struct Dosage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) route: Option<CodeableConcept<'a>>,
}

/// `Provenance`: Suki Ambient as the author of its targets.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Provenance<'a> {
    pub(crate) resource_type: &'static str,
    pub(crate) meta: Meta<'a>,
    pub(crate) target: Vec<Reference<'a>>,
    pub(crate) recorded: &'a str,
    pub(crate) reason: [CodeableConcept<'a>; 1],
    pub(crate) agent: [ProvenanceAgent<'a>; 1],
}

/// `Provenance.agent`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProvenanceAgent<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: CodeableConcept<'a>,
    pub(crate) who: Reference<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) on_behalf_of: Option<Reference<'a>>,
}

/// `Communication`: a completed message (a session that ended without a note).
#[cfg(feature = "inbox")]
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Communication<'a> {
    pub(crate) resource_type: &'static str,
    pub(crate) identifier: [Identifier<'a>; 1],
    pub(crate) status: &'static str,
    pub(crate) priority: &'static str,
    pub(crate) subject: Reference<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encounter: Option<Reference<'a>>,
    pub(crate) sent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) recipient: Option<[Reference<'a>; 1]>,
    pub(crate) sender: Reference<'a>,
    pub(crate) payload: [Payload<'a>; 1],
}

/// `Communication.payload`.
#[cfg(feature = "inbox")]
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Payload<'a> {
    pub(crate) content_string: &'a str,
}

/// `Task`: a requested task (a session that ended without a note).
#[cfg(feature = "inbox")]
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Task<'a> {
    pub(crate) resource_type: &'static str,
    pub(crate) identifier: [Identifier<'a>; 1],
    pub(crate) status: &'static str,
    pub(crate) intent: &'static str,
    pub(crate) priority: &'static str,
    pub(crate) code: CodeableConcept<'a>,
    pub(crate) description: &'a str,
    #[serde(rename = "for")]
    pub(crate) patient: Reference<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encounter: Option<Reference<'a>>,
    pub(crate) authored_on: &'a str,
    pub(crate) requester: Reference<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) owner: Option<Reference<'a>>,
}
