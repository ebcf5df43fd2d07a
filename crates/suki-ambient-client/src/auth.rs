//! Authentication: the `TokenProvider` trait, `StaticToken`, and `PartnerLogin` (cached,
//! refreshed, single-flight partner login).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::Url;
use suki_ambient_core::api::{ApiErrorBody, LoginRequest, LoginResponse, Route};
use tokio::sync::{Mutex, RwLock};
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::ClientError;

/// An `sdp_suki_token` value. Wiped from memory on drop; `Debug` prints `Token(<redacted>)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<Zeroizing<String>>);

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(Arc::new(Zeroizing::new(token.into())))
    }

    /// The token text, to put in a header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What a [`TokenProvider`] may use to obtain a token: the client's HTTP client and base URL.
#[derive(Debug)]
pub struct AuthContext<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) base_url: &'a Url,
    pub(crate) timeout: Duration,
    pub(crate) provider_id: Option<&'a str>,
}

impl AuthContext<'_> {
    /// The HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        self.http
    }

    /// The API base URL.
    pub fn base_url(&self) -> &Url {
        self.base_url
    }

    /// The `sdp_provider_id` of the call (see
    /// [`AmbientClient::for_provider`](crate::AmbientClient::for_provider)).
    pub fn provider_id(&self) -> Option<&str> {
        self.provider_id
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Supplies the `sdp_suki_token` for each call.
#[async_trait]
pub trait TokenProvider: Send + Sync + 'static {
    /// A token to use now.
    async fn token(&self, ctx: &AuthContext<'_>) -> Result<Token, ClientError>;

    /// Suki refused `token` (401 `invalid_sdp_token`). Return `true` when a fresh token can be
    /// obtained: the call is then retried once with it. The default gives up.
    async fn invalidate(&self, token: &Token) -> bool {
        let _ = token;
        false
    }
}

/// A fixed token (e.g. from your own token service). A refused token is not retried.
#[derive(Clone, Debug)]
pub struct StaticToken(Token);

impl StaticToken {
    /// Uses `token` for every call.
    pub fn new(token: impl Into<String>) -> Self {
        Self(Token::new(token))
    }
}

#[async_trait]
impl TokenProvider for StaticToken {
    async fn token(&self, _ctx: &AuthContext<'_>) -> Result<Token, ClientError> {
        Ok(self.0.clone())
    }
}

/// Where [`PartnerLogin`] gets the partner's identity-provider JWT for each login.
#[async_trait]
pub trait PartnerTokenSource: Send + Sync + 'static {
    /// The current partner token.
    async fn partner_token(&self) -> Result<Token, ClientError>;
}

#[async_trait]
impl PartnerTokenSource for Token {
    async fn partner_token(&self) -> Result<Token, ClientError> {
        Ok(self.clone())
    }
}

/// Logs in ([`Route::Login`]) and caches the Suki token.
///
/// The token is refreshed before it expires: at its JWT `exp` claim less a margin (a tenth of
/// its lifetime, at most a minute), or 55 minutes after login when `exp` cannot be read. Many
/// concurrent callers share one login. A token Suki refuses (401 `invalid_sdp_token`) is dropped
/// and the call retried once after a fresh login.
pub struct PartnerLogin {
    partner_id: String,
    source: Box<dyn PartnerTokenSource>,
    provider_id: Option<String>,
    per_provider: bool,
    /// One token per login identity: `None` when shared, the provider id when per provider.
    cache: RwLock<HashMap<Option<String>, Cached>>,
    refresh: Mutex<()>,
    logins: AtomicU64,
}

struct Cached {
    token: Token,
    refresh_at: Instant,
}

impl fmt::Debug for PartnerLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartnerLogin")
            .field("partner_id", &self.partner_id)
            .field("provider_id", &self.provider_id)
            .field("logins", &self.logins())
            .finish_non_exhaustive()
    }
}

/// The longest a token is used before logging in again, whatever its `exp` says: a day (Suki
/// documents one hour; a server's far-future `exp` must not make the client keep a token forever).
const MAX_TOKEN_USE: Duration = Duration::from_secs(24 * 60 * 60);

/// Default token lifetime when the JWT carries no readable `exp`: Suki documents one hour.
const FALLBACK_REFRESH: Duration = Duration::from_secs(55 * 60);

impl PartnerLogin {
    /// Logs in as `partner_id` with a fixed partner token.
    pub fn new(partner_id: impl Into<String>, partner_token: impl Into<String>) -> Self {
        Self::with_source(partner_id, Token::new(partner_token))
    }

    /// Logs in as `partner_id`, asking `source` for the partner token at each login.
    pub fn with_source(partner_id: impl Into<String>, source: impl PartnerTokenSource) -> Self {
        Self {
            partner_id: partner_id.into(),
            source: Box::new(source),
            provider_id: None,
            per_provider: false,
            cache: RwLock::new(HashMap::new()),
            refresh: Mutex::new(()),
            logins: AtomicU64::new(0),
        }
    }

    /// Logs in for one provider (`provider_id` in the login body).
    #[must_use]
    pub fn provider_id(mut self, provider_id: impl Into<String>) -> Self {
        self.provider_id = Some(provider_id.into());
        self
    }

    /// Logs in once per `sdp_provider_id` the client sends (see
    /// [`AmbientClient::for_provider`](crate::AmbientClient::for_provider)), with that provider in
    /// the login body, and caches one token per provider: for partners whose Suki tokens are
    /// issued per provider. Without it, one token is shared by every provider.
    #[must_use]
    pub fn token_per_provider(mut self) -> Self {
        self.per_provider = true;
        self
    }

    /// How many logins were made so far.
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// Forgets the cached tokens: the next call logs in.
    pub async fn expire(&self) {
        self.cache.write().await.clear();
    }

    /// Which cached token a call uses, and the provider of its login.
    fn identity(&self, ctx: &AuthContext<'_>) -> Option<String> {
        if self.per_provider {
            ctx.provider_id.map(str::to_owned)
        } else {
            None
        }
    }

    async fn cached(&self, identity: &Option<String>) -> Option<Token> {
        let cache = self.cache.read().await;
        cache
            .get(identity)
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.token.clone())
    }

    async fn login(
        &self,
        ctx: &AuthContext<'_>,
        identity: &Option<String>,
    ) -> Result<Cached, ClientError> {
        let partner_token = self.source.partner_token().await?;
        let login_path = Route::Login.path("");
        let url = ctx
            .base_url
            .join(login_path.trim_start_matches('/'))
            .map_err(|_| ClientError::Config {
                reason: "base URL cannot have a path".into(),
            })?;
        let body = LoginRequest {
            partner_id: self.partner_id.clone(),
            partner_token: partner_token.expose().to_owned(),
            provider_id: identity.clone().or_else(|| self.provider_id.clone()),
        };
        let body = Zeroizing::new(serde_json::to_vec(&body).map_err(|_| ClientError::Config {
            reason: "login request does not serialize".into(),
        })?);
        self.logins.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "suki_api",
            method = "POST",
            path = Route::Login.template(),
            status = tracing::field::Empty
        );
        let response = ctx
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(ctx.timeout)
            .body(body.to_vec())
            .send()
            .instrument(span.clone())
            .await
            .map_err(ClientError::transport)?;
        let status = response.status().as_u16();
        span.record("status", status);
        // A login answer is a token (an error a short JSON): 64 KiB is plenty.
        let bytes = if (200..300).contains(&status) {
            crate::limits::read_capped(response, LOGIN_BODY_BYTES)
                .instrument(span)
                .await?
        } else {
            crate::limits::read_prefix(response, crate::limits::ERROR_BODY_BYTES)
                .instrument(span)
                .await?
        };
        if !(200..300).contains(&status) {
            let code = error_id(status, &bytes);
            return Err(if matches!(status, 400 | 401 | 403 | 412) {
                ClientError::Auth { status, code }
            } else {
                ClientError::Api {
                    status,
                    message: crate::error::ServerMessage(code.clone()),
                    code,
                    retry_after: None,
                }
            });
        }
        let login: LoginResponse =
            suki_ambient_core::decode_json(&bytes).map_err(|source| ClientError::Decode {
                what: "login",
                source,
            })?;
        let token = Token::new(login.suki_token);
        // `refresh_after` is bounded, so this cannot overflow; fall back to "now" regardless.
        let now = Instant::now();
        let refresh_at = now
            .checked_add(refresh_after(token.expose(), SystemTime::now()))
            .unwrap_or(now);
        Ok(Cached { token, refresh_at })
    }
}

/// The largest login answer read.
const LOGIN_BODY_BYTES: u64 = 64 * 1024;

#[async_trait]
impl TokenProvider for PartnerLogin {
    async fn token(&self, ctx: &AuthContext<'_>) -> Result<Token, ClientError> {
        let identity = self.identity(ctx);
        if let Some(token) = self.cached(&identity).await {
            return Ok(token);
        }
        // One login at a time; callers that waited find the fresh token.
        let _single_flight = self.refresh.lock().await;
        if let Some(token) = self.cached(&identity).await {
            return Ok(token);
        }
        let fresh = self.login(ctx, &identity).await?;
        let token = fresh.token.clone();
        self.cache.write().await.insert(identity, fresh);
        Ok(token)
    }

    async fn invalidate(&self, token: &Token) -> bool {
        // Only drop the refused token: concurrent refusals of one token cause one new login.
        self.cache.write().await.retain(|_, c| &c.token != token);
        true
    }
}

/// The error id from an error body (`{"code","message"}`), or the status text.
pub(crate) fn error_id(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<ApiErrorBody>(body)
        .ok()
        .map(|b| b.error_id().to_owned())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .unwrap_or_else(|| {
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error")
                .to_ascii_lowercase()
                .replace(' ', "_")
        })
}

/// How long to use a token: until its `exp` less a margin, or the fallback; never longer than
/// [`MAX_TOKEN_USE`], whatever `exp` the server wrote.
fn refresh_after(token: &str, now: SystemTime) -> Duration {
    let Some(exp) = jwt_exp(token) else {
        return FALLBACK_REFRESH;
    };
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let lifetime = exp.saturating_sub(now_secs).min(MAX_TOKEN_USE.as_secs());
    let margin = (lifetime / 10).min(60);
    Duration::from_secs(lifetime - margin)
}

/// The `exp` claim (Unix seconds) of a JWT, read without verifying it (Suki verifies it).
fn jwt_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", enc(r#"{"alg":"none"}"#), enc(claims))
    }

    proptest::proptest! {
        /// Whatever `exp` a server writes and whatever the clock says, the refresh interval is
        /// computed without panicking, stays within a day, and can be added to an `Instant`.
        #[test]
        fn refresh_never_panics_and_is_bounded(exp in proptest::num::u64::ANY, now in 0u64..=u64::MAX / 2) {
            let claims = format!(r#"{{"exp":{exp}}}"#);
            let at = UNIX_EPOCH.checked_add(Duration::from_secs(now)).unwrap_or(UNIX_EPOCH);
            let after = refresh_after(&jwt(&claims), at);
            proptest::prop_assert!(after <= MAX_TOKEN_USE);
            proptest::prop_assert!(Instant::now().checked_add(after).is_some());
        }
    }

    #[test]
    fn refresh_uses_exp_with_a_margin() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = jwt(r#"{"exp":1003600}"#);
        assert_eq!(refresh_after(&hour, now), Duration::from_secs(3540));
        let short = jwt(r#"{"exp":1000010}"#);
        assert_eq!(refresh_after(&short, now), Duration::from_secs(9));
        let past = jwt(r#"{"exp":999000}"#);
        assert_eq!(refresh_after(&past, now), Duration::ZERO);
        let forever = jwt(&format!(r#"{{"exp":{}}}"#, u64::MAX));
        assert_eq!(
            refresh_after(&forever, now),
            MAX_TOKEN_USE - Duration::from_secs(60)
        );
        assert_eq!(refresh_after("not-a-jwt", now), FALLBACK_REFRESH);
        assert_eq!(refresh_after(&jwt(r#"{"sub":"x"}"#), now), FALLBACK_REFRESH);
    }

    #[test]
    fn error_ids_are_safe() {
        assert_eq!(
            error_id(401, br#"{"code":401,"message":"invalid_sdp_token"}"#),
            "invalid_sdp_token"
        );
        assert_eq!(
            error_id(
                403,
                br#"{"code":403,"message":"permission_denied: detail"}"#
            ),
            "permission_denied"
        );
        assert_eq!(error_id(503, b"<html>oops</html>"), "service_unavailable");
        assert_eq!(
            error_id(500, br#"{"code":500,"message":"PHI Jane Doe"}"#),
            "internal_server_error"
        );
    }

    #[test]
    fn tokens_are_redacted() {
        let t = Token::new("MARKER-token");
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        let login = PartnerLogin::new("p", "MARKER-partner");
        assert!(!format!("{login:?}").contains("MARKER"));
    }
}
