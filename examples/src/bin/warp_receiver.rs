//! A Suki webhook receiver on warp.
//!
//! ```sh
//! SUKI_WEBHOOK_SECRET=... cargo run -p examples --bin warp_receiver
//! ```
//!
//! Env: `SUKI_WEBHOOK_SECRET` (required), `BIND` (default `127.0.0.1:3000`), `RUST_LOG`.

use std::process::ExitCode;

use suki_ambient::{EventHandler, HandlerError, Verifier, WebhookEvent, WebhookMeta, async_trait};
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
    let listener = match tokio::net::TcpListener::bind(&bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let route = warp::path!("webhooks" / "suki")
        .and(suki_ambient::warp::webhook_filter(verifier, LogEvents));
    if let Ok(addr) = listener.local_addr() {
        println!("listening on http://{addr}/webhooks/suki");
    }
    warp::serve(route)
        .incoming(listener)
        .graceful(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
        .run()
        .await;
    ExitCode::SUCCESS
}
