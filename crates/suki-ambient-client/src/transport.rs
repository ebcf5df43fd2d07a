//! Transport: one call as attempts under the retry policy and the deadline, in a `suki_api`
//! span; the redirect policy that keeps the token under the base URL.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::AmbientClient;
use crate::auth::{AuthContext, Token, error_id};
use crate::error::{ClientError, ServerMessage, TimeoutKind};
use crate::limits::{ERROR_BODY_BYTES, read_capped, read_prefix, redirect_allowed, within_base};
use crate::retry::{Failed, GaveUp, parse_retry_after, retrying};

const TOKEN_HEADER: HeaderName = HeaderName::from_static("sdp_suki_token");
const PROVIDER_HEADER: HeaderName = HeaderName::from_static("sdp_provider_id");

/// How one attempt ended, when not with a body.
enum Failure {
    /// 401 `invalid_sdp_token`: this token was refused.
    Refused(Token),
    /// Any other error, with the server's `Retry-After`.
    Error(ClientError, Option<Duration>),
}

impl AmbientClient {
    pub(crate) async fn get<T: DeserializeOwned>(
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
    pub(crate) async fn get_bytes(
        &self,
        url: Url,
        template: &'static str,
    ) -> Result<Bytes, ClientError> {
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
            let result = self.attempts(&url, template, deadline).await;
            let span = tracing::Span::current();
            span.record(
                "latency_ms",
                suki_ambient_core::time::millis(started.elapsed()),
            );
            match &result {
                Ok(_) => tracing::debug!("suki api call succeeded"),
                Err(err) => tracing::warn!(error = %err, "suki api call failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn attempts(
        &self,
        url: &Url,
        template: &'static str,
        deadline: Option<Instant>,
    ) -> Result<Bytes, ClientError> {
        let retry = self.retry.unwrap_or(self.inner.retry);
        // One fresh login per call (an attempt's future may not borrow the loop's state
        // mutably: a flag shared by reference).
        let relogged = std::sync::atomic::AtomicBool::new(false);
        let relogged = &relogged;
        let result = retrying(
            &retry,
            retry.attempts(),
            &self.inner.budget,
            deadline,
            |attempt| async move {
                tracing::Span::current().record("attempt", attempt);
                loop {
                    match self.bounded_attempt(url, deadline).await {
                        Ok(bytes) => {
                            crate::metrics::request(template, || "2xx".into());
                            return Ok(bytes);
                        }
                        Err(Failure::Refused(token)) => {
                            crate::metrics::request(template, || "401".into());
                            let refused = ClientError::Auth {
                                status: 401,
                                code: "invalid_sdp_token".to_owned(),
                            };
                            if relogged.load(std::sync::atomic::Ordering::Relaxed)
                                || !self.inner.auth.invalidate(&token).await
                            {
                                return Err(Failed {
                                    error: refused,
                                    retryable: false,
                                    retry_after: None,
                                });
                            }
                            // One fresh login and one more try in the same attempt, outside
                            // the retry budget.
                            crate::metrics::retry(|| "token_refused".into());
                            relogged.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(Failure::Error(error, retry_after)) => {
                            crate::metrics::request(template, || crate::metrics::outcome(&error));
                            return Err(Failed {
                                retryable: error.is_retryable(),
                                error,
                                retry_after,
                            });
                        }
                    }
                }
            },
            |error, attempt, delay| {
                tracing::debug!(attempt, delay_ms = suki_ambient_core::time::millis(delay), error = %error, "retrying");
                crate::metrics::retry(|| crate::metrics::outcome(error));
            },
        )
        .await;
        result.map_err(|stopped| {
            // Quick retries stay within the client's budget, so that an outage does not get
            // several requests for each call.
            if stopped.reason == GaveUp::Budget {
                crate::metrics::retry(|| "budget_spent".into());
            }
            stopped.error
        })
    }

    /// One attempt under one timer: the attempt's timeout or the call's deadline, whichever
    /// comes first (token, request and body included).
    async fn bounded_attempt(
        &self,
        url: &Url,
        deadline: Option<Instant>,
    ) -> Result<Bytes, Failure> {
        let now = Instant::now();
        let (end, kind) = match (now.checked_add(self.inner.timeout), deadline) {
            (Some(own), Some(deadline)) if deadline <= own => {
                (Some(deadline), TimeoutKind::Deadline)
            }
            (Some(own), _) => (Some(own), TimeoutKind::Attempt),
            (None, Some(deadline)) => (Some(deadline), TimeoutKind::Deadline),
            (None, None) => (None, TimeoutKind::Attempt),
        };
        let timeout = end.map_or(Duration::MAX, |end| end.saturating_duration_since(now));
        let attempt = self.attempt(url, timeout);
        match end {
            Some(end) => tokio::time::timeout_at(end.into(), attempt)
                .await
                .unwrap_or(Err(Failure::Error(ClientError::Timeout { kind }, None))),
            None => attempt.await,
        }
    }

    async fn attempt(&self, url: &Url, timeout: Duration) -> Result<Bytes, Failure> {
        let inner = &self.inner;
        let ctx = AuthContext {
            http: &inner.http,
            base_url: &inner.base_url,
            timeout,
            provider_id: self.provider_id(),
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
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(provider) = &self.provider_id {
            request = request.header(PROVIDER_HEADER, provider.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Error(ClientError::transport(e), None))?;
        let status = response.status().as_u16();
        tracing::Span::current().record("status", status);
        let allowed = if response.url() == url {
            within_base(&inner.base_url, url)
        } else {
            redirect_allowed(&inner.base_url, response.url())
        };
        if !allowed {
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
        if (200..300).contains(&status) {
            return read_capped(response, inner.max_response_bytes)
                .await
                .map_err(|e| Failure::Error(e, None));
        }
        // An error's body is read for its error id only: its first bytes.
        let body = read_prefix(response, ERROR_BODY_BYTES)
            .await
            .map_err(|e| Failure::Error(e, None))?;
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
                retry_after,
            }
        };
        Err(Failure::Error(err, retry_after))
    }
}
