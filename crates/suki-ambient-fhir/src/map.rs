//! `transaction`: a completed session's results → one FHIR R4 transaction Bundle, with
//! deterministic identifiers and conditional creates.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use suki_ambient_core::UnixMillis;
use suki_ambient_core::api::{Code, CodeSystem, Diagnosis, MedicationOrder};

use crate::context::{EhrContext, Mapping, SessionNote};
use crate::model::{
    Agent, Annotation, Attachment, Bundle, CodeableConcept, Coding, Composition, Condition,
    Content, DocumentContext, DocumentReference, Dosage, Entry, Extension, Identifier, JsonText,
    MedicationRequest, Meta, Narrative, Provenance, Reference, RelatesTo, Request, Resource,
    Section,
};
use crate::text::{fhir_string, fhir_text, push_search_value, search_value, urn_uuid};
use crate::{IDENTIFIER_SYSTEM, MapError};

const LOINC: &str = "http://loinc.org";
const ICD10_CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const SNOMED: &str = "http://snomed.info/sct";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
/// The systems of codes whose type Suki sends and this crate does not know:
/// `urn:suki:code-type:<type>`.
const OTHER_CODE_TYPE: &str = "urn:suki:code-type:";
/// Extensions carrying Suki's diagnosis fields that FHIR has no element for.
const EXTENSION_BASE: &str = "urn:suki:structured-data:";
const SUKI_DEVICE: &str = "urn:suki:device";

/// A session's results as one FHIR R4 transaction Bundle (see the [crate] docs for what it
/// holds). Serialize it ([`to_json`](Self::to_json), or with serde) and post it to the EHR's
/// FHIR base URL. `Debug` shows counts and sizes, never content.
#[derive(Clone)]
pub struct TransactionBundle {
    bundle: Bundle,
    note_bytes: usize,
}

/// What one entry of a Bundle writes, without its content: the resource type, the placeholder
/// `fullUrl` other entries refer to it by, and the `ifNoneExist` that makes it idempotent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntrySummary {
    /// `DocumentReference`, `Composition`, `Condition`, `MedicationRequest` or `Provenance`.
    pub resource_type: &'static str,
    /// `urn:uuid:…`, the same for the same session and part on every attempt.
    pub full_url: String,
    /// The conditional create's query (`identifier=urn:suki:session|…`, or `_tag=…` for the
    /// Provenance).
    pub if_none_exist: String,
}

impl TransactionBundle {
    /// The Bundle as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Sized for the note twice over (base64 and XHTML) and the rest: no regrowth.
        let mut out = Vec::with_capacity(self.note_bytes * 3 + 16 * 1024);
        // PANIC: the model holds strings, integers and sequences only, with no map keys, and
        // a Vec cannot fail to be written: serde_json cannot fail to serialize it.
        serde_json::to_writer(&mut out, &self.bundle).expect("a Bundle always serializes");
        out
    }

    /// How many entries (resources) it writes.
    pub fn len(&self) -> usize {
        self.bundle.entry.len()
    }

    /// Whether it writes nothing (never, for a Bundle [`transaction`] made).
    pub fn is_empty(&self) -> bool {
        self.bundle.entry.is_empty()
    }

    /// Its entries, without content.
    pub fn entries(&self) -> Vec<EntrySummary> {
        self.bundle
            .entry
            .iter()
            .map(|e| EntrySummary {
                resource_type: e.resource.type_name(),
                full_url: e.full_url.clone(),
                if_none_exist: e.request.if_none_exist.clone(),
            })
            .collect()
    }

    /// The size of the note's text (UTF-8 bytes, before base64).
    pub fn note_bytes(&self) -> usize {
        self.note_bytes
    }
}

impl Serialize for TransactionBundle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.bundle.serialize(s)
    }
}

impl fmt::Debug for TransactionBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |name: &str| {
            self.bundle
                .entry
                .iter()
                .filter(|e| e.resource.type_name() == name)
                .count()
        };
        f.debug_struct("TransactionBundle")
            .field("entries", &self.bundle.entry.len())
            .field("conditions", &count("Condition"))
            .field("medication_requests", &count("MedicationRequest"))
            .field("note_bytes", &self.note_bytes)
            .finish()
    }
}

/// Maps `note` for the patient and encounter of `ehr` to a transaction Bundle, with `mapping`'s
/// choices. Sections without text are left out (FHIR's cmp-1 wants text in each); a diagnosis
/// with neither a code nor a note, and a medication order with neither a name nor a code, are
/// left out too (each resource needs its `code` or `medication`). `Err` when no section has
/// text ([`MapError::EmptyNote`]) or the IMO system is not an absolute URI.
pub fn transaction(
    note: &SessionNote<'_>,
    ehr: &EhrContext,
    mapping: &Mapping,
) -> Result<TransactionBundle, MapError> {
    if !is_absolute_uri(&mapping.imo_system) {
        return Err(MapError::CodeSystem);
    }
    let session = fhir_string(note.session_id.as_str()).unwrap_or_else(|| "-".to_owned());
    let at = instant(note.at);
    let sections: Vec<(Option<String>, Option<String>, Cow<'_, str>)> = note
        .content
        .summary
        .iter()
        .filter_map(|s| {
            let text = s.content.as_deref().and_then(fhir_text)?;
            let title = s.title.as_deref().and_then(fhir_string);
            let loinc = s.loinc_code.as_deref().and_then(code_token);
            Some((title, loinc, text))
        })
        .collect();
    if sections.is_empty() {
        return Err(MapError::EmptyNote);
    }

    let patient = literal(ehr.patient.as_str());
    let encounter = ehr.encounter.as_ref().map(|e| literal(e.as_str()));
    let mut authors: Vec<Reference> = ehr
        .practitioner
        .iter()
        .map(|p| literal(p.as_str()))
        .collect();
    authors.push(suki());
    let ai = || Meta {
        security: vec![Coding {
            system: Some("http://terminology.hl7.org/CodeSystem/v3-ObservationValue".into()),
            code: Some("AIAST".into()),
            display: Some("Artificial Intelligence asserted".into()),
        }],
        tag: Vec::new(),
    };
    let note_type = CodeableConcept {
        coding: vec![Coding {
            system: Some(LOINC.into()),
            code: code_token(&mapping.note_type.code).map(Cow::Owned),
            display: fhir_string(&mapping.note_type.display).map(Cow::Owned),
        }],
        text: None,
    };
    let mut entries = Vec::new();

    // The note: the sections in order, as UTF-8 text.
    let mut text = String::with_capacity(sections.iter().map(|s| s.2.len() + 64).sum());
    for (title, _, body) in &sections {
        if let Some(title) = title {
            text.push_str(title);
            text.push('\n');
        }
        text.push_str(body);
        text.push_str("\n\n");
    }
    text.truncate(text.trim_end().len());
    text.push('\n');
    let note_bytes = text.len();
    let relates_to = ehr
        .replaces
        .iter()
        .map(|earlier| RelatesTo {
            code: "replaces",
            target: Reference {
                kind: Some("DocumentReference"),
                identifier: Some(Identifier {
                    system: IDENTIFIER_SYSTEM,
                    value: format!(
                        "{}/note",
                        fhir_string(earlier.as_str()).unwrap_or_else(|| "-".to_owned())
                    ),
                }),
                ..Reference::default()
            },
        })
        .collect();
    entries.push(entry(
        &session,
        "note",
        Resource::DocumentReference(DocumentReference {
            meta: ai(),
            identifier: vec![identifier(&session, "note")],
            status: "current",
            doc_status: mapping.doc_status.as_str(),
            kind: note_type.clone(),
            category: vec![CodeableConcept {
                coding: vec![Coding {
                    system: Some(
                        "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
                            .into(),
                    ),
                    code: Some("clinical-note".into()),
                    display: Some("Clinical Note".into()),
                }],
                text: None,
            }],
            subject: patient.clone(),
            date: at.clone(),
            author: authors.clone(),
            relates_to,
            description: "Suki Ambient note (AI-generated draft)",
            content: vec![Content {
                attachment: Attachment {
                    content_type: "text/plain; charset=utf-8",
                    language: "en-US",
                    data: JsonText::base64(text.as_bytes()),
                    size: note_bytes as u64,
                    title: "Suki Ambient note",
                    creation: at.clone(),
                },
            }],
            context: encounter
                .clone()
                .map(|e| DocumentContext { encounter: vec![e] }),
        }),
    ));

    if mapping.composition {
        entries.push(entry(
            &session,
            "composition",
            Resource::Composition(Composition {
                meta: ai(),
                identifier: identifier(&session, "composition"),
                status: mapping.doc_status.as_str(),
                kind: note_type,
                subject: patient.clone(),
                encounter: encounter.clone(),
                date: at.clone(),
                author: authors,
                title: "Suki Ambient note",
                section: sections
                    .iter()
                    .map(|(title, loinc, body)| Section {
                        title: title.clone(),
                        code: loinc.as_ref().map(|code| CodeableConcept {
                            coding: vec![Coding {
                                system: Some(LOINC.into()),
                                code: Some(Cow::Owned(code.clone())),
                                display: None,
                            }],
                            text: None,
                        }),
                        text: Narrative {
                            status: "generated",
                            div: JsonText::xhtml(body),
                        },
                    })
                    .collect(),
            }),
        ));
    }

    let structured = note.structured.map(|s| &s.structured_data);
    let diagnoses = structured
        .and_then(|s| s.diagnoses.as_ref())
        .map_or(&[][..], |d| &d.values[..]);
    let mut n = 0;
    for diagnosis in diagnoses {
        let Some(condition) = condition(diagnosis, mapping, &patient, &encounter, &at, &ai) else {
            continue;
        };
        n += 1;
        let part = format!("condition/{n}");
        entries.push(entry(&session, &part, Resource::Condition(condition)));
    }
    let orders = structured
        .and_then(|s| s.orders.as_ref())
        .and_then(|o| o.medication_orders.as_ref())
        .map_or(&[][..], |m| &m.partial_values[..]);
    let mut n = 0;
    for order in orders {
        let Some(request) = medication_request(order, mapping, &patient, &encounter, &at, &ai)
        else {
            continue;
        };
        n += 1;
        let part = format!("medication/{n}");
        entries.push(entry(&session, &part, Resource::MedicationRequest(request)));
    }

    // Suki as the author of everything above.
    let target = entries
        .iter()
        .map(|e: &Entry| Reference {
            reference: Some(e.full_url.clone()),
            ..Reference::default()
        })
        .collect();
    let tag = format!("{session}/provenance");
    entries.push(Entry {
        full_url: urn_uuid(&tag),
        request: Request {
            method: "POST",
            url: "Provenance",
            if_none_exist: format!("_tag={IDENTIFIER_SYSTEM}|{}", search_value(&tag)),
        },
        resource: Resource::Provenance(Provenance {
            meta: Meta {
                security: Vec::new(),
                tag: vec![Coding {
                    system: Some(IDENTIFIER_SYSTEM.into()),
                    code: Some(Cow::Owned(tag.clone())),
                    display: None,
                }],
            },
            target,
            recorded: at,
            reason: vec![CodeableConcept {
                coding: vec![Coding {
                    system: Some(
                        "http://terminology.hl7.org/CodeSystem/v3-ObservationValue".into(),
                    ),
                    code: Some("AIAST".into()),
                    display: Some("Artificial Intelligence asserted".into()),
                }],
                text: None,
            }],
            agent: vec![Agent {
                kind: CodeableConcept {
                    coding: vec![Coding {
                        system: Some(
                            "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
                                .into(),
                        ),
                        code: Some("author".into()),
                        display: Some("Author".into()),
                    }],
                    text: None,
                },
                who: suki(),
                on_behalf_of: ehr.practitioner.as_ref().map(|p| literal(p.as_str())),
            }],
        }),
    });

    Ok(TransactionBundle {
        bundle: Bundle {
            resource_type: "Bundle",
            kind: "transaction",
            entry: entries,
        },
        note_bytes,
    })
}

/// A Condition for `diagnosis`: `None` when it has neither a code nor a note.
fn condition(
    diagnosis: &Diagnosis,
    mapping: &Mapping,
    patient: &Reference,
    encounter: &Option<Reference>,
    at: &str,
    ai: &dyn Fn() -> Meta,
) -> Option<Condition> {
    let coding = codings(&diagnosis.codes, mapping);
    let note = diagnosis.diagnosis_note.as_deref().and_then(fhir_string);
    let text = diagnosis
        .codes
        .iter()
        .find_map(|c| c.description.as_deref().and_then(fhir_string))
        .or_else(|| note.clone());
    if coding.is_empty() && text.is_none() {
        return None;
    }
    let extension = [
        ("laterality_indicator", diagnosis.laterality_indicator),
        ("post_coord_lex_flag", diagnosis.post_coord_lex_flag),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        value.map(|v| Extension {
            url: format!("{EXTENSION_BASE}{name}"),
            value_integer: Some(v.clamp(-2_147_483_648, 2_147_483_647)),
            value_string: None,
        })
    })
    .collect();
    Some(Condition {
        meta: ai(),
        extension,
        identifier: Vec::new(),
        verification_status: concept(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "provisional",
            "Provisional",
        ),
        category: vec![concept(
            "http://terminology.hl7.org/CodeSystem/condition-category",
            "encounter-diagnosis",
            "Encounter Diagnosis",
        )],
        code: CodeableConcept { coding, text },
        subject: patient.clone(),
        encounter: encounter.clone(),
        recorded_date: at.to_owned(),
        note: note.map(|text| Annotation { text }).into_iter().collect(),
    })
}

/// A draft MedicationRequest (intent `proposal`: no prescriber has ordered it) for `order`:
/// `None` when it has neither a name nor a code.
fn medication_request(
    order: &MedicationOrder,
    mapping: &Mapping,
    patient: &Reference,
    encounter: &Option<Reference>,
    at: &str,
    ai: &dyn Fn() -> Meta,
) -> Option<MedicationRequest> {
    let coding = codings(&order.codes, mapping);
    let name = order.medication.as_deref().and_then(fhir_string);
    if coding.is_empty() && name.is_none() {
        return None;
    }
    let dosage_text = [order.dosage.as_deref(), order.frequency.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(fhir_string)
        .collect::<Vec<_>>()
        .join(", ");
    let route = order.route.as_deref().and_then(fhir_string);
    let dosage = (!dosage_text.is_empty() || route.is_some()).then(|| Dosage {
        text: (!dosage_text.is_empty()).then_some(dosage_text),
        route: route.map(|text| CodeableConcept {
            coding: Vec::new(),
            text: Some(text),
        }),
    });
    Some(MedicationRequest {
        meta: ai(),
        extension: Vec::new(),
        identifier: Vec::new(),
        status: "draft",
        intent: "proposal",
        medication_codeable_concept: CodeableConcept { coding, text: name },
        subject: patient.clone(),
        encounter: encounter.clone(),
        authored_on: at.to_owned(),
        dosage_instruction: dosage.into_iter().collect(),
    })
}

/// Suki's codes as codings, ICD-10-CM and SNOMED CT first (the systems US Core binds), then IMO,
/// RxNorm and any other; codes that are empty once cleaned are left out.
fn codings(codes: &[Code], mapping: &Mapping) -> Vec<Coding> {
    let rank = |c: &Code| match c.system {
        Some(CodeSystem::Icd10) => 0,
        Some(CodeSystem::Snomed) => 1,
        Some(CodeSystem::Imo) => 2,
        Some(CodeSystem::Rxcui) => 3,
        _ => 4,
    };
    let mut sorted: Vec<&Code> = codes.iter().collect();
    sorted.sort_by_key(|c| rank(c));
    sorted
        .into_iter()
        .filter_map(|c| {
            let code = code_token(&c.code)?;
            let system: Cow<'static, str> = match &c.system {
                Some(CodeSystem::Icd10) => ICD10_CM.into(),
                Some(CodeSystem::Snomed) => SNOMED.into(),
                Some(CodeSystem::Imo) => mapping.imo_system.clone().into(),
                Some(CodeSystem::Rxcui) => RXNORM.into(),
                Some(other) => format!("{OTHER_CODE_TYPE}{}", uri_token(other.as_str())).into(),
                None => format!("{OTHER_CODE_TYPE}unknown").into(),
            };
            Some(Coding {
                system: Some(system),
                code: Some(Cow::Owned(code)),
                display: c
                    .description
                    .as_deref()
                    .and_then(fhir_string)
                    .map(Cow::Owned),
            })
        })
        .collect()
}

/// `text` as a FHIR `code` (`[^\s]+(\s[^\s]+)*`): cleaned, inner whitespace runs made one space.
fn code_token(text: &str) -> Option<String> {
    let cleaned = fhir_string(text)?;
    Some(cleaned.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A code type as a URN segment: letters, digits, `-`, `.` and `_` kept, anything else `_`.
fn uri_token(text: &str) -> String {
    let token: String = text
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() {
        "unknown".to_owned()
    } else {
        token
    }
}

/// An absolute URI with no whitespace (FHIR `uri`, as a code system).
fn is_absolute_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    !rest.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn concept(system: &'static str, code: &'static str, display: &'static str) -> CodeableConcept {
    CodeableConcept {
        coding: vec![Coding {
            system: Some(system.into()),
            code: Some(code.into()),
            display: Some(display.into()),
        }],
        text: None,
    }
}

fn identifier(session: &str, part: &str) -> Identifier {
    Identifier {
        system: IDENTIFIER_SYSTEM,
        value: format!("{session}/{part}"),
    }
}

/// An entry for `resource`, the part `part` of `session`, created unless its identifier exists.
fn entry(session: &str, part: &str, mut resource: Resource) -> Entry {
    let id = identifier(session, part);
    let mut if_none_exist = String::with_capacity(32 + id.value.len());
    if_none_exist.push_str("identifier=");
    if_none_exist.push_str(IDENTIFIER_SYSTEM);
    if_none_exist.push('|');
    push_search_value(&mut if_none_exist, &id.value);
    match &mut resource {
        Resource::Condition(c) => c.identifier = vec![id.clone()],
        Resource::MedicationRequest(m) => m.identifier = vec![id.clone()],
        Resource::DocumentReference(_) | Resource::Composition(_) | Resource::Provenance(_) => {}
    }
    Entry {
        full_url: urn_uuid(&id.value),
        request: Request {
            method: "POST",
            url: resource.type_name(),
            if_none_exist,
        },
        resource,
    }
}

fn literal(reference: &str) -> Reference {
    Reference {
        reference: Some(reference.to_owned()),
        ..Reference::default()
    }
}

/// Suki Ambient, the authoring software: a logical reference (it needs no Device in the EHR).
fn suki() -> Reference {
    Reference {
        kind: Some("Device"),
        identifier: Some(Identifier {
            system: SUKI_DEVICE,
            value: "suki-ambient".to_owned(),
        }),
        display: Some("Suki Ambient (AI scribe)"),
        ..Reference::default()
    }
}

/// `at` as a FHIR `instant` (UTC, milliseconds), clamped to the years FHIR can write (to
/// 9999-12-31): the time comes from a webhook header.
fn instant(at: UnixMillis) -> String {
    const LAST: u64 = 253_402_300_799_999;
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(at.0.min(LAST));
    humantime::format_rfc3339_millis(at).to_string()
}
