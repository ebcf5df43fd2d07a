//! From webhook to EHR: a receiver that stores every verified delivery in a durable inbox, and a
//! worker that fetches each completed session's note and structured data and writes them to the
//! EHR (DocumentReference, Composition, Conditions, draft MedicationRequests, Provenance) as one
//! FHIR R4 transaction, or one create each where the EHR takes no transactions. A failed write
//! retries the row; writing a session again creates nothing (conditional creates).
//!
//! ```sh
//! SUKI_WEBHOOK_SECRET=... SUKI_TOKEN=... FHIR_BASE_URL=https://ehr.example/fhir/R4 FHIR_TOKEN=... \
//!   cargo run -p examples --bin ehr_writeback
//! ```
//!
//! Env: `SUKI_WEBHOOK_SECRET` (required); `SUKI_TOKEN` or `SUKI_PARTNER_ID` and
//! `SUKI_PARTNER_TOKEN`; `SUKI_API_BASE_URL` (default Suki staging); `SUKI_INBOX_URL` (default
//! `sqlite://suki-inbox.db`); `SUKI_INBOX_KEYS` (bodies sealed at rest);
//! `SUKI_WORKER_CONCURRENCY` (sessions at once: a number, or `auto`, the default: adaptive up to
//! `SUKI_WORKER_MAX_CONCURRENCY`, 256); `BIND` (default `127.0.0.1:3000`), `RUST_LOG`. The EHR:
//!
//! - `FHIR_BASE_URL` (required): its FHIR R4 endpoint.
//! - `FHIR_TOKEN`: a fixed bearer token; or SMART Backend Services: `FHIR_SMART_CLIENT_ID`,
//!   `FHIR_SMART_KID`, the private key in `FHIR_SMART_KEY_FILE` (PEM; or its text in
//!   `FHIR_SMART_KEY`), and optionally `FHIR_SMART_SCOPES` and `FHIR_SMART_TOKEN_URL` (default:
//!   from the server's `.well-known/smart-configuration`).
//! - `FHIR_STRATEGY`: `auto` (default: from the server's CapabilityStatement), `transaction`,
//!   `per-resource` or `document-only`.
//! - `FHIR_NO_NOTE`: what a session without a note leaves: `warn` (default), `communication`
//!   or `task`.
//! - `FHIR_DEFAULT_PATIENT`: a `Patient/…` reference for sessions whose `additional_info`
//!   names none (for trying it out against the sandbox).
//!
//! Where a note belongs is the integrator's knowledge: here the partner put the EHR's references
//! in the session's `additional_info` when it started the session (`ehr_patient`,
//! `ehr_encounter`, `ehr_practitioner`). A later session of the same encounter is written as
//! the encounter's note (every session's content), replacing the one before it: the write-back
//! does that itself. A real resolver may await: look the encounter up in your scheduling data,
//! or `GET [base]/Encounter?identifier=…` with your own client.

use std::process::ExitCode;

use axum::Router;
use suki_ambient::fhir::{
    BearerToken, EhrContext, FhirClient, FhirWriteBack, NoNote, Reference, SessionRef,
    SmartBackendAuth, SmartKey, WriteStrategy,
};
use suki_ambient::inbox::{FetchResults, InboxWorker, Permanent};
use suki_ambient::{HandlerError, WebhookEndpoint};

/// The EHR references of a session: from its `additional_info`, else the default patient; a
/// session placed nowhere is a dead letter `no_ehr_patient` (visible, retried once fixed),
/// never written to a wrong chart.
async fn place(session: SessionRef) -> Result<EhrContext, HandlerError> {
    let patient = session
        .info("ehr_patient")
        .map(str::to_owned)
        .or_else(|| std::env::var("FHIR_DEFAULT_PATIENT").ok())
        .ok_or(Permanent("no_ehr_patient"))?;
    let reference = |text: &str| Reference::parse(text).map_err(|_| Permanent("bad_ehr_reference"));
    let mut ehr = EhrContext::new(reference(&patient)?);
    if let Some(encounter) = session.info("ehr_encounter") {
        ehr = ehr.encounter(reference(encounter)?);
    }
    if let Some(practitioner) = session.info("ehr_practitioner") {
        ehr = ehr.practitioner(reference(practitioner)?);
    }
    Ok(ehr)
}

/// The EHR's client from the environment: SMART Backend Services when a client id is given,
/// else a fixed token.
fn ehr_client(env: impl Fn(&str) -> Option<String>) -> Result<FhirClient, String> {
    let base = env("FHIR_BASE_URL").ok_or("set FHIR_BASE_URL (the EHR's FHIR endpoint)")?;
    let strategy: WriteStrategy = env("FHIR_STRATEGY")
        .as_deref()
        .unwrap_or("auto")
        .parse()
        .map_err(|e: suki_ambient::fhir::FhirError| format!("FHIR_STRATEGY: {e}"))?;
    let builder = FhirClient::builder(base.clone()).strategy(strategy);
    let builder = if let Some(client_id) = env("FHIR_SMART_CLIENT_ID") {
        let kid = env("FHIR_SMART_KID").ok_or("set FHIR_SMART_KID (the key id registered)")?;
        let key = match env("FHIR_SMART_KEY_FILE") {
            Some(path) => SmartKey::from_pem_file(path, kid),
            None => SmartKey::from_env("FHIR_SMART_KEY", kid),
        }
        .map_err(|e| e.to_string())?;
        let mut auth = SmartBackendAuth::builder(base, client_id, key);
        if let Some(scopes) = env("FHIR_SMART_SCOPES") {
            auth = auth.scopes(scopes);
        }
        if let Some(url) = env("FHIR_SMART_TOKEN_URL") {
            auth = auth.token_endpoint(url);
        }
        builder.auth(auth.build().map_err(|e| e.to_string())?)
    } else {
        let token = env("FHIR_TOKEN")
            .ok_or("set FHIR_TOKEN, or FHIR_SMART_CLIENT_ID for SMART Backend Services")?;
        builder.auth(BearerToken::new(token))
    };
    builder.build().map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let verifier = examples::start();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let suki = examples::suki_client();
    let ehr = ehr_client(env).unwrap_or_else(|e| examples::exit(&e));
    let no_note = match env("FHIR_NO_NOTE").as_deref() {
        None | Some("warn") => NoNote::Warn,
        Some("communication") => NoNote::Communication,
        Some("task") => NoNote::Task,
        Some(_) => examples::exit("FHIR_NO_NOTE is warn, communication or task"),
    };

    let inbox = examples::inbox().await;

    // SUKI_WORKER_CONCURRENCY: a fixed number of sessions at once, or `auto` (the default:
    // the limit adapts to the backlog and the EHR's latency, up to
    // SUKI_WORKER_MAX_CONCURRENCY, 256 by default).
    let worker = examples::worker_concurrency(
        InboxWorker::builder(
            inbox.clone(),
            FetchResults::new(suki, FhirWriteBack::new(ehr, place).on_no_note(no_note)),
        )
        .owner("ehr_writeback"),
    )
    .build()
    .spawn();

    let listener = examples::listen().await;
    let app = Router::new()
        .nest(
            "/webhooks/suki",
            suki_ambient::axum::router(WebhookEndpoint::inbox(verifier, inbox.clone())),
        )
        .nest(
            "/healthz",
            suki_ambient::inbox::health_router(inbox, Default::default()),
        );
    // Ctrl-C: the worker finishes or releases what it holds.
    examples::serve_with_worker(listener, app, worker).await
}
