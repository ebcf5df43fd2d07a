//! `FhirClient`: writes a session's resources to the EHR's FHIR base URL with the SDK client's
//! transport rules (a timeout per attempt and a deadline per write, bounded retries with back-off
//! and `Retry-After`, the response body cap, redirects only under the base URL), a bearer token
//! from a [`FhirAuth`] (fetched again once on a 401), and typed errors from `OperationOutcome`s.
//! How the resources are written (one transaction, or one create each) is the
//! [`WriteStrategy`]'s: see `write.rs` and `capabilities.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, Url};
use suki_ambient_client::toolkit::{
    Failed, GaveUp, parse_retry_after, read_capped, read_prefix, redirect_policy, retrying,
};
use suki_ambient_client::{ClientError, RetryPolicy};
use zeroize::Zeroizing;

use crate::capabilities::{CapabilityCache, WriteStrategy};
use crate::{FhirError, TransactionBundle};

/// Where the bearer token for the EHR comes from. [`BearerToken`] is a fixed one,
/// [`SmartBackendAuth`](crate::SmartBackendAuth) SMART Backend Services; implement this for
/// your identity provider (cache the token: it is asked for before every request).
#[async_trait::async_trait]
pub trait FhirAuth: Send + Sync + 'static {
    /// The token for the next request (without `Bearer `).
    async fn bearer(&self) -> Result<Zeroizing<String>, FhirError>;

    /// The server refused `token` (a 401): forget it if it is the cached one. Return `true`
    /// when a fresh token may be had: the request is then sent once more, with the token
    /// [`bearer`](Self::bearer) gives next, before the 401 counts. The default (a fixed token)
    /// returns `false`.
    async fn rejected(&self, token: &str) -> bool {
        let _ = token;
        false
    }

    /// Called before each write: `wanted` are the SMART scopes the client's write plan may use
    /// (each type it writes: `system/Condition.c`, `system/Condition.rs`…), `needed` those this
    /// write uses. An auth that derives its scopes from the plan asks for `wanted` from its next
    /// token on; one that knows what the server granted returns
    /// [`FhirError::ScopeMissing`] naming the first scope needed and not granted (a dead
    /// letter `fhir_scope_missing`, rather than a `403` on every row). The default (a fixed
    /// token) accepts.
    async fn plan_scopes(&self, wanted: &[String], needed: &[String]) -> Result<(), FhirError> {
        let _ = (wanted, needed);
        Ok(())
    }
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

/// What the EHR did with each resource written, in the Bundle's order (resources a strategy
/// left out are not listed).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionResult {
    /// Each entry's answer.
    pub entries: Vec<EntryResult>,
    /// Resources an earlier write left that this one retired (marked `entered-in-error`) or
    /// replaced, as `Type/id`: see [`OnConflict::Supersede`](crate::OnConflict::Supersede).
    pub corrected: Vec<String>,
    /// Parts of the session deliberately not written, with why (a server that cannot create
    /// the type, or a strategy that writes the note alone). Every other part is in `entries`:
    /// a write that could not write a part it planned is an error, never a result.
    pub skipped: Vec<Skipped>,
    /// What was decided on the note before the rest was written.
    pub(crate) note: NoteCheck,
}

/// What a write decided on the note it matched before writing the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum NoteCheck {
    /// Nothing decided (a new note, a retired one, `Supersede`, no check): the correction
    /// looks at it.
    #[default]
    Open,
    /// Read and compared: the EHR's note is this write's, in this chart. Not read again.
    Unchanged,
    /// Different, under `OnConflict::Keep`: the write stopped there.
    Kept,
}

/// A part of a session a write left out on purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Skipped {
    /// The resource type (`Condition`…).
    pub resource_type: &'static str,
    /// How many resources of the type the session had.
    pub count: usize,
    /// Why.
    pub reason: SkipReason,
}

/// Why a part of a session was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The server's CapabilityStatement declares no create of the type.
    NotSupported,
    /// The strategy writes the DocumentReference alone
    /// ([`WriteStrategy::DocumentReferenceOnly`](crate::WriteStrategy::DocumentReferenceOnly)).
    DocumentOnly,
}

impl SkipReason {
    /// The metric label: `not_supported`, `document_only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotSupported => "not_supported",
            Self::DocumentOnly => "document_only",
        }
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.resource_type;
        match self.reason {
            SkipReason::NotSupported => write!(
                f,
                "{kind} x{} skipped: server does not support create of {kind}",
                self.count
            ),
            SkipReason::DocumentOnly => write!(
                f,
                "{kind} x{} skipped: the strategy writes the DocumentReference only",
                self.count
            ),
        }
    }
}

/// What the write did, resource by resource, ids and statuses only (the row's outcome in the
/// inbox's timeline): `DocumentReference/12 created, Condition/7 matched, superseded
/// DocumentReference/3, MedicationRequest x1 skipped: …`.
impl fmt::Display for TransactionResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let text = if first { "" } else { ", " };
            first = false;
            f.write_str(text)
        };
        for entry in &self.entries {
            sep(f)?;
            let what = match entry.status {
                201 => "created",
                200 => "matched",
                _ => "answered",
            };
            match entry
                .location
                .as_deref()
                .and_then(crate::capabilities::resource_ref)
            {
                Some(at) => write!(f, "{at} {what}")?,
                None => write!(f, "{} {what}", entry.resource_type.unwrap_or("resource"))?,
            }
        }
        for old in &self.corrected {
            sep(f)?;
            write!(f, "superseded {old}")?;
        }
        for skipped in &self.skipped {
            sep(f)?;
            write!(f, "{skipped}")?;
        }
        Ok(())
    }
}

/// One entry's answer: its status line and where the resource is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryResult {
    /// The resource's type (`DocumentReference`…), when the client knows it.
    pub resource_type: Option<&'static str>,
    /// The HTTP status of the entry (`201` created, `200` an existing resource matched).
    pub status: u16,
    /// `Type/id[/_history/v]`, when the server gave it.
    pub location: Option<String>,
    /// Which of the Bundle's entries it is.
    pub(crate) part: Option<usize>,
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

/// Writes a session's resources to one FHIR server, with the [`WriteStrategy`] given to its
/// builder ([`write`](Self::write)), or as one transaction ([`post`](Self::post)).
///
/// Every write is idempotent (conditional creates, or a search before each create), so a failed
/// attempt (a timeout, a 503) is retried like the SDK client retries a GET: at most
/// [`RetryPolicy`]'s attempts, within the deadline.
#[derive(Clone)]
pub struct FhirClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    pub(crate) base: Url,
    pub(crate) auth: Box<dyn FhirAuth>,
    retry: RetryPolicy,
    timeout: Duration,
    pub(crate) deadline: Duration,
    max_response_bytes: u64,
    pub(crate) strategy: WriteStrategy,
    pub(crate) capabilities: CapabilityCache,
    /// The last plan whose skipped parts were said with a WARN.
    pub(crate) warned_plan: std::sync::Mutex<Vec<(&'static str, crate::CreateMode)>>,
    /// `[base]/<Type>` of each resource type written.
    type_urls: Vec<(&'static str, Url)>,
    /// Quick retries allowed (the SDK client's budget).
    budget: tower::retry::budget::TpsBudget,
}

impl fmt::Debug for FhirClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FhirClient")
            .field("base", &self.inner.base.as_str())
            .field("strategy", &self.inner.strategy)
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
    strategy: WriteStrategy,
    capabilities_ttl: Duration,
    capabilities_recheck: Duration,
}

impl fmt::Debug for dyn FhirAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FhirAuth")
    }
}

/// One request to the FHIR server.
pub(crate) struct FhirRequest<'a> {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) body: Option<Bytes>,
    /// The `If-None-Exist` header of a conditional create.
    pub(crate) if_none_exist: Option<&'a str>,
    /// Sent without a token first, with one only when the server answers 401.
    pub(crate) public: bool,
    /// The `If-Match` header of a versioned update (`W/"3"`).
    pub(crate) if_match: Option<&'a str>,
    /// Whether a failed attempt may be sent again: a plain create may not (it could create the
    /// resource twice; the caller searches again instead).
    pub(crate) retry: bool,
}

/// A 2xx answer.
pub(crate) struct FhirResponse {
    pub(crate) status: u16,
    /// The `Location` header, when short and visible ASCII.
    pub(crate) location: Option<String>,
    pub(crate) body: Bytes,
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
            strategy: WriteStrategy::Auto,
            capabilities_ttl: Duration::from_secs(60 * 60),
            capabilities_recheck: Duration::from_secs(60),
        }
    }

    /// The base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// Posts `bundle` to the base URL as one transaction, whatever the client's strategy; `Ok`
    /// with each entry's answer.
    pub async fn post(&self, bundle: &TransactionBundle) -> Result<TransactionResult, FhirError> {
        self.post_until(bundle, self.deadline()).await
    }

    /// [`post`](Self::post) within `deadline`.
    pub(crate) async fn post_until(
        &self,
        bundle: &TransactionBundle,
        deadline: Option<Instant>,
    ) -> Result<TransactionResult, FhirError> {
        let answer = self
            .call(
                &FhirRequest {
                    method: Method::POST,
                    url: self.inner.base.clone(),
                    body: Some(bundle.body()),
                    if_none_exist: None,
                    public: false,
                    if_match: None,
                    retry: true,
                },
                deadline,
            )
            .await?;
        let mut result = parse_answer(&answer.body).ok_or(FhirError::Answer)?;
        for (part, (entry, summary)) in result
            .entries
            .iter_mut()
            .zip(bundle.summaries())
            .enumerate()
        {
            entry.resource_type = Some(summary.resource_type);
            entry.part = Some(part);
        }
        // A 200 that wrote nothing is not success: every entry sent must be answered, with 2xx.
        let sent = bundle.summaries().len();
        if result.entries.len() != sent {
            return Err(FhirError::EntryCount {
                sent,
                answered: result.entries.len(),
            });
        }
        if let Some(failed) = result
            .entries
            .iter()
            .find(|e| !(200..300).contains(&e.status))
        {
            return Err(FhirError::Entry {
                status: failed.status,
                resource_type: failed.resource_type.unwrap_or("resource"),
            });
        }
        tracing::debug!(
            created = result.created(),
            matched = result.matched(),
            "fhir transaction posted"
        );
        Ok(result)
    }

    /// When a write begun now must end.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        Instant::now().checked_add(self.inner.deadline)
    }

    /// `[base]/<path>` with `query` (already encoded).
    pub(crate) fn url(&self, path: &str, query: Option<&str>) -> Url {
        // The resource types' URLs are made once (a URL made afresh is parsed again).
        let mut url = match self.inner.type_urls.iter().find(|(kind, _)| *kind == path) {
            Some((_, url)) => url.clone(),
            None => join(&self.inner.base, path),
        };
        url.set_query(query);
        url
    }

    /// Sends `call` with retries (when it allows them) until `deadline`: the 2xx answer, or
    /// the error of the last attempt.
    pub(crate) async fn call(
        &self,
        call: &FhirRequest<'_>,
        deadline: Option<Instant>,
    ) -> Result<FhirResponse, FhirError> {
        let retry = self.inner.retry;
        let attempts = if call.retry { retry.attempts() } else { 1 };
        let result = retrying(
            &retry,
            attempts,
            &self.inner.budget,
            deadline,
            |_| async move {
                let result = match deadline {
                    Some(end) => {
                        let left = end.saturating_duration_since(Instant::now());
                        tokio::time::timeout(left, self.attempt(call))
                            .await
                            .unwrap_or_else(|_| {
                                Err((
                                    FhirError::Transport(ClientError::Timeout {
                                        kind: suki_ambient_client::TimeoutKind::Deadline,
                                    }),
                                    None,
                                ))
                            })
                    }
                    None => self.attempt(call).await,
                };
                result.map_err(|(error, retry_after)| Failed {
                    retryable: error.is_retryable(),
                    error,
                    retry_after,
                })
            },
            |error, attempt, delay| {
                tracing::debug!(attempt, delay_ms = suki_ambient_core::time::millis(delay), error = %error, "retrying the fhir request");
            },
        )
        .await;
        result.map_err(|stopped| {
            let (attempt, method, error) = (stopped.attempts, &call.method, &stopped.error);
            match stopped.reason {
                GaveUp::NotRetryable | GaveUp::Attempts => {
                    tracing::warn!(attempt, %method, %error, "fhir request failed");
                }
                // A long `Retry-After` is the row's to honour, not slept here; quick retries
                // stay within the client's budget (an outage gets about one request per write).
                GaveUp::RetryAfter | GaveUp::Budget => {
                    tracing::warn!(attempt, %method, %error, "fhir request failed; not retried within the call");
                }
                GaveUp::Deadline => {}
            }
            stopped.error
        })
    }

    /// One attempt under the attempt's timeout (and, after a 401 the auth answers with a fresh
    /// token, a second send); `Err` with the server's `Retry-After`.
    async fn attempt(
        &self,
        call: &FhirRequest<'_>,
    ) -> Result<FhirResponse, (FhirError, Option<Duration>)> {
        let inner = &self.inner;
        let mut refreshed = false;
        let mut public = call.public;
        let response = loop {
            let token = if public {
                Zeroizing::new(String::new())
            } else {
                inner.auth.bearer().await.map_err(|e| (e, None))?
            };
            let response = self.send(call, &token).await?;
            if matches!(response.status().as_u16(), 401 | 403) && public {
                public = false;
                continue;
            }
            if response.status().as_u16() == 401
                && !refreshed
                && inner.auth.rejected(token.as_str()).await
            {
                tracing::debug!(
                    "the fhir server refused the token; sending again with a fresh one"
                );
                refreshed = true;
                continue;
            }
            break response;
        };
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
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .filter(|l| l.len() <= 2048)
                .map(str::to_owned);
            let body = read_capped(response, inner.max_response_bytes)
                .await
                .map_err(|e| (FhirError::Transport(e), None))?;
            return Ok(FhirResponse {
                status,
                location,
                body,
            });
        }
        let prefix = read_prefix(response, 64 * 1024)
            .await
            .map_err(|e| (FhirError::Transport(e), None))?;
        let err = if status == 401 && refreshed {
            // A token fetched just now, refused too: revoked at once (an EHR revoking tokens
            // all along), or not valid there yet. The auth works (it issued one): later.
            tracing::warn!(
                "suki fhir: the server refused a freshly issued token too; the write is retried later"
            );
            FhirError::FreshTokenRefused
        } else if status == 401 || status == 403 {
            FhirError::Auth { status }
        } else {
            FhirError::Server {
                status,
                code: outcome_code(&prefix),
                retry_after,
            }
        };
        Err((err, retry_after))
    }

    /// Sends `call` once with `token`.
    async fn send(
        &self,
        call: &FhirRequest<'_>,
        token: &str,
    ) -> Result<reqwest::Response, (FhirError, Option<Duration>)> {
        let inner = &self.inner;
        let mut request = inner
            .http
            .request(call.method.clone(), call.url.clone())
            .header(ACCEPT, "application/fhir+json")
            .timeout(inner.timeout);
        // An empty token sends none (a public CapabilityStatement needs none).
        if !token.is_empty() {
            let header = Zeroizing::new(format!("Bearer {token}"));
            let mut authorization = HeaderValue::from_str(&header).map_err(|_| {
                (
                    FhirError::Config("the bearer token is not a valid header value".into()),
                    None,
                )
            })?;
            authorization.set_sensitive(true);
            request = request.header(AUTHORIZATION, authorization);
        }
        if call.method == Method::POST && call.url.path() != inner.base.path() {
            // A create's answer need not echo the resource: its Location says where it is.
            request = request.header("Prefer", "return=minimal");
        }
        if let Some(query) = call.if_none_exist {
            let value = HeaderValue::from_str(query).map_err(|_| {
                (
                    FhirError::Config("an If-None-Exist query is not a header value".into()),
                    None,
                )
            })?;
            request = request.header("If-None-Exist", value);
        }
        if let Some(version) = call.if_match {
            let value = HeaderValue::from_str(version).map_err(|_| {
                (
                    FhirError::Config("a version is not a header value".into()),
                    None,
                )
            })?;
            request = request.header(reqwest::header::IF_MATCH, value);
        }
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/fhir+json")
                .body(body.clone());
        }
        request
            .send()
            .await
            .map_err(|e| (FhirError::Transport(ClientError::transport(e)), None))
    }
}

impl FhirClientBuilder {
    /// The bearer token's source (required).
    #[must_use]
    pub fn auth(mut self, auth: impl FhirAuth) -> Self {
        self.auth = Some(Box::new(auth));
        self
    }

    /// How [`FhirClient::write`] writes a session (default [`WriteStrategy::Auto`]: from the
    /// server's CapabilityStatement).
    #[must_use]
    pub fn strategy(mut self, strategy: WriteStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// How long the server's CapabilityStatement is kept before it is read again (default one
    /// hour).
    #[must_use]
    pub fn capabilities_ttl(mut self, ttl: Duration) -> Self {
        self.capabilities_ttl = ttl;
        self
    }

    /// How old the CapabilityStatement may be when the plan made from it leaves parts of a
    /// session out (a type the server declared no create of), before it is read again (default
    /// one minute, at most the [`capabilities_ttl`](Self::capabilities_ttl)): a server back
    /// from maintenance or upgraded gets every part again within that time. A server that
    /// refuses a write its statement allowed makes it read again at once, whatever its age.
    #[must_use]
    pub fn capabilities_recheck(mut self, age: Duration) -> Self {
        self.capabilities_recheck = age;
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

    /// The deadline of one write, every request and retry included (default 120 s).
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
        let base = parse_base(&self.base)?;
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
                auth,
                retry: self.retry,
                timeout: self.timeout,
                deadline: self.deadline,
                max_response_bytes: self.max_response_bytes,
                strategy: self.strategy,
                capabilities: CapabilityCache::new(
                    self.capabilities_ttl,
                    self.capabilities_recheck.min(self.capabilities_ttl),
                ),
                warned_plan: std::sync::Mutex::new(Vec::new()),
                type_urls: crate::capabilities::TYPES
                    .iter()
                    .map(|kind| (*kind, join(&base, kind)))
                    .collect(),
                base,
                // Quick retries: 10 % of the requests over ten seconds, no reserve: a write
                // that fails is the inbox row's to retry (it waits for the EHR's breaker), so
                // an outage gets one request per write.
                budget: self.retry.budget(0),
            }),
        })
    }
}

/// `[base]/<path>`.
fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
    url.set_path(&joined);
    url.set_query(None);
    url
}

/// A FHIR base URL: `http(s)`, with a host, without credentials.
pub(crate) fn parse_base(text: &str) -> Result<Url, FhirError> {
    let base = Url::parse(text.trim())
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
    Ok(base)
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
            Some(EntryResult {
                resource_type: None,
                status,
                location,
                part: None,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(TransactionResult {
        entries,
        corrected: Vec::new(),
        skipped: Vec::new(),
        note: NoteCheck::Open,
    })
}

/// The first issue's `code` of an `OperationOutcome` (a FHIR code such as `invalid` or
/// `duplicate`; never its diagnostics, which may echo the Bundle), cleaned; `unknown` otherwise.
pub(crate) fn outcome_code(body: &[u8]) -> String {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["issue"][0]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    clean_code(&code)
}

/// A server's code kept to `[A-Za-z0-9_-]{1,40}`, `unknown` when nothing is left.
pub(crate) fn clean_code(code: &str) -> String {
    let clean: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(40)
        .collect();
    if clean.is_empty() {
        "unknown".to_owned()
    } else {
        clean
    }
}
