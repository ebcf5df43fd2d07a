//! What the mapping needs besides Suki's results: the EHR's references, the session's note, and
//! the integrator's choices (note type, document status, IMO's code system).

use std::fmt;

use suki_ambient_core::api::{NoteContent, StructuredData};
use suki_ambient_core::{SessionId, UnixMillis};

use crate::MapError;

/// A FHIR reference to a resource the EHR already has: relative (`Patient/123`,
/// `Encounter/abc-1`, optionally `/_history/2`) or absolute (`https://ehr.example/fhir/Patient/123`).
/// Checked when parsed; `Debug` does not show it (a patient's id is an identifier of a person).
#[derive(Clone, PartialEq, Eq)]
pub struct Reference(String);

impl Reference {
    /// The longest reference accepted.
    const MAX: usize = 1024;

    /// `text` as a reference, if it is one: `Type/id` with a FHIR resource type and id
    /// (`[A-Za-z0-9-.]{1,64}`), or an `http(s)` URL ending so.
    pub fn parse(text: &str) -> Result<Self, MapError> {
        let text = text.trim();
        if text.is_empty() || text.len() > Self::MAX {
            return Err(MapError::Reference("empty or longer than 1024 bytes"));
        }
        let relative = match text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
        {
            Some(rest) => {
                if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(MapError::Reference(
                        "a URL with spaces or control characters",
                    ));
                }
                // The last two segments (or four, with a version) name the resource.
                let parts: Vec<&str> = rest.split('/').collect();
                let n = parts.len();
                if n >= 5 && parts[n - 2] == "_history" {
                    parts[n - 4..].join("/")
                } else if n >= 3 {
                    parts[n - 2..].join("/")
                } else {
                    return Err(MapError::Reference("a URL that names no resource"));
                }
            }
            None => text.to_owned(),
        };
        let mut parts = relative.split('/');
        let (Some(kind), Some(id)) = (parts.next(), parts.next()) else {
            return Err(MapError::Reference("not Type/id"));
        };
        let history = match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => true,
            (Some("_history"), Some(version), None) => is_id(version),
            _ => false,
        };
        let is_type = kind.len() <= 64
            && kind.starts_with(|c: char| c.is_ascii_uppercase())
            && kind.chars().all(|c| c.is_ascii_alphanumeric());
        if !(is_type && is_id(id) && history) {
            return Err(MapError::Reference(
                "not Type/id with a FHIR resource type and id",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The reference as written in the Bundle.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The resource type it names (`Patient` for `Patient/123`).
    pub fn resource_type(&self) -> &str {
        let parts: Vec<&str> = self.0.rsplit('/').collect();
        // `…/Type/id` or `…/Type/id/_history/v`.
        let at = if parts.len() >= 4 && parts[1] == "_history" {
            3
        } else {
            1
        };
        parts.get(at).copied().unwrap_or_default()
    }
}

/// A FHIR id: 1 to 64 of `[A-Za-z0-9-.]`.
pub(crate) fn is_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({}/…)", self.resource_type())
    }
}

/// What only the integrator knows: where the note belongs in the EHR.
#[derive(Clone, Debug)]
pub struct EhrContext {
    pub(crate) patient: Reference,
    pub(crate) encounter: Option<Reference>,
    pub(crate) practitioner: Option<Reference>,
    pub(crate) replaces: Option<SessionId>,
}

impl EhrContext {
    /// The note is about `patient` (the `subject` of every resource).
    pub fn new(patient: Reference) -> Self {
        Self {
            patient,
            encounter: None,
            practitioner: None,
            replaces: None,
        }
    }

    /// The encounter the note documents (`context.encounter`, `Composition.encounter`,
    /// `Condition.encounter`, `MedicationRequest.encounter`). US Core expects it: give it.
    #[must_use]
    pub fn encounter(mut self, encounter: Reference) -> Self {
        self.encounter = Some(encounter);
        self
    }

    /// The clinician the note is drafted for: the note's and the Composition's `author` beside
    /// Suki, and the Provenance's `onBehalfOf`.
    #[must_use]
    pub fn practitioner(mut self, practitioner: Reference) -> Self {
        self.practitioner = Some(practitioner);
        self
    }

    /// This session's note replaces the one written for `earlier` (a later session of the same
    /// encounter): the DocumentReference gets `relatesTo` `replaces` with a logical reference to
    /// the earlier note's identifier. Marking the earlier one `superseded` is the EHR's part.
    #[must_use]
    pub fn replaces(mut self, earlier: SessionId) -> Self {
        self.replaces = Some(earlier);
        self
    }
}

/// One completed session's results, as the mapping reads them.
#[derive(Clone, Copy)]
pub struct SessionNote<'a> {
    pub(crate) session_id: &'a SessionId,
    pub(crate) content: &'a NoteContent,
    pub(crate) structured: Option<&'a StructuredData>,
    pub(crate) at: UnixMillis,
}

impl<'a> SessionNote<'a> {
    /// The note `content` of session `session_id`, finished at `at` (the webhook's
    /// `generated-at`: the `date` of the note and `recorded` of its Provenance, the same on every
    /// attempt).
    pub fn new(session_id: &'a SessionId, content: &'a NoteContent, at: UnixMillis) -> Self {
        Self {
            session_id,
            content,
            structured: None,
            at,
        }
    }

    /// With the session's structured data (diagnoses → Conditions, medication orders →
    /// MedicationRequests).
    #[must_use]
    pub fn structured_data(mut self, structured: &'a StructuredData) -> Self {
        self.structured = Some(structured);
        self
    }
}

impl fmt::Debug for SessionNote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionNote")
            .field("session_id", self.session_id)
            .field("sections", &self.content.summary.len())
            .field("structured_data", &self.structured.is_some())
            .field("at", &self.at)
            .finish()
    }
}

/// A document's status (`DocumentReference.docStatus`, `Composition.status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DocStatus {
    /// `preliminary`: an AI draft the clinician has not signed (the default).
    #[default]
    Preliminary,
    /// `final`: complete and verified (only if your workflow signs before writing).
    Final,
    /// `amended`: changed after it was final.
    Amended,
}

impl DocStatus {
    /// The FHIR code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preliminary => "preliminary",
            Self::Final => "final",
            Self::Amended => "amended",
        }
    }
}

/// The LOINC clinical-note type of the note (`DocumentReference.type`, `Composition.type`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteType {
    /// The LOINC code.
    pub code: String,
    /// Its display.
    pub display: String,
}

impl NoteType {
    /// A LOINC document type (US Core's clinical note types, or any LOINC code whose scale is
    /// `Doc`).
    pub fn loinc(code: impl Into<String>, display: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            display: display.into(),
        }
    }

    /// 11506-3 Progress note (the default).
    pub fn progress_note() -> Self {
        Self::loinc("11506-3", "Progress note")
    }

    /// 11488-4 Consult note.
    pub fn consult_note() -> Self {
        Self::loinc("11488-4", "Consult note")
    }

    /// 34117-2 History and physical note.
    pub fn history_and_physical() -> Self {
        Self::loinc("34117-2", "History and physical note")
    }

    /// 18842-5 Discharge summary.
    pub fn discharge_summary() -> Self {
        Self::loinc("18842-5", "Discharge summary")
    }

    /// 28570-0 Procedure note.
    pub fn procedure_note() -> Self {
        Self::loinc("28570-0", "Procedure note")
    }
}

impl Default for NoteType {
    fn default() -> Self {
        Self::progress_note()
    }
}

/// The integrator's choices for the mapping. The defaults follow US Core: a preliminary progress
/// note, a Composition, IMO codes under HL7's registered IMO system.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub(crate) doc_status: DocStatus,
    pub(crate) note_type: NoteType,
    pub(crate) composition: bool,
    pub(crate) imo_system: String,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            doc_status: DocStatus::Preliminary,
            note_type: NoteType::progress_note(),
            composition: true,
            imo_system: Self::IMO_SYSTEM.to_owned(),
        }
    }
}

impl Mapping {
    /// HL7's registered system for IMO codes.
    pub const IMO_SYSTEM: &str = "http://imohealth.com/ontology/";
    /// The OID system some EHRs use for IMO ProblemIT lexical codes.
    pub const IMO_PROBLEM_IT: &str = "urn:oid:2.16.840.1.113883.3.247.1.1";

    /// The document status (default [`DocStatus::Preliminary`]).
    #[must_use]
    pub fn doc_status(mut self, status: DocStatus) -> Self {
        self.doc_status = status;
        self
    }

    /// The note's LOINC type (default [`NoteType::progress_note`]).
    #[must_use]
    pub fn note_type(mut self, note_type: NoteType) -> Self {
        self.note_type = note_type;
        self
    }

    /// Whether to write a `Composition` beside the DocumentReference (default yes). Many EHRs
    /// take DocumentReference only (Oracle Health Millennium's R4 API documents no Composition
    /// write): turn it off for them.
    #[must_use]
    pub fn composition(mut self, write: bool) -> Self {
        self.composition = write;
        self
    }

    /// The code system of Suki's `IMO` codes (default [`Mapping::IMO_SYSTEM`]; your EHR may
    /// want [`Mapping::IMO_PROBLEM_IT`]).
    #[must_use]
    pub fn imo_system(mut self, system: impl Into<String>) -> Self {
        self.imo_system = system.into();
        self
    }
}
