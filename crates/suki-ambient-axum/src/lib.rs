//! axum 0.8 integration for Suki Ambient webhooks.
//!
//! - [`SukiWebhook`]: extractor giving the verified, parsed event (verifier from state).
//! - [`VerifiedBody`]: extractor that verifies only (parse later, e.g. in a worker).
//! - [`VerifyWebhookLayer`]: a tower layer verifying before any service.
//! - [`router`]: the ready-made [`WebhookEndpoint`] (verify, deduplicate, dispatch to an
//!   [`EventHandler`]) as a router; [`WebhookResponse`] is its answer as an axum response.
//!
//! Headers are checked before the body is read; the body is read once, up to the verifier's
//! limit (413 on a larger Content-Length without reading, and on a chunked body as soon as it
//! passes the limit). Do not put `axum::Json` on the same route: it consumes the raw body.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::post};
//! use suki_ambient_axum::SukiWebhook;
//! use suki_ambient_core::{Verifier, WebhookEvent};
//!
//! async fn receive(webhook: SukiWebhook) -> &'static str {
//!     if let WebhookEvent::Completed(done) = &webhook.event {
//!         println!("session {} completed", done.session_id);
//!     }
//!     "ok"
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder().secret_from_env("SUKI_WEBHOOK_SECRET").build()?;
//! let app = Router::new().route("/webhooks/suki", post(receive)).with_state(verifier);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod extract;
mod layer;
mod rejection;
mod response;
mod router;
#[cfg(feature = "serve")]
mod serve;

pub use extract::{SukiWebhook, VerifiedBody};
pub use layer::{VerifyWebhookLayer, VerifyWebhookService};
pub use rejection::WebhookRejection;
pub use response::WebhookResponse;
pub use router::router;
#[cfg(feature = "serve")]
pub use serve::{Server, serve};
pub use suki_ambient_core::{
    EventHandler, VerifiedDelivery, Verifier, WebhookEndpoint, WebhookMeta,
};
