//! `AmbientClient`: the handle users share (one connection pool, one token provider), and the
//! environments it can point at.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderValue;

use crate::auth::TokenProvider;
use crate::error::ClientError;
use crate::retry::RetryPolicy;

/// Suki's API environments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Environment {
    /// `https://sdp.suki.ai`.
    Production,
    /// `https://sdp.suki-stage.com`.
    Staging,
}

impl Environment {
    /// The base URL.
    pub fn base_url(self) -> &'static str {
        match self {
            Self::Production => "https://sdp.suki.ai",
            Self::Staging => "https://sdp.suki-stage.com",
        }
    }
}

/// A client for Suki's follow-up APIs. Cheap to clone; share one per process.
///
/// # Example
///
/// ```no_run
/// use suki_ambient_client::{AmbientClient, Environment, PartnerLogin};
/// use suki_ambient_core::SessionId;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = AmbientClient::builder()
///     .environment(Environment::Staging)
///     .auth(PartnerLogin::new("partner-id", std::env::var("PARTNER_JWT")?))
///     .build()?;
/// // One client, one pool, one token cache: a cheap handle per provider.
/// let dr_lee = client.for_provider("provider-123")?;
/// let status = dr_lee.session_status(&SessionId::from("a953839a-...")).await?;
/// println!("{}", status.status);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AmbientClient {
    pub(crate) inner: Arc<Inner>,
    /// `sdp_provider_id`, kept outside `inner` so that [`for_provider`](Self::for_provider) is a
    /// cheap clone.
    pub(crate) provider_id: Option<HeaderValue>,
    /// This handle's retry policy, when [`with_retry`](Self::with_retry) gave one.
    pub(crate) retry: Option<RetryPolicy>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) base_url: Url,
    pub(crate) auth: Arc<dyn TokenProvider>,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout: Duration,
    pub(crate) deadline: Duration,
    pub(crate) max_response_bytes: u64,
    /// Quick retries allowed ([`RetryPolicy::retry_budget`]), plus one a second.
    pub(crate) budget: tower::retry::budget::TpsBudget,
}

impl fmt::Debug for AmbientClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmbientClient")
            .field("base_url", &self.inner.base_url.as_str())
            .field("provider_id", &self.provider_id.is_some())
            .field("retry", &self.retry.unwrap_or(self.inner.retry))
            .finish_non_exhaustive()
    }
}

impl AmbientClient {
    /// The API base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// The same client (connection pool, token provider, policies) sending another
    /// `sdp_provider_id`: for partners calling for many providers. Cheap: one `Arc` clone.
    ///
    /// With a [`PartnerLogin`](crate::PartnerLogin) made with
    /// [`token_per_provider`](crate::PartnerLogin::token_per_provider), each provider also gets
    /// its own token (cached per provider).
    ///
    /// # Errors
    /// [`ClientError::Config`] when `provider_id` is not a valid header value.
    pub fn for_provider(&self, provider_id: impl AsRef<str>) -> Result<Self, ClientError> {
        Ok(Self {
            inner: Arc::clone(&self.inner),
            provider_id: Some(provider_header(provider_id.as_ref())?),
            retry: self.retry,
        })
    }

    /// This client (its connections, token and provider) with another retry policy: a cheap
    /// clone. The reconciler checks with `RetryPolicy::default().max_attempts(1)`, so that a
    /// throttled session (a `429` with `Retry-After: 30`) is rescheduled rather than waited on.
    #[must_use]
    pub fn with_retry(&self, retry: RetryPolicy) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            provider_id: self.provider_id.clone(),
            retry: Some(retry),
        }
    }

    /// The `sdp_provider_id` this client sends, if any.
    pub fn provider_id(&self) -> Option<&str> {
        self.provider_id.as_ref().and_then(|v| v.to_str().ok())
    }
}

/// A provider id as a header value.
pub(crate) fn provider_header(provider_id: &str) -> Result<HeaderValue, ClientError> {
    HeaderValue::from_str(provider_id).map_err(|_| ClientError::Config {
        reason: "provider id is not a valid header value".into(),
    })
}
