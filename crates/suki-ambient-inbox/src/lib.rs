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
mod reconciler;
mod records;
mod settings;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
mod store;
mod transaction;
mod worker;

#[cfg(feature = "testing")]
pub mod conformance;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use audit::{AuditCheckpoint, AuditVerification, BrokenLink, audit_mac};
pub use crypto::{AuditKey, BodyKey, KeyError, KeyProvider, Keys};
pub use error::{DatabaseError, DatabaseErrorKind, MigrateError, StoreError};
pub use expect::{
    CheckOutcome, ExpectationLease, ExpectationRecord, ExpectedSession, FinishedCheck, Resolution,
    SealedContext, SessionKind,
};
pub use flow::Unavailable;
pub use handler::{
    Coded, FetchResults, InboxHandler, InboxMeta, LinkNeeds, Permanent, ResultsHandler, RetryAfter,
    Snooze,
};
#[cfg(feature = "axum")]
pub use health::health_router;
pub use health::{DestinationHealth, Health, HealthStatus, HealthThresholds, Problem, Readiness};
pub use inbox::{AUDIT_FLOOR, Inbox, dedup_key};
pub use migrate::{Dialect, HISTORY_TABLE, Migration, migrations};
pub use open::InboxBuilder;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use open::InboxPool;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
pub use reconciler::{
    CheckReport, Reconciler, ReconcilerBuilder, ReconcilerHandle, polled_event, polled_kind,
};
pub use records::{
    Act, Action, Actor, AuditEntry, Claim, ClaimRequest, Counts, DeadFilter, DeadGroup,
    DeliveryRecord, DestinationDown, DestinationRecord, ExpectationCounts, FailedAttempt,
    HourCount, InboxStatus, KeyCheck, Lead, Lease, NewDelivery, NewExpectation, Next, Pause,
    RekeyReport, Resealed, Selection, Source, State, StoredBody, TimelineEvent, Trace, audit_hash,
};
#[cfg(feature = "postgres")]
pub use sql::PostgresDialect;
#[cfg(feature = "sqlite")]
pub use sql::SqliteDialect;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{SqlDialect, SqlStore};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::{
    DeliveryQueue, Expectations, Operations, ReadModel, Store, StoreTransaction, Transactions,
    Wakeups,
};
pub use transaction::TransactionalHandler;
pub use worker::{InboxWorker, InboxWorkerBuilder, WorkerHandle, backoff};

/// sqlx, for [`Inbox::from_pool`]'s pools and the `TransactionalHandler`'s connection type.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sqlx;
