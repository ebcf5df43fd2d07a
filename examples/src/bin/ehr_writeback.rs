//! From webhook to EHR: a receiver that stores every verified delivery in a durable inbox, and a
//! worker that fetches each completed session's note and structured data and writes them to the
//! EHR as one FHIR R4 transaction (DocumentReference, Composition, Conditions, draft
//! MedicationRequests, Provenance). A failed write retries the row; writing a session again
//! creates nothing (conditional creates).
//!
//! ```sh
//! SUKI_WEBHOOK_SECRET=... SUKI_TOKEN=... FHIR_BASE_URL=https://ehr.example/fhir/R4 FHIR_TOKEN=... \
//!   cargo run -p examples --bin ehr_writeback
//! ```
//!
//! Env: `SUKI_WEBHOOK_SECRET` (required); `SUKI_TOKEN` or `SUKI_PARTNER_ID` and
//! `SUKI_PARTNER_TOKEN`; `SUKI_API_BASE_URL` (default Suki staging); `SUKI_INBOX_URL` (default
//! `sqlite://suki-inbox.db`); `SUKI_INBOX_KEYS` (bodies sealed at rest); `FHIR_BASE_URL` and
//! `FHIR_TOKEN` (the EHR's FHIR endpoint and a bearer token, required);
//! `FHIR_DEFAULT_PATIENT` (a `Patient/…` reference for sessions whose `additional_info` names
//! none: for trying it out against the sandbox); `BIND` (default `127.0.0.1:3000`), `RUST_LOG`.
//!
//! Where a note belongs is the integrator's knowledge: here the partner put the EHR's references
//! in the session's `additional_info` when it started the session (`ehr_patient`,
//! `ehr_encounter`, `ehr_practitioner`); a later session of the same encounter replaces the note
//! of the one before it.

use std::process::ExitCode;

use axum::Router;
use suki_ambient::fhir::{BearerToken, EhrContext, FhirClient, FhirWriteBack, Reference};
use suki_ambient::inbox::{FetchResults, InboxWorker, Permanent};
use suki_ambient::{HandlerError, SessionCompleted, WebhookEndpoint};

/// The EHR references of a completed session: from its `additional_info`, else the default
/// patient; a session placed nowhere is a dead letter `no_ehr_patient` (visible, retried once
/// fixed), never written to a wrong chart.
fn place(event: &SessionCompleted) -> Result<EhrContext, HandlerError> {
    let info = |key: &str| {
        event
            .additional_info
            .as_ref()
            .and_then(|info| info.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let patient = info("ehr_patient")
        .or_else(|| std::env::var("FHIR_DEFAULT_PATIENT").ok())
        .ok_or(Permanent("no_ehr_patient"))?;
    let reference = |text: &str| Reference::parse(text).map_err(|_| Permanent("bad_ehr_reference"));
    let mut ehr = EhrContext::new(reference(&patient)?);
    if let Some(encounter) = info("ehr_encounter") {
        ehr = ehr.encounter(reference(&encounter)?);
    }
    if let Some(practitioner) = info("ehr_practitioner") {
        ehr = ehr.practitioner(reference(&practitioner)?);
    }
    // The encounter's sessions so far, in order: this note replaces the one before it.
    if let Some(at) = event.sessions.iter().position(|s| *s == event.session_id)
        && at > 0
    {
        ehr = ehr.replaces(event.sessions[at - 1].clone());
    }
    Ok(ehr)
}

#[tokio::main]
async fn main() -> ExitCode {
    let verifier = examples::start();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let suki = examples::suki_client();
    let (Some(fhir_url), Some(fhir_token)) = (env("FHIR_BASE_URL"), env("FHIR_TOKEN")) else {
        examples::exit(
            "set FHIR_BASE_URL and FHIR_TOKEN (the EHR's FHIR endpoint and a bearer token)",
        )
    };
    let ehr = FhirClient::builder(fhir_url)
        .auth(BearerToken::new(fhir_token))
        .build()
        .unwrap_or_else(|e| examples::exit(&e.to_string()));

    let inbox = examples::inbox().await;

    let worker = InboxWorker::builder(
        inbox.clone(),
        FetchResults::new(suki, FhirWriteBack::new(ehr, place)),
    )
    .owner("ehr_writeback")
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
