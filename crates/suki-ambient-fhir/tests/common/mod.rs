//! What the FHIR tests share: the typical session of `testdata/fhir/` as a Bundle.

use suki_ambient_core::api::{NoteContent, StructuredData};
use suki_ambient_core::{SessionId, UnixMillis};
use suki_ambient_fhir::{
    EhrContext, Mapping, Reference, SessionNote, TransactionBundle, transaction,
};

/// The typical 16 KiB session (four diagnoses, two orders: nine entries) as session `session`'s
/// Bundle, for `Patient/p-1` at `Encounter/e-1`.
#[allow(
    dead_code,
    reason = "each test binary uses what it needs of the shared module"
)]
pub(crate) fn typical_bundle(session: &str) -> TransactionBundle {
    let content: NoteContent = serde_json::from_str(include_str!(
        "../../../../testdata/fhir/session-content-typical.json"
    ))
    .expect("content");
    let structured: StructuredData = serde_json::from_str(include_str!(
        "../../../../testdata/fhir/session-structured-data-typical.json"
    ))
    .expect("structured data");
    let session = SessionId::from(session);
    let note = SessionNote::new(&session, &content, UnixMillis(1_764_460_800_000))
        .structured_data(&structured);
    let ehr = EhrContext::new(Reference::parse("Patient/p-1").expect("patient"))
        .encounter(Reference::parse("Encounter/e-1").expect("encounter"));
    transaction(&note, &ehr, &Mapping::default()).expect("maps")
}

/// A FHIR client of the test EHR (Medplum's stand-in) with `strategy` and `auth`, two quick
/// attempts.
#[allow(
    dead_code,
    reason = "each test binary uses what it needs of the shared module"
)]
pub(crate) fn client(
    ehr: &medplum_ehr::Medplum,
    strategy: suki_ambient_fhir::WriteStrategy,
    auth: impl suki_ambient_fhir::FhirAuth,
) -> suki_ambient_fhir::FhirClient {
    suki_ambient_fhir::FhirClient::builder(ehr.base_url())
        .auth(auth)
        .strategy(strategy)
        .retry(
            suki_ambient_client::RetryPolicy::default()
                .max_attempts(2)
                .base_delay(std::time::Duration::from_millis(5)),
        )
        .build()
        .expect("client")
}
