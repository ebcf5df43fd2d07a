//! Write strategies against the Medplum stand-in made into different EHRs: one that takes
//! transactions, one that refuses them (creates only), one without conditional create; and SMART
//! Backend Services tokens, refreshed once when the EHR refuses an expired one.

mod common;

use medplum_ehr::{Fault, Medplum, Options};
use suki_ambient_fhir::{
    BearerToken, CreateMode, FhirAuth, FhirClient, FhirError, SkipReason, SmartBackendAuth,
    SmartKey, WriteStrategy,
};

fn client(ehr: &Medplum, strategy: WriteStrategy, auth: impl FhirAuth) -> FhirClient {
    common::client(ehr, strategy, auth)
}

fn bearer(ehr: &Medplum) -> BearerToken {
    BearerToken::new(ehr.token())
}

/// Every stored reference between the written resources names a resource the server has.
async fn provenance_targets_resolve(ehr: &Medplum) {
    let provenances = ehr.resources(Some("Provenance")).await;
    assert_eq!(provenances.len(), 1);
    let targets = provenances[0]["target"].as_array().expect("targets");
    assert_eq!(targets.len(), 8, "every other resource");
    for target in targets {
        let reference = target["reference"].as_str().expect("reference");
        let (kind, id) = reference.split_once('/').expect("Type/id");
        assert!(
            ehr.resources(Some(kind))
                .await
                .iter()
                .any(|r| r["id"] == id),
            "{reference} resolves"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn auto_writes_one_resource_at_a_time_where_transactions_are_refused() {
    let ehr = Medplum::start(Options::default().transactions(false));
    let fhir = client(&ehr, WriteStrategy::Auto, bearer(&ehr));
    let plan = fhir.plan().await.expect("plan");
    assert!(!plan.transaction, "{plan}");
    assert_eq!(plan.mode("DocumentReference"), CreateMode::Conditional);
    let first = fhir
        .write(&common::typical_bundle("s-each-1"))
        .await
        .expect("written");
    assert_eq!((first.created(), first.matched()), (9, 0));
    assert_eq!(
        first.entries[0].resource_type,
        Some("DocumentReference"),
        "the note first"
    );
    let again = fhir
        .write(&common::typical_bundle("s-each-1"))
        .await
        .expect("again");
    assert_eq!((again.created(), again.matched()), (0, 9));
    assert_eq!(ehr.resources(None).await.len(), 9);
    provenance_targets_resolve(&ehr).await;
    assert_eq!(
        ehr.requests("/fhir/metadata").await,
        1,
        "the statement is cached"
    );

    // A transaction asked for is refused, permanently.
    let err = client(&ehr, WriteStrategy::Transaction, bearer(&ehr))
        .write(&common::typical_bundle("s-each-2"))
        .await
        .expect_err("no transactions here");
    assert_eq!(err.code(), "fhir_400_not-supported");
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn a_write_that_failed_part_way_resumes_without_creating_anything_twice() {
    let ehr = Medplum::start(Options::default().transactions(false));
    let fhir = client(&ehr, WriteStrategy::PerResource, bearer(&ehr));
    // The note and the Composition are written, then the Conditions fail for longer than the
    // client's retries.
    ehr.inject(Fault::status(503).on("/fhir/Condition").times(100))
        .await;
    let err = fhir
        .write(&common::typical_bundle("s-resume"))
        .await
        .expect_err("503");
    assert!(err.is_retryable(), "{err}");
    // The note and the Composition at least; a MedicationRequest sent beside the Conditions may
    // have been created too (creates after the note go 4 at a time).
    assert!(ehr.resources(None).await.len() >= 2);
    assert!(ehr.resources(Some("Provenance")).await.is_empty());
    ehr.clear_faults().await;
    let resumed = fhir
        .write(&common::typical_bundle("s-resume"))
        .await
        .expect("resumed");
    assert_eq!(resumed.created() + resumed.matched(), 9, "nothing twice");
    assert!(
        resumed.matched() >= 2,
        "the note and the Composition matched"
    );
    assert_eq!(ehr.resources(None).await.len(), 9);
    provenance_targets_resolve(&ehr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn without_conditional_create_a_search_comes_first() {
    // A vendor-like server: every clinical search must name the patient.
    let ehr = Medplum::start(
        Options::default()
            .transactions(false)
            .conditional_create(false)
            .patient_searches(true),
    );
    let fhir = client(&ehr, WriteStrategy::Auto, bearer(&ehr));
    let plan = fhir.plan().await.expect("plan");
    assert_eq!(plan.mode("Condition"), CreateMode::SearchFirst, "{plan}");
    for _ in 0..2 {
        fhir.write(&common::typical_bundle("s-search"))
            .await
            .expect("written");
    }
    assert_eq!(ehr.resources(None).await.len(), 9, "nothing twice");
    provenance_targets_resolve(&ehr).await;

    // The note alone, for an EHR that takes DocumentReference only.
    let only = client(&ehr, WriteStrategy::DocumentReferenceOnly, bearer(&ehr))
        .write(&common::typical_bundle("s-doc-only"))
        .await
        .expect("written");
    assert_eq!(only.entries.len(), 1);
    assert_eq!(
        ehr.resources(Some("DocumentReference")).await.len(),
        2,
        "one note more"
    );
    assert_eq!(ehr.resources(None).await.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn smart_backend_tokens_are_cached_and_fetched_again_once_after_a_401() {
    for alg in ["RS384", "ES384"] {
        let pem = SmartKey::generate_pem(alg).expect("key");
        let key = SmartKey::from_pem(&pem, "sandbox-key").expect("key");
        let ehr = Medplum::start(Options::default().smart_client("suki-backend", &key.jwks()));
        // The scopes are derived from the plan.
        let auth = SmartBackendAuth::builder(ehr.base_url(), "suki-backend", key)
            .build()
            .expect("auth");
        let debug = format!("{auth:?}");
        assert!(
            !debug.contains("PRIVATE") && debug.contains("***"),
            "{debug}"
        );
        let fhir = client(&ehr, WriteStrategy::Auto, auth.clone());
        fhir.write(&common::typical_bundle("s-smart-1"))
            .await
            .expect("written");
        fhir.write(&common::typical_bundle("s-smart-2"))
            .await
            .expect("written");
        assert_eq!(ehr.tokens_issued().await, 1, "cached");
        // The EHR forgets the token mid-run: the next write gets a 401, a fresh token, and
        // goes through.
        ehr.expire_tokens().await;
        fhir.write(&common::typical_bundle("s-smart-3"))
            .await
            .expect("written after a refresh");
        assert_eq!(ehr.tokens_issued().await, 2);
        assert_eq!(auth.tokens_fetched(), 2);
        assert_eq!(ehr.resources(Some("DocumentReference")).await.len(), 3);
    }
}

/// A token endpoint on another origin than the FHIR server's is refused when the client asks
/// for the same origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn a_token_endpoint_elsewhere_is_refused_when_the_same_origin_is_required() {
    let ehr = Medplum::start(Options::default());
    // The same server on another origin than its token endpoint's is refused when asked.
    let strict = SmartBackendAuth::builder(
        ehr.base_url(),
        "suki-backend",
        SmartKey::from_pem(&SmartKey::generate_pem("ES384").expect("key"), "k2").expect("key"),
    )
    .token_endpoint("https://auth.example/token")
    .require_same_origin_token_endpoint(true)
    .build();
    assert!(
        matches!(strict, Err(suki_ambient_fhir::FhirError::Config(_))),
        "{strict:?}"
    );
}

/// The EHR's administrator granted the client the note's scopes only, while the plan writes
/// Conditions too: the write fails before anything is sent, naming the scope, and the plan
/// printed says which scopes it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn scopes_granted_narrower_than_the_plan_fail_naming_the_scope() {
    let key =
        SmartKey::from_pem(&SmartKey::generate_pem("ES384").expect("key"), "k1").expect("key");
    let ehr = Medplum::start(
        Options::default()
            .transactions(false)
            .smart_client("suki-backend", &key.jwks())
            .smart_grants("system/DocumentReference.c system/DocumentReference.rs"),
    );
    let auth = SmartBackendAuth::builder(ehr.base_url(), "suki-backend", key)
        .build()
        .expect("auth");
    let fhir = client(&ehr, WriteStrategy::Auto, auth.clone());
    let plan = fhir.plan().await.expect("plan");
    assert_eq!(
        auth.tokens_fetched(),
        0,
        "the statement is read without a token"
    );
    let printed = plan.to_string();
    assert!(
        printed.contains("system/Condition.c system/Condition.rs"),
        "{printed}"
    );
    let err = fhir
        .write(&common::typical_bundle("s-scopes"))
        .await
        .expect_err("a scope is missing");
    assert!(
        matches!(&err, FhirError::ScopeMissing { scope } if scope == "system/Composition.c"),
        "{err:?}"
    );
    assert_eq!(err.code(), "fhir_scope_missing");
    assert!(!err.is_retryable());
    assert!(ehr.resources(None).await.is_empty(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn a_key_the_ehr_does_not_know_is_refused_permanently() {
    let registered =
        SmartKey::from_pem(&SmartKey::generate_pem("ES384").expect("key"), "k1").expect("key");
    let other =
        SmartKey::from_pem(&SmartKey::generate_pem("ES384").expect("key"), "k1").expect("key");
    let ehr = Medplum::start(Options::default().smart_client("suki-backend", &registered.jwks()));
    let auth = SmartBackendAuth::builder(ehr.base_url(), "suki-backend", other)
        .build()
        .expect("auth");
    let err = client(&ehr, WriteStrategy::Transaction, auth)
        .write(&common::typical_bundle("s-smart-bad"))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, FhirError::Token { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "fhir_token_401_invalid_client");
    assert!(!err.is_retryable());
    assert!(ehr.resources(None).await.is_empty());
}

/// An EHR that takes the DocumentReference alone (as Oracle Health Millennium documents):
/// `auto` writes the note and leaves the rest out, saying so in its plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn auto_writes_only_what_the_server_can_create() {
    let ehr = Medplum::start(
        Options::default()
            .transactions(false)
            .writable(&["DocumentReference"]),
    );
    let fhir = client(&ehr, WriteStrategy::Auto, bearer(&ehr));
    let plan = fhir.plan().await.expect("plan");
    assert_eq!(plan.mode("DocumentReference"), CreateMode::Conditional);
    assert_eq!(plan.mode("Condition"), CreateMode::Skip);
    assert!(
        plan.to_string()
            .contains("Condition: not written (no create declared)"),
        "{plan}"
    );
    let written = fhir
        .write(&common::typical_bundle("s-doc-ehr"))
        .await
        .expect("written");
    assert_eq!(written.entries.len(), 1);
    assert_eq!(ehr.resources(None).await.len(), 1);
    // Per-resource asked for anyway: the server's refusal of a Composition is permanent.
    let err = client(&ehr, WriteStrategy::PerResource, bearer(&ehr))
        .write(&common::typical_bundle("s-doc-ehr-2"))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), "fhir_405_not-supported");
}

/// The EHR's capabilities change under a running client with a statement cached for an hour:
/// per-resource, then the note alone (maintenance), then per-resource again. The refused
/// Composition makes the client read the statement again within the same write; a plan that
/// leaves parts out is checked again after its recheck age; nothing is ever silently dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn capabilities_that_change_mid_run_are_read_again_and_skips_are_recorded() {
    let ehr = Medplum::start(Options::default().transactions(false));
    let fhir = FhirClient::builder(ehr.base_url())
        .auth(bearer(&ehr))
        .capabilities_recheck(std::time::Duration::from_millis(300))
        .build()
        .expect("client");
    let first = fhir
        .write(&common::typical_bundle("s-cap-1"))
        .await
        .expect("written");
    assert_eq!((first.created(), first.skipped.len()), (9, 0));

    // Maintenance: the note alone. The cached plan's Composition is refused (405): the
    // statement is read again and the write re-planned in the same call.
    ehr.set_writable(Some(&["DocumentReference"])).await;
    // (A statement read within the recheck age is not read again on a refusal.)
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let second = fhir
        .write(&common::typical_bundle("s-cap-2"))
        .await
        .expect("written after re-planning");
    assert_eq!(second.entries.len(), 1, "{second}");
    let skipped: Vec<(&str, usize, SkipReason)> = second
        .skipped
        .iter()
        .map(|s| (s.resource_type, s.count, s.reason))
        .collect();
    assert_eq!(
        skipped,
        vec![
            ("Composition", 1, SkipReason::NotSupported),
            ("Condition", 4, SkipReason::NotSupported),
            ("MedicationRequest", 2, SkipReason::NotSupported),
            ("Provenance", 1, SkipReason::NotSupported),
        ]
    );
    let outcome = second.to_string();
    assert!(
        outcome.contains("DocumentReference/")
            && outcome
                .contains("Condition x4 skipped: server does not support create of Condition"),
        "{outcome}"
    );
    assert_eq!(ehr.requests("/fhir/metadata").await, 2);

    // Back to per-resource: past the recheck age, a plan that skips is made again.
    ehr.set_writable(None).await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let third = fhir
        .write(&common::typical_bundle("s-cap-3"))
        .await
        .expect("written");
    assert_eq!((third.created(), third.skipped.len()), (9, 0), "{third}");
    assert_eq!(ehr.requests("/fhir/metadata").await, 3);
}

/// A server that lists transactions but declares no conditional create, and whose answers are
/// lost after it wrote: `auto` does not rely on `ifNoneExist` (it writes one resource at a
/// time, searching first), and never sends a create again without searching: one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn without_conditional_create_lost_answers_leave_one_copy() {
    let ehr = Medplum::start(Options::default().conditional_create(false));
    let fhir = client(&ehr, WriteStrategy::Auto, bearer(&ehr));
    let plan = fhir.plan().await.expect("plan");
    assert!(!plan.transaction, "{plan}");
    assert_eq!(plan.mode("DocumentReference"), CreateMode::SearchFirst);
    ehr.inject(Fault::lose_answer().on("/fhir/DocumentReference").times(1))
        .await;
    ehr.inject(Fault::lose_answer().on("/fhir/Condition").times(2))
        .await;
    let mut failures = 0;
    let written = loop {
        match fhir.write(&common::typical_bundle("s-lost")).await {
            Ok(written) => break written,
            Err(err) => {
                assert!(err.is_retryable(), "{err:?}");
                failures += 1;
                assert!(failures < 5, "written within a few attempts");
            }
        }
    };
    assert!(failures >= 1);
    assert_eq!(written.entries.len(), 9);
    assert_eq!(ehr.resources(None).await.len(), 9, "one copy of each");
    provenance_targets_resolve(&ehr).await;
}

/// `FhirClient::check`, the onboarding probe, tells the servers apart: a conditional-create
/// server that inlines notes, one that ignores `If-None-Exist`, one that keeps notes in a
/// Binary and requires the patient in searches. The probe is entered-in-error and labelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn the_onboarding_probe_reports_what_the_server_does() {
    let patient = suki_ambient_fhir::Reference::parse("Patient/test-1").expect("patient");
    for (options, honours, content) in [
        (Options::default(), true, "inline"),
        (
            Options::default().conditional_create(false),
            false,
            "inline",
        ),
        (
            Options::default()
                .externalize_notes(true)
                .patient_searches(true),
            true,
            "binary",
        ),
    ] {
        let ehr = Medplum::start(options);
        let report = client(&ehr, WriteStrategy::Auto, bearer(&ehr))
            .check(&patient)
            .await
            .expect("checked");
        assert!(report.returns_location, "{report}");
        assert_eq!(report.honours_if_none_exist, honours, "{report}");
        assert!(report.keeps_identifiers, "{report}");
        assert_eq!(report.content, content, "{report}");
        let probes = ehr.resources(Some("DocumentReference")).await;
        assert_eq!(probes.len(), if honours { 1 } else { 2 });
        for probe in probes {
            assert_eq!(probe["status"], "entered-in-error");
            assert_eq!(
                probe["identifier"][0]["system"],
                suki_ambient_fhir::PROBE_SYSTEM
            );
            assert_eq!(probe["subject"]["reference"], "Patient/test-1");
        }
    }
}
