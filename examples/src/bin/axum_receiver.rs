//! A Suki webhook receiver on axum.
//!
//! ```sh
//! SUKI_WEBHOOK_SECRET=... cargo run -p examples --bin axum_receiver
//! ```
//!
//! Env: `SUKI_WEBHOOK_SECRET` (required), `BIND` (default `127.0.0.1:3000`), `RUST_LOG`.
//!
//! Served safely: 5 s to send the headers (also the idle keep-alive limit), 10 s for the body
//! (the verifier's `body_timeout`), at most 512 connections at once (`suki_ambient::axum::Server`).

use std::process::ExitCode;

use axum::Router;
use suki_ambient::{
    EventHandler, HandlerError, SessionCompleted, SessionEnded, SessionFailed, UnknownEvent,
    WebhookEndpoint, WebhookMeta, async_trait,
};

/// What this service does with each event: here, log the kind and ids (never the content:
/// it is patient data). A real one would enqueue the work and return at once.
struct LogEvents;

#[async_trait]
impl EventHandler for LogEvents {
    async fn on_completed(
        &self,
        e: SessionCompleted,
        _meta: WebhookMeta,
    ) -> Result<(), HandlerError> {
        tracing::info!(kind = "completed", session_id = %e.session_id, encounter_id = %e.encounter_id, links = e.links.iter().count(), "suki event");
        Ok(())
    }
    async fn on_failed(&self, e: SessionFailed, _meta: WebhookMeta) -> Result<(), HandlerError> {
        tracing::info!(kind = "failed", session_id = %e.session_id, encounter_id = %e.encounter_id, error_code = %e.error_code, "suki event");
        Ok(())
    }
    async fn on_timed_out(&self, e: SessionEnded, _meta: WebhookMeta) -> Result<(), HandlerError> {
        tracing::info!(kind = "timed_out", session_id = %e.session_id, encounter_id = %e.encounter_id, "suki event");
        Ok(())
    }
    async fn on_cancelled(&self, e: SessionEnded, _meta: WebhookMeta) -> Result<(), HandlerError> {
        tracing::info!(kind = "cancelled", session_id = %e.session_id, encounter_id = %e.encounter_id, "suki event");
        Ok(())
    }
    async fn on_unknown(&self, e: UnknownEvent, _meta: WebhookMeta) -> Result<(), HandlerError> {
        tracing::warn!(kind = "unknown", session_id = ?e.session_id.as_ref().map(|s| s.as_str()), "suki event with an unknown status");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let verifier = examples::start();
    let listener = examples::listen().await;
    let app = Router::new().nest(
        "/webhooks/suki",
        suki_ambient::axum::router(WebhookEndpoint::new(verifier, LogEvents)),
    );
    if let Ok(addr) = listener.local_addr() {
        println!("listening on http://{addr}/webhooks/suki");
    }
    // Not `axum::serve`: it has no header-read timeout or connection bound, so idle and
    // half-sent connections would stay open forever. See `suki_ambient::axum::Server` for the settings.
    suki_ambient::axum::Server::new()
        .serve(listener, app, examples::ctrl_c())
        .await;
    ExitCode::SUCCESS
}
