//! A Suki webhook receiver on actix-web.
//!
//! ```sh
//! SUKI_WEBHOOK_SECRET=... cargo run -p examples --bin actix_receiver
//! ```
//!
//! Env: `SUKI_WEBHOOK_SECRET` (required), `BIND` (default `127.0.0.1:3000`), `RUST_LOG`.
//! actix-web stops gracefully on Ctrl-C by itself.
//!
//! Served safely: 5 s to send the headers, 5 s of idle keep-alive, 10 s for the body (the
//! verifier's `body_timeout`), at most 512 connections at once.

use std::process::ExitCode;
use std::time::Duration;

use actix_web::{App, HttpServer};
use suki_ambient::{EventHandler, HandlerError, WebhookEvent, WebhookMeta, async_trait};

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

#[actix_web::main]
async fn main() -> ExitCode {
    let verifier = examples::start();
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    // One endpoint (and so one replay guard) shared by every worker.
    let endpoint = suki_ambient::WebhookEndpoint::new(verifier, LogEvents);
    let server = HttpServer::new(move || {
        App::new().route(
            "/webhooks/suki",
            suki_ambient::actix::route(endpoint.clone()),
        )
    })
    .workers(2)
    // 5 s to send the request head (actix answers 408 and closes after it).
    .client_request_timeout(Duration::from_secs(5))
    // 5 s of idle keep-alive between requests, then the connection is closed.
    .keep_alive(Duration::from_secs(5))
    // At most 256 connections per worker (512 in all), well below the usual 1,024 descriptors.
    .max_connections(256)
    // The body has the verifier's `body_timeout` (10 s by default), enforced by the extractor.
    .bind(&bind);
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for addr in server.addrs() {
        println!("listening on http://{addr}/webhooks/suki");
    }
    match server.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
