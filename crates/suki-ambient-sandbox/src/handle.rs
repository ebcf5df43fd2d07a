//! `Sandbox` (builder) and `SandboxHandle` (drive sessions, deliver webhooks, inject faults).

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use suki_ambient_core::api::SessionStatus;
use suki_ambient_core::{
    EncounterId, ErrorCode, EventKind, Links, SessionCompleted, SessionEnded, SessionFailed,
    SessionId, SignedHeaders, UnixMillis, Verifier, VerifierBuilder, WebhookEvent, WebhookSecret,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::state::{Session, SessionKind, Shared, World, new_id};
use crate::{DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN, Fault, routes, synth};

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
        let app =
            routes::router_with_admin(Arc::clone(&shared), crate::admin::router(control.clone()));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %err, "sandbox server stopped");
            }
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

/// Ids of a sandbox session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxSession {
    /// The session.
    pub session_id: SessionId,
    /// Its encounter.
    pub encounter_id: EncounterId,
}

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

/// A running sandbox. Dropping it stops the server; [`shutdown`](Self::shutdown) waits for it.
/// It dereferences to [`SandboxControl`], which drives sessions, deliveries and faults.
pub struct SandboxHandle {
    control: SandboxControl,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
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

    /// Starts an Ambient session (status `running`), in `encounter` or a new one.
    pub fn create_session(&self, encounter: Option<&EncounterId>) -> SandboxSession {
        self.create(encounter, SessionKind::Ambient)
    }

    /// Starts a form-filling session (status `running`).
    pub fn create_form_session(&self) -> SandboxSession {
        self.create(None, SessionKind::FormFilling)
    }

    fn create(&self, encounter: Option<&EncounterId>, kind: SessionKind) -> SandboxSession {
        let session_id = new_id();
        let encounter_id = encounter.map_or_else(new_id, |e| e.as_str().to_owned());
        let mut world = self.shared.world();
        world.sessions.insert(
            session_id.clone(),
            Session {
                encounter_id: encounter_id.clone(),
                kind,
                status: SessionStatus::Running,
                generated: None,
            },
        );
        world
            .encounters
            .entry(encounter_id.clone())
            .or_default()
            .push(session_id.clone());
        SandboxSession {
            session_id: SessionId(session_id),
            encounter_id: EncounterId(encounter_id),
        }
    }

    /// Completes a session (generating its content) without delivering a webhook.
    ///
    /// # Errors
    /// [`SandboxError::UnknownSession`], [`SandboxError::AlreadyEnded`].
    pub fn complete_silently(&self, id: &SessionId) -> Result<WebhookEvent, SandboxError> {
        let mut world = self.shared.world();
        let index = world.completed;
        let session = world
            .sessions
            .get_mut(id.as_str())
            .ok_or(SandboxError::UnknownSession)?;
        ensure_running(session)?;
        session.generated = Some(synth::generate(index, id.as_str(), &self.shared.base_url));
        session.status = SessionStatus::Completed;
        let kind = session.kind;
        let encounter_id = session.encounter_id.clone();
        world.completed += 1;
        let sessions = world
            .encounters
            .get(&encounter_id)
            .map(|ids| ids.iter().map(|s| SessionId(s.clone())).collect())
            .unwrap_or_default();
        let links = match kind {
            SessionKind::Ambient => {
                Links::for_session(id, &EncounterId::from(encounter_id.as_str()))
            }
            SessionKind::FormFilling => Links::for_form_filling(id),
        };
        Ok(WebhookEvent::Completed(SessionCompleted {
            session_id: id.clone(),
            encounter_id: EncounterId(encounter_id),
            sessions,
            additional_info: Some(
                serde_json::json!({"priority": "normal", "source": "sandbox"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            links,
        }))
    }

    /// Completes a session and delivers its `success` webhook.
    ///
    /// # Errors
    /// As [`complete_silently`](Self::complete_silently), plus delivery errors.
    pub async fn complete(&self, id: &SessionId) -> Result<Delivery, SandboxError> {
        let event = self.complete_silently(id)?;
        self.deliver(&event).await
    }

    /// Fails a session (`ERROR_CODE_TRANSCRIPTION`) and delivers its `failure` webhook.
    ///
    /// # Errors
    /// [`SandboxError::UnknownSession`], [`SandboxError::AlreadyEnded`], delivery errors.
    pub async fn fail(&self, id: &SessionId) -> Result<Delivery, SandboxError> {
        let encounter_id = self.end(id, SessionStatus::Failed)?;
        let event = WebhookEvent::Failed(SessionFailed {
            session_id: id.clone(),
            encounter_id,
            error_code: ErrorCode::Transcription,
            error_detail: "Error in transcription".into(),
        });
        self.deliver(&event).await
    }

    /// Times a session out and delivers a webhook with status `timeout` (Suki does not document
    /// this status string; the SDK recognises common spellings).
    ///
    /// # Errors
    /// As [`fail`](Self::fail).
    pub async fn time_out(&self, id: &SessionId) -> Result<Delivery, SandboxError> {
        let encounter_id = self.end(id, SessionStatus::Failed)?;
        let event = WebhookEvent::TimedOut(SessionEnded {
            status: "timeout".into(),
            session_id: id.clone(),
            encounter_id,
            additional_info: None,
        });
        self.deliver(&event).await
    }

    /// Cancels a session (status `aborted`) and delivers a webhook with status `cancelled`.
    ///
    /// # Errors
    /// As [`fail`](Self::fail).
    pub async fn cancel(&self, id: &SessionId) -> Result<Delivery, SandboxError> {
        let encounter_id = self.end(id, SessionStatus::Aborted)?;
        let event = WebhookEvent::Cancelled(SessionEnded {
            status: "cancelled".into(),
            session_id: id.clone(),
            encounter_id,
            additional_info: None,
        });
        self.deliver(&event).await
    }

    fn end(&self, id: &SessionId, status: SessionStatus) -> Result<EncounterId, SandboxError> {
        let mut world = self.shared.world();
        let session = world
            .sessions
            .get_mut(id.as_str())
            .ok_or(SandboxError::UnknownSession)?;
        ensure_running(session)?;
        session.status = status;
        Ok(EncounterId(session.encounter_id.clone()))
    }

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

fn ensure_running(session: &Session) -> Result<(), SandboxError> {
    if session.status.is_terminal() {
        return Err(SandboxError::AlreadyEnded {
            status: session.status.to_string(),
        });
    }
    Ok(())
}
