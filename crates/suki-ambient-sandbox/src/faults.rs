//! Fault injection: answer chosen requests with a status, a delay, or a dropped connection.

use std::time::Duration;

/// The longest latency a fault may add: a minute. Longer values are cut to it, so that no fault
/// can hang the sandbox for good.
pub const MAX_FAULT_LATENCY: Duration = Duration::from_secs(60);
/// The longest `Retry-After` value (in characters) a fault may carry.
pub(crate) const MAX_RETRY_AFTER_LEN: usize = 64;

/// A fault for requests whose path starts with a prefix: an error status (optionally with
/// `Retry-After`), added latency, or a connection dropped mid-response.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use suki_ambient_sandbox::Fault;
///
/// // The next two calls to any session endpoint answer 503 with `Retry-After: 1`.
/// let fault = Fault::status(503).retry_after("1").on("/api/v1/ambient/session/").times(2);
/// // 30% of all API calls are slowed down by 50 ms.
/// let slow = Fault::latency(Duration::from_millis(50)).share(0.3);
/// # let _ = (fault, slow);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub(crate) prefix: String,
    pub(crate) status: Option<u16>,
    pub(crate) retry_after: Option<String>,
    pub(crate) latency: Duration,
    pub(crate) drop_connection: bool,
    /// Serve the request, then cut the connection instead of answering.
    pub(crate) lose_answer: bool,
    /// Only requests of this method (`None`: any).
    pub(crate) method: Option<String>,
    pub(crate) budget: Budget,
}

/// How many requests a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Budget {
    /// The next `n` matching requests.
    Times(u64),
    /// Each matching request with this probability, indefinitely.
    Share(f64),
}

impl Fault {
    fn new() -> Self {
        Self {
            prefix: "/api/".into(),
            status: None,
            retry_after: None,
            latency: Duration::ZERO,
            drop_connection: false,
            lose_answer: false,
            method: None,
            budget: Budget::Times(1),
        }
    }

    /// Answer with `status` and Suki's error body.
    pub fn status(status: u16) -> Self {
        Self {
            status: Some(status),
            ..Self::new()
        }
    }

    /// Delay the request by `latency` (at most [`MAX_FAULT_LATENCY`]), then serve it normally.
    pub fn latency(latency: Duration) -> Self {
        Self::new().with_latency(latency)
    }

    /// Drop the connection after the response head (the body never arrives).
    pub fn drop_connection() -> Self {
        Self {
            drop_connection: true,
            ..Self::new()
        }
    }

    /// Serve a write (any method but `GET` and `HEAD`) as usual, then cut the connection
    /// instead of answering: the work was done, but the client never hears of it (as when a
    /// request times out after the server committed). Clients that send the write again
    /// blindly make a copy; idempotent ones do not.
    pub fn lose_answer() -> Self {
        Self {
            lose_answer: true,
            ..Self::new()
        }
    }

    /// Add a `Retry-After` header (seconds or an HTTP date) to the error status.
    #[must_use]
    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    /// Also delay by `latency` before answering (at most [`MAX_FAULT_LATENCY`]).
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency.min(MAX_FAULT_LATENCY);
        self
    }

    /// Only requests whose path starts with `prefix` (default: every `/api/` request).
    #[must_use]
    pub fn on(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Only requests of `method` (`PUT`…; default any).
    #[must_use]
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Apply to the next `n` matching requests (default 1).
    #[must_use]
    pub fn times(mut self, n: u64) -> Self {
        self.budget = Budget::Times(n);
        self
    }

    /// Apply to each matching request with probability `share` (0 to 1), until cleared.
    #[must_use]
    pub fn share(mut self, share: f64) -> Self {
        // NaN counts as never.
        self.budget = Budget::Share(if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        });
        self
    }

    /// Whether this fault fires for `path`, spending its budget if so. The sandbox's own admin
    /// routes (`/sandbox/`) are never faulted: the route that clears faults must always work.
    pub(crate) fn fire(&mut self, method: &axum::http::Method, path: &str) -> bool {
        if path.starts_with("/sandbox/") || !path.starts_with(&self.prefix) {
            return false;
        }
        if self.lose_answer
            && (method == axum::http::Method::GET || method == axum::http::Method::HEAD)
        {
            return false;
        }
        if self.method.as_deref().is_some_and(|m| m != method.as_str()) {
            return false;
        }
        match &mut self.budget {
            Budget::Times(0) => false,
            Budget::Times(n) => {
                *n -= 1;
                true
            }
            Budget::Share(p) => fastrand::f64() < *p,
        }
    }

    /// Spent faults can be dropped.
    pub(crate) fn spent(&self) -> bool {
        matches!(self.budget, Budget::Times(0))
    }
}

/// The longest a [`WebhookFault::delay`] holds a webhook back.
pub const MAX_WEBHOOK_DELAY: Duration = Duration::from_secs(60 * 60);

/// A fault of webhook delivery, the failures a reconciler exists for: a webhook lost on the way
/// (the receiver was down, a proxy dropped it) or held back. It applies to the webhooks the
/// sandbox sends when a session ends ([`SandboxControl::deliver`](crate::SandboxControl::deliver)
/// and the session calls), not to the test helpers `deliver_tampered` / `deliver_signed`, nor to
/// a [`redeliver`](crate::SandboxControl::redeliver). Faults stay until cleared.
///
/// ```
/// use std::time::Duration;
/// use suki_ambient_sandbox::WebhookFault;
///
/// let lose_30_percent = WebhookFault::lose().share(0.3);
/// let hold_back = WebhookFault::delay(Duration::from_secs(2)).share(0.1);
/// # let _ = (lose_30_percent, hold_back);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookFault {
    pub(crate) action: WebhookAction,
    pub(crate) session: Option<String>,
    pub(crate) share: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum WebhookAction {
    Lose,
    Delay(Duration),
}

impl WebhookFault {
    /// Every matching webhook is lost: never sent.
    pub fn lose() -> Self {
        Self {
            action: WebhookAction::Lose,
            session: None,
            share: 1.0,
        }
    }

    /// Every matching webhook is sent `by` later (at most [`MAX_WEBHOOK_DELAY`]), signed when it
    /// was generated, as a proxy holding it would.
    pub fn delay(by: Duration) -> Self {
        Self {
            action: WebhookAction::Delay(by.min(MAX_WEBHOOK_DELAY)),
            session: None,
            share: 1.0,
        }
    }

    /// Only this share of the webhooks, drawn at random (0.0 to 1.0).
    #[must_use]
    pub fn share(mut self, share: f64) -> Self {
        self.share = if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        };
        self
    }

    /// Only the webhook of this session.
    #[must_use]
    pub fn session(mut self, id: &suki_ambient_core::SessionId) -> Self {
        self.session = Some(id.as_str().to_owned());
        self
    }

    /// What happens to a webhook of `session`, drawn once per webhook.
    pub(crate) fn applies(&self, session: Option<&str>) -> bool {
        let targeted = match (&self.session, session) {
            (Some(wanted), Some(id)) => wanted == id,
            (Some(_), None) => false,
            (None, _) => true,
        };
        targeted && fastrand::f64() < self.share
    }
}
