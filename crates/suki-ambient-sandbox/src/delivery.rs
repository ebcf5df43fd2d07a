//! Webhook delivery: sign an event and POST it to the receiver, report what it answered.

use std::time::{Duration, Instant};

use suki_ambient_core::{EventKind, SignedHeaders, UnixMillis, WebhookEvent};

use crate::faults::WebhookAction;
use crate::handle::{SandboxControl, SandboxError};

/// What the receiver answered to a webhook delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The kind of event delivered.
    pub kind: EventKind,
    /// What became of the webhook: sent now, or lost or held back by a [`WebhookFault`].
    ///
    /// [`WebhookFault`]: crate::WebhookFault
    pub fate: Fate,
    /// The receiver's HTTP status (0 when it was not sent now).
    pub status: u16,
    /// The receiver's answer body (as text, truncated to 1 KiB).
    pub body: String,
    /// How long the receiver took.
    pub elapsed: Duration,
}

/// What became of a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fate {
    /// Sent now; the receiver's answer is in the [`Delivery`].
    Sent,
    /// Lost by a [`WebhookFault::lose`](crate::WebhookFault::lose): never sent.
    Lost,
    /// Held back by a [`WebhookFault::delay`](crate::WebhookFault::delay): sent this much later.
    Delayed(Duration),
}

impl Delivery {
    /// Whether the receiver acknowledged (sent now, and answered 2xx).
    pub fn acknowledged(&self) -> bool {
        self.fate == Fate::Sent && (200..300).contains(&self.status)
    }

    fn not_sent(kind: EventKind, fate: Fate) -> Self {
        Self {
            kind,
            fate,
            status: 0,
            body: String::new(),
            elapsed: Duration::ZERO,
        }
    }
}

impl SandboxControl {
    /// Signs `event` now and POSTs it to the webhook URL; returns the receiver's answer.
    ///
    /// # Errors
    /// [`SandboxError::NoWebhookUrl`], [`SandboxError::Delivery`].
    ///
    /// A matching [`WebhookFault`](crate::WebhookFault) loses it (`fate: Lost`, nothing sent) or
    /// holds it back (`fate: Delayed`, sent later on a task of its own).
    pub async fn deliver(&self, event: &WebhookEvent) -> Result<Delivery, SandboxError> {
        let session = event.session_id().map(|s| s.as_str().to_owned());
        let action = {
            let mut world = self.shared.world();
            if let Some(s) = session.as_deref().and_then(|id| world.sessions.get_mut(id)) {
                s.event = Some(event.clone());
            }
            world
                .webhook_faults
                .iter()
                .find(|f| f.applies(session.as_deref()))
                .map(|f| f.action)
        };
        let body = event.to_vec();
        let headers = SignedHeaders::new(&self.shared.secret, UnixMillis::now(), &body);
        match action {
            None => self.post(event.kind(), &headers, body).await,
            Some(WebhookAction::Lose) => {
                tracing::debug!(kind = %event.kind(), "sandbox lost a webhook (fault)");
                Ok(Delivery::not_sent(event.kind(), Fate::Lost))
            }
            Some(WebhookAction::Delay(by)) => {
                let control = self.clone();
                let kind = event.kind();
                tokio::spawn(async move {
                    tokio::time::sleep(by).await;
                    if let Err(err) = control.post(kind, &headers, body).await {
                        tracing::debug!(error = %err, "sandbox's delayed webhook was not delivered");
                    }
                });
                Ok(Delivery::not_sent(kind, Fate::Delayed(by)))
            }
        }
    }

    /// Sends the webhook of an ended session again, signed now, whatever the webhook faults: the
    /// re-send Suki's support can arrange.
    ///
    /// # Errors
    /// [`SandboxError::UnknownSession`], [`SandboxError::NotEnded`], delivery errors.
    pub async fn redeliver(
        &self,
        id: &suki_ambient_core::SessionId,
    ) -> Result<Delivery, SandboxError> {
        let event = {
            let world = self.shared.world();
            let session = world
                .sessions
                .get(id.as_str())
                .ok_or(SandboxError::UnknownSession)?;
            session.event.clone().ok_or(SandboxError::NotEnded)?
        };
        let body = event.to_vec();
        let headers = SignedHeaders::new(&self.shared.secret, UnixMillis::now(), &body);
        self.post(event.kind(), &headers, body).await
    }

    /// Adds a webhook fault (at most [`MAX_FAULTS`](crate::MAX_FAULTS); past that the oldest goes).
    pub fn inject_webhook(&self, fault: crate::WebhookFault) {
        let mut world = self.shared.world();
        if world.webhook_faults.len() >= crate::MAX_FAULTS {
            world.webhook_faults.remove(0);
        }
        world.webhook_faults.push(fault);
    }

    /// Removes every webhook fault (webhooks already held back are still sent).
    pub fn clear_webhook_faults(&self) {
        self.shared.world().webhook_faults.clear();
    }

    /// Delivers `event` with its body altered after signing (one byte flipped): a receiver
    /// must refuse it (401 `mismatch`).
    ///
    /// # Errors
    /// As [`deliver`](Self::deliver).
    pub async fn deliver_tampered(&self, event: &WebhookEvent) -> Result<Delivery, SandboxError> {
        let mut body = event.to_vec();
        let headers = SignedHeaders::new(&self.shared.secret, UnixMillis::now(), &body);
        let last = body.len().saturating_sub(2);
        if let Some(byte) = body.get_mut(last) {
            *byte ^= 0x01;
        }
        self.post(event.kind(), &headers, body).await
    }

    /// Delivers `body` signed with `headers` as given (re-deliveries, stale timestamps).
    ///
    /// # Errors
    /// As [`deliver`](Self::deliver).
    pub async fn deliver_signed(
        &self,
        kind: EventKind,
        headers: &SignedHeaders,
        body: Vec<u8>,
    ) -> Result<Delivery, SandboxError> {
        self.post(kind, headers, body).await
    }

    async fn post(
        &self,
        kind: EventKind,
        headers: &SignedHeaders,
        body: Vec<u8>,
    ) -> Result<Delivery, SandboxError> {
        let url = self
            .shared
            .webhook_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(SandboxError::NoWebhookUrl)?;
        let mut request = self
            .shared
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        let started = Instant::now();
        let response = request.send().await.map_err(|e| SandboxError::Delivery {
            reason: if e.is_connect() {
                "receiver not reachable".to_owned()
            } else if e.is_timeout() {
                "receiver timed out".to_owned()
            } else {
                "request failed".to_owned()
            },
        })?;
        let status = response.status().as_u16();
        if let Some(hint) = crate::not_delivered_hint(status) {
            return Err(SandboxError::Delivery {
                reason: format!("the receiver answered {status}; {hint}"),
            });
        }
        let bytes = response.bytes().await.unwrap_or_default();
        let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).into_owned();
        text.truncate(1024);
        let delivery = Delivery {
            kind,
            fate: Fate::Sent,
            status,
            body: text,
            elapsed: started.elapsed(),
        };
        tracing::debug!(kind = %kind, status, "sandbox delivered a webhook");
        Ok(delivery)
    }
}
