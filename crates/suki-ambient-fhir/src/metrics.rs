//! The write-back's metrics, through the [`metrics`](https://docs.rs/metrics) facade with the
//! `metrics` feature; without it these calls compile to nothing. Labels are fixed
//! vocabularies, never an id or a payload value.

/// Counter: resources of a session deliberately not written, by `type` (`Condition`…) and
/// `reason` (`not_supported`: the server declares no create of the type; `document_only`: the
/// strategy writes the note alone).
pub const FHIR_RESOURCES_SKIPPED: &str = "suki_fhir_resources_skipped_total";

#[inline]
pub(crate) fn skipped(kind: &'static str, reason: &'static str, count: usize) {
    #[cfg(feature = "metrics")]
    metrics::counter!(FHIR_RESOURCES_SKIPPED, "type" => kind, "reason" => reason)
        .increment(count as u64);
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, reason, count);
}

/// Counter: sessions that ended without a note, by `kind` (`failed`, `timed_out`,
/// `cancelled`): the visit needs documenting another way.
pub const FHIR_NO_NOTE: &str = "suki_fhir_sessions_without_note_total";

#[cfg(feature = "inbox")]
#[inline]
pub(crate) fn no_note(kind: suki_ambient_core::EventKind) {
    #[cfg(feature = "metrics")]
    metrics::counter!(FHIR_NO_NOTE, "kind" => match kind {
        suki_ambient_core::EventKind::Failed => "failed",
        suki_ambient_core::EventKind::TimedOut => "timed_out",
        suki_ambient_core::EventKind::Cancelled => "cancelled",
        _ => "other",
    })
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}
