//! `suki-ambient`: receive Suki Ambient webhooks safely and fetch their results.
//!
//! This facade re-exports the names users need at its root (verification, events, the endpoint
//! and its handler, signing, replay protection, errors); the follow-up API models are in
//! [`api`], time in [`time`], what only adapter authors need in [`adapter`]. Framework adapters
//! and the API client are behind features (`axum`, `actix`, `warp`, `client`, `sandbox`,
//! `redis`, `inbox`, `postgres`, `fhir`, `testing`, `full`).
//!
#![cfg_attr(
    all(
        feature = "axum",
        feature = "actix",
        feature = "warp",
        feature = "client",
        feature = "inbox"
    ),
    doc = include_str!("../README.md")
)]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub use suki_ambient_core::{
    // Re-exported crates' items used in signatures
    Bytes,
    // Time
    Clock,
    // Verification
    ConfigError,
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TOLERANCE,
    // Durable storage of verified deliveries (the inbox implements it)
    DeliverySink,
    // Events
    EncounterId,
    ErrorCode,
    // The ready-made endpoint and its handler
    EventHandler,
    EventKind,
    FixedClock,
    // Replay protection
    Freshness,
    GENERATED_AT_HEADER,
    GuardFailurePolicy,
    HandlerError,
    HeaderMap,
    IdempotencyKey,
    Link,
    LinkKind,
    Links,
    MemoryReplayGuard,
    NoopHandler,
    PayloadError,
    PayloadErrorCategory,
    ReplayError,
    ReplayGuard,
    ReplayKey,
    SIGNATURE_HEADER,
    SessionCompleted,
    SessionEnded,
    SessionFailed,
    SessionId,
    // Signing (tests, local triggers)
    Signature,
    SignedHeaders,
    SinkError,
    StatusCode,
    Stored,
    UnixMillis,
    UnknownEvent,
    Verified,
    VerifiedDelivery,
    Verifier,
    VerifierBuilder,
    VerifyError,
    WebhookEndpoint,
    WebhookError,
    WebhookEvent,
    WebhookMeta,
    WebhookSecret,
    // Modules
    adapter,
    api,
    async_trait,
    sign,
    time,
};

/// The test kit (feature `testing`): event builders, signed requests, the signature vectors and
/// fixtures, and the adapter conformance suite.
#[cfg(feature = "testing")]
pub use suki_ambient_core::testing;

/// axum 0.8 integration (feature `axum`): see [`suki_ambient_axum`].
#[cfg(feature = "axum")]
pub mod axum {
    pub use suki_ambient_axum::*;
}

/// actix-web 4 integration (feature `actix`): see [`suki_ambient_actix`].
#[cfg(feature = "actix")]
pub mod actix {
    pub use suki_ambient_actix::*;
}

/// warp 0.4 integration (feature `warp`): see [`suki_ambient_warp`].
#[cfg(feature = "warp")]
pub mod warp {
    pub use suki_ambient_warp::*;
}

/// The client for Suki's follow-up APIs (feature `client`): see [`suki_ambient_client`].
#[cfg(feature = "client")]
pub mod client {
    pub use suki_ambient_client::*;
}

/// The local Suki platform (feature `sandbox`): see [`suki_ambient_sandbox`].
#[cfg(feature = "sandbox")]
pub mod sandbox {
    pub use suki_ambient_sandbox::*;
}

/// The Redis replay guard (feature `redis`): see [`suki_ambient_redis`].
#[cfg(feature = "redis")]
pub mod redis {
    pub use suki_ambient_redis::*;
}

/// The durable inbox (features `inbox`, `postgres`; `console` adds its console): see
/// [`suki_ambient_inbox`].
#[cfg(any(feature = "inbox", feature = "postgres", feature = "console"))]
pub mod inbox {
    /// The inbox console (feature `console`): see [`suki_ambient_console`].
    #[cfg(feature = "console")]
    pub use suki_ambient_console as console;
    pub use suki_ambient_inbox::*;
}

/// FHIR R4 write-back of a completed session (feature `fhir`): see [`suki_ambient_fhir`].
#[cfg(feature = "fhir")]
pub mod fhir {
    pub use suki_ambient_fhir::*;
}

/// The code in `docs/adapters.md` compiles and runs.
#[cfg(all(
    doctest,
    feature = "axum",
    feature = "actix",
    feature = "warp",
    feature = "redis",
    feature = "client"
))]
#[doc = include_str!("../../../docs/adapters.md")]
struct AdaptersGuide;

/// The code in `docs/inbox.md` compiles.
#[cfg(all(doctest, feature = "inbox"))]
#[doc = include_str!("../../../docs/inbox.md")]
struct InboxGuide;

/// The code in `docs/reconciler.md` compiles.
#[cfg(all(doctest, feature = "inbox"))]
#[doc = include_str!("../../../docs/reconciler.md")]
struct ReconcilerGuide;

/// The code in `docs/client.md` compiles and runs.
#[cfg(all(doctest, feature = "client"))]
#[doc = include_str!("../../../docs/client.md")]
struct ClientGuide;

/// The code in `docs/fhir.md` compiles.
#[cfg(all(doctest, feature = "fhir", feature = "inbox"))]
#[doc = include_str!("../../../docs/fhir.md")]
struct FhirGuide;

/// The code in `docs/operations.md` compiles.
#[cfg(all(doctest, feature = "axum", feature = "console", feature = "metrics"))]
#[doc = include_str!("../../../docs/operations.md")]
struct OperationsGuide;

/// The code in `docs/security.md` compiles.
#[cfg(all(doctest, feature = "inbox"))]
#[doc = include_str!("../../../docs/security.md")]
struct SecurityGuide;

/// The code in `docs/sandbox.md` compiles.
#[cfg(all(doctest, feature = "sandbox"))]
#[doc = include_str!("../../../docs/sandbox.md")]
struct SandboxGuide;
