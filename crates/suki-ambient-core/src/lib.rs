//! Core of the Suki Ambient SDK: webhook verification and signing, webhook and follow-up API
//! models, replay protection and the event-handler contract shared by every adapter.
//!
//! This crate names no web framework and no HTTP client; it speaks `http` 1.x and `bytes`.
//! Most users depend on the facade crate `suki-ambient` with the feature of their framework.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use suki_ambient_core::{sign, UnixMillis, Verifier, WebhookEvent, WebhookSecret};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder()
//!     .secret("my-webhook-secret")
//!     .tolerance(Duration::from_secs(300))
//!     .build()?;
//!
//! // What Suki sends: the raw body and two headers.
//! let body = br#"{"status":"success","session_id":"s-1","encounter_id":"e-1"}"#;
//! let now = UnixMillis::now().to_string();
//! let signature = sign(&WebhookSecret::from("my-webhook-secret"), &now, body).to_hex();
//!
//! let verified = verifier.verify_parts(&now, &signature, body)?;
//! match verified.parse()? {
//!     WebhookEvent::Completed(done) => assert_eq!(done.session_id.as_str(), "s-1"),
//!     other => panic!("unexpected {:?}", other.kind()),
//! }
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod body;
mod endpoint;
mod error;
mod event;
mod fields;
mod handler;
mod headers;
mod ids;
mod json;
mod links;
mod redact;
mod rejection;
mod replay;
mod secret;
mod sign;
mod sink;
mod verify;

pub mod sample;
pub mod time;

pub mod adapter;
pub mod api;
pub mod metrics;

#[cfg(feature = "testing")]
pub mod testing;

pub use endpoint::{GuardFailurePolicy, WebhookEndpoint};
pub use error::{ConfigError, PayloadError, PayloadErrorCategory, VerifyError, WebhookError};
pub use event::{
    ErrorCode, EventKind, IdempotencyKey, SessionCompleted, SessionEnded, SessionFailed,
    UnknownEvent, WebhookEvent,
};
#[doc(hidden)]
pub use fields::KNOWN_FIELDS;
pub use handler::{EventHandler, HandlerError, NoopHandler};
pub use headers::{GENERATED_AT_HEADER, SIGNATURE_HEADER};
pub use ids::{EncounterId, SessionId, SessionKind};
pub use json::decode_json;
pub use links::{Link, LinkKind, Links};
pub use replay::{Freshness, MemoryReplayGuard, ReplayError, ReplayGuard, ReplayKey};
pub use secret::WebhookSecret;
pub use sign::{SIGNATURE_LEN, Signature, SignedHeaders, sign};
pub use sink::{DeliverySink, SinkError, Stored};
pub use time::{Clock, FixedClock, SystemClock, UnixMillis};
pub use verify::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_TOLERANCE, Verified, VerifiedDelivery,
    Verifier, VerifierBuilder, WebhookMeta,
};

#[doc(no_inline)]
pub use async_trait::async_trait;
#[doc(no_inline)]
pub use bytes::Bytes;
#[doc(no_inline)]
pub use http::{HeaderMap, StatusCode};

/// The code in `docs/verification.md` compiles and runs.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/verification.md")]
struct VerificationGuide;
