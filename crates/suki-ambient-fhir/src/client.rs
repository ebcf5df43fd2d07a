//! `FhirClient`: posts a transaction Bundle to the EHR's FHIR base URL with the SDK client's
//! transport rules (a timeout per attempt and a deadline per call, bounded retries with back-off
//! and `Retry-After`, the response body cap, redirects only under the base URL), a bearer token
//! from a [`FhirAuth`], and typed errors from `OperationOutcome`s.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use suki_ambient_client::toolkit::{parse_retry_after, read_capped, read_prefix, redirect_policy};
use suki_ambient_client::{ClientError, RetryPolicy};
use zeroize::Zeroizing;

use crate::{FhirError, TransactionBundle};

/// Where the bearer token for the EHR comes from. [`BearerToken`] is a fixed one; implement this
/// for SMART backend services or your identity provider (cache the token: it is asked for before
/// every attempt).
#[async_trait::async_trait]
pub trait FhirAuth: Send + Sync + 'static {
    /// The token for the next request (without `Bearer `).
    async fn bearer(&self) -> Result<Zeroizing<String>, FhirError>;
}

/// A fixed bearer token. `Debug` does not show it; it is zeroized when dropped.
#[derive(Clone)]
pub struct BearerToken(Arc<Zeroizing<String>>);

impl BearerToken {
    /// This token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(Arc::new(Zeroizing::new(token.into())))
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

#[async_trait::async_trait]
impl FhirAuth for BearerToken {
    async fn bearer(&self) -> Result<Zeroizing<String>, FhirError> {
        Ok(Zeroizing::new(self.0.as_str().to_owned()))
    }
}

/// What the EHR did with each entry of a transaction, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionResult {
    /// Each entry's answer.
    pub entries: Vec<EntryResult>,
}

/// One entry's answer: its status line and where the resource is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryResult {
    /// The HTTP status of the entry (`201` created, `200` an existing resource matched).
    pub status: u16,
    /// `Type/id[/_history/v]`, when the server gave it.
    pub location: Option<String>,
}

impl TransactionResult {
    /// Entries the server created (`201`).
    pub fn created(&self) -> usize {
        self.entries.iter().filter(|e| e.status == 201).count()
    }

    /// Entries that matched an existing resource (`200`): a repeated post.
    pub fn matched(&self) -> usize {
        self.entries.iter().filter(|e| e.status == 200).count()
    }
}

/// Posts transaction Bundles to one FHIR server.
///
/// A transaction of conditional creates is idempotent, so a failed attempt (a timeout, a 503)
/// is retried like the SDK client retries a GET: at most [`RetryPolicy`]'s attempts, within the
/// deadline.
#[derive(Clone)]
pub struct FhirClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: Box<dyn FhirAuth>,
    retry: RetryPolicy,
    timeout: Duration,
    deadline: Duration,
    max_response_bytes: u64,
}

impl fmt::Debug for FhirClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FhirClient")
            .field("base", &self.inner.base.as_str())
            .field("retry", &self.inner.retry)
            .field("timeout", &self.inner.timeout)
            .field("deadline", &self.inner.deadline)
            .finish_non_exhaustive()
    }
}

/// Builds a [`FhirClient`].
#[derive(Debug)]
pub struct FhirClientBuilder {
    base: String,
    auth: Option<Box<dyn FhirAuth>>,
    retry: RetryPolicy,
    timeout: Duration,
    deadline: Duration,
    max_response_bytes: u64,
}

impl fmt::Debug for dyn FhirAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FhirAuth")
    }
}

impl FhirClient {
    /// A client of the FHIR server at `base_url` (e.g. `https://ehr.example/fhir/R4`).
    pub fn builder(base_url: impl Into<String>) -> FhirClientBuilder {
        FhirClientBuilder {
            base: base_url.into(),
            auth: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
            max_response_bytes: 4 * 1024 * 1024,
        }
    }

    /// Posts `bundle` to the base URL as one transaction; `Ok` with each entry's answer.
    pub async fn post(&self, bundle: &TransactionBundle) -> Result<TransactionResult, FhirError> {
        let body = bundle.body();
        let started = Instant::now();
        let deadline = started.checked_add(self.inner.deadline);
        let retry = self.inner.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = match deadline {
                Some(end) => {
                    let left = end.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, self.attempt(body.clone())).await {
                        Ok(result) => result,
                        Err(_) => Err((
                            FhirError::Transport(ClientError::Timeout {
                                kind: suki_ambient_client::TimeoutKind::Deadline,
                            }),
                            None,
                        )),
                    }
                }
                None => self.attempt(body.clone()).await,
            };
            let (err, retry_after) = match result {
                Ok(answer) => {
                    tracing::debug!(
                        attempt,
                        created = answer.created(),
                        matched = answer.matched(),
                        "fhir transaction posted"
                    );
                    return Ok(answer);
                }
                Err(failure) => failure,
            };
            if !err.is_retryable() || attempt >= retry.attempts() {
                tracing::warn!(attempt, error = %err, "fhir transaction failed");
                return Err(err);
            }
            let delay = retry.delay(attempt, retry_after);
            match Instant::now().checked_add(delay) {
                Some(resume) if deadline.is_none_or(|d| resume < d) => {}
                _ => return Err(err),
            }
            tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying the fhir transaction");
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt under the attempt's timeout; `Err` with the server's `Retry-After`.
    async fn attempt(
        &self,
        body: bytes::Bytes,
    ) -> Result<TransactionResult, (FhirError, Option<Duration>)> {
        let inner = &self.inner;
        let token = inner.auth.bearer().await.map_err(|e| (e, None))?;
        let header = Zeroizing::new(format!("Bearer {}", token.as_str()));
        let mut authorization = HeaderValue::from_str(&header).map_err(|_| {
            (
                FhirError::Config("the bearer token is not a valid header value".into()),
                None,
            )
        })?;
        authorization.set_sensitive(true);
        let response = inner
            .http
            .post(inner.base.clone())
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_TYPE, "application/fhir+json")
            .header(ACCEPT, "application/fhir+json")
            .timeout(inner.timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| (FhirError::Transport(ClientError::transport(e)), None))?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            return Err((
                FhirError::Transport(ClientError::Redirect {
                    status,
                    reason: "a redirect away from the FHIR base URL is not followed",
                }),
                None,
            ));
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        if (200..300).contains(&status) {
            let bytes = read_capped(response, inner.max_response_bytes)
                .await
                .map_err(|e| (FhirError::Transport(e), None))?;
            return parse_answer(&bytes).ok_or((FhirError::Answer, None));
        }
        let prefix = read_prefix(response, 64 * 1024)
            .await
            .map_err(|e| (FhirError::Transport(e), None))?;
        let err = if status == 401 || status == 403 {
            FhirError::Auth { status }
        } else {
            FhirError::Server {
                status,
                code: outcome_code(&prefix),
            }
        };
        Err((err, retry_after))
    }
}

impl FhirClientBuilder {
    /// The bearer token's source (required).
    #[must_use]
    pub fn auth(mut self, auth: impl FhirAuth) -> Self {
        self.auth = Some(Box::new(auth));
        self
    }

    /// Retries (default: the SDK client's, 4 attempts with back-off and `Retry-After`).
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The timeout of one attempt (default 30 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The deadline of one post, retries included (default 120 s).
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The largest answer read (default 4 MiB).
    #[must_use]
    pub fn max_response_bytes(mut self, limit: u64) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// The client. `Err` for a base URL that is not `http(s)` or without an auth.
    pub fn build(self) -> Result<FhirClient, FhirError> {
        let base = Url::parse(self.base.trim())
            .map_err(|_| FhirError::Config("the FHIR base URL is not a URL".into()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(FhirError::Config(
                "the FHIR base URL must be http(s) with a host".into(),
            ));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(FhirError::Config(
                "the FHIR base URL must not carry credentials; use auth()".into(),
            ));
        }
        let auth = self
            .auth
            .ok_or_else(|| FhirError::Config("no auth given (BearerToken or your own)".into()))?;
        // Redirects stay under the base URL (as a directory), like the SDK client's.
        let mut under = base.clone();
        if !under.path().ends_with('/') {
            under.set_path(&format!("{}/", under.path()));
        }
        let http = reqwest::Client::builder()
            .redirect(redirect_policy(under))
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| FhirError::Config(format!("HTTP client: {e}")))?;
        Ok(FhirClient {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                retry: self.retry,
                timeout: self.timeout,
                deadline: self.deadline,
                max_response_bytes: self.max_response_bytes,
            }),
        })
    }
}

/// A `transaction-response` Bundle's entries.
fn parse_answer(bytes: &[u8]) -> Option<TransactionResult> {
    let answer: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if answer["resourceType"] != "Bundle" || answer["type"] != "transaction-response" {
        return None;
    }
    let entries = answer["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let response = &e["response"];
            let status = response["status"]
                .as_str()
                .and_then(|s| s.split_whitespace().next())
                .and_then(|code| code.parse().ok())?;
            let location = response["location"]
                .as_str()
                .filter(|l| l.len() <= 1024)
                .map(str::to_owned);
            Some(EntryResult { status, location })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(TransactionResult { entries })
}

/// The first issue's `code` of an `OperationOutcome` (a FHIR code such as `invalid` or
/// `duplicate`; never its diagnostics, which may echo the Bundle), cleaned; `unknown` otherwise.
fn outcome_code(body: &[u8]) -> String {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["issue"][0]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let clean: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    if clean.is_empty() {
        "unknown".to_owned()
    } else {
        clean
    }
}
