//! A Suki webhook receiver on warp.
//!
//! ```sh
//! SUKI_WEBHOOK_SECRET=... cargo run -p examples --bin warp_receiver
//! ```
//!
//! Env: `SUKI_WEBHOOK_SECRET` (required), `BIND` (default `127.0.0.1:3000`), `RUST_LOG`.
//!
//! Served safely: 5 s to send the headers (also the idle keep-alive limit), 10 s for the body
//! (the verifier's `body_timeout`), at most 512 connections at once (`suki_ambient::axum::Server`).

use std::process::ExitCode;

use suki_ambient::{
    EventHandler, HandlerError, WebhookEndpoint, WebhookEvent, WebhookMeta, async_trait,
};
use warp::Filter;

/// Logs the kind and ids of each event (never the content: it is patient data).
struct LogEvents;

#[async_trait]
impl EventHandler for LogEvents {
    async fn handle(&self, event: WebhookEvent, _meta: WebhookMeta) -> Result<(), HandlerError> {
        tracing::info!(
            kind = %event.kind(),
            session_id = ?event.session_id().map(|s| s.as_str()),
            encounter_id = ?event.encounter_id().map(|s| s.as_str()),
            "suki event"
        );
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let verifier = examples::start();
    let listener = examples::listen().await;
    let route = warp::path!("webhooks" / "suki").and(suki_ambient::warp::webhook_filter(
        WebhookEndpoint::new(verifier, LogEvents),
    ));
    if let Ok(addr) = listener.local_addr() {
        println!("listening on http://{addr}/webhooks/suki");
    }
    // Not `warp::serve`: it has no header-read timeout or connection bound, so idle and
    // half-sent connections would stay open forever. See `suki_ambient::axum::Server` for the settings.
    suki_ambient::axum::Server::new()
        .serve(listener, warp::service(route), examples::ctrl_c())
        .await;
    ExitCode::SUCCESS
}
