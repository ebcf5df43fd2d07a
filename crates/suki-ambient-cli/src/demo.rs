//! `demo` (the whole flow in one process) and `sandbox` (serve the sandbox until Ctrl-C).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use suki_ambient_axum::router;
use suki_ambient_client::{AmbientClient, PartnerLogin, RetryPolicy, SessionResults};
use suki_ambient_core::{
    EventHandler, EventKind, HandlerError, SessionCompleted, SessionEnded, SessionFailed,
    UnixMillis, WebhookEndpoint, WebhookEvent, WebhookMeta, WebhookSecret, async_trait,
};
use suki_ambient_fhir::{
    BearerToken, EhrContext, FhirClient, FhirWriteBack, Reference, SessionRef,
};
use suki_ambient_inbox::Permanent;
use suki_ambient_inbox::{
    ExpectedSession, FetchResults, Inbox, InboxMeta, InboxWorker, Reconciler, ResultsHandler,
    ops::Resolution,
};
use suki_ambient_sandbox::{
    DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN, Fate, Fault, Sandbox, SandboxHandle, WebhookFault,
};
use tokio::sync::mpsc;

use crate::Failure;

/// The demo receiver's handler: hands events to the demo and counts calls.
struct DemoHandler {
    events: mpsc::UnboundedSender<(WebhookEvent, WebhookMeta)>,
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl EventHandler for DemoHandler {
    async fn on_completed(
        &self,
        event: SessionCompleted,
        meta: WebhookMeta,
    ) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // A real receiver would enqueue the work and return at once, as here.
        self.events.send((WebhookEvent::Completed(event), meta))?;
        Ok(())
    }

    async fn on_failed(&self, event: SessionFailed, meta: WebhookMeta) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.events.send((WebhookEvent::Failed(event), meta))?;
        Ok(())
    }
}

/// How many numbered steps the demo shows.
const STEPS: u32 = 11;

fn step(n: u32, text: &str) {
    println!("[{n}/{STEPS}] {text}");
}

/// Runs the whole flow and prints what happens.
pub(crate) async fn run() -> Result<ExitCode, Failure> {
    let started = Instant::now();
    println!("suki-ambient demo: the whole flow against a local sandbox (synthetic data only)\n");

    // The sandbox signs with a fresh random secret; the receiver verifies with the same one.
    // It is never printed.
    let sandbox = Sandbox::builder().start().await?;
    step(
        1,
        &format!("Started the Suki sandbox at {}", sandbox.base_url()),
    );

    let (tx, mut events) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let verifier = sandbox.verifier_builder().build()?;
    let app = axum::Router::new().nest(
        "/webhooks/suki",
        router(WebhookEndpoint::new(
            verifier,
            DemoHandler {
                events: tx,
                calls: Arc::clone(&calls),
            },
        )),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = format!("http://{}/webhooks/suki", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    sandbox.set_webhook_url(Some(receiver_url.clone()));
    step(
        2,
        &format!("Started an axum receiver at {receiver_url} (suki_ambient::axum::router)"),
    );

    let session = sandbox.create_session(None);
    let delivery = sandbox.complete(&session.session_id).await?;
    step(
        3,
        &format!(
            "Completed session {}; the sandbox delivered the signed webhook → receiver answered {} {}",
            session.session_id, delivery.status, delivery.body
        ),
    );
    let (event, meta) = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .map_err(|_| Failure("the receiver did not hand over the event within 10 s".into()))?
        .ok_or_else(|| Failure("the receiver stopped".into()))?;
    let WebhookEvent::Completed(done) = event.clone() else {
        return Err(Failure(format!(
            "expected a completed event, got {}",
            event.kind()
        )));
    };
    println!(
        "      receiver verified it (HMAC-SHA-256 over generated-at:body, secret #{}) and parsed a `{}` event",
        meta.secret_index,
        event.kind()
    );

    let client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .auth(PartnerLogin::new(DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN))
        .build()?;
    let results = client.fetch_results(&done).await;
    step(
        4,
        &format!(
            "Followed the webhook's {} _links concurrently with the client (partner login, cached token):",
            done.links.iter().count()
        ),
    );
    print_results(&results)?;

    let tampered = sandbox.deliver_tampered(&event).await?;
    step(
        5,
        &format!(
            "A tampered delivery (one byte changed after signing) → {} {}",
            tampered.status, tampered.body
        ),
    );

    let again = sandbox.deliver(&event).await?;
    step(
        6,
        &format!(
            "The same event delivered again → {} {}; the handler ran {} time(s) for it",
            again.status,
            again.body,
            calls.load(Ordering::SeqCst)
        ),
    );

    let failing = sandbox.create_session(None);
    let failed = sandbox.fail(&failing.session_id).await?;
    if let Ok(Some((WebhookEvent::Failed(f), _))) =
        tokio::time::timeout(Duration::from_secs(10), events.recv()).await
    {
        println!(
            "\nAlso: session {} failed → receiver answered {} and saw `failed` ({})",
            f.session_id, failed.status, f.error_code
        );
    }

    let ok = delivery.acknowledged()
        && results.is_ok()
        && tampered.status == 401
        && again.acknowledged()
        && calls.load(Ordering::SeqCst) == 2;
    server.abort();

    println!("\nThe durable inbox: what a production receiver runs, so that no note is lost.\n");
    let inbox_ok = inbox_steps(&sandbox).await?;
    sandbox.shutdown().await;
    println!("\nDone in {:.2} s.", started.elapsed().as_secs_f64());
    if ok && inbox_ok {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure(
            "the demo did not go as expected (see above)".into(),
        ))
    }
}

/// The inbox demo's handler: prints what it processed.
struct PrintNotes {
    processed: Arc<AtomicUsize>,
}

#[async_trait]
impl ResultsHandler for PrintNotes {
    async fn on_results(
        &self,
        done: SessionCompleted,
        results: SessionResults,
        meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        self.processed.fetch_add(1, Ordering::SeqCst);
        println!(
            "      worker: session {} ({}) processed on attempt {} ({} of {} links fetched; the note goes to your EHR here)",
            done.session_id,
            meta.source(),
            meta.attempt,
            results.fetched() - results.errors().len(),
            results.fetched()
        );
        Ok(())
    }

    async fn on_failed(&self, failed: SessionFailed, _meta: InboxMeta) -> Result<(), HandlerError> {
        println!(
            "      worker: session {} failed ({}): no note will come; tell the clinician here",
            failed.session_id, failed.error_code
        );
        Ok(())
    }

    async fn on_ended(
        &self,
        kind: EventKind,
        ended: SessionEnded,
        _meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        println!(
            "      worker: session {} {kind}: no note will come; tell the clinician here",
            ended.session_id
        );
        Ok(())
    }
}

/// A receiver with the inbox on `url`, served until the returned task is aborted.
async fn inbox_receiver(
    sandbox: &SandboxHandle,
    url: &str,
) -> Result<(Inbox, tokio::task::JoinHandle<std::io::Result<()>>), Failure> {
    let inbox = Inbox::connect(url).await?;
    let endpoint = WebhookEndpoint::inbox(sandbox.verifier_builder().build()?, inbox.clone());
    let app = axum::Router::new().nest("/webhooks/suki", router(endpoint));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    sandbox.set_webhook_url(Some(format!(
        "http://{}/webhooks/suki",
        listener.local_addr()?
    )));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((inbox, server))
}

/// Steps 7–9: a receiver stopped after acknowledging, restarted, its worker finishing the
/// delivery from the inbox; a 503 burst recovered by a later attempt.
async fn inbox_steps(sandbox: &SandboxHandle) -> Result<bool, Failure> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("suki-inbox.db").display());
    let client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .auth(PartnerLogin::new(DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN))
        .retry(
            RetryPolicy::default()
                .max_attempts(2)
                .base_delay(Duration::from_millis(5)),
        )
        .build()?;
    let processed = Arc::new(AtomicUsize::new(0));
    let worker = |inbox: Inbox| {
        InboxWorker::builder(
            inbox,
            FetchResults::new(
                client.clone(),
                PrintNotes {
                    processed: Arc::clone(&processed),
                },
            ),
        )
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .build()
    };

    let (inbox, server) = inbox_receiver(sandbox, &url).await?;
    let session = sandbox.create_session(None);
    let delivery = sandbox.complete(&session.session_id).await?;
    server.abort();
    let pending = inbox.status().await?.counts.pending;
    drop(inbox);
    step(
        7,
        &format!(
            "A receiver with the inbox (SQLite in a temporary folder) answered {} {} for session {}, \
             and was stopped before processing it: {pending} delivery pending on disk",
            delivery.status, delivery.body, session.session_id
        ),
    );

    let (inbox, server) = inbox_receiver(sandbox, &url).await?;
    step(
        8,
        "Restarted on the same inbox: its worker fetches the session's results and finishes it",
    );
    worker(inbox.clone()).drain(Duration::from_secs(10)).await?;
    let recovered = processed.load(Ordering::SeqCst) == 1;

    let session = sandbox.create_session(None);
    let delivery = sandbox.complete(&session.session_id).await?;
    // Six links, two client attempts each: twelve 503s outlast the client's own retries.
    sandbox.inject(Fault::status(503).times(12));
    step(
        9,
        &format!(
            "Session {} → {} {}; Suki's API then answers 503 twelve times in a row, longer than \
             the client's retries",
            session.session_id, delivery.status, delivery.body
        ),
    );
    worker(inbox.clone()).drain(Duration::from_secs(10)).await?;
    let row = inbox
        .list(None, 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Failure("the inbox lost the delivery".into()))?;
    // An outage is not the row's failure: it waited for Suki's API (its circuit breaker),
    // spending no attempt, and the timeline keeps each wait's code.
    let trace = inbox.trace(session.session_id.as_str()).await?;
    let waits: Vec<&str> = trace
        .events
        .iter()
        .filter(|e| e.event == "waiting")
        .filter_map(|e| e.code.as_deref())
        .collect();
    println!(
        "      inbox: row {} is {} after {} attempt(s): it waited {} time(s) for Suki's API ({}, kept \
         as a code: no content), spending no attempt",
        row.id,
        row.state,
        row.attempts,
        waits.len(),
        waits.first().copied().unwrap_or("-")
    );
    let retried = processed.load(Ordering::SeqCst) == 2 && row.attempts == 1 && !waits.is_empty();

    let lost = lost_webhook_step(sandbox, &client, &inbox, &processed, worker).await?;
    let status = inbox.status().await?;
    println!(
        "      inbox: {} done, {} pending, {} dead",
        status.counts.done, status.counts.pending, status.counts.dead
    );
    let ehr = ehr_step(sandbox, &client, &inbox).await?;
    server.abort();
    Ok(recovered && retried && lost && status.counts.done == 3 && ehr)
}

/// Step 11: the last mile: a completed session's note written to the EHR (the sandbox's FHIR
/// server) as one transaction, and the same row run again creating nothing.
async fn ehr_step(
    sandbox: &SandboxHandle,
    client: &AmbientClient,
    inbox: &Inbox,
) -> Result<bool, Failure> {
    let ehr = FhirClient::builder(sandbox.fhir_base_url())
        .auth(BearerToken::new(sandbox.fhir_token()))
        .build()?;
    // Where the note belongs is the integrator's knowledge: one demo patient here.
    let place = |session: SessionRef| async move {
        let encounter = format!("Encounter/{}", session.encounter_id.as_str());
        Ok::<_, HandlerError>(
            EhrContext::new(Reference::parse("Patient/demo-patient")?)
                .encounter(Reference::parse(&encounter).map_err(|_| Permanent("bad_encounter"))?),
        )
    };
    let worker = || {
        InboxWorker::builder(
            inbox.clone(),
            FetchResults::new(client.clone(), FhirWriteBack::new(ehr.clone(), place)),
        )
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .build()
    };
    let session = sandbox.create_session(None);
    let delivery = sandbox.complete(&session.session_id).await?;
    step(
        11,
        &format!(
            "Session {} → {} {}; the worker writes its note to the EHR (the sandbox's FHIR \
             server) as one FHIR R4 transaction",
            session.session_id, delivery.status, delivery.body
        ),
    );
    worker().drain(Duration::from_secs(10)).await?;
    let written = sandbox.fhir_resources(None);
    let count = |kind: &str| written.iter().filter(|r| r["resourceType"] == kind).count();
    println!(
        "      EHR: {} DocumentReference (docStatus {}), {} Composition, {} Condition, {} \
         MedicationRequest (draft), {} Provenance (Suki Ambient as author)",
        count("DocumentReference"),
        written
            .iter()
            .find(|r| r["resourceType"] == "DocumentReference")
            .and_then(|r| r["docStatus"].as_str())
            .unwrap_or("-"),
        count("Composition"),
        count("Condition"),
        count("MedicationRequest"),
        count("Provenance"),
    );
    // An operator runs the row again (a handler bug fixed, say): conditional creates match.
    let row = inbox
        .list(Some(suki_ambient_inbox::State::Done), 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Failure("the inbox lost the delivery".into()))?;
    inbox
        .act(
            &suki_ambient_inbox::Actor::application(),
            suki_ambient_inbox::Action::Retry(suki_ambient_inbox::Selection::Id(row.id)),
        )
        .await?;
    worker().drain(Duration::from_secs(10)).await?;
    let again = sandbox.fhir_resources(None).len();
    println!(
        "      the same row run again: {} new resources in the EHR (conditional creates: \
         nothing is written twice)",
        again - written.len()
    );
    Ok(count("DocumentReference") == 1 && again == written.len())
}

/// Step 10: a session whose webhook the sandbox lost, recovered by the reconciler; the late
/// re-send of its webhook is a duplicate, so the handler runs once.
async fn lost_webhook_step(
    sandbox: &SandboxHandle,
    client: &AmbientClient,
    inbox: &Inbox,
    processed: &AtomicUsize,
    worker: impl Fn(Inbox) -> InboxWorker,
) -> Result<bool, Failure> {
    // Zero grace for the demo (5 min by default).
    let reconciler = Reconciler::builder(client.clone(), inbox.clone())
        .grace(Duration::ZERO)
        .build();
    let session = sandbox.create_session(None);
    reconciler
        .register(ExpectedSession::ambient(
            session.session_id.clone(),
            session.encounter_id.clone(),
            UnixMillis::now(),
        ))
        .await?;
    sandbox.inject_webhook(WebhookFault::lose().session(&session.session_id));
    let delivery = sandbox.complete(&session.session_id).await?;
    step(
        10,
        &format!(
            "Session {} ended, but the sandbox lost its webhook: nothing reached the receiver. \
             The reconciler, told to expect the session when it was submitted, polls its status \
             after the grace period",
            session.session_id
        ),
    );
    let before = processed.load(Ordering::SeqCst);
    let report = reconciler.check_due().await?;
    println!(
        "      reconciler: {} checked, {} recovered: status completed → its event stored in the inbox with source = poll",
        report.checked, report.recovered
    );
    worker(inbox.clone()).drain(Duration::from_secs(10)).await?;
    let again = sandbox.redeliver(&session.session_id).await?;
    println!(
        "      the webhook, re-sent late, is answered {} {}: the handler ran once",
        again.status, again.body
    );
    worker(inbox.clone()).drain(Duration::from_secs(10)).await?;
    let record = inbox.store().expectation(&session.session_id).await?;
    Ok(delivery.fate == Fate::Lost
        && report.recovered == 1
        && again.body.contains("duplicate")
        && processed.load(Ordering::SeqCst) == before + 1
        && record.is_some_and(|r| r.resolution == Some(Resolution::Poll)))
}

fn print_results(results: &SessionResults) -> Result<(), Failure> {
    if let Some((kind, err)) = results.errors().first() {
        return Err(Failure(format!("fetching {kind} failed: {err}")));
    }
    if let Some(Ok(status)) = &results.status {
        println!("      Status: {}", status.status);
    }
    if let Some(Ok(note)) = &results.contents {
        println!("      Note:");
        for section in &note.summary {
            println!(
                "        {} (LOINC {})",
                section.title.as_deref().unwrap_or("(untitled)"),
                section.loinc_code.as_deref().unwrap_or("-")
            );
            println!("          {}", section.content.as_deref().unwrap_or(""));
        }
    }
    if let Some(Ok(data)) = &results.structured_data {
        let body = &data.structured_data;
        for dx in body.diagnoses.iter().flat_map(|d| &d.values) {
            for code in &dx.codes {
                println!(
                    "      Diagnosis: {} {} ({})",
                    code.code,
                    code.description.as_deref().unwrap_or(""),
                    code.system.as_ref().map_or("?", |s| s.as_str())
                );
            }
        }
        for med in body
            .orders
            .iter()
            .flat_map(|o| &o.medication_orders)
            .flat_map(|m| &m.partial_values)
        {
            println!(
                "      Medication order: {} {} {} {}",
                med.medication.as_deref().unwrap_or("?"),
                med.dosage.as_deref().unwrap_or(""),
                med.frequency.as_deref().unwrap_or(""),
                med.route.as_deref().unwrap_or("")
            );
        }
    }
    if let Some(Ok(t)) = &results.transcript {
        println!("      Transcript ({} segments):", t.final_transcript.len());
        for segment in &t.final_transcript {
            let at = segment
                .start_offset
                .map(|o| o.to_duration().as_secs())
                .unwrap_or(0);
            println!(
                "        [{:02}:{:02}] {}",
                at / 60,
                at % 60,
                segment.transcript
            );
        }
    }
    if let Some(Ok(note)) = &results.encounter_content {
        println!("      Encounter note: {} sections", note.summary.len());
    }
    Ok(())
}

/// `sandbox`: serve until Ctrl-C.
pub(crate) async fn serve_sandbox(
    bind: &str,
    webhook_url: Option<String>,
    secret: WebhookSecret,
) -> Result<ExitCode, Failure> {
    let mut builder = Sandbox::builder().bind(bind).webhook_secret(secret);
    if let Some(url) = &webhook_url {
        reqwest::Url::parse(url).map_err(|_| Failure(format!("not a URL: {url}")))?;
        builder = builder.webhook_url(url.clone());
    }
    let sandbox = builder.start().await?;
    let base = sandbox.base_url().to_owned();
    let token = sandbox.admin_token().to_owned();
    println!("Suki sandbox at {base} (synthetic data; webhooks signed with the given secret)");
    println!("Admin token (for the /sandbox/ routes): {token}");
    match &webhook_url {
        Some(url) => println!("Webhooks go to {url}"),
        None => println!("No --webhook-url: sessions complete without delivering webhooks"),
    }
    println!();
    println!("Log in (sandbox partner):");
    println!(
        "  curl -sS -X POST {base}{} -H 'Content-Type: application/json' -d '{{\"partner_id\":\"{DEFAULT_PARTNER_ID}\",\"partner_token\":\"{DEFAULT_PARTNER_TOKEN}\"}}'",
        suki_ambient_core::api::Route::Login
            .path("")
            .trim_start_matches('/')
    );
    println!("Drive it:");
    let auth = format!("-H 'Authorization: Bearer {token}'");
    println!("  curl -sS {auth} -X POST {base}sandbox/sessions              # create a session");
    println!(
        "  curl -sS {auth} -X POST {base}sandbox/sessions/ID/complete  # or fail, timeout, cancel"
    );
    println!(
        "  curl -sS {auth} -X POST {base}sandbox/faults -d '{{\"status\":503,\"retry_after\":\"1\",\"times\":2}}'"
    );
    println!("  curl -sS {auth} -X DELETE {base}sandbox/tokens              # expire every token");
    println!("\nCtrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    sandbox.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
