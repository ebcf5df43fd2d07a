//! `transaction`: a completed session's results → one FHIR R4 transaction Bundle, with
//! deterministic identifiers and conditional creates.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use suki_ambient_core::UnixMillis;
use suki_ambient_core::api::{Code, CodeSystem, Diagnosis, MedicationOrder};

use crate::context::{EhrContext, Mapping, SessionNote};
use crate::json::Json;
use crate::text::{fhir_text, push_search_value, push_xhtml_json, search_value, urn_uuid};
use crate::{IDENTIFIER_SYSTEM, MapError};

mod coded;
#[cfg(test)]
mod golden;
use coded::*;

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
const V3_OBSERVATION_VALUE: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// A session's results as one FHIR R4 transaction Bundle (see the [crate] docs for what it
/// holds), as the JSON posted to the EHR's FHIR base URL ([`to_json`](Self::to_json); it also
/// serializes with serde). `Debug` shows counts and sizes, never content.
#[derive(Clone)]
pub struct TransactionBundle {
    json: bytes::Bytes,
    entries: Vec<EntrySummary>,
    conditions: usize,
    medication_requests: usize,
    note_bytes: usize,
    /// What the Provenance is made of, to write it alone with the ids the server gave.
    provenance: ProvenanceParts,
    /// The session (as written in identifiers and tags).
    session: String,
    /// The chart: the `subject` of every resource (`Patient/123`).
    subject: String,
    /// The earlier session whose note this one replaces ([`EhrContext::replaces`]).
    replaces: Option<String>,
}

/// The Provenance's own values (its targets are the other entries).
#[derive(Clone)]
struct ProvenanceParts {
    tag: String,
    at: String,
    practitioner: Option<String>,
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
    /// Where the resource's JSON is in the Bundle's.
    span: (usize, usize),
}

impl TransactionBundle {
    /// The Bundle as JSON (the same bytes for the same session, context and mapping).
    pub fn to_json(&self) -> Vec<u8> {
        self.json.to_vec()
    }

    /// The JSON, shared rather than copied (the request body).
    pub(crate) fn body(&self) -> bytes::Bytes {
        self.json.clone()
    }

    /// How many entries (resources) it writes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it writes nothing (never, for a Bundle [`transaction`] made).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Its entries, without content.
    pub fn entries(&self) -> Vec<EntrySummary> {
        self.entries.clone()
    }

    /// The size of the note's text (UTF-8 bytes, before base64).
    pub fn note_bytes(&self) -> usize {
        self.note_bytes
    }

    /// The session, as its identifiers and tags name it.
    pub(crate) fn session(&self) -> Option<&str> {
        Some(self.session.as_str()).filter(|s| !s.is_empty())
    }

    /// The earlier session whose note this one replaces, when the context says so.
    pub(crate) fn replaces(&self) -> Option<&str> {
        self.replaces.as_deref()
    }

    /// The search parameter that scopes a search of `kind` to this session's chart
    /// (`patient=Patient/123`, or `subject=…` when the subject is not a Patient), encoded;
    /// `None` for a Provenance, which has no subject of its own (it is found by its tag).
    pub(crate) fn chart_param(&self, kind: &str) -> Option<String> {
        if kind == "Provenance" || self.subject.is_empty() {
            return None;
        }
        let name = if self.subject_is_patient() {
            "patient"
        } else {
            "subject"
        };
        Some(format!(
            "{name}={}",
            crate::text::search_value(&self.subject)
        ))
    }

    fn subject_is_patient(&self) -> bool {
        let parts: Vec<&str> = self.subject.rsplit('/').collect();
        let at = if parts.len() >= 4 && parts[1] == "_history" {
            3
        } else {
            1
        };
        parts.get(at) == Some(&"Patient")
    }

    /// The summaries of the entries, shared (the per-resource writer walks them).
    pub(crate) fn summaries(&self) -> &[EntrySummary] {
        &self.entries
    }

    /// Entry `index`'s resource alone, as JSON (a slice of the Bundle's bytes: no copy).
    pub(crate) fn resource(&self, index: usize) -> bytes::Bytes {
        let (start, end) = self.entries[index].span;
        self.json.slice(start..end)
    }

    /// The Provenance alone, its targets the literal references `targets` (`Type/id`: what the
    /// server gave the other resources), as JSON.
    pub(crate) fn provenance_for(&self, targets: &[&str]) -> bytes::Bytes {
        let mut j = Json::with_capacity(1024 + targets.iter().map(|t| t.len() + 20).sum::<usize>());
        let p = &self.provenance;
        provenance(&mut j, &p.tag, targets, &p.at, p.practitioner.as_deref());
        bytes::Bytes::from(j.into_bytes())
    }
}

impl Serialize for TransactionBundle {
    /// The same document as [`to_json`](Self::to_json), for any serde format.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let value: serde_json::Value =
            serde_json::from_slice(&self.json).map_err(serde::ser::Error::custom)?;
        value.serialize(s)
    }
}

impl fmt::Debug for TransactionBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionBundle")
            .field("entries", &self.entries.len())
            .field("conditions", &self.conditions)
            .field("medication_requests", &self.medication_requests)
            .field("note_bytes", &self.note_bytes)
            .finish()
    }
}

/// A summary section with text, cleaned: its title, its LOINC code, its text.
struct NoteSection<'a> {
    title: Option<Cow<'a, str>>,
    loinc: Option<Cow<'a, str>>,
    text: Cow<'a, str>,
}

/// What every resource shares: the session, the patient, the encounter, the time.
struct Shared<'a> {
    session: &'a str,
    patient: &'a str,
    encounter: Option<&'a str>,
    at: &'a str,
}

impl Shared<'_> {
    /// `subject` and, when known, `encounter` (Composition, Condition, MedicationRequest).
    fn subject_and_encounter(&self, j: &mut Json) {
        j.key("subject");
        literal(j, self.patient);
        if let Some(encounter) = self.encounter {
            j.key("encounter");
            literal(j, encounter);
        }
    }
}

/// Maps `note` for the patient and encounter of `ehr` to a transaction Bundle, with `mapping`'s
/// choices. Sections without text are left out (FHIR's cmp-1 wants text in each); a diagnosis
/// with neither a code nor a note, and a medication order with neither a name nor a code, are
/// left out too (each resource needs its `code` or `medication`). `Err` when no section has
/// text ([`MapError::EmptyNote`]) or the IMO system is not an absolute URI.
///
/// The JSON is written as the mapping goes (see `json.rs`): mapping a typical 16 KiB session
/// costs a small fraction of fetching it.
pub fn transaction(
    note: &SessionNote<'_>,
    ehr: &EhrContext,
    mapping: &Mapping,
) -> Result<TransactionBundle, MapError> {
    if !is_absolute_uri(&mapping.imo_system) {
        return Err(MapError::CodeSystem);
    }
    let session = fhir_text(note.session_id.as_str()).unwrap_or(Cow::Borrowed("-"));
    let at = instant(note.at);
    let sections: Vec<NoteSection<'_>> = note
        .content
        .summary
        .iter()
        .filter_map(|s| {
            Some(NoteSection {
                text: s.content.as_deref().and_then(fhir_text)?,
                title: s.title.as_deref().and_then(fhir_text),
                loinc: s.loinc_code.as_deref().and_then(code_token),
            })
        })
        .collect();
    if sections.is_empty() {
        return Err(MapError::EmptyNote);
    }
    let shared = Shared {
        session: &session,
        patient: ehr.patient.as_str(),
        encounter: ehr.encounter.as_ref().map(|e| e.as_str()),
        at: &at,
    };
    let practitioner = ehr.practitioner.as_ref().map(|p| p.as_str());
    let note_type_code = code_token(&mapping.note_type.code);
    let note_type_display = fhir_text(&mapping.note_type.display);
    let note_type = |j: &mut Json| {
        j.object(|j| {
            j.key("coding");
            j.array(|j| {
                j.object(|j| {
                    j.field("system", LOINC);
                    j.field_opt("code", note_type_code.as_deref());
                    j.field_opt("display", note_type_display.as_deref());
                })
            });
        })
    };
    let authors = |j: &mut Json| {
        j.array(|j| {
            if let Some(practitioner) = practitioner {
                literal(j, practitioner);
            }
            suki(j);
        })
    };

    // The note: the sections in order, as UTF-8 text.
    let mut text = String::with_capacity(sections.iter().map(|s| s.text.len() + 64).sum());
    for section in &sections {
        if let Some(title) = &section.title {
            text.push_str(title);
            text.push('\n');
        }
        text.push_str(&section.text);
        text.push_str("\n\n");
    }
    text.truncate(text.trim_end().len());
    text.push('\n');
    let note_bytes = text.len();

    // Sized for the note twice over (base64 and XHTML) and the rest: no regrowth.
    let mut json = Json::with_capacity(note_bytes * 3 + 16 * 1024);
    let mut entries = Vec::new();
    let mut provenance_tag = String::new();
    let (mut conditions, mut medication_requests) = (0, 0);
    json.object(|j| {
        j.field("resourceType", "Bundle");
        j.field("type", "transaction");
        j.key("entry");
        j.array(|j| {
            entry(
                j,
                &mut entries,
                &session,
                "note",
                "DocumentReference",
                |j, id| {
                    ai_meta(j, shared.session);
                    j.key("identifier");
                    j.array(|j| identifier(j, id));
                    j.field("status", "current");
                    j.field("docStatus", mapping.doc_status.as_str());
                    j.key("type");
                    note_type(j);
                    j.key("category");
                    j.array(|j| {
                    concept(
                        j,
                        "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                        "clinical-note",
                        "Clinical Note",
                    )
                });
                    j.key("subject");
                    literal(j, shared.patient);
                    j.field("date", shared.at);
                    j.key("author");
                    authors(j);
                    if let Some(earlier) = &ehr.replaces {
                        let earlier = fhir_text(earlier.as_str()).unwrap_or(Cow::Borrowed("-"));
                        j.key("relatesTo");
                        j.array(|j| {
                            j.object(|j| {
                                j.field("code", "replaces");
                                j.key("target");
                                j.object(|j| {
                                    j.field("type", "DocumentReference");
                                    j.key("identifier");
                                    j.object(|j| {
                                        j.field("system", IDENTIFIER_SYSTEM);
                                        j.key("value");
                                        j.string_of(&[&earlier, "/note"]);
                                    });
                                });
                            })
                        });
                    }
                    j.field("description", "Suki Ambient note (AI-generated draft)");
                    j.key("content");
                    j.array(|j| {
                        j.object(|j| {
                            j.key("attachment");
                            j.object(|j| {
                                j.field("contentType", "text/plain; charset=utf-8");
                                j.field("language", "en-US");
                                j.key("data");
                                j.base64(text.as_bytes());
                                j.key("size");
                                j.integer(i64::try_from(note_bytes).unwrap_or(i64::MAX));
                                // R4's Attachment.hash (SHA-1, base64): what a server that keeps
                                // the note in a Binary still answers, to compare a correction.
                                j.key("hash");
                                j.base64(
                                    aws_lc_rs::digest::digest(
                                        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
                                        text.as_bytes(),
                                    )
                                    .as_ref(),
                                );
                                j.field("title", "Suki Ambient note");
                                j.field("creation", shared.at);
                            });
                        })
                    });
                    if let Some(encounter) = shared.encounter {
                        j.key("context");
                        j.object(|j| {
                            j.key("encounter");
                            j.array(|j| literal(j, encounter));
                        });
                    }
                },
            );

            if mapping.composition {
                entry(
                    j,
                    &mut entries,
                    &session,
                    "composition",
                    "Composition",
                    |j, id| {
                        ai_meta(j, shared.session);
                        j.key("identifier");
                        identifier(j, id);
                        j.field("status", mapping.doc_status.as_str());
                        j.key("type");
                        note_type(j);
                        shared.subject_and_encounter(j);
                        j.field("date", shared.at);
                        j.key("author");
                        authors(j);
                        j.field("title", "Suki Ambient note");
                        j.key("section");
                        j.array(|j| {
                            for section in &sections {
                                j.object(|j| {
                                    j.field_opt("title", section.title.as_deref());
                                    if let Some(loinc) = &section.loinc {
                                        j.key("code");
                                        j.object(|j| {
                                            j.key("coding");
                                            j.array(|j| {
                                                j.object(|j| {
                                                    j.field("system", LOINC);
                                                    j.field("code", loinc);
                                                })
                                            });
                                        });
                                    }
                                    j.key("text");
                                    j.object(|j| {
                                        j.field("status", "generated");
                                        j.key("div");
                                        j.string_with(|out| push_xhtml_json(out, &section.text));
                                    });
                                });
                            }
                        });
                    },
                );
            }

            let structured = note.structured.map(|s| &s.structured_data);
            let diagnoses = structured
                .and_then(|s| s.diagnoses.as_ref())
                .map_or(&[][..], |d| &d.values[..]);
            // Identifiers from content: a reordered list names the same resources.
            let mut parts = Parts::default();
            for diagnosis in diagnoses {
                let Some(condition) = Condition::of(diagnosis, mapping) else {
                    continue;
                };
                conditions += 1;
                let part = parts.name("condition", &condition.content_key());
                entry(j, &mut entries, &session, &part, "Condition", |j, id| {
                    condition.write(j, id, &shared);
                });
            }
            let orders = structured
                .and_then(|s| s.orders.as_ref())
                .and_then(|o| o.medication_orders.as_ref())
                .map_or(&[][..], |m| &m.partial_values[..]);
            for order in orders {
                let Some(request) = MedicationRequest::of(order, mapping) else {
                    continue;
                };
                medication_requests += 1;
                let part = parts.name("medication", &request.content_key());
                entry(
                    j,
                    &mut entries,
                    &session,
                    &part,
                    "MedicationRequest",
                    |j, id| {
                        request.write(j, id, &shared);
                    },
                );
            }

            // Suki as the author of everything above.
            let tag = format!("{session}/provenance");
            let full_url = urn_uuid(&tag);
            let if_none_exist = format!("_tag={IDENTIFIER_SYSTEM}|{}", search_value(&tag));
            let targets: Vec<&str> = entries.iter().map(|e| e.full_url.as_str()).collect();
            let mut span = (0, 0);
            j.object(|j| {
                j.field("fullUrl", &full_url);
                j.key("resource");
                span.0 = j.position();
                provenance(j, &tag, &targets, shared.at, practitioner);
                span.1 = j.position();
                request(j, "Provenance", &if_none_exist);
            });
            entries.push(EntrySummary {
                resource_type: "Provenance",
                full_url,
                if_none_exist,
                span,
            });
            provenance_tag = tag;
        });
    });

    Ok(TransactionBundle {
        json: bytes::Bytes::from(json.into_bytes()),
        entries,
        conditions,
        medication_requests,
        note_bytes,
        provenance: ProvenanceParts {
            tag: provenance_tag,
            at,
            practitioner: practitioner.map(str::to_owned),
        },
        session: session.into_owned(),
        subject: ehr.patient.as_str().to_owned(),
        replaces: ehr.replaces.as_ref().map(|s| s.as_str().to_owned()),
    })
}

/// The Provenance naming Suki Ambient the author of `targets` (references), recorded `at`, on
/// behalf of `practitioner`; tagged `tag` (R4's Provenance has no identifier).
fn provenance(j: &mut Json, tag: &str, targets: &[&str], at: &str, practitioner: Option<&str>) {
    j.object(|j| {
        j.field("resourceType", "Provenance");
        j.key("meta");
        j.object(|j| session_tag(j, tag));
        j.key("target");
        j.array(|j| {
            for target in targets {
                literal(j, target);
            }
        });
        j.field("recorded", at);
        j.key("reason");
        j.array(|j| {
            concept(
                j,
                V3_OBSERVATION_VALUE,
                "AIAST",
                "Artificial Intelligence asserted",
            )
        });
        j.key("agent");
        j.array(|j| {
            j.object(|j| {
                j.key("type");
                concept(
                    j,
                    "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "author",
                    "Author",
                );
                j.key("who");
                suki(j);
                if let Some(practitioner) = practitioner {
                    j.key("onBehalfOf");
                    literal(j, practitioner);
                }
            })
        });
    });
}

/// A CodeableConcept of one constant coding.
fn concept(j: &mut Json, system: &'static str, code: &'static str, display: &'static str) {
    j.object(|j| {
        j.key("coding");
        j.array(|j| concept_coding(j, system, code, display));
    });
}

/// `meta` with the AIAST security label (the content is AI-asserted) and the session's tag
/// (`urn:suki:session|<session>`: every resource of a session is found by one `_tag` search).
fn ai_meta(j: &mut Json, session: &str) {
    j.key("meta");
    j.object(|j| {
        session_tag(j, session);
        j.key("security");
        j.array(|j| {
            concept_coding(
                j,
                V3_OBSERVATION_VALUE,
                "AIAST",
                "Artificial Intelligence asserted",
            )
        });
    });
}

/// `tag`: one coding `urn:suki:session|<code>`.
fn session_tag(j: &mut Json, code: &str) {
    j.key("tag");
    j.array(|j| {
        j.object(|j| {
            j.field("system", IDENTIFIER_SYSTEM);
            j.field("code", code);
        })
    });
}

/// One constant coding.
fn concept_coding(j: &mut Json, system: &'static str, code: &'static str, display: &'static str) {
    j.object(|j| {
        j.field("system", system);
        j.field("code", code);
        j.field("display", display);
    });
}

/// The identifier `urn:suki:session|<id>`.
fn identifier(j: &mut Json, id: &str) {
    j.object(|j| {
        j.field("system", IDENTIFIER_SYSTEM);
        j.field("value", id);
    });
}

/// An entry for the part `part` of `session`, a `resource_type` whose members `resource`
/// writes (given the identifier's value), created unless its identifier exists; its summary
/// goes to `entries`.
fn entry(
    j: &mut Json,
    entries: &mut Vec<EntrySummary>,
    session: &str,
    part: &str,
    resource_type: &'static str,
    resource: impl FnOnce(&mut Json, &str),
) {
    let id = format!("{session}/{part}");
    let full_url = urn_uuid(&id);
    let mut if_none_exist = String::with_capacity(32 + id.len());
    if_none_exist.push_str("identifier=");
    if_none_exist.push_str(IDENTIFIER_SYSTEM);
    if_none_exist.push('|');
    push_search_value(&mut if_none_exist, &id);
    let mut span = (0, 0);
    j.object(|j| {
        j.field("fullUrl", &full_url);
        j.key("resource");
        span.0 = j.position();
        j.object(|j| {
            j.field("resourceType", resource_type);
            resource(j, &id);
        });
        span.1 = j.position();
        request(j, resource_type, &if_none_exist);
    });
    entries.push(EntrySummary {
        resource_type,
        full_url,
        if_none_exist,
        span,
    });
}

/// An entry's `request`: a conditional create.
fn request(j: &mut Json, resource_type: &'static str, if_none_exist: &str) {
    j.key("request");
    j.object(|j| {
        j.field("method", "POST");
        j.field("url", resource_type);
        j.field("ifNoneExist", if_none_exist);
    });
}

/// A literal reference (`Patient/123`, `urn:uuid:…`).
fn literal(j: &mut Json, reference: &str) {
    j.object(|j| j.field("reference", reference));
}

/// Suki Ambient, the authoring software: a logical reference (it needs no Device in the EHR).
fn suki(j: &mut Json) {
    j.object(|j| {
        j.field("type", "Device");
        j.key("identifier");
        j.object(|j| {
            j.field("system", SUKI_DEVICE);
            j.field("value", "suki-ambient");
        });
        j.field("display", "Suki Ambient (AI scribe)");
    });
}

/// `at` as a FHIR `instant` (UTC, milliseconds), clamped to the years FHIR can write (to
/// 9999-12-31): the time comes from a webhook header.
fn instant(at: UnixMillis) -> String {
    const LAST: u64 = 253_402_300_799_999;
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(at.0.min(LAST));
    humantime::format_rfc3339_millis(at).to_string()
}

/// What a session that ended without a note leaves in the chart ([`no_note`]).
#[cfg(feature = "inbox")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoNoteResource {
    /// A completed `Communication` to the practitioner (or the chart).
    Communication,
    /// A requested `Task`: document the visit another way.
    Task,
}

/// One resource saying that session `session` ended (`kind`: failed, timed out, cancelled;
/// `code`: Suki's error code, when it failed) without a note, as a one-entry transaction
/// Bundle with a conditional create on `urn:suki:session|<session>/no-note`.
#[cfg(feature = "inbox")]
pub(crate) fn no_note(
    session: &suki_ambient_core::SessionId,
    kind: suki_ambient_core::EventKind,
    code: Option<&str>,
    at: UnixMillis,
    ehr: &EhrContext,
    resource: NoNoteResource,
) -> TransactionBundle {
    let session = fhir_text(session.as_str()).unwrap_or(Cow::Borrowed("-"));
    let at = instant(at);
    let code = code.and_then(code_token);
    let why = match kind {
        suki_ambient_core::EventKind::Failed => "the session failed",
        suki_ambient_core::EventKind::TimedOut => "the session timed out",
        suki_ambient_core::EventKind::Cancelled => "the session was cancelled",
        _ => "the session ended",
    };
    let mut message = format!("Suki Ambient produced no note for this visit: {why}");
    if let Some(code) = &code {
        message.push_str(" (");
        message.push_str(code);
        message.push(')');
    }
    message.push_str(". Document the visit another way.");
    let shared = Shared {
        session: &session,
        patient: ehr.patient.as_str(),
        encounter: ehr.encounter.as_ref().map(|e| e.as_str()),
        at: &at,
    };
    let practitioner = ehr.practitioner.as_ref().map(|p| p.as_str());
    let kind_name = match resource {
        NoNoteResource::Communication => "Communication",
        NoNoteResource::Task => "Task",
    };
    let mut json = Json::with_capacity(2048);
    let mut entries = Vec::new();
    json.object(|j| {
        j.field("resourceType", "Bundle");
        j.field("type", "transaction");
        j.key("entry");
        j.array(|j| {
            entry(j, &mut entries, &session, "no-note", kind_name, |j, id| {
                j.key("identifier");
                j.array(|j| identifier(j, id));
                match resource {
                    NoNoteResource::Communication => {
                        j.field("status", "completed");
                        j.field("priority", "routine");
                        shared.subject_and_encounter(j);
                        j.field("sent", shared.at);
                        if let Some(practitioner) = practitioner {
                            j.key("recipient");
                            j.array(|j| literal(j, practitioner));
                        }
                        j.key("sender");
                        suki(j);
                        j.key("payload");
                        j.array(|j| j.object(|j| j.field("contentString", &message)));
                    }
                    NoNoteResource::Task => {
                        j.field("status", "requested");
                        j.field("intent", "order");
                        j.field("priority", "routine");
                        j.key("code");
                        j.object(|j| j.field("text", "Document the visit"));
                        j.field("description", &message);
                        j.key("for");
                        literal(j, shared.patient);
                        if let Some(encounter) = shared.encounter {
                            j.key("encounter");
                            literal(j, encounter);
                        }
                        j.field("authoredOn", shared.at);
                        j.key("requester");
                        suki(j);
                        if let Some(practitioner) = practitioner {
                            j.key("owner");
                            literal(j, practitioner);
                        }
                    }
                }
            });
        });
    });
    TransactionBundle {
        json: bytes::Bytes::from(json.into_bytes()),
        entries,
        conditions: 0,
        medication_requests: 0,
        note_bytes: 0,
        provenance: ProvenanceParts {
            tag: String::new(),
            at,
            practitioner: None,
        },
        session: session.into_owned(),
        subject: ehr.patient.as_str().to_owned(),
        replaces: None,
    }
}
