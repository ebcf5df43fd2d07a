//! Async client for Suki Ambient's follow-up APIs: the results a webhook's `_links` point to.
//!
//! - [`AmbientClient`]: typed calls for every endpoint (status, transcript, content, structured
//!   data, encounter content and structured data, recording, form filling), [`follow`] for a
//!   webhook link, and [`fetch_results`] for all links of a completed session at once.
//! - Auth: [`TokenProvider`]; [`StaticToken`] or [`PartnerLogin`] (logs in, caches the token,
//!   refreshes before expiry, one login in flight, logs in again once on 401
//!   `invalid_sdp_token`). The header is `sdp_suki_token`, plus `sdp_provider_id` when set.
//! - Retries for GET: connect errors, timeouts, 429, 500, 502, 503, 504, with exponential
//!   back-off and full jitter, honouring `Retry-After`; bounded attempts and a total deadline.
//! - [`ClientError`] never holds a token, a response body or patient data.
//!
//! [`follow`]: AmbientClient::follow
//! [`fetch_results`]: AmbientClient::fetch_results
//!
//! # Example
//!
//! ```no_run
//! use suki_ambient_client::{AmbientClient, Environment, PartnerLogin};
//! use suki_ambient_core::SessionId;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = AmbientClient::builder()
//!     .environment(Environment::Staging)
//!     .auth(PartnerLogin::new("partner-id", std::env::var("PARTNER_JWT")?))
//!     .provider_id("provider-123")
//!     .build()?;
//! let note = client.session_content(&SessionId::from("a953839a-..."), false).await?;
//! println!("{} note sections", note.summary.len());
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod auth;
mod builder;
mod client;
mod endpoints;
mod error;
mod limits;
pub mod metrics;
mod results;
mod retry;
mod transport;

pub use auth::{AuthContext, PartnerLogin, PartnerTokenSource, StaticToken, Token, TokenProvider};
pub use builder::AmbientClientBuilder;
pub use client::{AmbientClient, Environment};
pub use error::{ClientError, ServerMessage, TimeoutKind, TransportKind};
pub use results::SessionResults;
pub use retry::RetryPolicy;

/// The building blocks of this client's transport, for the SDK's own clients of other HTTP APIs
/// (the FHIR write-back posts to the EHR with them): the same redirect rule, body cap,
/// `Retry-After` reading and retry loop.
///
/// **Internal: not part of this crate's public API and not covered by its semver promise.** It
/// is public only so that `suki-ambient-fhir` can share it; it may change in any release.
#[doc(hidden)]
pub mod toolkit {
    pub use crate::limits::{read_capped, read_prefix, redirect_allowed, redirect_policy};
    pub use crate::retry::{Exhausted, Failed, GaveUp, parse_retry_after, retrying};
}
