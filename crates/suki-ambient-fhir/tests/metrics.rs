//! The write-back's metrics: parts of a session an EHR cannot take are counted by type and
//! reason (`suki_fhir_resources_skipped_total`), never with an id.
#![cfg(feature = "metrics")]

mod common;

use medplum_ehr::{Medplum, Options};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use suki_ambient_fhir::{BearerToken, WriteStrategy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn skipped_parts_are_counted_by_type_and_reason() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");
    let ehr = Medplum::start(
        Options::default()
            .transactions(false)
            .writable(&["DocumentReference"]),
    );
    let fhir = common::client(&ehr, WriteStrategy::Auto, BearerToken::new(ehr.token()));
    for session in ["s-m-1", "s-m-2"] {
        fhir.write(&common::typical_bundle(session))
            .await
            .expect("written");
    }
    let mut counted = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() != suki_ambient_fhir::metrics::FHIR_RESOURCES_SKIPPED {
            continue;
        }
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let DebugValue::Counter(n) = value else {
            panic!("a counter")
        };
        assert!(!labels.iter().any(|l| l.contains("s-m-")), "no ids");
        counted.insert(labels.join(","), n);
    }
    assert_eq!(
        counted.get("type=Condition,reason=not_supported"),
        Some(&8),
        "{counted:?}"
    );
    assert_eq!(
        counted.get("type=MedicationRequest,reason=not_supported"),
        Some(&4)
    );
    assert_eq!(
        counted.get("type=Composition,reason=not_supported"),
        Some(&2)
    );
}
