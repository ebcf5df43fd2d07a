//! `AmbientClientBuilder`: base URL, auth, provider, retries, timeouts, HTTP client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use crate::auth::{StaticToken, TokenProvider};
use crate::client::{AmbientClient, Environment, Inner, provider_header};
use crate::error::ClientError;
use crate::limits::redirect_policy;
use crate::retry::RetryPolicy;

impl AmbientClient {
    /// Starts a builder: an environment or base URL and auth are required; retries, timeouts and
    /// the HTTP client have defaults.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use suki_ambient_client::{AmbientClient, Environment, PartnerLogin, RetryPolicy};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = AmbientClient::builder()
    ///     .environment(Environment::Production)
    ///     .auth(PartnerLogin::new("partner-id", "partner-idp-jwt"))
    ///     .retry(RetryPolicy::default().max_attempts(6))
    ///     .timeout(Duration::from_secs(10)) // per attempt
    ///     .deadline(Duration::from_secs(60)) // per call, retries included
    ///     .build()?;
    /// assert_eq!(client.base_url().as_str(), "https://sdp.suki.ai/");
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder() -> AmbientClientBuilder {
        AmbientClientBuilder::new()
    }
}

/// The default of [`AmbientClientBuilder::max_response_bytes`].
pub(crate) const DEFAULT_MAX_RESPONSE_BYTES: u64 = 32 * 1024 * 1024;

/// Builds an [`AmbientClient`]; see [`AmbientClient::builder`].
#[must_use]
pub struct AmbientClientBuilder {
    base_url: Option<String>,
    auth: Option<Arc<dyn TokenProvider>>,
    provider_id: Option<String>,
    retry: RetryPolicy,
    timeout: Duration,
    deadline: Duration,
    http: Option<reqwest::Client>,
    user_agent: String,
    max_response_bytes: u64,
}

impl fmt::Debug for AmbientClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmbientClientBuilder")
            .field("base_url", &self.base_url)
            .field("provider_id", &self.provider_id)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl AmbientClientBuilder {
    pub(crate) fn new() -> Self {
        Self {
            base_url: None,
            auth: None,
            provider_id: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
            http: None,
            user_agent: concat!("suki-ambient/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// Uses one of Suki's environments.
    pub fn environment(mut self, environment: Environment) -> Self {
        self.base_url = Some(environment.base_url().to_owned());
        self
    }

    /// Uses another base URL (a sandbox, a proxy).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// How to obtain the `sdp_suki_token` ([`StaticToken`], [`crate::PartnerLogin`], or yours).
    pub fn auth(mut self, provider: impl TokenProvider) -> Self {
        self.auth = Some(Arc::new(provider));
        self
    }

    /// Shares a token provider with other clients.
    pub fn auth_shared(mut self, provider: Arc<dyn TokenProvider>) -> Self {
        self.auth = Some(provider);
        self
    }

    /// Shorthand for `.auth(StaticToken::new(token))`.
    pub fn token(self, token: impl Into<String>) -> Self {
        self.auth(StaticToken::new(token))
    }

    /// Sends `sdp_provider_id` on every call (partners with one token for many providers).
    pub fn provider_id(mut self, provider_id: impl Into<String>) -> Self {
        self.provider_id = Some(provider_id.into());
        self
    }

    /// The retry policy (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The timeout of one attempt, connection to last body byte (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The total time a call may take, retries and back-off included (default 2 minutes).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The largest response body a call reads (default 32 MiB: a long visit's transcript is a
    /// few MiB). A larger one is not read past the limit and fails the call with
    /// [`ClientError::ResponseTooLarge`], which is not retried. A client holds at most this
    /// much per call in flight, so its memory for bodies is bounded by concurrency × this limit
    /// (the inbox worker: its concurrency × the six links of a session). An error answer's body
    /// is read for its first 64 KiB only, and a login answer's for 64 KiB.
    pub fn max_response_bytes(mut self, limit: u64) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// Uses your `reqwest::Client` (its own timeouts and TLS settings apply too).
    ///
    /// Build it with `.redirect(reqwest::redirect::Policy::none())` (or a policy that never
    /// leaves the base URL): `sdp_suki_token` is a custom header, which reqwest does not strip
    /// when it follows a redirect to another host. Whatever the policy, an answer that came from
    /// outside the base URL fails the call with [`ClientError::Redirect`].
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The `User-Agent` of the client this builder creates (ignored with `with_client`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`ClientError::Config`] without a base URL or auth, with a base URL that is not
    /// `http(s)://host[/path]`, or an invalid provider id.
    pub fn build(self) -> Result<AmbientClient, ClientError> {
        let config = |reason: &str| ClientError::Config {
            reason: reason.to_owned(),
        };
        let text = self
            .base_url
            .ok_or_else(|| config("set .environment(..) or .base_url(..)"))?;
        let mut base_url = Url::parse(&text).map_err(|_| config("base URL is not a URL"))?;
        if !matches!(base_url.scheme(), "http" | "https")
            || base_url.cannot_be_a_base()
            || base_url.host().is_none()
        {
            return Err(config("base URL must be http(s)://host[:port][/path]"));
        }
        if !base_url.username().is_empty() || base_url.password().is_some() {
            return Err(config("base URL must not carry credentials"));
        }
        base_url.set_query(None);
        base_url.set_fragment(None);
        if !base_url.path().ends_with('/') {
            let path = format!("{}/", base_url.path());
            base_url.set_path(&path);
        }
        let auth = self
            .auth
            .ok_or_else(|| config("set .auth(..) or .token(..)"))?;
        let provider_id = self
            .provider_id
            .as_deref()
            .map(provider_header)
            .transpose()?;
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .user_agent(self.user_agent)
                .redirect(redirect_policy(base_url.clone()))
                .build()
                .map_err(|_| config("the HTTP client could not be created"))?,
        };
        Ok(AmbientClient {
            inner: Arc::new(Inner {
                http,
                base_url,
                auth,
                retry: self.retry,
                timeout: self.timeout,
                deadline: self.deadline,
                max_response_bytes: self.max_response_bytes,
                budget: self.retry.budget(1),
            }),
            provider_id,
            retry: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_refuses_bad_configs() {
        let err = |b: AmbientClientBuilder| b.build().unwrap_err().to_string();
        assert!(err(AmbientClient::builder().token("t")).contains("base_url"));
        assert!(err(AmbientClient::builder().base_url("http://x")).contains("auth"));
        assert!(err(AmbientClient::builder().base_url("ftp://x").token("t")).contains("http"));
        assert!(err(AmbientClient::builder().base_url("not a url").token("t")).contains("URL"));
        assert!(
            err(AmbientClient::builder().base_url("http://u:p@x").token("t"))
                .contains("credentials")
        );
        assert_eq!(
            AmbientClient::builder()
                .environment(Environment::Staging)
                .token("t")
                .build()
                .unwrap()
                .base_url()
                .as_str(),
            "https://sdp.suki-stage.com/"
        );
    }
}
