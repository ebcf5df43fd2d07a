//! `DeliverySink`: where a ready-made endpoint puts verified deliveries instead of handling them
//! while Suki waits (a durable inbox).

use async_trait::async_trait;

use crate::{VerifiedDelivery, WebhookEvent};

/// What a [`DeliverySink`] did with a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stored {
    /// Stored durably for the first time: the endpoint answers `{"status":"accepted"}`.
    Accepted,
    /// Its deduplication key was already stored: `{"status":"duplicate"}`.
    Duplicate,
}

/// Why a [`DeliverySink`] could not store a delivery. Its text is logged (it must never hold
/// body content); over HTTP the endpoint answers only `503 inbox_unavailable`.
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A durable store for verified deliveries, such as `suki-ambient-inbox`'s `Inbox`: a
/// [`WebhookEndpoint::inbox`](crate::WebhookEndpoint::inbox) endpoint verifies and parses each
/// request, calls [`store`](Self::store), and answers 200 only once it returned `Ok` (the
/// delivery is on disk), 503 otherwise, so that nothing is acknowledged that could be lost.
///
/// The sink is the deduplication too: no replay guard is used beside it.
#[async_trait]
pub trait DeliverySink: Send + Sync + 'static {
    /// Stores `delivery` (already parsed into `event`) durably, or reports that its
    /// deduplication key is already stored.
    async fn store(
        &self,
        delivery: &VerifiedDelivery,
        event: &WebhookEvent,
    ) -> Result<Stored, SinkError>;
}
