//! A local Suki Ambient platform for demos and tests.
//!
//! [`Sandbox::builder`] starts, in your process, an HTTP server that behaves like Suki's API:
//! `POST /api/v1/auth/login`, every follow-up endpoint with Suki's paths, the `sdp_suki_token`
//! and `sdp_provider_id` rules, and Suki's error bodies. Through the [`SandboxHandle`] you create
//! sessions and complete, fail, time out or cancel them: the sandbox then generates synthetic,
//! clearly fake clinical content and delivers the signed webhook (`generated-at` in ms,
//! `X-API-Key`) to your receiver, with `_links` pointing back at itself, and reports the
//! receiver's answer. [`Fault`]s make chosen requests fail, slow down or drop the connection.
//!
//! # Example
//!
//! ```
//! use suki_ambient_sandbox::Sandbox;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sandbox = Sandbox::builder().start().await?;
//! let token = sandbox.issue_token(None);
//! let session = sandbox.create_session(None);
//! // No webhook URL configured: complete without delivering, then fetch like a client would.
//! sandbox.complete_silently(&session.session_id)?;
//! let url = format!("{}api/v1/ambient/session/{}/status", sandbox.base_url(), session.session_id);
//! # let _ = (token, url);
//! sandbox.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod admin;
mod builder;
mod delivery;
mod faults;
mod fhir;
mod fhir_store;
mod handle;
mod routes;
mod sessions;
mod state;
mod synth;

pub use faults::{Fault, MAX_FAULT_LATENCY, MAX_WEBHOOK_DELAY, WebhookFault};
pub use fhir_store::MAX_FHIR_RESOURCES;

/// The most faults a sandbox keeps at once (the oldest goes first).
pub const MAX_FAULTS: usize = 1024;
/// The most API tokens the sandbox keeps at once: expired ones are dropped first, then the one
/// closest to expiry, so that logins cannot grow it without bound.
pub const MAX_TOKENS: usize = 1_000;
pub use builder::{Sandbox, SandboxBuilder};
pub use delivery::{Delivery, Fate};
pub use handle::{SandboxControl, SandboxError, SandboxHandle};
pub use sessions::SandboxSession;
pub use state::SessionKind;

/// The partner id the sandbox accepts by default.
pub const DEFAULT_PARTNER_ID: &str = "sandbox-partner";
/// The partner token the sandbox accepts by default.
pub const DEFAULT_PARTNER_TOKEN: &str = "sandbox-partner-token";

/// Why a receiver's answer means the webhook reached no handler at all (so it was not
/// delivered), with what to check: 404 and 405 come from the router, not from a webhook
/// endpoint, which answers 2xx, 4xx with a JSON code, or 500.
pub fn not_delivered_hint(status: u16) -> Option<&'static str> {
    match status {
        404 => Some(
            "no route at this path: check the URL's path and trailing slash (axum's ready-made \
             router is mounted with `.nest(\"/webhooks/suki\", router(..))`, not `.route`)",
        ),
        405 => Some(
            "the path exists but does not take POST: mount the webhook endpoint itself at this \
             path (axum: `.nest`, actix: `.route(path, ..)`, warp: `path!(..).and(webhook_filter(..))`)",
        ),
        _ => None,
    }
}
