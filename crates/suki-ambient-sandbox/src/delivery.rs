//! Webhook delivery: sign an event and POST it to the receiver, report what it answered.

use std::time::{Duration, Instant};

use suki_ambient_core::{EventKind, SignedHeaders, UnixMillis, WebhookEvent};

use crate::handle::{SandboxControl, SandboxError};

/// What the receiver answered to a webhook delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The kind of event delivered.
    pub kind: EventKind,
    /// The receiver's HTTP status.
    pub status: u16,
    /// The receiver's answer body (as text, truncated to 1 KiB).
    pub body: String,
    /// How long the receiver took.
    pub elapsed: Duration,
}

impl Delivery {
    /// Whether the receiver acknowledged (2xx).
    pub fn acknowledged(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl SandboxControl {
    /// Signs `event` now and POSTs it to the webhook URL; returns the receiver's answer.
    ///
    /// # Errors
    /// [`SandboxError::NoWebhookUrl`], [`SandboxError::Delivery`].
    pub async fn deliver(&self, event: &WebhookEvent) -> Result<Delivery, SandboxError> {
        let body = event.to_vec();
        let headers = SignedHeaders::new(&self.shared.secret, UnixMillis::now(), &body);
        self.post(event.kind(), &headers, body).await
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
            status,
            body: text,
            elapsed: started.elapsed(),
        };
        tracing::debug!(kind = %kind, status, "sandbox delivered a webhook");
        Ok(delivery)
    }
}
