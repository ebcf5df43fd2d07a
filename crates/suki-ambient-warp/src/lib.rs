//! warp 0.4 integration for Suki Ambient webhooks.
//!
//! - [`suki_webhook`]: filter extracting the verified, parsed [`SukiWebhook`].
//! - [`verified_body`]: filter that verifies only ([`VerifiedBody`], parse later).
//! - [`recover`]: turns this crate's [`WebhookRejection`]s into 4xx JSON answers and passes
//!   every other rejection on.
//! - [`webhook_filter`]: the ready-made [`WebhookEndpoint`] (verify, deduplicate, dispatch to an
//!   [`EventHandler`]) as a filter that never rejects; [`WebhookResponse`] is its answer.
//!
//! Headers are checked before the body is read; the body is read once, up to the verifier's
//! limit: a larger Content-Length is refused without reading, and a chunked body is cut as soon
//! as it passes the limit (unlike `warp::body::content_length_limit`, which refuses every body
//! without a Content-Length). Do not put `warp::body::json()` or `bytes()` on the same route.
//!
//! # Example
//!
//! ```no_run
//! use warp::Filter;
//! use suki_ambient_core::{Verifier, WebhookEvent};
//! use suki_ambient_warp::{SukiWebhook, recover, suki_webhook};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder().secret_from_env("SUKI_WEBHOOK_SECRET").build()?;
//! let route = warp::post()
//!     .and(warp::path!("webhooks" / "suki"))
//!     .and(suki_webhook(verifier))
//!     .map(|webhook: SukiWebhook| {
//!         if let WebhookEvent::Completed(done) = &webhook.event {
//!             println!("session {} completed", done.session_id);
//!         }
//!         "ok"
//!     })
//!     .recover(recover);
//! warp::serve(route).run(([127, 0, 0, 1], 3000)).await;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod filters;
mod rejection;

pub use filters::{SukiWebhook, VerifiedBody, suki_webhook, verified_body, webhook_filter};
pub use rejection::{WebhookRejection, WebhookResponse, recover};
pub use suki_ambient_core::{
    EventHandler, VerifiedDelivery, Verifier, WebhookEndpoint, WebhookMeta,
};
