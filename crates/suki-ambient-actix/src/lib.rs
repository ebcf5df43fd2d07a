//! actix-web 4 integration for Suki Ambient webhooks.
//!
//! - [`SukiWebhook`]: extractor giving the verified, parsed event.
//! - [`VerifiedBody`]: extractor that verifies only (parse later, e.g. in a worker).
//! - [`VerifyWebhook`]: middleware verifying before the handler (puts the
//!   [`VerifiedDelivery`] in request extensions: `web::ReqData<VerifiedDelivery>`).
//! - [`route`]: the ready-made [`WebhookEndpoint`] (verify, deduplicate, dispatch to an
//!   [`EventHandler`]) as a `Route`; [`WebhookResponse`] is its answer as a `Responder`.
//!
//! The [`Verifier`] is taken from app data: `web::Data<Verifier>` or a plain `Verifier`.
//! Headers are checked before the body is read; the body is read once, up to the verifier's
//! limit. **Do not combine these extractors with `web::Json`, `web::Bytes` or `String` on the same
//! handler**: the body can be read only once, and verification needs the raw bytes.
//!
//! actix-web 4 is built on `http` 0.2; headers are bridged to the core through their text
//! ([`Verifier::verify_parts`]).
//!
//! # Example
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use suki_ambient_actix::SukiWebhook;
//! use suki_ambient_core::{Verifier, WebhookEvent};
//!
//! async fn receive(webhook: SukiWebhook) -> &'static str {
//!     if let WebhookEvent::Completed(done) = &webhook.event {
//!         println!("session {} completed", done.session_id);
//!     }
//!     "ok"
//! }
//!
//! #[actix_web::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let verifier = Verifier::builder().secret_from_env("SUKI_WEBHOOK_SECRET").build()?;
//!     HttpServer::new(move || {
//!         App::new()
//!             .app_data(web::Data::new(verifier.clone()))
//!             .route("/webhooks/suki", web::post().to(receive))
//!     })
//!     .bind("127.0.0.1:3000")?
//!     .run()
//!     .await?;
//!     Ok(())
//! }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod extract;
mod middleware;
mod rejection;
mod response;
mod route;

pub use extract::{SukiWebhook, VerifiedBody};
pub use middleware::{VerifyWebhook, VerifyWebhookMiddleware};
pub use rejection::WebhookRejection;
pub use response::WebhookResponse;
pub use route::route;
pub use suki_ambient_core::{
    EventHandler, VerifiedDelivery, Verifier, WebhookEndpoint, WebhookMeta,
};
