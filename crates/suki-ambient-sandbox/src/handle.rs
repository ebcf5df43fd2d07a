//! `SandboxHandle` (the running server) and `SandboxControl` (what drives it: secrets, tokens,
//! faults, counts; sessions and deliveries are in their own modules).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use suki_ambient_core::{Verifier, VerifierBuilder, WebhookSecret};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::state::Shared;
use crate::{Fault, routes};

/// Why a sandbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No such session.
    #[error("unknown session")]
    UnknownSession,
    /// The session already ended.
    #[error("the session already ended ({status})")]
    AlreadyEnded {
        /// Its status.
        status: String,
    },
    /// The session has not ended: it has no webhook to send again.
    #[error("the session has not ended: no webhook to redeliver")]
    NotEnded,
    /// A webhook was to be delivered but no webhook URL is set.
    #[error("no webhook URL configured")]
    NoWebhookUrl,
    /// The receiver could not be reached.
    #[error("webhook delivery failed: {reason}")]
    Delivery {
        /// What went wrong (no payload content).
        reason: String,
    },
}

/// A running sandbox. Dropping it stops the server; [`shutdown`](Self::shutdown) waits for it.
/// It dereferences to [`SandboxControl`], which drives sessions, deliveries and faults.
pub struct SandboxHandle {
    pub(crate) control: SandboxControl,
    pub(crate) addr: SocketAddr,
    pub(crate) shutdown: Option<oneshot::Sender<()>>,
    pub(crate) task: Option<JoinHandle<()>>,
}

impl fmt::Debug for SandboxHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxHandle")
            .field("base_url", &self.control.shared.base_url)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for SandboxHandle {
    type Target = SandboxControl;
    fn deref(&self) -> &SandboxControl {
        &self.control
    }
}

/// Drives a running sandbox: sessions, webhook deliveries, tokens and faults. Cheap to clone
/// and `Send + Sync`, so tasks can share it.
#[derive(Clone)]
pub struct SandboxControl {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for SandboxControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxControl")
            .field("base_url", &self.shared.base_url)
            .finish_non_exhaustive()
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl SandboxHandle {
    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A clonable controller of this sandbox.
    pub fn control(&self) -> SandboxControl {
        self.control.clone()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl SandboxControl {
    /// The API base URL, e.g. `http://127.0.0.1:40123/`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The base URL of the sandbox's FHIR R4 server, e.g. `http://127.0.0.1:40123/fhir`: the
    /// demo's EHR. It takes transaction Bundles (`POST`, conditional create by `identifier` or
    /// `_tag`), searches (`GET /fhir/{type}?identifier=…`) and reads, with
    /// `Authorization: Bearer` [`fhir_token`](Self::fhir_token); it serves its
    /// CapabilityStatement at `/fhir/metadata`. `Fault::status(503).on("/fhir")` makes it fail.
    pub fn fhir_base_url(&self) -> String {
        format!("{}fhir", self.shared.base_url)
    }

    /// The bearer token the FHIR server requires.
    pub fn fhir_token(&self) -> &str {
        &self.shared.fhir_token
    }

    /// What was written to the FHIR server: every resource of `resource_type` (every resource
    /// for `None`), as stored (with its `id` and `meta`), in the order written.
    pub fn fhir_resources(&self, resource_type: Option<&str>) -> Vec<serde_json::Value> {
        self.shared.fhir().list(resource_type)
    }

    /// The webhook signing secret.
    pub fn webhook_secret(&self) -> WebhookSecret {
        self.shared.secret.clone()
    }

    /// A verifier builder preloaded with the webhook secret, for the receiver under test.
    pub fn verifier_builder(&self) -> VerifierBuilder {
        Verifier::builder().secret(self.shared.secret.clone())
    }

    /// Where webhooks go (`None`: not delivered).
    pub fn set_webhook_url(&self, url: Option<String>) {
        *self
            .shared
            .webhook_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = url;
    }

    /// Issues a token directly, as a login would (bound to `provider_id` when given).
    pub fn issue_token(&self, provider_id: Option<&str>) -> String {
        routes::issue_token(&self.shared, provider_id.map(str::to_owned))
    }

    /// How many tokens the sandbox holds (at most [`MAX_TOKENS`](crate::MAX_TOKENS)).
    pub fn token_count(&self) -> usize {
        self.shared.world().tokens.len()
    }

    /// Makes every issued token invalid: the next call answers 401 `invalid_sdp_token`.
    pub fn expire_tokens(&self) {
        self.shared.world().tokens.clear();
    }

    /// Injects a fault. At most [`MAX_FAULTS`](crate::MAX_FAULTS) are kept: past that, the oldest
    /// goes.
    pub fn inject(&self, fault: Fault) {
        let mut world = self.shared.world();
        if world.faults.len() >= crate::MAX_FAULTS {
            world.faults.remove(0);
        }
        world.faults.push(fault);
    }

    /// The bearer token of the admin routes under `/sandbox/`
    /// (`Authorization: Bearer <token>`).
    pub fn admin_token(&self) -> &str {
        &self.shared.admin_token
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.world().faults.clear();
    }

    /// How many requests reached paths starting with `prefix` (faulted ones included).
    pub fn requests(&self, prefix: &str) -> u64 {
        self.shared.world().requests.under(prefix)
    }
}
