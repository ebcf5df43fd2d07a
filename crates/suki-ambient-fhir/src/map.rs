//! `transaction`: a completed session's results → one FHIR R4 transaction Bundle, with
//! deterministic identifiers and conditional creates.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::value::RawValue;
use suki_ambient_core::UnixMillis;
use suki_ambient_core::api::{Code, CodeSystem, Diagnosis, MedicationOrder};

use crate::context::{EhrContext, Mapping, SessionNote};
use crate::resources::{
    self as r, Base64, BundleEntry, BundleRequest, CodeableConcept, Coding, Identifier, Meta,
    Reference,
};
use crate::text::{Xhtml, fhir_text, push_search_value, search_value, urn_uuid};
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
    /// Where each entry's resource is in `json`, found when first asked for (only the
    /// per-resource writes and corrections need them).
    spans: std::sync::OnceLock<Vec<(usize, usize)>>,
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
    /// `MapError::Json` if the Bundle has no such entry (not expected of a Bundle this crate
    /// wrote: said at the source rather than sent as an empty body).
    pub(crate) fn resource(&self, index: usize) -> Result<bytes::Bytes, MapError> {
        let spans = self.spans.get_or_init(|| resource_spans(&self.json));
        spans
            .get(index)
            .map(|&(start, end)| self.json.slice(start..end))
            .ok_or(MapError::Json)
    }

    /// The Provenance alone, its targets the literal references `targets` (`Type/id`: what the
    /// server gave the other resources), as JSON.
    pub(crate) fn provenance_for(&self, targets: &[&str]) -> Result<bytes::Bytes, MapError> {
        let p = &self.provenance;
        let provenance = provenance(&p.tag, targets, &p.at, p.practitioner.as_deref());
        serde_json::to_vec(&provenance)
            .map(bytes::Bytes::from)
            .map_err(|_| MapError::Json)
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

impl<'a> Shared<'a> {
    /// `subject`: the patient.
    fn subject(&self) -> Reference<'a> {
        Reference::to(self.patient)
    }

    /// `encounter`, when known.
    fn encounter(&self) -> Option<Reference<'a>> {
        self.encounter.map(Reference::to)
    }

    /// `meta` with the AIAST security label (the content is AI-asserted) and the session's tag
    /// (`urn:suki:session|<session>`: every resource of a session is found by one `_tag`
    /// search).
    fn ai_meta(&self) -> Meta<'a> {
        Meta {
            tag: [session_tag(self.session)],
            security: Some([aiast()]),
        }
    }
}

/// Maps `note` for the patient and encounter of `ehr` to a transaction Bundle, with `mapping`'s
/// choices. Sections without text are left out (FHIR's cmp-1 wants text in each); a diagnosis
/// with neither a code nor a note, and a medication order with neither a name nor a code, are
/// left out too (each resource needs its `code` or `medication`). `Err` when no section has
/// text ([`MapError::EmptyNote`]) or the IMO system is not an absolute URI.
///
/// The resources are serde structs (`resources.rs`) borrowing the cleaned text; the note's
/// base64 and narrative are encoded straight into the JSON: mapping a typical 16 KiB session
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
    let note_type = CodeableConcept::of(Coding {
        system: Cow::Borrowed(LOINC),
        code: code_token(&mapping.note_type.code),
        display: fhir_text(&mapping.note_type.display),
    });
    let authors: Vec<Reference<'_>> = practitioner
        .map(Reference::to)
        .into_iter()
        .chain([suki()])
        .collect();

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
    // R4's Attachment.hash (SHA-1, base64): what a server that keeps the note in a Binary
    // still answers, to compare a correction.
    let hash = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        text.as_bytes(),
    );

    // The entries' identifiers (`<session>/<part>`; the Conditions' and MedicationRequests'
    // from their content: a reordered list names the same resources), then what each entry
    // says, then the resources, which borrow both.
    let structured = note.structured.map(|s| &s.structured_data);
    let diagnoses = structured
        .and_then(|s| s.diagnoses.as_ref())
        .map_or(&[][..], |d| &d.values[..]);
    let orders = structured
        .and_then(|s| s.orders.as_ref())
        .and_then(|o| o.medication_orders.as_ref())
        .map_or(&[][..], |m| &m.partial_values[..]);
    let mut parts = Parts::default();
    let conditions: Vec<(Condition<'_>, String)> = diagnoses
        .iter()
        .filter_map(|diagnosis| Condition::of(diagnosis, mapping))
        .map(|c| {
            let part = parts.name("condition", &c.content_key());
            (c, format!("{session}/{part}"))
        })
        .collect();
    let requests: Vec<(MedicationRequest<'_>, String)> = orders
        .iter()
        .filter_map(|order| MedicationRequest::of(order, mapping))
        .map(|m| {
            let part = parts.name("medication", &m.content_key());
            (m, format!("{session}/{part}"))
        })
        .collect();
    let note_id = format!("{session}/note");
    let composition_id = format!("{session}/composition");
    let tag = format!("{session}/provenance");

    let mut entries = vec![entry("DocumentReference", &note_id)];
    if mapping.composition {
        entries.push(entry("Composition", &composition_id));
    }
    entries.extend(conditions.iter().map(|(_, id)| entry("Condition", id)));
    entries.extend(
        requests
            .iter()
            .map(|(_, id)| entry("MedicationRequest", id)),
    );
    // Suki as the author of everything above.
    let provenance_entry = EntrySummary {
        resource_type: "Provenance",
        full_url: urn_uuid(&tag),
        if_none_exist: format!("_tag={IDENTIFIER_SYSTEM}|{}", search_value(&tag)),
    };

    let earlier = ehr
        .replaces
        .as_ref()
        .map(|e| fhir_text(e.as_str()).unwrap_or(Cow::Borrowed("-")));
    let mut resources = Vec::with_capacity(entries.len() + 1);
    resources.push(r::Resource::DocumentReference(r::DocumentReference {
        resource_type: "DocumentReference",
        meta: shared.ai_meta(),
        identifier: [identifier(&note_id)],
        status: "current",
        doc_status: mapping.doc_status.as_str(),
        kind: &note_type,
        category: [CodeableConcept::of(Coding::constant(
            "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
            "clinical-note",
            "Clinical Note",
        ))],
        subject: shared.subject(),
        date: shared.at,
        author: &authors,
        relates_to: earlier.map(|earlier| {
            [r::RelatesTo {
                code: "replaces",
                target: Reference::logical(
                    "DocumentReference",
                    Identifier {
                        system: IDENTIFIER_SYSTEM,
                        value: Cow::Owned(format!("{earlier}/note")),
                    },
                    None,
                ),
            }]
        }),
        description: "Suki Ambient note (AI-generated draft)",
        content: [r::DocumentContent {
            attachment: r::Attachment {
                content_type: "text/plain; charset=utf-8",
                language: "en-US",
                data: Base64(text.as_bytes()),
                size: note_bytes as u64,
                hash: Base64(hash.as_ref()),
                title: "Suki Ambient note",
                creation: shared.at,
            },
        }],
        context: shared.encounter().map(|encounter| r::DocumentContext {
            encounter: [encounter],
        }),
    }));
    if mapping.composition {
        resources.push(r::Resource::Composition(r::Composition {
            resource_type: "Composition",
            meta: shared.ai_meta(),
            identifier: identifier(&composition_id),
            status: mapping.doc_status.as_str(),
            kind: &note_type,
            subject: shared.subject(),
            encounter: shared.encounter(),
            date: shared.at,
            author: &authors,
            title: "Suki Ambient note",
            section: sections
                .iter()
                .map(|section| r::Section {
                    title: section.title.as_deref(),
                    code: section.loinc.as_deref().map(|loinc| {
                        CodeableConcept::of(Coding {
                            system: Cow::Borrowed(LOINC),
                            code: Some(Cow::Borrowed(loinc)),
                            display: None,
                        })
                    }),
                    text: r::Narrative {
                        status: "generated",
                        div: r::Xhtml(Xhtml(&section.text)),
                    },
                })
                .collect(),
        }));
    }
    resources.extend(
        conditions
            .iter()
            .map(|(c, id)| r::Resource::Condition(c.resource(id, &shared))),
    );
    resources.extend(
        requests
            .iter()
            .map(|(m, id)| r::Resource::MedicationRequest(m.resource(id, &shared))),
    );
    let targets: Vec<&str> = entries.iter().map(|e| e.full_url.as_str()).collect();
    resources.push(r::Resource::Provenance(provenance(
        &tag,
        &targets,
        shared.at,
        practitioner,
    )));
    // Sized for the note twice over (base64 and XHTML) and the rest: no regrowth.
    let json = bundle_json(
        entries.iter().chain([&provenance_entry]),
        resources,
        note_bytes * 3 + 16 * 1024,
    )?;
    entries.push(provenance_entry);

    Ok(TransactionBundle {
        json,
        spans: std::sync::OnceLock::new(),
        entries,
        conditions: conditions.len(),
        medication_requests: requests.len(),
        note_bytes,
        provenance: ProvenanceParts {
            tag,
            at,
            practitioner: practitioner.map(str::to_owned),
        },
        session: session.into_owned(),
        subject: ehr.patient.as_str().to_owned(),
        replaces: ehr.replaces.as_ref().map(|s| s.as_str().to_owned()),
    })
}

/// The entry of a `resource_type` whose identifier's value is `id`: created unless that
/// identifier exists.
fn entry(resource_type: &'static str, id: &str) -> EntrySummary {
    let mut if_none_exist = String::with_capacity(32 + id.len());
    if_none_exist.push_str("identifier=");
    if_none_exist.push_str(IDENTIFIER_SYSTEM);
    if_none_exist.push('|');
    push_search_value(&mut if_none_exist, id);
    EntrySummary {
        resource_type,
        full_url: urn_uuid(id),
        if_none_exist,
    }
}

/// The transaction Bundle of `resources`, each in the entry `entries` describes, as JSON
/// (`capacity`: the expected size).
fn bundle_json<'a>(
    entries: impl Iterator<Item = &'a EntrySummary>,
    resources: Vec<r::Resource<'a>>,
    capacity: usize,
) -> Result<bytes::Bytes, MapError> {
    let bundle = r::Bundle {
        resource_type: "Bundle",
        kind: "transaction",
        entry: entries
            .zip(resources)
            .map(|(entry, resource)| BundleEntry {
                full_url: &entry.full_url,
                resource,
                request: BundleRequest {
                    method: "POST",
                    url: entry.resource_type,
                    if_none_exist: &entry.if_none_exist,
                },
            })
            .collect(),
    };
    let mut json = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut json, &bundle).map_err(|_| MapError::Json)?;
    Ok(bytes::Bytes::from(json))
}

/// Where each entry's resource is in a Bundle's JSON (read back: serde_json hands out each
/// resource's own bytes, borrowed from `json`).
fn resource_spans(json: &[u8]) -> Vec<(usize, usize)> {
    #[derive(serde::Deserialize)]
    struct Entries<'a> {
        #[serde(borrow)]
        entry: Vec<Entry<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Entry<'a> {
        #[serde(borrow)]
        resource: &'a RawValue,
    }
    let Ok(bundle) = serde_json::from_slice::<Entries<'_>>(json) else {
        return Vec::new();
    };
    let base = json.as_ptr() as usize;
    bundle
        .entry
        .iter()
        .map(|e| {
            let start = e.resource.get().as_ptr() as usize - base;
            (start, start + e.resource.get().len())
        })
        .collect()
}

/// The Provenance naming Suki Ambient the author of `targets` (references), recorded `at`, on
/// behalf of `practitioner`; tagged `tag` (R4's Provenance has no identifier).
fn provenance<'a>(
    tag: &'a str,
    targets: &[&'a str],
    at: &'a str,
    practitioner: Option<&'a str>,
) -> r::Provenance<'a> {
    r::Provenance {
        resource_type: "Provenance",
        meta: Meta {
            tag: [session_tag(tag)],
            security: None,
        },
        target: targets.iter().map(|t| Reference::to(t)).collect(),
        recorded: at,
        reason: [CodeableConcept::of(aiast())],
        agent: [r::ProvenanceAgent {
            kind: CodeableConcept::of(Coding::constant(
                "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "author",
                "Author",
            )),
            who: suki(),
            on_behalf_of: practitioner.map(Reference::to),
        }],
    }
}

/// The AIAST security label: artificial intelligence asserted.
fn aiast() -> Coding<'static> {
    Coding::constant(
        V3_OBSERVATION_VALUE,
        "AIAST",
        "Artificial Intelligence asserted",
    )
}

/// A `tag`'s coding `urn:suki:session|<code>`.
fn session_tag(code: &str) -> Coding<'_> {
    Coding {
        system: Cow::Borrowed(IDENTIFIER_SYSTEM),
        code: Some(Cow::Borrowed(code)),
        display: None,
    }
}

/// The identifier `urn:suki:session|<id>`.
fn identifier(id: &str) -> Identifier<'_> {
    Identifier {
        system: IDENTIFIER_SYSTEM,
        value: Cow::Borrowed(id),
    }
}

/// Suki Ambient, the authoring software: a logical reference (it needs no Device in the EHR).
fn suki() -> Reference<'static> {
    Reference::logical(
        "Device",
        Identifier {
            system: SUKI_DEVICE,
            value: Cow::Borrowed("suki-ambient"),
        },
        Some("Suki Ambient (AI scribe)"),
    )
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
) -> Result<TransactionBundle, MapError> {
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
    let id = format!("{session}/no-note");
    let entries = vec![entry(kind_name, &id)];
    let resource = match resource {
        NoNoteResource::Communication => r::Resource::Communication(r::Communication {
            resource_type: "Communication",
            identifier: [identifier(&id)],
            status: "completed",
            priority: "routine",
            subject: shared.subject(),
            encounter: shared.encounter(),
            sent: shared.at,
            recipient: practitioner.map(|p| [Reference::to(p)]),
            sender: suki(),
            payload: [r::Payload {
                content_string: &message,
            }],
        }),
        NoNoteResource::Task => r::Resource::Task(r::Task {
            resource_type: "Task",
            identifier: [identifier(&id)],
            status: "requested",
            intent: "order",
            priority: "routine",
            code: CodeableConcept::text("Document the visit"),
            description: &message,
            patient: shared.subject(),
            encounter: shared.encounter(),
            authored_on: shared.at,
            requester: suki(),
            owner: practitioner.map(Reference::to),
        }),
    };
    let json = bundle_json(entries.iter(), vec![resource], 2048)?;
    Ok(TransactionBundle {
        json,
        spans: std::sync::OnceLock::new(),
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
    })
}
