//! `AmbientClient`: typed calls to the follow-up APIs, link following, retries and deadlines.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use suki_ambient_core::api::{
    FormFillingStructuredData, NoteContent, Recording, StatusResponse, StructuredData, Transcript,
};
use suki_ambient_core::{EncounterId, Link, SessionId};
use tracing::Instrument;

use crate::auth::{AuthContext, StaticToken, Token, TokenProvider, error_id};
use crate::error::{ClientError, ServerMessage, TimeoutKind};
use crate::retry::{RetryPolicy, parse_retry_after};

const TOKEN_HEADER: HeaderName = HeaderName::from_static("sdp_suki_token");
const PROVIDER_HEADER: HeaderName = HeaderName::from_static("sdp_provider_id");

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
            .map(|p| {
                HeaderValue::from_str(&p)
                    .map_err(|_| config("provider id is not a valid header value"))
            })
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
                provider_id,
                retry: self.retry,
                timeout: self.timeout,
                deadline: self.deadline,
            }),
        })
    }
}

/// A client for Suki's follow-up APIs. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct AmbientClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    auth: Arc<dyn TokenProvider>,
    provider_id: Option<HeaderValue>,
    retry: RetryPolicy,
    timeout: Duration,
    deadline: Duration,
}

impl fmt::Debug for AmbientClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmbientClient")
            .field("base_url", &self.inner.base_url.as_str())
            .field("provider_id", &self.inner.provider_id.is_some())
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// How one attempt ended, when not with a body.
enum Failure {
    /// 401 `invalid_sdp_token`: this token was refused.
    Refused(Token),
    /// Any other error, with the server's `Retry-After`.
    Error(ClientError, Option<Duration>),
}

impl AmbientClient {
    /// Starts a builder.
    pub fn builder() -> AmbientClientBuilder {
        AmbientClientBuilder {
            base_url: None,
            auth: None,
            provider_id: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
            http: None,
            user_agent: concat!("suki-ambient/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// The API base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base_url.clone();
        // PANIC: `build` refused bases that cannot have a path.
        url.path_segments_mut()
            .expect("base URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// `GET /api/v1/ambient/session/{id}/status`.
    ///
    /// # Errors
    /// [`ClientError`] after the retry policy is exhausted, or at once when not retryable.
    pub async fn session_status(&self, id: &SessionId) -> Result<StatusResponse, ClientError> {
        let url = self.url(&["api", "v1", "ambient", "session", id.as_str(), "status"]);
        self.get(url, "/api/v1/ambient/session/{id}/status", "status")
            .await
    }

    /// `GET /api/v1/ambient/session/{id}/transcript`.
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn session_transcript(&self, id: &SessionId) -> Result<Transcript, ClientError> {
        let url = self.url(&["api", "v1", "ambient", "session", id.as_str(), "transcript"]);
        self.get(url, "/api/v1/ambient/session/{id}/transcript", "transcript")
            .await
    }

    /// `GET /api/v1/ambient/session/{id}/content?cumulative=..`: the note; `cumulative`
    /// includes the encounter's earlier sessions.
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn session_content(
        &self,
        id: &SessionId,
        cumulative: bool,
    ) -> Result<NoteContent, ClientError> {
        let mut url = self.url(&["api", "v1", "ambient", "session", id.as_str(), "content"]);
        url.query_pairs_mut()
            .append_pair("cumulative", if cumulative { "true" } else { "false" });
        self.get(url, "/api/v1/ambient/session/{id}/content", "content")
            .await
    }

    /// `GET /api/v1/ambient/session/{id}/structured-data`.
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn session_structured_data(
        &self,
        id: &SessionId,
    ) -> Result<StructuredData, ClientError> {
        let url = self.url(&[
            "api",
            "v1",
            "ambient",
            "session",
            id.as_str(),
            "structured-data",
        ]);
        self.get(
            url,
            "/api/v1/ambient/session/{id}/structured-data",
            "structured data",
        )
        .await
    }

    /// `GET /api/v1/ambient/encounter/{id}/content`.
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn encounter_content(&self, id: &EncounterId) -> Result<NoteContent, ClientError> {
        let url = self.url(&["api", "v1", "ambient", "encounter", id.as_str(), "content"]);
        self.get(
            url,
            "/api/v1/ambient/encounter/{id}/content",
            "encounter content",
        )
        .await
    }

    /// `GET /api/v1/ambient/encounter/{id}/structured-data`.
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn encounter_structured_data(
        &self,
        id: &EncounterId,
    ) -> Result<StructuredData, ClientError> {
        let url = self.url(&[
            "api",
            "v1",
            "ambient",
            "encounter",
            id.as_str(),
            "structured-data",
        ]);
        self.get(
            url,
            "/api/v1/ambient/encounter/{id}/structured-data",
            "encounter structured data",
        )
        .await
    }

    /// `GET /api/v1/ambient/session/{id}/recording?download=..`. A 404 means the audio is
    /// still being processed (try later); 410 that it is gone.
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn session_recording(
        &self,
        id: &SessionId,
        download: bool,
    ) -> Result<Recording, ClientError> {
        let mut url = self.url(&["api", "v1", "ambient", "session", id.as_str(), "recording"]);
        url.query_pairs_mut()
            .append_pair("download", if download { "true" } else { "false" });
        self.get(url, "/api/v1/ambient/session/{id}/recording", "recording")
            .await
    }

    /// `GET /api/v1/form-filling/session/{id}/status`.
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn form_filling_status(&self, id: &SessionId) -> Result<StatusResponse, ClientError> {
        let url = self.url(&[
            "api",
            "v1",
            "form-filling",
            "session",
            id.as_str(),
            "status",
        ]);
        self.get(
            url,
            "/api/v1/form-filling/session/{id}/status",
            "form-filling status",
        )
        .await
    }

    /// `GET /api/v1/form-filling/session/{id}/structured-data`.
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn form_filling_structured_data(
        &self,
        id: &SessionId,
    ) -> Result<FormFillingStructuredData, ClientError> {
        let url = self.url(&[
            "api",
            "v1",
            "form-filling",
            "session",
            id.as_str(),
            "structured-data",
        ]);
        self.get(
            url,
            "/api/v1/form-filling/session/{id}/structured-data",
            "form-filling structured data",
        )
        .await
    }

    /// Follows a webhook `_links` entry and returns the JSON.
    ///
    /// A relative `href` is joined to the base URL (its query kept). An absolute `href` to
    /// another origin, one carrying credentials, or a method other than `GET` is refused with
    /// [`ClientError::InvalidLink`]: the token is only ever sent to the API base URL.
    ///
    /// # Errors
    /// [`ClientError::InvalidLink`], or as [`session_status`](Self::session_status).
    pub async fn follow(&self, link: &Link) -> Result<serde_json::Value, ClientError> {
        self.follow_as(link).await
    }

    /// [`follow`](Self::follow) into a typed model, e.g. `follow_as::<Transcript>(link)`.
    ///
    /// # Errors
    /// As [`follow`](Self::follow).
    pub async fn follow_as<T: DeserializeOwned>(&self, link: &Link) -> Result<T, ClientError> {
        let url = self.resolve(link)?;
        let template = path_template(url.path());
        self.get(url, template, "link").await
    }

    /// The URL a link resolves to, or why it is refused.
    ///
    /// # Errors
    /// [`ClientError::InvalidLink`].
    pub fn resolve(&self, link: &Link) -> Result<Url, ClientError> {
        if !link.method_or_get().eq_ignore_ascii_case("GET") {
            return Err(ClientError::InvalidLink {
                reason: "only GET links are followed",
            });
        }
        let url = self
            .inner
            .base_url
            .join(&link.href)
            .map_err(|_| ClientError::InvalidLink {
                reason: "href is neither a URL nor a path",
            })?;
        if url.origin() != self.inner.base_url.origin() {
            return Err(ClientError::InvalidLink {
                reason: "href points to another origin; the token is only sent to the API base URL",
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ClientError::InvalidLink {
                reason: "href carries credentials",
            });
        }
        // `join` has already resolved `.`/`..` segments (percent-encoded ones too).
        if !within_base(&self.inner.base_url, &url) {
            return Err(ClientError::InvalidLink {
                reason: "href leaves the base URL's path; the token is only sent under it",
            });
        }
        Ok(url)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        url: Url,
        template: &'static str,
        what: &'static str,
    ) -> Result<T, ClientError> {
        let bytes = self.get_bytes(url, template).await?;
        suki_ambient_core::decode_json(&bytes)
            .map_err(|source| ClientError::Decode { what, source })
    }

    /// One call: attempts under the retry policy, within the deadline, in a `suki_api` span.
    async fn get_bytes(&self, url: Url, template: &'static str) -> Result<Bytes, ClientError> {
        let span = tracing::info_span!(
            "suki_api",
            method = "GET",
            path = template,
            status = tracing::field::Empty,
            attempt = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        // `None`: a deadline too far away to represent, i.e. none.
        let deadline = started.checked_add(self.inner.deadline);
        async move {
            let result = tokio::time::timeout(self.inner.deadline, self.attempts(&url, deadline))
                .await
                .unwrap_or(Err(ClientError::Timeout {
                    kind: TimeoutKind::Deadline,
                }));
            let span = tracing::Span::current();
            span.record("latency_ms", started.elapsed().as_millis() as u64);
            match &result {
                Ok(_) => tracing::debug!("suki api call succeeded"),
                Err(err) => tracing::warn!(error = %err, "suki api call failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn attempts(&self, url: &Url, deadline: Option<Instant>) -> Result<Bytes, ClientError> {
        let retry = self.inner.retry;
        let mut attempt = 0u32;
        let mut relogged = false;
        loop {
            attempt += 1;
            tracing::Span::current().record("attempt", attempt);
            match self.attempt(url, deadline).await {
                Ok(bytes) => return Ok(bytes),
                Err(Failure::Refused(token)) => {
                    let refused = ClientError::Auth {
                        status: 401,
                        code: "invalid_sdp_token".to_owned(),
                    };
                    if relogged || !self.inner.auth.invalidate(&token).await {
                        return Err(refused);
                    }
                    // One fresh login and one more try, outside the retry budget.
                    relogged = true;
                    attempt -= 1;
                }
                Err(Failure::Error(err, retry_after)) => {
                    if !err.is_retryable() || attempt >= retry.attempts() {
                        return Err(err);
                    }
                    let delay = retry.delay(attempt, retry_after);
                    // A wait that passes the deadline (or any representable time: a server's
                    // `Retry-After` is input) ends the call with the server's error.
                    match Instant::now().checked_add(delay) {
                        Some(resume) if deadline.is_none_or(|d| resume < d) => {}
                        _ => return Err(err),
                    }
                    tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, url: &Url, deadline: Option<Instant>) -> Result<Bytes, Failure> {
        let inner = &self.inner;
        let remaining = deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let timeout = inner.timeout.min(remaining);
        let ctx = AuthContext {
            http: &inner.http,
            base_url: &inner.base_url,
            timeout,
        };
        let token = inner
            .auth
            .token(&ctx)
            .await
            .map_err(|e| Failure::Error(e, None))?;
        let token_value = HeaderValue::from_str(token.expose())
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| {
                Failure::Error(
                    ClientError::Config {
                        reason: "token is not a valid header value".into(),
                    },
                    None,
                )
            })?;
        let mut request = inner
            .http
            .get(url.clone())
            .header(TOKEN_HEADER, token_value)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout);
        if let Some(provider) = &inner.provider_id {
            request = request.header(PROVIDER_HEADER, provider.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Error(ClientError::transport(e), None))?;
        let status = response.status().as_u16();
        tracing::Span::current().record("status", status);
        if !within_base(&inner.base_url, response.url()) {
            // A client of the application's own followed a redirect elsewhere.
            return Err(Failure::Error(
                ClientError::Redirect {
                    status,
                    reason: "the answer came from outside the API base URL",
                },
                None,
            ));
        }
        if (300..400).contains(&status) {
            return Err(Failure::Error(
                ClientError::Redirect {
                    status,
                    reason: "a redirect away from the API base URL is not followed",
                },
                None,
            ));
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::Error(ClientError::transport(e), None))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let code = error_id(status, &body);
        if status == 401 && code == "invalid_sdp_token" {
            return Err(Failure::Refused(token));
        }
        let err = if status == 401 {
            ClientError::Auth { status, code }
        } else {
            let message = serde_json::from_slice::<suki_ambient_core::api::ApiErrorBody>(&body)
                .map(|b| b.message)
                .unwrap_or_else(|_| code.clone());
            ClientError::Api {
                status,
                code,
                message: ServerMessage(message),
            }
        };
        Err(Failure::Error(err, retry_after))
    }
}

/// The path template of a Suki API path, for tracing (ids are not logged).
fn path_template(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "v1", "ambient", "session", _, "status"] => "/api/v1/ambient/session/{id}/status",
        ["api", "v1", "ambient", "session", _, "transcript"] => {
            "/api/v1/ambient/session/{id}/transcript"
        }
        ["api", "v1", "ambient", "session", _, "content"] => "/api/v1/ambient/session/{id}/content",
        ["api", "v1", "ambient", "session", _, "structured-data"] => {
            "/api/v1/ambient/session/{id}/structured-data"
        }
        ["api", "v1", "ambient", "session", _, "recording"] => {
            "/api/v1/ambient/session/{id}/recording"
        }
        ["api", "v1", "ambient", "encounter", _, "content"] => {
            "/api/v1/ambient/encounter/{id}/content"
        }
        ["api", "v1", "ambient", "encounter", _, "structured-data"] => {
            "/api/v1/ambient/encounter/{id}/structured-data"
        }
        ["api", "v1", "form-filling", "session", _, "status"] => {
            "/api/v1/form-filling/session/{id}/status"
        }
        ["api", "v1", "form-filling", "session", _, "structured-data"] => {
            "/api/v1/form-filling/session/{id}/structured-data"
        }
        _ => "{link}",
    }
}

/// Whether `url` is on the base URL's origin and under its path (the base path ends with `/`).
fn within_base(base: &Url, url: &Url) -> bool {
    url.origin() == base.origin() && url.path().starts_with(base.path())
}

/// The default client's redirects: at most [`MAX_REDIRECTS`], and only within the base URL
/// (same origin, so never https to http, and under the base path). Any other redirect is not
/// followed: the 3xx answer comes back and the call fails with [`ClientError::Redirect`], before
/// `sdp_suki_token` (a custom header, which reqwest would carry along) is sent anywhere else.
fn redirect_policy(base: Url) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS || !within_base(&base, attempt.url()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// Same-origin redirects followed at most.
const MAX_REDIRECTS: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> AmbientClient {
        AmbientClient::builder()
            .base_url(base)
            .token("t")
            .build()
            .unwrap()
    }

    #[test]
    fn links_resolve_against_the_base_origin_only() {
        let c = client("http://127.0.0.1:9/prefix");
        let ok = |href: &str| c.resolve(&Link::get(href, "x")).map(|u| u.to_string());
        assert_eq!(
            ok("api/v1/ambient/session/s/content?cumulative=true").unwrap(),
            "http://127.0.0.1:9/prefix/api/v1/ambient/session/s/content?cumulative=true"
        );
        assert_eq!(
            ok("http://127.0.0.1:9/prefix/api/x").unwrap(),
            "http://127.0.0.1:9/prefix/api/x"
        );
        for bad in [
            // Outside the base path: another application behind the same gateway.
            "/api/v1/ambient/session/s/content",
            "http://127.0.0.1:9/api/x",
            "../admin",
            "https://evil.example/api",
            "//evil.example/x",
            "http://127.0.0.1:10/x",
            "https://127.0.0.1:9/x",
            "http://user:pw@127.0.0.1:9/x",
            "javascript:alert(1)",
        ] {
            assert!(
                matches!(ok(bad), Err(ClientError::InvalidLink { .. })),
                "{bad}"
            );
        }
        let mut post = Link::get("/x", "x");
        post.method = Some("POST".into());
        assert!(matches!(
            c.resolve(&post),
            Err(ClientError::InvalidLink { .. })
        ));
    }

    #[test]
    fn ids_are_percent_encoded_in_paths() {
        let c = client("http://127.0.0.1:9");
        let url = c.url(&["api", "v1", "ambient", "session", "a/b?c#d", "status"]);
        assert_eq!(url.path(), "/api/v1/ambient/session/a%2Fb%3Fc%23d/status");
        assert_eq!(url.query(), None);
    }

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

    #[test]
    fn templates_hide_ids() {
        assert_eq!(
            path_template("/api/v1/ambient/session/123/content"),
            "/api/v1/ambient/session/{id}/content"
        );
        assert_eq!(path_template("/elsewhere"), "{link}");
    }
}
