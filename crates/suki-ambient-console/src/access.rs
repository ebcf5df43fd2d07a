//! Who may open the console: its tokens, sign-ins, and the wrong-token limit per client.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use subtle::ConstantTimeEq;
use suki_ambient_core::{UnixMillis, WebhookSecret};
use suki_ambient_inbox::Inbox;

pub(crate) const COOKIE: &str = "suki_console";
pub(crate) const DAY: u64 = 24 * 3_600_000;

/// The console's state, as its handlers extract it.
pub(crate) type Shared = AxumState<Arc<Console>>;

pub(crate) struct Console {
    pub(crate) inbox: Inbox,
    /// The tokens that open it, each as values derived from it (the tokens themselves are not
    /// kept).
    pub(crate) tokens: Vec<Token>,
    /// The signed-in browsers: cookie value → when it expires and whose token signed in.
    pub(crate) sessions: std::sync::Mutex<HashMap<String, (Instant, usize)>>,
    /// When the sign-ins and bearer requests with a wrong token of the last minute failed, per
    /// client ([`client_of`]).
    pub(crate) failures: std::sync::Mutex<HashMap<Client, VecDeque<Instant>>>,
}

/// A token the console accepts, as values derived from it.
pub(crate) struct Token {
    pub(crate) name: String,
    pub(crate) role: Role,
    /// HMAC(token, "bearer"): a presented token is checked by computing the same with it as
    /// the key.
    pub(crate) bearer: String,
    /// HMAC(token, "session-key"): the key that makes this token's sign-in cookies.
    pub(crate) session_key: String,
    /// The CSRF token of this token's forms: HMAC(token, "csrf").
    pub(crate) csrf: String,
}

/// What a console token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Look: the dashboard, dead letters, timelines (each timeline viewed is audited).
    Viewer,
    /// Look and act: retry, replay, discard, pause, resume.
    Operator,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
        }
    }
}

/// The tokens that open the console, each with a name (recorded in the audit log) and a
/// [`Role`]. A plain token (`String`, `&str`) is one operator token named `operator`.
///
/// ```
/// use suki_ambient_console::Access;
/// let access = Access::new()
///     .operator("on-call", "a-long-random-operator-token")
///     .viewer("support", "a-long-random-viewer-token");
/// # let _ = access;
/// ```
#[derive(Clone, Default)]
pub struct Access {
    pub(crate) tokens: Vec<(String, Role, String)>,
}

impl Access {
    /// No token yet (a console without one opens for nobody).
    pub fn new() -> Self {
        Self::default()
    }

    /// A token that may look and act, named `name` in the audit log.
    #[must_use]
    pub fn operator(mut self, name: impl Into<String>, token: impl Into<String>) -> Self {
        self.tokens
            .push((name.into(), Role::Operator, token.into()));
        self
    }

    /// A token that may only look, named `name` in the audit log.
    #[must_use]
    pub fn viewer(mut self, name: impl Into<String>, token: impl Into<String>) -> Self {
        self.tokens.push((name.into(), Role::Viewer, token.into()));
        self
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.tokens
                    .iter()
                    .map(|(name, role, _)| format!("{name} ({})", role.as_str())),
            )
            .finish()
    }
}

impl From<String> for Access {
    fn from(token: String) -> Self {
        Self::new().operator("operator", token)
    }
}

impl From<&str> for Access {
    fn from(token: &str) -> Self {
        Self::from(token.to_owned())
    }
}

/// Who is signed in (a token of `Console::tokens`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Who {
    pub(crate) token: usize,
    /// By the bearer header (a script), not a cookie.
    pub(crate) bearer: bool,
}

/// How long a sign-in lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// The most signed-in browsers at once per role (a new sign-in pushes out the oldest of its own
/// role only: viewers cannot sign operators out).
pub(crate) const MAX_SESSIONS_PER_ROLE: usize = 128;
/// Wrong tokens allowed per client per minute; past that, the client's sign-ins and bearer
/// requests are refused (429) until the minute has passed. Other clients are not affected.
pub(crate) const MAX_FAILURES_PER_MINUTE: usize = 10;
/// The most clients whose failures are remembered (past it, those whose last failure is oldest
/// are forgotten first).
pub(crate) const MAX_FAILING_CLIENTS: usize = 4096;

/// Whom a rate limit counts: the peer's IPv4 address, or its IPv6 /64 (one host holds a
/// whole /64); `None` when the server gives no peer address (then all clients share one limit).
pub(crate) type Client = Option<std::net::IpAddr>;

/// The client of a request, from the connection's peer address (axum's `ConnectInfo`; a
/// reverse proxy's clients all count as the proxy).
pub(crate) fn client_of(extensions: &axum::http::Extensions) -> Client {
    let ip = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?
        .0
        .ip();
    Some(match ip {
        std::net::IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(octets))
        }
        v4 => v4,
    })
}

/// HMAC-SHA-256 of `purpose` keyed by `token`, in hex.
pub(crate) fn derive(token: &str, purpose: &str) -> String {
    suki_ambient_core::sign(
        &WebhookSecret::from(token),
        "suki-console",
        purpose.as_bytes(),
    )
    .to_hex()
}

/// Where the router is mounted: the original path minus what the router saw.
pub(crate) fn base(original: &Uri, seen: &Uri) -> String {
    let full = original.path();
    let rest = seen.path();
    let base = full.strip_suffix(rest).unwrap_or(full);
    base.trim_end_matches('/').to_owned()
}

impl Console {
    /// Who the request is from: a bearer token or a live sign-in cookie.
    pub(crate) fn authorized(&self, headers: &HeaderMap) -> Option<Who> {
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            && let Some(token) = self.token(bearer.trim())
        {
            return Some(Who {
                token,
                bearer: true,
            });
        }
        let token = self.signed_in(cookie(headers)?)?;
        Some(Who {
            token,
            bearer: false,
        })
    }

    /// Whose live sign-in `cookie` is (an expired one is forgotten).
    pub(crate) fn signed_in(&self, cookie: &str) -> Option<usize> {
        let mut sessions = lock(&self.sessions);
        match sessions.get(cookie) {
            Some((expires, token)) if *expires > Instant::now() => Some(*token),
            Some(_) => {
                sessions.remove(cookie);
                None
            }
            None => None,
        }
    }

    /// A new sign-in with token `token`: an unpredictable cookie value (HMAC under a key
    /// derived from the token), valid for [`SESSION_TTL`].
    pub(crate) fn sign_in(&self, token: usize) -> String {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seed = format!(
            "{n}:{}:{:032x}",
            UnixMillis::now().0,
            rand::random::<u128>()
        );
        let value = derive(&self.tokens[token].session_key, &seed);
        let now = Instant::now();
        let role = self.tokens[token].role;
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, (expires, _)| *expires > now);
        let of_role = |t: &usize| self.tokens[*t].role == role;
        if sessions.values().filter(|(_, t)| of_role(t)).count() >= MAX_SESSIONS_PER_ROLE
            && let Some(oldest) = sessions
                .iter()
                .filter(|(_, (_, t))| of_role(t))
                .min_by_key(|(_, (expires, _))| *expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(value.clone(), (now + SESSION_TTL, token));
        value
    }

    /// Ends a sign-in: its cookie opens nothing any more.
    pub(crate) fn sign_out(&self, cookie: &str) {
        lock(&self.sessions).remove(cookie);
    }

    /// Counts a wrong token from `client`.
    pub(crate) fn failed(&self, client: Client) {
        let mut failures = lock(&self.failures);
        if !failures.contains_key(&client) && failures.len() >= MAX_FAILING_CLIENTS {
            let minute = Duration::from_secs(60);
            failures.retain(|_, at| at.back().is_some_and(|last| last.elapsed() <= minute));
            if failures.len() >= MAX_FAILING_CLIENTS
                && let Some(stalest) = failures
                    .iter()
                    .min_by_key(|(_, at)| at.back().copied())
                    .map(|(c, _)| *c)
            {
                failures.remove(&stalest);
            }
        }
        let at = failures.entry(client).or_default();
        at.push_back(Instant::now());
        if at.len() > MAX_FAILURES_PER_MINUTE {
            at.pop_front();
        }
    }

    /// Whether `client`'s wrong tokens of the last minute reached the limit.
    pub(crate) fn too_many_failures(&self, client: Client) -> bool {
        let mut failures = lock(&self.failures);
        let Some(at) = failures.get_mut(&client) else {
            return false;
        };
        while at
            .front()
            .is_some_and(|at| at.elapsed() > Duration::from_secs(60))
        {
            at.pop_front();
        }
        let limited = at.len() >= MAX_FAILURES_PER_MINUTE;
        if at.is_empty() {
            failures.remove(&client);
        }
        limited
    }

    /// Which of the console's tokens `presented` is (constant time in its content: every token
    /// is compared).
    pub(crate) fn token(&self, presented: &str) -> Option<usize> {
        if presented.is_empty() {
            return None;
        }
        let derived = derive(presented, "bearer");
        let mut found = None;
        for (i, token) in self.tokens.iter().enumerate() {
            if bool::from(derived.as_bytes().ct_eq(token.bearer.as_bytes())) {
                found = Some(i);
            }
        }
        found
    }

    /// Who may change state with this POST: an operator, and from a cookie also with a
    /// matching CSRF token from this origin.
    pub(crate) fn may_change(&self, headers: &HeaderMap, csrf: Option<&str>) -> Option<Who> {
        let who = self.authorized(headers)?;
        let token = &self.tokens[who.token];
        if token.role != Role::Operator {
            return None;
        }
        if who.bearer {
            return Some(who);
        }
        let token_ok = csrf.is_some_and(|c| bool::from(c.as_bytes().ct_eq(token.csrf.as_bytes())));
        (token_ok && same_origin(headers)).then_some(who)
    }

    /// The audit log's actor for `who`, from where the request came.
    pub(crate) fn actor(
        &self,
        who: Who,
        extensions: &axum::http::Extensions,
    ) -> suki_ambient_inbox::Actor {
        self.actor_of(who.token, extensions)
    }

    /// The audit log's actor for the holder of token `token`, from where the request came.
    pub(crate) fn actor_of(
        &self,
        token: usize,
        extensions: &axum::http::Extensions,
    ) -> suki_ambient_inbox::Actor {
        let origin = extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(|| "console".to_owned(), |c| format!("console {}", c.0.ip()));
        suki_ambient_inbox::Actor::new(self.tokens[token].name.clone(), origin)
    }
}

/// The console's cookie, if the request has one.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// From this origin: `Sec-Fetch-Site: same-origin` (browsers set it and pages cannot), or,
/// from a browser without it, an `Origin` naming this host; a request with neither (a script
/// with the bearer token, curl) passes.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    match text("sec-fetch-site") {
        Some(site) => site == "same-origin" || site == "none",
        None => match (text(header::ORIGIN.as_str()), text(header::HOST.as_str())) {
            (Some(origin), Some(host)) => origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority == host),
            (Some(_), None) => false,
            (None, _) => true,
        },
    }
}
