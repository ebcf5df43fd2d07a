//! A durable inbox for Suki Ambient webhooks: **a note is never lost once the 200 leaves**.
//!
//! Suki sends each webhook once and never again. With an inbox, the endpoint answers 200 only
//! after the verified delivery is committed to disk ([`Inbox`], through
//! [`WebhookEndpoint::inbox`](suki_ambient_core::WebhookEndpoint::inbox)); an
//! [`InboxWorker`] then processes it with retries, leases and dead letters, so a crash, a
//! restart or a 503 burst from Suki's API delays a note but does not lose it.
//!
//! - SQLite (feature `sqlite`, the default; bundled) for one host: `sqlite://suki-inbox.db`.
//! - Postgres (feature `postgres`) for a fleet: fleet-wide deduplication and `SKIP LOCKED`
//!   claims.
//!
//! On both, a [`TransactionalHandler`] writes in the transaction that completes the row, so its
//! effect happens exactly once.
//!
//! The inbox stores the verified webhook body (ids, status, links, the partner's
//! `additional_info`); fetched note content only for a row whose handler failed after fetching
//! (kept for its next attempt, sealed; without keys only with
//! [`Inbox::keep_fetched_in_clear`]); the bodies of done rows are erased after 7 days and the
//! rows purged after 30 (by default); with keys ([`Inbox::with_keys`]) bodies are encrypted at
//! rest ([`crypto`]) and the audit log is chained under a key held outside the database
//! ([`audit`]).
//!
//! # Example
//!
//! ```no_run
//! use suki_ambient_core::{HandlerError, Verifier, WebhookEndpoint, WebhookEvent};
//! use suki_ambient_inbox::{Inbox, InboxMeta, InboxWorker};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let inbox = Inbox::connect("sqlite://suki-inbox.db").await?;
//! let verifier = Verifier::builder().secret_from_env("SUKI_WEBHOOK_SECRET").build()?;
//! // Serve this with suki_ambient_axum::router(endpoint), actix's route, or warp's filter.
//! let endpoint = WebhookEndpoint::inbox(verifier, inbox.clone());
//!
//! let worker = InboxWorker::builder(inbox, |event: WebhookEvent, meta: InboxMeta| async move {
//!     println!("{} {}", meta.dedup_key, event.kind());
//!     Ok::<(), HandlerError>(())
//! })
//! .build()
//! .spawn();
//! # let _ = endpoint;
//! # worker.shutdown().await?;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod audit;
pub mod crypto;
pub mod display;
mod error;
mod expect;
mod flow;
mod handler;
mod health;
mod inbox;
pub mod metrics;
mod migrate;
mod open;
mod operate;
pub mod ops;
mod reconciler;
mod records;
mod seam;
mod settings;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
pub mod store;
mod transaction;
mod worker;

#[cfg(feature = "testing")]
pub mod conformance;

#[cfg(feature = "postgres")]
mod postgres_store;
#[cfg(feature = "sqlite")]
mod sqlite_store;

// The application's names. A store author's are in `store`, an operator's reads and reports in
// `ops`, the audit log's in `audit`, the keys' in `crypto`.
pub use crypto::{AuditKey, BodyKey, KeyProvider, Keys};
pub use error::{MigrateError, StoreError};
pub use expect::{ExpectedSession, SessionKind};
pub use flow::Unavailable;
pub use handler::{
    Coded, FetchResults, InboxHandler, InboxMeta, LinkNeeds, Permanent, ResultsHandler, RetryAfter,
    Snooze,
};
#[cfg(feature = "axum")]
pub use health::health_router;
pub use health::{Health, HealthStatus, HealthThresholds};
pub use inbox::Inbox;
pub use open::InboxBuilder;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use open::InboxPool;
#[cfg(feature = "postgres")]
pub use postgres_store::PostgresStore;
pub use reconciler::{Reconciler, ReconcilerBuilder, ReconcilerHandle};
pub use records::{Action, Actor, DeliveryRecord, Selection, State};
#[cfg(feature = "sqlite")]
pub use sqlite_store::SqliteStore;
pub use transaction::TransactionalHandler;
pub use worker::{InboxWorker, InboxWorkerBuilder, WorkerHandle};

/// sqlx, for [`Inbox::from_pool`]'s pools and the `TransactionalHandler`'s connection type.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sqlx;
