//! `EventHandler`: the application's callbacks, one per event kind, used by ready-made endpoints.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    SessionCompleted, SessionEnded, SessionFailed, UnknownEvent, WebhookEvent, WebhookMeta,
};

/// The error an [`EventHandler`] returns; the endpoint then answers 500 and releases the replay
/// claim so that a re-delivery is processed. Its text is never sent over HTTP or logged.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What an application does with each verified, deduplicated event. Every method defaults to
/// doing nothing; implement the ones you need.
///
/// Keep handlers short (enqueue, then return): Suki waits for the answer.
///
/// # Example
///
/// ```
/// use suki_ambient_core::{async_trait, EventHandler, HandlerError, SessionCompleted, WebhookMeta};
///
/// struct Notes;
///
/// #[async_trait]
/// impl EventHandler for Notes {
///     async fn on_completed(&self, done: SessionCompleted, _meta: WebhookMeta) -> Result<(), HandlerError> {
///         println!("session {} is ready", done.session_id);
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// A session completed.
    async fn on_completed(
        &self,
        event: SessionCompleted,
        meta: WebhookMeta,
    ) -> Result<(), HandlerError> {
        let _ = (event, meta);
        Ok(())
    }

    /// A session failed.
    async fn on_failed(&self, event: SessionFailed, meta: WebhookMeta) -> Result<(), HandlerError> {
        let _ = (event, meta);
        Ok(())
    }

    /// A session timed out.
    async fn on_timed_out(
        &self,
        event: SessionEnded,
        meta: WebhookMeta,
    ) -> Result<(), HandlerError> {
        let _ = (event, meta);
        Ok(())
    }

    /// A session was cancelled.
    async fn on_cancelled(
        &self,
        event: SessionEnded,
        meta: WebhookMeta,
    ) -> Result<(), HandlerError> {
        let _ = (event, meta);
        Ok(())
    }

    /// An event with a status this SDK does not know (acknowledged with 200 either way).
    async fn on_unknown(&self, event: UnknownEvent, meta: WebhookMeta) -> Result<(), HandlerError> {
        let _ = (event, meta);
        Ok(())
    }

    /// Dispatches `event` to the method of its kind. Override to see every event in one place.
    async fn handle(&self, event: WebhookEvent, meta: WebhookMeta) -> Result<(), HandlerError> {
        match event {
            WebhookEvent::Completed(e) => self.on_completed(e, meta).await,
            WebhookEvent::Failed(e) => self.on_failed(e, meta).await,
            WebhookEvent::TimedOut(e) => self.on_timed_out(e, meta).await,
            WebhookEvent::Cancelled(e) => self.on_cancelled(e, meta).await,
            WebhookEvent::Unknown(e) => self.on_unknown(e, meta).await,
        }
    }
}

#[async_trait]
impl<T: EventHandler + ?Sized> EventHandler for Arc<T> {
    async fn handle(&self, event: WebhookEvent, meta: WebhookMeta) -> Result<(), HandlerError> {
        (**self).handle(event, meta).await
    }
}

/// A handler that accepts every event and does nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopHandler;

impl EventHandler for NoopHandler {}
