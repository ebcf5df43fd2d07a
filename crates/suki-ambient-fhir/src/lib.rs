//! FHIR R4 write-back of a completed Suki Ambient session: the last mile from Suki's note into
//! the EHR.
//!
//! [`transaction`] maps a session's note ([`NoteContent`]: summary sections with their LOINC
//! codes) and structured data ([`StructuredData`]: diagnoses, medication orders), with the
//! [`EhrContext`] only the integrator knows (the Patient, the Encounter, the Practitioner), to one
//! FHIR R4 **transaction Bundle** ([`TransactionBundle`]):
//!
//! - a `DocumentReference` for the note (UTF-8 text, `docStatus` preliminary until the clinician
//!   signs, a LOINC clinical-note type, `relatesTo` when it replaces an earlier session's note);
//! - a `Composition` with one section per summary section (LOINC code, title, escaped XHTML);
//! - a `Condition` per diagnosis (ICD-10-CM, SNOMED CT and IMO codings; provisional;
//!   encounter-diagnosis) and a draft `MedicationRequest` per medication order (RxNorm);
//! - a `Provenance` naming Suki Ambient as the author of all of them.
//!
//! Every entry carries a deterministic identifier (system `urn:suki:session`, value built from
//! the session id and the part) and `request.ifNoneExist` on it, so that posting the same session
//! twice creates nothing new. The mapping, element by element, is in `docs/fhir.md`.
//!
//! Note text, codes and descriptions are protected health information: no error and no `Debug`
//! output of this crate shows them (sizes and counts only).
//!
//! # Example
//!
//! ```
//! use suki_ambient_core::api::NoteContent;
//! use suki_ambient_core::{SessionId, UnixMillis};
//! use suki_ambient_fhir::{EhrContext, Mapping, Reference, SessionNote, transaction};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let content: NoteContent = serde_json::from_str(
//!     r#"{"summary": [{"title": "ASSESSMENT AND PLAN", "content": "Asthma exacerbation",
//!          "loinc_code": "18776-5"}]}"#,
//! )?;
//! let session = SessionId::from("a953839a-ddcd-407d-b9b0-3ed4b6be4be2");
//! let note = SessionNote::new(&session, &content, UnixMillis(1_700_000_000_000));
//! let ehr = EhrContext::new(Reference::parse("Patient/123")?)
//!     .encounter(Reference::parse("Encounter/456")?);
//! let bundle = transaction(&note, &ehr, &Mapping::default())?;
//! assert_eq!(bundle.len(), 3); // DocumentReference, Composition, Provenance
//! let json = bundle.to_json();
//! # assert!(!json.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! [`NoteContent`]: suki_ambient_core::api::NoteContent
//! [`StructuredData`]: suki_ambient_core::api::StructuredData

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod capabilities;
mod client;
mod context;
mod correct;
mod error;
mod map;
pub mod metrics;
mod probe;
mod resources;
mod smart;
mod text;
mod write;
#[cfg(feature = "inbox")]
mod writeback;

pub use capabilities::{Capabilities, CreateMode, OnConflict, ResourceCapability, WriteStrategy};
pub use client::{
    BearerToken, EntryResult, FhirAuth, FhirClient, FhirClientBuilder, SkipReason, Skipped,
    TransactionResult,
};
pub use context::{DocStatus, EhrContext, Mapping, NoteType, Reference, SessionNote};
pub use error::{FhirError, MapError};
pub use map::{EntrySummary, TransactionBundle, transaction};
pub use probe::{Onboarding, PROBE_SYSTEM};
pub use smart::{SmartBackendAuth, SmartBackendAuthBuilder, SmartKey};
pub use write::WritePlan;
#[cfg(feature = "inbox")]
pub use writeback::{EhrResolver, FhirWriteBack, NoNote, SessionRef};

/// The identifier system of every resource this crate writes: values are
/// `<session id>/<part>` (`…/note`, `…/composition`, `…/condition/1`, `…/medication/1`,
/// `…/provenance`).
pub const IDENTIFIER_SYSTEM: &str = "urn:suki:session";
