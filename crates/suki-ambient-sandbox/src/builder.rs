//! `Sandbox::builder()`: configuration, and starting the server.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use suki_ambient_core::WebhookSecret;
use tokio::sync::oneshot;

use crate::handle::{SandboxControl, SandboxError, SandboxHandle};
use crate::state::{Shared, World};
use crate::{DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN, routes};

/// Builds and starts a sandbox; see [`Sandbox::builder`].
#[must_use]
pub struct SandboxBuilder {
    bind: String,
    webhook_url: Option<String>,
    secret: Option<WebhookSecret>,
    partners: Vec<(String, String)>,
    token_ttl: Duration,
    require_provider_id: bool,
    admin_token: Option<String>,
    fhir_token: Option<String>,
    any_host: bool,
}

impl fmt::Debug for SandboxBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxBuilder")
            .field("bind", &self.bind)
            .field("webhook_url", &self.webhook_url)
            .field("partners", &self.partners.len())
            .field("token_ttl", &self.token_ttl)
            .field("require_provider_id", &self.require_provider_id)
            .finish_non_exhaustive()
    }
}

/// A local Suki platform. Start one with [`Sandbox::builder`].
#[derive(Debug)]
pub struct Sandbox;

impl Sandbox {
    /// A builder: listens on `127.0.0.1:0` (an ephemeral port), accepts the partner
    /// [`DEFAULT_PARTNER_ID`]/[`DEFAULT_PARTNER_TOKEN`], issues one-hour tokens, signs webhooks
    /// with a random secret (see [`SandboxControl::webhook_secret`]) unless one is given.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder {
            bind: "127.0.0.1:0".into(),
            webhook_url: None,
            secret: None,
            partners: Vec::new(),
            token_ttl: Duration::from_secs(3600),
            require_provider_id: false,
            admin_token: None,
            fhir_token: None,
            any_host: false,
        }
    }
}

impl SandboxBuilder {
    /// The address to listen on (default `127.0.0.1:0`).
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.bind = addr.into();
        self
    }

    /// Where webhooks are delivered.
    pub fn webhook_url(mut self, url: impl Into<String>) -> Self {
        self.webhook_url = Some(url.into());
        self
    }

    /// The webhook signing secret (default: random).
    pub fn webhook_secret(mut self, secret: impl Into<WebhookSecret>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Accepts this partner at login (replaces the default partner; call again for more).
    pub fn partner(
        mut self,
        partner_id: impl Into<String>,
        partner_token: impl Into<String>,
    ) -> Self {
        self.partners
            .push((partner_id.into(), partner_token.into()));
        self
    }

    /// Lifetime of issued tokens (default one hour, as Suki).
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Require `sdp_provider_id` on calls whose token is not bound to a provider (Suki's rule
    /// for partners sharing one token across providers).
    pub fn require_provider_id(mut self, required: bool) -> Self {
        self.require_provider_id = required;
        self
    }

    /// The bearer token the admin routes under `/sandbox/` require (default: random, see
    /// [`SandboxControl::admin_token`]).
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// The bearer token the sandbox's FHIR server (`/fhir`) requires (default: random, see
    /// [`SandboxControl::fhir_token`]).
    pub fn fhir_token(mut self, token: impl Into<String>) -> Self {
        self.fhir_token = Some(token.into());
        self
    }

    /// Accept any `Host` header. By default a sandbox bound to a loopback address answers only
    /// requests whose `Host` is a loopback name (`localhost`, `127.0.0.1`, `[::1]`), so that a web
    /// page cannot reach it through DNS rebinding; one bound elsewhere on purpose accepts any.
    pub fn allow_any_host(mut self, allow: bool) -> Self {
        self.any_host = allow;
        self
    }

    /// Binds and starts serving in the current tokio runtime.
    ///
    /// # Errors
    /// [`SandboxError::Bind`] when the address cannot be bound.
    pub async fn start(self) -> Result<SandboxHandle, SandboxError> {
        let listener = tokio::net::TcpListener::bind(&self.bind)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: self.bind.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: self.bind.clone(),
            source,
        })?;
        let secret = self
            .secret
            .unwrap_or_else(|| WebhookSecret::from(random_hex()));
        let admin_token = self.admin_token.unwrap_or_else(random_hex);
        let fhir_token = self.fhir_token.unwrap_or_else(random_hex);
        let partners = if self.partners.is_empty() {
            vec![(
                DEFAULT_PARTNER_ID.to_owned(),
                DEFAULT_PARTNER_TOKEN.to_owned(),
            )]
        } else {
            self.partners
        };
        let shared = Arc::new(Shared {
            world: Mutex::new(World::default()),
            secret,
            partners,
            token_ttl: self.token_ttl,
            require_provider_id: self.require_provider_id,
            admin_token,
            fhir: Mutex::new(crate::fhir_store::FhirStore::default()),
            fhir_token,
            loopback_hosts_only: addr.ip().is_loopback() && !self.any_host,
            base_url: format!("http://{addr}/"),
            webhook_url: Mutex::new(self.webhook_url),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| SandboxError::Delivery {
                    reason: format!("HTTP client: {e}"),
                })?,
        });
        let control = SandboxControl {
            shared: Arc::clone(&shared),
        };
        let app = routes::router_with_admin(
            Arc::clone(&shared),
            crate::admin::router(control.clone()).merge(crate::fhir::router(Arc::clone(&shared))),
        );
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            // Slow or idle connections cannot hold the sandbox: a header-read timeout, a
            // connection bound and a head limit, as a production receiver has.
            suki_ambient_axum::Server::new()
                .shutdown_grace(std::time::Duration::from_secs(5))
                .serve(listener, app, shutdown)
                .await;
        });
        tracing::info!(base_url = %shared.base_url, "sandbox listening");
        Ok(SandboxHandle {
            control,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// 32 random bytes as hex: the default webhook secret and admin token.
fn random_hex() -> String {
    let bytes: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
    hex::encode(bytes)
}
