//! A Suki webhook receiver on actix-web.
//!
//! ```sh
//! SUKI_WEBHOOK_SECRET=... cargo run -p examples --bin actix_receiver
//! ```
//!
//! Env: `SUKI_WEBHOOK_SECRET` (required), `BIND` (default `127.0.0.1:3000`), `RUST_LOG`.
//! actix-web stops gracefully on Ctrl-C by itself.

use std::process::ExitCode;

use actix_web::{App, HttpServer};
use suki_ambient::{EventHandler, HandlerError, Verifier, WebhookEvent, WebhookMeta, async_trait};

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let Ok(secret) = std::env::var("SUKI_WEBHOOK_SECRET") else {
        eprintln!("error: set SUKI_WEBHOOK_SECRET to the webhook secret from Suki");
        return ExitCode::FAILURE;
    };
    let verifier = match Verifier::builder().secret(secret).build() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    // One endpoint (and so one replay guard) shared by every worker.
    let endpoint = suki_ambient::WebhookEndpoint::new(verifier, LogEvents);
    let server = HttpServer::new(move || {
        App::new().route(
            "/webhooks/suki",
            suki_ambient::actix::service_with(endpoint.clone()),
        )
    })
    .workers(2)
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
