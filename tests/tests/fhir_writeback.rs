//! From webhook to EHR: the sandbox delivers a completed session to a receiver with the inbox;
//! the worker fetches the note and writes it to the sandbox's FHIR server with `FhirWriteBack`.
//! A 503 from the FHIR server retries the row, which completes later; running the row again
//! creates nothing new; a permanent refusal is a dead letter with its code.

use std::time::Duration;

use medplum_ehr::{Medplum, Options};
use suki_ambient::HandlerError;
use suki_ambient::client::{AmbientClient, RetryPolicy};
use suki_ambient::fhir::{
    BearerToken, EhrContext, FhirClient, FhirWriteBack, NoNote, Reference, SessionRef,
};
use suki_ambient::inbox::{FetchResults, Inbox, InboxWorker, State};
use suki_ambient::sandbox::{Fault, Sandbox};

/// The integrator's lookup: here every session belongs to one patient, at its encounter.
async fn resolve(session: SessionRef) -> Result<EhrContext, HandlerError> {
    let encounter: String = session
        .encounter_id
        .as_str()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    Ok(EhrContext::new(Reference::parse("Patient/p-1")?)
        .encounter(Reference::parse(&format!("Encounter/{encounter}"))?))
}

/// A receiver with a SQLite inbox for `sandbox`'s webhooks, Suki's client (with `retry`) and
/// the EHR's (the sandbox's FHIR server, its fixed token).
struct Rig {
    _dir: tempfile::TempDir,
    sandbox: suki_ambient::sandbox::SandboxHandle,
    inbox: Inbox,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    suki: AmbientClient,
    ehr: FhirClient,
}

impl Rig {
    async fn new(sandbox: suki_ambient::sandbox::SandboxHandle, retry: RetryPolicy) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        // Sealed, as in production: what a failed attempt fetched is kept for the next one
        // (an inbox without keys keeps nothing in clear).
        let inbox = Inbox::connect(&format!("sqlite://{}", dir.path().join("i.db").display()))
            .await
            .expect("inbox")
            .with_keys(
                suki_ambient::inbox::Keys::new([suki_ambient::inbox::BodyKey::new([5; 32])])
                    .expect("keys"),
            );
        let server = integration_tests::serve_inbox(&sandbox, &inbox).await;
        let suki = AmbientClient::builder()
            .base_url(sandbox.base_url())
            .token(sandbox.issue_token(None))
            .retry(retry)
            .build()
            .expect("suki client");
        let ehr = FhirClient::builder(sandbox.fhir_base_url())
            .auth(BearerToken::new(sandbox.fhir_token()))
            .build()
            .expect("fhir client");
        Self {
            _dir: dir,
            sandbox,
            inbox,
            server,
            suki,
            ehr,
        }
    }

    /// A worker writing with `FhirWriteBack` and the test's resolver.
    fn worker(&self) -> InboxWorker {
        InboxWorker::builder(
            self.inbox.clone(),
            FetchResults::new(
                self.suki.clone(),
                FhirWriteBack::new(self.ehr.clone(), resolve),
            ),
        )
        .backoff(Duration::from_millis(1), Duration::from_millis(10))
        .build()
    }

    async fn stop(self) {
        self.server.abort();
        self.sandbox.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_session_reaches_the_ehr_once_through_a_503() {
    let dir = tempfile::tempdir().expect("dir");
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let inbox = Inbox::connect(&format!("sqlite://{}", dir.path().join("i.db").display()))
        .await
        .expect("inbox");
    let server = integration_tests::serve_inbox(&sandbox, &inbox).await;

    let session = sandbox.create_session(None);
    let delivery = sandbox
        .complete(&session.session_id)
        .await
        .expect("deliver");
    assert_eq!(delivery.status, 200);

    let suki = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .build()
        .expect("suki client");
    let ehr = FhirClient::builder(sandbox.fhir_base_url())
        .auth(BearerToken::new(sandbox.fhir_token()))
        .retry(
            RetryPolicy::default()
                .max_attempts(2)
                .base_delay(Duration::from_millis(1)),
        )
        .build()
        .expect("fhir client");
    // `drain` takes the worker: one per run, the same handler.
    let worker = || {
        InboxWorker::builder(
            inbox.clone(),
            FetchResults::new(suki.clone(), FhirWriteBack::new(ehr.clone(), resolve)),
        )
        .backoff(Duration::from_millis(1), Duration::from_millis(10))
        .build()
    };

    // The EHR answers 503 to two writes (its statement read before): the FHIR client does not
    // retry them within the call (its retry budget), and the row waits for the EHR twice,
    // spending no attempt.
    ehr.plan().await.expect("the statement");
    sandbox.inject(Fault::status(503).on("/fhir").times(2));
    let attempts = worker()
        .drain(Duration::from_secs(20))
        .await
        .expect("drain");
    assert_eq!(attempts, 3, "two waits for the EHR, then written");
    let rows = inbox.list(Some(State::Done), 10).await.expect("list");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].attempts, 1, "the outage spent no attempt");
    assert_eq!(rows[0].last_error, None, "done: no stale error");
    let trace = inbox
        .trace(session.session_id.as_str())
        .await
        .expect("trace");
    let error = trace
        .events
        .iter()
        .find_map(|e| e.code.clone())
        .expect("the 503 is kept in the timeline");
    assert!(error.starts_with("fhir_503"), "{error}");
    let notes = sandbox.fhir_resources(Some("DocumentReference"));
    assert_eq!(notes.len(), 1);
    assert_eq!(
        notes[0]["identifier"][0]["value"],
        format!("{}/note", session.session_id)
    );
    let written = sandbox.fhir_resources(None).len();

    // The same row again (an operator's replay): nothing new in the EHR.
    let posts = sandbox.requests("/fhir");
    integration_tests::replay_all(&inbox).await;
    worker()
        .drain(Duration::from_secs(20))
        .await
        .expect("drain");
    assert_eq!(sandbox.fhir_resources(None).len(), written);
    assert!(sandbox.requests("/fhir") > posts, "written again");

    // A refusal the EHR will repeat: a dead letter with its code, nothing written. (`auto`
    // writes a refused transaction's resources one at a time: the note's create is refused
    // too.)
    let refused = sandbox.create_session(None);
    sandbox
        .complete(&refused.session_id)
        .await
        .expect("deliver");
    sandbox.inject(Fault::status(422).on("/fhir").times(2));
    worker()
        .drain(Duration::from_secs(20))
        .await
        .expect("drain");
    let dead = inbox.list(Some(State::Dead), 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("fhir_422_unknown"));
    assert_eq!(sandbox.fhir_resources(Some("DocumentReference")).len(), 1);

    server.abort();
    sandbox.shutdown().await;
}

/// Structured data is part of the note: a 503 burst on it (past the client's own retries)
/// retries the row instead of writing the note without its diagnoses; the note fetched on the
/// first attempt is kept, not fetched again; the row ends done with every Condition in the EHR
/// and its outcome (each resource's EHR id) in the timeline. A session whose structured data
/// is gone (404) is written without it, and the outcome says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_data_that_fails_retries_the_row_and_the_outcome_names_the_ehr_ids() {
    let rig = Rig::new(
        Sandbox::builder().start().await.expect("sandbox"),
        RetryPolicy::none(),
    )
    .await;
    let (sandbox, inbox) = (&rig.sandbox, &rig.inbox);
    let worker = || rig.worker();

    let session = sandbox.create_session(None);
    let id = session.session_id.as_str().to_owned();
    sandbox
        .complete(&session.session_id)
        .await
        .expect("deliver");
    sandbox.inject(
        Fault::status(503)
            .on(format!("/api/v1/ambient/session/{id}/structured-data"))
            .times(1),
    );
    let attempts = worker()
        .drain(Duration::from_secs(20))
        .await
        .expect("drain");
    assert_eq!(attempts, 2, "the 503, then written");
    let trace = inbox.trace(&id).await.expect("trace");
    let codes: Vec<&str> = trace
        .events
        .iter()
        .filter_map(|e| e.code.as_deref())
        .collect();
    assert!(
        codes
            .iter()
            .any(|c| c.starts_with("fetch_structured_data_503")),
        "{codes:?}"
    );
    assert_eq!(
        sandbox.requests(&format!("/api/v1/ambient/session/{id}/content")),
        1,
        "the note fetched on the first attempt is kept"
    );
    let conditions = sandbox.fhir_resources(Some("Condition"));
    assert!(!conditions.is_empty(), "the diagnoses are in the EHR");
    let done = trace
        .events
        .iter()
        .find(|e| e.event == "done")
        .and_then(|e| e.detail.clone())
        .expect("the outcome is in the timeline");
    let note_id = sandbox.fhir_resources(Some("DocumentReference"))[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let condition_id = conditions[0]["id"].as_str().expect("id").to_owned();
    assert!(
        done.contains(&format!("DocumentReference/{note_id} created"))
            && done.contains(&format!("Condition/{condition_id} created")),
        "{done}"
    );
    // As `inbox trace` and the console show it: whole, not cut at 128 characters.
    let shown: Vec<String> =
        suki_ambient::inbox::display::timeline(&trace, suki_ambient::UnixMillis::now())
            .into_iter()
            .map(|line| line.what)
            .collect();
    assert!(
        shown.iter().any(
            |line| line.contains(&format!("Condition/{condition_id} created"))
                && line.contains("Provenance/")
        ),
        "{shown:?}"
    );

    // Gone for good: the note alone, said in the outcome.
    let gone = sandbox.create_session(None);
    let gone_id = gone.session_id.as_str().to_owned();
    sandbox.complete(&gone.session_id).await.expect("deliver");
    sandbox.inject(
        Fault::status(404)
            .on(format!("/api/v1/ambient/session/{gone_id}/structured-data"))
            .times(1),
    );
    worker()
        .drain(Duration::from_secs(20))
        .await
        .expect("drain");
    let trace = inbox.trace(&gone_id).await.expect("trace");
    let done = trace
        .events
        .iter()
        .find(|e| e.event == "done")
        .and_then(|e| e.detail.clone())
        .expect("done");
    assert!(done.contains("structured data absent (404)"), "{done}");
    rig.stop().await;
}

/// A lost webhook recovered by the reconciler is placed like a delivered one: the partner's
/// context registered with the expected session (sealed under the inbox's keys) comes back in
/// the recovered event's `additional_info`, and the resolver finds the chart in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_session_is_placed_with_its_registered_context() {
    use suki_ambient::inbox::{BodyKey, ExpectedSession, Keys, Permanent, Reconciler};
    use suki_ambient::sandbox::WebhookFault;

    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("i.db");
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let inbox = Inbox::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("inbox")
        .with_keys(Keys::new([BodyKey::new([7; 32])]).expect("keys"));
    let suki = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .build()
        .expect("suki client");
    let session = sandbox.create_session(None);
    sandbox.set_webhook_url(Some("http://127.0.0.1:9/unused".into()));
    sandbox.inject_webhook(WebhookFault::lose());
    sandbox
        .complete(&session.session_id)
        .await
        .expect("complete");
    let marker = "Patient/ctx-marker-2f9c";
    let mut info = serde_json::Map::new();
    info.insert("ehr_patient".into(), marker.into());
    let reconciler = Reconciler::builder(suki.clone(), inbox.clone())
        .grace(Duration::ZERO)
        .build();
    reconciler
        .register(
            ExpectedSession::ambient(
                session.session_id.clone(),
                session.encounter_id.clone(),
                suki_ambient::UnixMillis::now(),
            )
            .additional_info(info),
        )
        .await
        .expect("register");
    let report = reconciler.check_due().await.expect("check");
    assert_eq!(report.recovered, 1);

    let ehr = FhirClient::builder(sandbox.fhir_base_url())
        .auth(BearerToken::new(sandbox.fhir_token()))
        .build()
        .expect("fhir client");
    // The partner's resolver: the chart comes from additional_info, as for a delivered event.
    let placed = |session: SessionRef| async move {
        let patient = session
            .info("ehr_patient")
            .ok_or(Permanent("no_ehr_patient"))?;
        Ok::<_, HandlerError>(EhrContext::new(Reference::parse(patient)?))
    };
    InboxWorker::builder(
        inbox.clone(),
        FetchResults::new(suki, FhirWriteBack::new(ehr, placed)),
    )
    .build()
    .drain(Duration::from_secs(20))
    .await
    .expect("drain");
    let done = inbox.list(Some(State::Done), 10).await.expect("list");
    assert_eq!(done.len(), 1, "placed, not a dead letter no_ehr_patient");
    let notes = sandbox.fhir_resources(Some("DocumentReference"));
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["subject"]["reference"], marker);
    // Sealed at rest: the context is nowhere in the database in clear.
    drop(inbox);
    let mut bytes = std::fs::read(&db).expect("db");
    if let Ok(wal) = std::fs::read(dir.path().join("i.db-wal")) {
        bytes.extend(wal);
    }
    assert!(
        !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "the registered context is stored sealed"
    );
    sandbox.shutdown().await;
}

/// A visit recorded in two sessions of one encounter: the second session's note is the
/// encounter-level content (both sessions'), which supersedes the first session's note; the
/// chart ends with one current note holding both halves and the diagnoses of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_of_one_encounter_leave_one_current_note_with_both() {
    let rig = Rig::new(
        Sandbox::builder().start().await.expect("sandbox"),
        RetryPolicy::default(),
    )
    .await;
    let (sandbox, inbox, suki) = (&rig.sandbox, &rig.inbox, &rig.suki);
    let worker = || rig.worker();
    let first = sandbox.create_session(None);
    sandbox.complete(&first.session_id).await.expect("deliver");
    worker()
        .drain(Duration::from_secs(20))
        .await
        .expect("drain");
    let second = sandbox.create_session(Some(&first.encounter_id));
    sandbox.complete(&second.session_id).await.expect("deliver");
    worker()
        .drain(Duration::from_secs(20))
        .await
        .expect("drain");
    assert_eq!(
        inbox.list(Some(State::Done), 10).await.expect("list").len(),
        2
    );

    let retired = |r: &serde_json::Value| {
        matches!(
            r["status"].as_str(),
            Some("superseded" | "entered-in-error")
        ) || r["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    };
    let notes: Vec<serde_json::Value> = sandbox
        .fhir_resources(Some("DocumentReference"))
        .into_iter()
        .filter(|r| !retired(r))
        .collect();
    assert_eq!(notes.len(), 1, "one current note");
    assert_eq!(
        notes[0]["identifier"][0]["value"],
        format!("{}/note", second.session_id)
    );
    let text = {
        use base64::Engine as _;
        let data = notes[0]["content"][0]["attachment"]["data"]
            .as_str()
            .expect("data");
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .expect("base64"),
        )
        .expect("utf-8")
    };
    let mut diagnoses = 0;
    for session in [&first.session_id, &second.session_id] {
        let own = suki.session_content(session, false).await.expect("content");
        let section = own
            .summary
            .iter()
            .find_map(|s| s.content.clone())
            .expect("a section with text");
        let line = section.lines().next().expect("a line").trim().to_owned();
        assert!(
            text.contains(&line),
            "the current note holds {session}'s note"
        );
        diagnoses += suki
            .session_structured_data(session)
            .await
            .expect("structured")
            .structured_data
            .diagnoses
            .map_or(0, |d| d.values.len());
    }
    let conditions = sandbox
        .fhir_resources(Some("Condition"))
        .into_iter()
        .filter(|r| !retired(r))
        .count();
    assert_eq!(
        conditions, diagnoses,
        "the diagnoses of both sessions, once"
    );
    rig.stop().await;
}

/// Sessions without a note are not silent: with `NoNote::Task` a failed session leaves a
/// requested Task in the chart, and a cancelled one with `NoNote::Communication` a
/// Communication; each once, on an EHR that takes no transactions (the Medplum stand-in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn a_session_without_a_note_leaves_a_task_or_a_communication() {
    for (no_note, kind) in [
        (NoNote::Task, "Task"),
        (NoNote::Communication, "Communication"),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let medplum = Medplum::start(Options::default().transactions(false));
        let sandbox = Sandbox::builder().start().await.expect("sandbox");
        let inbox = Inbox::connect(&format!("sqlite://{}", dir.path().join("i.db").display()))
            .await
            .expect("inbox");
        let server = integration_tests::serve_inbox(&sandbox, &inbox).await;
        let session = sandbox.create_session(None);
        if kind == "Task" {
            sandbox.fail(&session.session_id).await.expect("deliver");
        } else {
            sandbox.cancel(&session.session_id).await.expect("deliver");
        }
        let suki = AmbientClient::builder()
            .base_url(sandbox.base_url())
            .token(sandbox.issue_token(None))
            .build()
            .expect("suki client");
        let ehr = FhirClient::builder(medplum.base_url())
            .auth(BearerToken::new(medplum.token()))
            .build()
            .expect("fhir client");
        let worker = || {
            InboxWorker::builder(
                inbox.clone(),
                FetchResults::new(
                    suki.clone(),
                    FhirWriteBack::new(ehr.clone(), resolve).on_no_note(no_note),
                ),
            )
            .build()
        };
        worker()
            .drain(Duration::from_secs(20))
            .await
            .expect("drain");
        // The same row again (an operator's replay): nothing new in the chart.
        integration_tests::replay_all(&inbox).await;
        worker()
            .drain(Duration::from_secs(20))
            .await
            .expect("drain");
        let rows = inbox.list(Some(State::Done), 10).await.expect("list");
        assert_eq!(rows.len(), 1, "{kind}");
        assert_eq!(
            medplum.requests(&format!("/fhir/{kind}")).await,
            3,
            "two creates (the second matched the first) and the read that checks its chart"
        );
        let written = medplum.resources(Some(kind)).await;
        assert_eq!(written.len(), 1, "{kind} once");
        let patient = if kind == "Task" { "for" } else { "subject" };
        assert_eq!(written[0][patient]["reference"], "Patient/p-1");
        assert_eq!(
            written[0]["identifier"][0]["value"],
            format!("{}/no-note", session.session_id)
        );
        assert!(
            medplum
                .resources(Some("DocumentReference"))
                .await
                .is_empty()
        );
        server.abort();
        sandbox.shutdown().await;
    }
}

/// `NoNote::Task` on an EHR that takes no Task: a WARN, the skip counted, and the row's outcome
/// saying so (Suki's code, and why nothing was written); not a loop, not a dead letter that
/// retrying would never clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn a_no_note_resource_the_ehr_cannot_take_is_recorded_not_looped() {
    let dir = tempfile::tempdir().expect("dir");
    let medplum = Medplum::start(
        Options::default()
            .transactions(false)
            .writable(&["DocumentReference"]),
    );
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let inbox = Inbox::connect(&format!("sqlite://{}", dir.path().join("i.db").display()))
        .await
        .expect("inbox");
    let server = integration_tests::serve_inbox(&sandbox, &inbox).await;
    let session = sandbox.create_session(None);
    sandbox.fail(&session.session_id).await.expect("deliver");
    let suki = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .build()
        .expect("suki client");
    let ehr = FhirClient::builder(medplum.base_url())
        .auth(BearerToken::new(medplum.token()))
        .build()
        .expect("fhir client");
    InboxWorker::builder(
        inbox.clone(),
        FetchResults::new(
            suki,
            FhirWriteBack::new(ehr, resolve).on_no_note(NoNote::Task),
        ),
    )
    .build()
    .drain(Duration::from_secs(20))
    .await
    .expect("drain");
    let done = inbox.list(Some(State::Done), 10).await.expect("list");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].attempts, 1, "not a loop");
    let trace = inbox
        .trace(session.session_id.as_str())
        .await
        .expect("trace");
    let outcome = trace
        .events
        .iter()
        .find(|e| e.event == "done")
        .and_then(|e| e.detail.clone())
        .expect("the outcome");
    assert!(
        outcome.contains("Task x1 skipped: server does not support create of Task")
            && outcome.contains("no note: failed (ERROR_CODE_TRANSCRIPTION)"),
        "{outcome}"
    );
    assert!(medplum.resources(None).await.is_empty());
    server.abort();
    sandbox.shutdown().await;
}

/// Issue 39's "done when", as a test: a Postgres fleet (two workers and a reconciler on one
/// inbox) writing to a SMART-protected EHR without transactions (the Medplum stand-in, kept to
/// a dozen sessions: its conditional create scans linearly), with Suki 503 bursts, EHR 503
/// bursts, a third of the webhooks lost (the partner registered every session with its
/// context), and the EHR's tokens revoked all along. Every note lands once, with its
/// diagnoses, in its own chart (recovered ones too), and `inbox trace` names each session's EHR
/// ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Postgres (SUKI_POSTGRES_URL) and Node.js with tests/medplum's packages; bash .ci/run has both"]
async fn a_postgres_fleet_through_outages_places_every_note_once_with_its_diagnoses() {
    use suki_ambient::fhir::{SmartBackendAuth, SmartKey};
    use suki_ambient::inbox::{ExpectedSession, Permanent, Reconciler, ops::Source};
    use suki_ambient::sandbox::WebhookFault;

    const SESSIONS: usize = 12;
    let url = std::env::var("SUKI_POSTGRES_URL").expect("SUKI_POSTGRES_URL (bash .ci/run)");
    let schema = format!("suki_done_{:08x}", fastrand::u32(..));
    let inbox = Inbox::builder(url.as_str())
        .schema(schema.as_str())
        .connect()
        .await
        .expect("inbox");
    let key =
        SmartKey::from_pem(&SmartKey::generate_pem("ES384").expect("key"), "k1").expect("key");
    let medplum = std::sync::Arc::new(Medplum::start(
        Options::default()
            .transactions(false)
            .smart_client("fleet", &key.jwks()),
    ));
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let server = integration_tests::serve_inbox(&sandbox, &inbox).await;
    let suki = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .retry(
            RetryPolicy::default()
                .max_attempts(3)
                .base_delay(Duration::from_millis(2)),
        )
        .build()
        .expect("suki client");
    let auth = SmartBackendAuth::builder(medplum.base_url(), "fleet", key)
        .build()
        .expect("auth");
    let ehr = FhirClient::builder(medplum.base_url())
        .auth(auth)
        .retry(
            RetryPolicy::default()
                .max_attempts(2)
                .base_delay(Duration::from_millis(2)),
        )
        .build()
        .expect("fhir client");
    let place = |session: SessionRef| async move {
        let patient = session
            .info("ehr_patient")
            .ok_or(Permanent("no_ehr_patient"))?;
        let encounter = session
            .info("ehr_encounter")
            .ok_or(Permanent("no_ehr_patient"))?;
        Ok::<_, HandlerError>(
            EhrContext::new(Reference::parse(patient)?).encounter(Reference::parse(encounter)?),
        )
    };

    // Sessions end; a third of their webhooks are lost; the partner registered each one.
    let reconciler = Reconciler::builder(suki.clone(), inbox.clone())
        .grace(Duration::ZERO)
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .build();
    let mut sessions = Vec::new();
    for n in 0..SESSIONS {
        let session = sandbox.create_session(None);
        let mut info = serde_json::Map::new();
        info.insert("ehr_patient".into(), format!("Patient/p-{n}").into());
        info.insert("ehr_encounter".into(), format!("Encounter/e-{n}").into());
        assert!(sandbox.set_additional_info(&session.session_id, info.clone()));
        if n % 3 == 0 {
            sandbox.inject_webhook(WebhookFault::lose().session(&session.session_id));
        }
        reconciler
            .register(
                ExpectedSession::ambient(
                    session.session_id.clone(),
                    session.encounter_id.clone(),
                    suki_ambient::UnixMillis::now(),
                )
                .additional_info(info),
            )
            .await
            .expect("register");
        sandbox
            .complete(&session.session_id)
            .await
            .expect("complete");
        sessions.push((n, session));
    }

    // Outages while the fleet works: Suki and the EHR answer 503 in bursts, tokens are
    // revoked every 50 ms.
    sandbox.inject(
        Fault::status(503)
            .on("/api/v1/ambient/session/")
            .share(0.15),
    );
    // (The EHR's writes: a failed read of its CapabilityStatement is remembered for 30 s, by
    // design, which would only slow this test down.)
    medplum
        .inject(
            medplum_ehr::Fault::status(503)
                .on("/fhir/")
                .method("POST")
                .share(0.1),
        )
        .await;
    let revoking = {
        let medplum = std::sync::Arc::clone(&medplum);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                medplum.expire_tokens().await;
            }
        })
    };
    let worker = |owner: &str| {
        InboxWorker::builder(
            inbox.clone(),
            FetchResults::new(suki.clone(), FhirWriteBack::new(ehr.clone(), place)),
        )
        .owner(owner)
        .backoff(Duration::from_millis(2), Duration::from_millis(50))
        .build()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        reconciler.check_due().await.expect("check");
        let (a, b) = tokio::join!(
            worker("fleet-1").drain(Duration::from_secs(5)),
            worker("fleet-2").drain(Duration::from_secs(5))
        );
        a.expect("drain");
        b.expect("drain");
        let counts = inbox.status().await.expect("status").counts;
        if counts.done as usize == SESSIONS {
            break;
        }
        if counts.dead > 0 {
            let dead = inbox.list(Some(State::Dead), 10).await.expect("list");
            let codes: Vec<Option<String>> = dead.into_iter().map(|d| d.last_error).collect();
            panic!("no dead letter: {codes:?}");
        }
        assert!(tokio::time::Instant::now() < deadline, "{counts:?}");
    }
    revoking.abort();
    sandbox.clear_faults();
    medplum.clear_faults().await;

    let retired = |r: &serde_json::Value| {
        matches!(
            r["status"].as_str(),
            Some("superseded" | "entered-in-error")
        ) || r["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    };
    let notes = medplum.resources(Some("DocumentReference")).await;
    let conditions = medplum.resources(Some("Condition")).await;
    assert_eq!(notes.len(), SESSIONS, "every note once");
    let mut recovered = 0;
    for (n, session) in &sessions {
        let id = session.session_id.as_str();
        let note: Vec<&serde_json::Value> = notes
            .iter()
            .filter(|r| r["identifier"][0]["value"] == format!("{id}/note") && !retired(r))
            .collect();
        assert_eq!(note.len(), 1, "{id}: one note");
        assert_eq!(note[0]["subject"]["reference"], format!("Patient/p-{n}"));
        let diagnoses = suki
            .session_structured_data(&session.session_id)
            .await
            .expect("structured")
            .structured_data
            .diagnoses
            .map_or(0, |d| d.values.len());
        let written = conditions
            .iter()
            .filter(|c| {
                c["identifier"][0]["value"]
                    .as_str()
                    .is_some_and(|v| v.starts_with(&format!("{id}/condition/")))
            })
            .count();
        assert_eq!(written, diagnoses, "{id}: its diagnoses, once");
        let trace = inbox.trace(id).await.expect("trace");
        if trace.deliveries.iter().any(|d| d.source == Source::Poll) {
            recovered += 1;
        }
        let done = trace
            .events
            .iter()
            .find(|e| e.event == "done")
            .and_then(|e| e.detail.clone())
            .expect("an outcome");
        let note_id = note[0]["id"].as_str().expect("id");
        assert!(
            done.contains(&format!("DocumentReference/{note_id} ")),
            "{id}: {done}"
        );
    }
    assert!(
        recovered > 0,
        "some sessions were recovered by the reconciler"
    );
    server.abort();
    sandbox.shutdown().await;
}
