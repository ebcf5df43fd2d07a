//! `MapError`: why a session's results could not be mapped. Messages name no PHI.

/// Why a session's results could not become a Bundle (or a reference could not be read).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// A reference given by the integrator is not a FHIR reference.
    #[error("not a FHIR reference: {0}")]
    Reference(&'static str),
    /// The note has no section with text: there is no document to write.
    #[error("the session's note has no section with text")]
    EmptyNote,
    /// A code system given by the integrator is not an absolute URI.
    #[error("the IMO code system is not an absolute URI")]
    CodeSystem,
}
