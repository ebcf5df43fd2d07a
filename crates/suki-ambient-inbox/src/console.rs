//! The inbox console (feature `console`): a server-rendered page that shows at a glance whether
//! notes are flowing, and lets the person on call retry what is stuck. No script, no front-end
//! build, no clinical content: ids, kinds, states, times and error codes only.
//!
//! ```no_run
//! # async fn example(inbox: suki_ambient_inbox::Inbox) {
//! let console = suki_ambient_inbox::console::router(inbox, std::env::var("SUKI_CONSOLE_TOKEN").unwrap());
//! let app = axum::Router::new().nest("/admin/suki", console);
//! # let _ = app; }
//! ```
//!
//! Access: `Authorization: Bearer <token>`, or the login form, which sets an `HttpOnly`,
//! `SameSite=Strict` cookie naming a sign-in that lasts 12 hours and that sign-out revokes (an
//! unpredictable value, never the token). Authentication is the outermost layer: whatever an
//! unauthenticated request asks, it gets 401 and the sign-in form. More than 10 wrong tokens in
//! a minute and sign-ins are refused (429) until the minute has passed.
//! Without either, every route answers 401 with the login form and nothing else. State-changing
//! requests are POSTs carrying a CSRF token (derived from the token, checked in constant time),
//! and from a browser also a same-origin `Sec-Fetch-Site`/`Origin`. Every answer has a strict
//! Content-Security-Policy (no script at all; the one style sheet by nonce), `no-store`,
//! `nosniff`, `Referrer-Policy: same-origin` and `frame-ancestors 'none'`.

use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Form, OriginalUri, Path, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;
use suki_ambient_core::{UnixMillis, WebhookSecret};

use crate::display::{MAX_TEXT, clean, clean_or_dash, next_run, relative, short};
use crate::{DeliveryRecord, Inbox, Selection, State};

const COOKIE: &str = "suki_console";
const DAY: u64 = 24 * 3_600_000;

struct Console {
    inbox: Inbox,
    /// The tokens that open it, each as values derived from it (the tokens themselves are not
    /// kept).
    tokens: Vec<Token>,
    /// The signed-in browsers: cookie value → when it expires and whose token signed in.
    sessions: std::sync::Mutex<HashMap<String, (Instant, usize)>>,
    /// When the sign-ins and bearer requests with a wrong token of the last minute failed, per
    /// client ([`client_of`]).
    failures: std::sync::Mutex<HashMap<Client, VecDeque<Instant>>>,
}

/// A token the console accepts, as values derived from it.
struct Token {
    name: String,
    role: Role,
    /// HMAC(token, "bearer"): a presented token is checked by computing the same with it as
    /// the key.
    bearer: String,
    /// HMAC(token, "session-key"): the key that makes this token's sign-in cookies.
    session_key: String,
    /// The CSRF token of this token's forms: HMAC(token, "csrf").
    csrf: String,
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
    fn as_str(self) -> &'static str {
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
/// use suki_ambient_inbox::console::Access;
/// let access = Access::new()
///     .operator("on-call", "a-long-random-operator-token")
///     .viewer("support", "a-long-random-viewer-token");
/// # let _ = access;
/// ```
#[derive(Clone, Default)]
pub struct Access {
    tokens: Vec<(String, Role, String)>,
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
struct Who {
    token: usize,
    /// By the bearer header (a script), not a cookie.
    bearer: bool,
}

/// How long a sign-in lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// The most signed-in browsers at once per role (a new sign-in pushes out the oldest of its own
/// role only: viewers cannot sign operators out).
const MAX_SESSIONS_PER_ROLE: usize = 128;
/// Wrong tokens allowed per client per minute; past that, the client's sign-ins and bearer
/// requests are refused (429) until the minute has passed. Other clients are not affected.
const MAX_FAILURES_PER_MINUTE: usize = 10;
/// The most clients whose failures are remembered (past it, those whose last failure is oldest
/// are forgotten first).
const MAX_FAILING_CLIENTS: usize = 4096;

/// Whom a rate limit counts: the peer's IPv4 address, or its IPv6 /64 (one host holds a
/// whole /64); `None` when the server gives no peer address (then all clients share one limit).
type Client = Option<std::net::IpAddr>;

/// The client of a request, from the connection's peer address (axum's `ConnectInfo`; a
/// reverse proxy's clients all count as the proxy).
fn client_of(extensions: &axum::http::Extensions) -> Client {
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

/// The console's axum router, to `nest` where the application wants it (e.g. `/admin/suki`).
/// `access` is the tokens that open it: a plain token (one operator), or an [`Access`] with
/// operator and viewer tokens (use long random values, from a secret store).
pub fn router(inbox: Inbox, access: impl Into<Access>) -> axum::Router {
    let access = access.into();
    let console = Arc::new(Console {
        tokens: access
            .tokens
            .iter()
            .filter(|(_, _, token)| !token.trim().is_empty())
            .map(|(name, role, token)| Token {
                name: name.clone(),
                role: *role,
                bearer: derive(token, "bearer"),
                session_key: derive(token, "session-key"),
                csrf: derive(token, "csrf"),
            })
            .collect(),
        sessions: std::sync::Mutex::default(),
        failures: std::sync::Mutex::default(),
        inbox,
    });
    axum::Router::new()
        .route("/", get(page))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/retry/{id}", post(retry_one))
        .route("/retry-dead", post(retry_dead))
        .route("/retry-group", post(retry_group))
        .route("/discard/{id}", post(discard))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/replay", get(replay_preview).post(replay))
        .route("/trace", get(trace))
        .fallback(not_found)
        // Outermost: nothing (no extractor, no 405 or 415) answers before authentication, and
        // every answer carries the security headers.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&console),
            guard,
        ))
        .with_state(console)
}

/// Authentication before anything else, and the security headers on every answer: an
/// unauthenticated request gets 401 and the sign-in form (or its sign-in is passed to the
/// login handler, within the failure rate limit); an authenticated one goes on.
async fn guard(
    AxumState(console): Shared,
    OriginalUri(original): OriginalUri,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let is_login = request.method() == axum::http::Method::POST && request.uri().path() == "/login";
    let auth = console.authorized(request.headers());
    let client = client_of(request.extensions());
    let bearer = request.headers().contains_key(header::AUTHORIZATION);
    // A limited client's sign-ins and bearer requests are refused before any token is looked
    // at, the right one too: a guess that succeeds must not answer differently.
    let response = if (is_login || bearer) && console.too_many_failures(client) {
        let nonce = nonce();
        let mut refused = html(
            StatusCode::TOO_MANY_REQUESTS,
            page_shell(
                "Suki inbox console",
                &nonce,
                "<p class=\"bad\">Too many wrong tokens: try again in a minute.</p>",
            ),
            &nonce,
        );
        refused
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        refused
    } else if is_login {
        next.run(request).await
    } else if auth.is_none() {
        if bearer {
            // A wrong bearer token.
            console.failed(client);
        }
        let base = base(&original, request.uri());
        let nonce = nonce();
        html(
            StatusCode::UNAUTHORIZED,
            login_page(&base, &nonce, false),
            &nonce,
        )
    } else {
        next.run(request).await
    };
    secured_all(response)
}

type Shared = AxumState<Arc<Console>>;

/// HMAC-SHA-256 of `purpose` keyed by `token`, in hex.
fn derive(token: &str, purpose: &str) -> String {
    suki_ambient_core::sign(
        &WebhookSecret::from(token),
        "suki-console",
        purpose.as_bytes(),
    )
    .to_hex()
}

/// Where the router is mounted: the original path minus what the router saw.
fn base(original: &Uri, seen: &Uri) -> String {
    let full = original.path();
    let rest = seen.path();
    let base = full.strip_suffix(rest).unwrap_or(full);
    base.trim_end_matches('/').to_owned()
}

impl Console {
    /// Who the request is from: a bearer token or a live sign-in cookie.
    fn authorized(&self, headers: &HeaderMap) -> Option<Who> {
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
    fn signed_in(&self, cookie: &str) -> Option<usize> {
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
    fn sign_in(&self, token: usize) -> String {
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
    fn sign_out(&self, cookie: &str) {
        lock(&self.sessions).remove(cookie);
    }

    /// Counts a wrong token from `client`.
    fn failed(&self, client: Client) {
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
    fn too_many_failures(&self, client: Client) -> bool {
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
    fn token(&self, presented: &str) -> Option<usize> {
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
    fn may_change(&self, headers: &HeaderMap, csrf: Option<&str>) -> Option<Who> {
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
    fn actor(&self, who: Who, extensions: &axum::http::Extensions) -> crate::Actor {
        self.actor_of(who.token, extensions)
    }

    /// The audit log's actor for the holder of token `token`, from where the request came.
    fn actor_of(&self, token: usize, extensions: &axum::http::Extensions) -> crate::Actor {
        let origin = extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(|| "console".to_owned(), |c| format!("console {}", c.0.ip()));
        crate::Actor::new(self.tokens[token].name.clone(), origin)
    }
}

/// The console's cookie, if the request has one.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The security headers on an answer that has none yet (what the router or an extractor
/// answered by itself: a 405, a 415, a 400); the pages set theirs, with their style's nonce.
fn secured_all(response: Response) -> Response {
    if response
        .headers()
        .contains_key(header::CONTENT_SECURITY_POLICY)
    {
        response
    } else {
        secured(response, &nonce())
    }
}

/// From this origin: `Sec-Fetch-Site: same-origin` (browsers set it and pages cannot), or,
/// from a browser without it, an `Origin` naming this host; a request with neither (a script
/// with the bearer token, curl) passes.
fn same_origin(headers: &HeaderMap) -> bool {
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

/// The security headers of every answer; `nonce` allows the page's one style sheet.
fn secured(mut response: Response, nonce: &str) -> Response {
    let h = response.headers_mut();
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// A page's CSP nonce: 128 bits from the thread's CSPRNG.
fn nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn html(status: StatusCode, body: String, nonce: &str) -> Response {
    secured(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        nonce,
    )
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    secured(response, &nonce())
}

/// The dashboard's address: the mount point itself (`/` at the root).
fn home(base: &str) -> String {
    if base.is_empty() {
        "/".to_owned()
    } else {
        base.to_owned()
    }
}

/// Text for HTML: `& < > " '` escaped.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#1d2430;background:#f7f8fa}\
h1{font-size:20px;margin:0 0 16px}h2{font-size:16px;margin:24px 0 8px}\
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:10px 14px;min-width:120px}\
.card b{display:block;font-size:22px}.card span{color:#5b6575;font-size:12px}\
table{border-collapse:collapse;background:#fff;width:100%}th,td{border-bottom:1px solid #e5e8ed;padding:6px 8px;text-align:left;font-size:13px}\
th{background:#eef1f5}form{display:inline;margin:0}button{cursor:pointer;padding:3px 10px;border:1px solid #8a94a6;border-radius:4px;background:#fff}\
.bad{color:#b42318}.ok{color:#067647}\
.verdict{padding:10px 14px;border-radius:6px;font-size:1.05em}.verdict.healthy{background:#ecfdf3;color:#067647}\
.verdict.degraded,.verdict.paused{background:#fffaeb;color:#b54708}form.search{display:block;margin:12px 0}.who{color:#5b6575;margin:0 0 8px}input{padding:3px 6px}.verdict.failing{background:#fef3f2;color:#b42318}.legend span{margin-right:14px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px}\
svg{background:#fff;border:1px solid #dde1e7;border-radius:6px}.muted{color:#5b6575}";

fn page_shell(title: &str, nonce: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style nonce=\"{nonce}\">{STYLE}</style></head><body>{body}</body></html>"
    )
}

fn login_page(base: &str, nonce: &str, failed: bool) -> String {
    let note = if failed {
        "<p class=\"bad\">That token does not open this console.</p>"
    } else {
        ""
    };
    page_shell(
        "Suki inbox console: sign in",
        nonce,
        &format!(
            "<h1>Suki inbox console</h1>{note}<form method=\"post\" action=\"{base}/login\">\
             <label>Console token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label> \
             <button type=\"submit\">Sign in</button></form>",
            base = esc(base)
        ),
    )
}

/// The answer when the store did not answer.
fn unavailable(err: &crate::StoreError, what: &str) -> Response {
    tracing::error!(error = %err, "suki console could not {what}");
    let nonce = nonce();
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        page_shell(
            "Suki inbox console",
            &nonce,
            "<h1>Suki inbox console</h1><p class=\"bad\">The inbox's store did not answer; try again.</p>",
        ),
        &nonce,
    )
}

/// The dashboard (`guard` has let only an authenticated request through).
async fn page(
    AxumState(console): Shared,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(who) = console.authorized(&headers) else {
        return refused();
    };
    let base = base(&original, &uri);
    let nonce = nonce();
    match dashboard(&console, who, &base, &nonce).await {
        Ok(body) => html(StatusCode::OK, body, &nonce),
        Err(err) => unavailable(&err, "read the inbox"),
    }
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    AxumState(console): Shared,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Form(form): Form<LoginForm>,
) -> Response {
    let base = base(&original, &uri);
    let base = base.strip_suffix("/login").unwrap_or(&base).to_owned();
    let token = console.token(form.token.trim());
    let Some(token) = token.filter(|_| same_origin(&headers)) else {
        tracing::warn!("suki console: a sign-in with a wrong token");
        console.failed(client_of(&extensions));
        let nonce = nonce();
        return html(
            StatusCode::UNAUTHORIZED,
            login_page(&base, &nonce, true),
            &nonce,
        );
    };
    // Every sign-in is in the audit log; one that cannot be recorded does not happen.
    let signed_in = crate::Action::SignIn {
        role: console.tokens[token].role.as_str().to_owned(),
    };
    if let Err(err) = console
        .inbox
        .act(&console.actor_of(token, &extensions), signed_in)
        .await
    {
        return unavailable(&err, "record the sign-in");
    }
    let mut response = see_other(&home(&base));
    let path = if base.is_empty() { "/" } else { base.as_str() };
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={}",
        console.sign_in(token),
        SESSION_TTL.as_secs()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

async fn logout(
    AxumState(console): Shared,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(value) = cookie(&headers) {
        console.sign_out(value);
    }
    let base = base(&original, &uri);
    let base = base.strip_suffix("/logout").unwrap_or(&base).to_owned();
    let path = if base.is_empty() { "/" } else { base.as_str() };
    let mut response = see_other(&home(&base));
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path={path}; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn refused() -> Response {
    let nonce = nonce();
    html(
        StatusCode::FORBIDDEN,
        page_shell(
            "Suki inbox console",
            &nonce,
            "<p class=\"bad\">Not allowed: this needs an operator's sign-in.</p>",
        ),
        &nonce,
    )
}

fn bad_request(text: &str) -> Response {
    let nonce = nonce();
    html(
        StatusCode::BAD_REQUEST,
        page_shell(
            "Suki inbox console",
            &nonce,
            &format!("<p class=\"bad\">{}</p>", esc(text)),
        ),
        &nonce,
    )
}

/// What an operator's POST needs besides its form: the console, the headers (whose sign-in),
/// the connection's extensions (the peer, for the audit log) and the dashboard to go back to.
struct Post {
    console: Arc<Console>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    back: String,
}

impl axum::extract::FromRequestParts<Arc<Console>> for Post {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let original = parts
            .extensions
            .get::<OriginalUri>()
            .map_or(&parts.uri, |original| &original.0);
        Ok(Self {
            back: home(&base(original, &parts.uri)),
            console: Arc::clone(console),
            headers: parts.headers.clone(),
            extensions: parts.extensions.clone(),
        })
    }
}

impl Post {
    /// Does `action` as the signed-in operator whose form carried `csrf` (anyone else: 403; a
    /// form that asks for nothing valid: 400), with its audit entry; then back to the dashboard.
    async fn operate(self, csrf: Option<&str>, action: Result<crate::Action, &str>) -> Response {
        let Some(who) = self.console.may_change(&self.headers, csrf) else {
            return refused();
        };
        let action = match action {
            Ok(action) => action,
            Err(text) => return bad_request(text),
        };
        let name = action.name();
        let actor = self.console.actor(who, &self.extensions);
        match self.console.inbox.act(&actor, action).await {
            Ok(_) => see_other(&self.back),
            Err(err) => unavailable(&err, name),
        }
    }
}

async fn retry_one(post: Post, Path(id): Path<i64>, Form(form): Form<CsrfForm>) -> Response {
    let action = crate::Action::Retry(Selection::Id(id));
    post.operate(form.csrf.as_deref(), Ok(action)).await
}

async fn retry_dead(post: Post, Form(form): Form<CsrfForm>) -> Response {
    let action = crate::Action::Retry(Selection::Dead);
    post.operate(form.csrf.as_deref(), Ok(action)).await
}

#[derive(serde::Deserialize)]
struct GroupForm {
    #[serde(default)]
    csrf: Option<String>,
    code: String,
}

/// "Retry this group": the dead rows with exactly this code.
async fn retry_group(post: Post, Form(form): Form<GroupForm>) -> Response {
    let action = crate::Action::Retry(Selection::DeadMatching(
        crate::DeadFilter::new().code(form.code),
    ));
    post.operate(form.csrf.as_deref(), Ok(action)).await
}

#[derive(serde::Deserialize)]
struct DiscardForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    reason: String,
}

async fn discard(post: Post, Path(id): Path<i64>, Form(form): Form<DiscardForm>) -> Response {
    let reason = form.reason.trim();
    let action = if reason.is_empty() {
        Err("A discard needs a reason.")
    } else {
        Ok(crate::Action::Discard {
            id,
            reason: clean(reason, 500),
        })
    };
    post.operate(form.csrf.as_deref(), action).await
}

#[derive(serde::Deserialize)]
struct PauseForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    reason: String,
}

/// The kind of a form's field (empty: every kind).
fn form_kind(kind: &str) -> Result<Option<suki_ambient_core::EventKind>, &'static str> {
    match kind.trim() {
        "" | "all" => Ok(None),
        kind => suki_ambient_core::EventKind::parse(kind)
            .map(Some)
            .ok_or("Unknown kind."),
    }
}

async fn pause(post: Post, Form(form): Form<PauseForm>) -> Response {
    let action = form_kind(&form.kind).map(|kind| {
        let reason = Some(clean(form.reason.trim(), 500)).filter(|r| !r.is_empty());
        crate::Action::Pause { kind, reason }
    });
    post.operate(form.csrf.as_deref(), action).await
}

async fn resume(post: Post, Form(form): Form<PauseForm>) -> Response {
    let action = form_kind(&form.kind).map(|kind| crate::Action::Resume { kind });
    post.operate(form.csrf.as_deref(), action).await
}

#[derive(serde::Deserialize)]
struct ReplayForm {
    #[serde(default)]
    csrf: Option<String>,
    /// Hours back.
    #[serde(default)]
    hours: String,
    #[serde(default)]
    kind: String,
}

impl ReplayForm {
    /// The action it asks for: rows processed within `hours` (1 to 720), of `kind`.
    fn action(&self, now: UnixMillis) -> Result<crate::Action, &'static str> {
        let hours: u64 = self
            .hours
            .trim()
            .parse()
            .ok()
            .filter(|h| (1..=720).contains(h))
            .ok_or("Hours: a whole number from 1 to 720.")?;
        Ok(crate::Action::Replay {
            since: UnixMillis(now.0.saturating_sub(hours * 3_600_000)),
            kind: form_kind(&self.kind)?,
        })
    }
}

/// A replay's dry run: how many rows it would make due again, and the button that does it.
async fn replay_preview(
    AxumState(console): Shared,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    axum::extract::Query(form): axum::extract::Query<ReplayForm>,
) -> Response {
    let Some(who) = console.authorized(&headers) else {
        return refused();
    };
    let base = base(&original, &uri);
    let action = match form.action(console.inbox.now()) {
        Ok(action) => action,
        Err(text) => return bad_request(text),
    };
    let n = match console.inbox.preview(&action).await {
        Ok(n) => n,
        Err(err) => return unavailable(&err, "count a replay"),
    };
    let token = &console.tokens[who.token];
    let kind = form_kind(&form.kind).ok().flatten();
    let what = format!(
        "{n} row(s){} processed in the last {} hour(s)",
        kind.as_ref()
            .map(|k| format!(" of kind {}", k.as_str()))
            .unwrap_or_default(),
        esc(form.hours.trim())
    );
    let button = if token.role == Role::Operator && n > 0 {
        format!(
            "<form method=\"post\" action=\"{b}/replay\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"hours\" value=\"{hours}\"><input type=\"hidden\" name=\"kind\" value=\"{kind}\">\
             <button type=\"submit\" id=\"replay-confirm\">Replay {n} row(s)</button></form>",
            b = esc(&base),
            csrf = token.csrf,
            hours = esc(form.hours.trim()),
            kind = kind.as_ref().map_or("", |k| k.as_str()),
        )
    } else {
        String::new()
    };
    let nonce = nonce();
    html(
        StatusCode::OK,
        page_shell(
            "Suki inbox console: replay",
            &nonce,
            &format!(
                "<h1>Replay</h1><p id=\"replay-count\">This would make {what} due again (discarded rows stay discarded).</p>\
                 {button} <p><a href=\"{}\">Back</a></p>",
                esc(&home(&base))
            ),
        ),
        &nonce,
    )
}

async fn replay(post: Post, Form(form): Form<ReplayForm>) -> Response {
    let action = form.action(post.console.inbox.now());
    post.operate(form.csrf.as_deref(), action).await
}

#[derive(serde::Deserialize)]
struct TraceQuery {
    #[serde(default)]
    id: String,
}

/// One visit's timeline (a session or encounter id); each view is in the audit log.
async fn trace(
    AxumState(console): Shared,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    axum::extract::Query(query): axum::extract::Query<TraceQuery>,
) -> Response {
    let Some(who) = console.authorized(&headers) else {
        return refused();
    };
    let base = base(&original, &uri);
    let id = query.id.trim().to_owned();
    if id.is_empty() || id.len() > 256 {
        return bad_request("Give a session or encounter id (at most 256 characters).");
    }
    let trace = match console.inbox.trace(&id).await {
        Ok(trace) => trace,
        Err(err) => return unavailable(&err, "trace"),
    };
    let viewed = crate::Action::ViewTimeline { target: id.clone() };
    if let Err(err) = console
        .inbox
        .act(&console.actor(who, &extensions), viewed)
        .await
    {
        // Nothing is shown that the audit log did not record.
        return unavailable(&err, "record the view");
    }
    let now = console.inbox.now();
    let token = &console.tokens[who.token];
    let csrf = (token.role == Role::Operator).then_some(token.csrf.as_str());
    let shown = esc(&clean(&id, MAX_TEXT));
    let mut body = format!(
        "<h1>Timeline of {shown}</h1>{}<p><a href=\"{}\">Back to the dashboard</a></p>",
        search_form(&base, &id),
        esc(&home(&base))
    );
    if trace.is_empty() {
        let _ = write!(
            body,
            "<p id=\"nothing\" class=\"muted\">Nothing known about {shown}.</p>"
        );
    } else {
        let _ = write!(
            body,
            "<h2>Rows</h2>{}<h2>What happened</h2><table id=\"timeline\"><thead><tr><th>when</th><th>row</th><th>what</th></tr></thead><tbody>",
            rows_table(&trace.deliveries, now, &base, csrf, "No rows.")
        );
        for line in crate::display::timeline(&trace, now) {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                relative(line.at, now),
                line.row.map_or_else(|| "-".to_owned(), |r| r.to_string()),
                esc(&line.what)
            );
        }
        body.push_str("</tbody></table>");
    }
    let nonce = nonce();
    html(
        StatusCode::OK,
        page_shell("Suki inbox console: timeline", &nonce, &body),
        &nonce,
    )
}

/// The search box: a session or encounter id, to its timeline.
fn search_form(base: &str, value: &str) -> String {
    format!(
        "<form method=\"get\" action=\"{}/trace\" class=\"search\"><label>Session or encounter id \
         <input type=\"search\" name=\"id\" id=\"search\" value=\"{}\" maxlength=\"256\" required></label> \
         <button type=\"submit\" id=\"search-go\">Find</button></form>",
        esc(base),
        esc(value)
    )
}

/// Any other path (`guard` has answered an unauthenticated request already).
async fn not_found() -> Response {
    let nonce = nonce();
    html(
        StatusCode::NOT_FOUND,
        page_shell("Suki inbox console", &nonce, "<p>Not found.</p>"),
        &nonce,
    )
}

/// The colours of the chart's outcomes (done, in progress, dead).
const SERIES: [(&str, &str); 3] = [
    ("done", "#12b76a"),
    ("in progress", "#f79009"),
    ("dead", "#d92d20"),
];

/// Deliveries per hour over the last 24 h, stacked by outcome, as an SVG.
fn chart(hours: &[crate::HourCount], now: UnixMillis) -> String {
    let last = now.0 / 3_600_000 * 3_600_000;
    let first = last - 23 * 3_600_000;
    let mut bins = [[0u64; 3]; 24];
    for h in hours {
        let start = h.hour_start.0;
        if start < first || start > last {
            continue;
        }
        let i = usize::try_from((start - first) / 3_600_000)
            .unwrap_or(0)
            .min(23);
        let series = match h.state {
            State::Done => 0,
            State::Pending | State::Running => 1,
            State::Dead => 2,
        };
        bins[i][series] += h.count;
    }
    let max = bins
        .iter()
        .map(|b| b.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, left, bottom) = (720u64, 180u64, 40u64, 24u64);
    let plot_h = h - bottom - 10;
    let bar_w = (w - left - 10) / 24;
    let mut svg = format!(
        "<svg role=\"img\" aria-label=\"Deliveries per hour over the last 24 hours by outcome\" \
         width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"16\" font-size=\"11\" fill=\"#5b6575\">{max}</text>\
         <text x=\"4\" y=\"{}\" font-size=\"11\" fill=\"#5b6575\">0</text>\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#c5cbd5\"/>",
        h - bottom,
        h - bottom,
        w - 6,
        h - bottom
    );
    for (i, bin) in bins.iter().enumerate() {
        let x = left + i as u64 * bar_w + 2;
        let mut y = h - bottom;
        for (series, count) in bin.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            let bar = (count * plot_h).div_ceil(max);
            y -= bar;
            let _ = write!(
                svg,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{bar}\" fill=\"{}\"><title>{count} {}</title></rect>",
                bar_w - 4,
                SERIES[series].1,
                SERIES[series].0
            );
        }
        if (23 - i) % 3 == 0 {
            let hours_ago = 23 - i;
            let label = if hours_ago == 0 {
                "now".to_owned()
            } else {
                format!("-{hours_ago}h")
            };
            let _ = write!(
                svg,
                "<text x=\"{x}\" y=\"{}\" font-size=\"10\" fill=\"#5b6575\">{label}</text>",
                h - 8
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Rows as a table; with `csrf` (an operator's) the buttons that act on them: retry, and
/// discard with a reason. Each session links to its timeline.
fn rows_table(
    rows: &[DeliveryRecord],
    now: UnixMillis,
    base: &str,
    csrf: Option<&str>,
    empty: &str,
) -> String {
    if rows.is_empty() {
        return format!("<p class=\"muted\">{empty}</p>");
    }
    let mut t = String::from(
        "<table><thead><tr><th>id</th><th>state</th><th>kind</th><th>source</th><th>session</th>\
         <th>attempts</th><th>last error</th><th>next run</th><th>received</th><th></th></tr></thead><tbody>",
    );
    for r in rows {
        let next = next_run(r, now);
        let button = match csrf {
            Some(csrf) if matches!(r.state, State::Dead | State::Pending) => format!(
                "<form method=\"post\" action=\"{base}/retry/{id}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" id=\"retry-{id}\">Retry</button></form> \
                 <form method=\"post\" action=\"{base}/discard/{id}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input name=\"reason\" id=\"reason-{id}\" placeholder=\"reason\" maxlength=\"200\" required size=\"10\">\
                 <button type=\"submit\" id=\"discard-{id}\">Discard</button></form>",
                base = esc(base),
                id = r.id
            ),
            _ => String::new(),
        };
        let session = match &r.session_id {
            Some(session) => format!(
                "<a href=\"{}/trace?id={}\">{}</a>",
                esc(base),
                esc(&query_escape(session.as_str())),
                esc(&clean(session.as_str(), MAX_TEXT))
            ),
            None => "-".to_owned(),
        };
        let _ = write!(
            t,
            "<tr id=\"row-{id}\"><td>{id}</td><td class=\"state\">{state}</td><td>{kind}</td><td>{source}</td>\
             <td>{session}</td><td>{attempts}</td><td>{error}</td><td>{next}</td><td>{received}</td><td>{button}</td></tr>",
            id = r.id,
            state = r.state,
            kind = esc(&clean(r.kind.as_str(), MAX_TEXT)),
            source = r.source,
            attempts = r.attempts,
            error = esc(&clean_or_dash(r.last_error.as_deref())),
            received = relative(r.received_at, now),
        );
    }
    t.push_str("</tbody></table>");
    t
}

/// `text` for a URL's query: everything but unreserved characters percent-encoded.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

async fn dashboard(
    console: &Console,
    who: Who,
    base: &str,
    nonce: &str,
) -> Result<String, crate::StoreError> {
    let inbox = &console.inbox;
    let now = inbox.now();
    let token = &console.tokens[who.token];
    let csrf = (token.role == Role::Operator).then_some(token.csrf.as_str());
    let pauses = inbox.pauses().await?;
    let groups = inbox.dead_groups(50).await?;
    let keys = inbox.key_counts().await?;
    let recent = inbox
        .audit(UnixMillis(now.0.saturating_sub(7 * DAY)), 1_000)
        .await?;
    let health = inbox.health(&crate::HealthThresholds::default()).await;
    let status = inbox.status().await?;
    let hours = inbox
        .backend()
        .hourly(UnixMillis(now.0.saturating_sub(DAY)))
        .await?;
    let expectations = inbox.backend().expectation_counts().await?;
    let dead = inbox.list(Some(State::Dead), 100).await?;
    // Every row being retried, however many new rows are pending in front of it.
    let stuck = inbox.retrying(STUCK_SHOWN).await?;
    let c = &status.counts;
    let (verdict, reasons) = verdict(&health, c.dead, stuck.len(), expectations.gave_up);
    let oldest = status
        .oldest_unfinished_age
        .map_or_else(|| "none".to_owned(), short);
    let oldest_class = if status
        .oldest_unfinished_age
        .is_some_and(|a| a > Duration::from_secs(15 * 60))
    {
        "bad"
    } else {
        "ok"
    };
    let card = |value: String, label: &str, class: &str| {
        format!("<div class=\"card\"><b class=\"{class}\">{value}</b><span>{label}</span></div>")
    };
    let dead_class = if c.dead > 0 { "bad" } else { "ok" };
    let mut body = String::new();
    let signed_in = format!(
        "<p class=\"who\" id=\"who\">Signed in as <b>{}</b> ({}){}</p>",
        esc(&token.name),
        token.role.as_str(),
        if csrf.is_none() {
            ": you can look, not act"
        } else {
            ""
        }
    );
    let _ = write!(
        body,
        "<h1>Suki inbox console</h1>{signed_in}\
         <form method=\"post\" action=\"{b}/logout\"><button type=\"submit\">Sign out</button></form>\
         <p id=\"verdict\" class=\"verdict {verdict}\"><b>{title}</b>{why}</p>{search}",
        b = esc(base),
        title = match verdict {
            "failing" => "Failing",
            "degraded" => "Degraded",
            "paused" => "Paused",
            _ => "Healthy",
        },
        why = if reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", esc(&reasons.join("; ")))
        },
        search = search_form(base, ""),
    );
    body.push_str(&pause_panel(&pauses, now, base, csrf));
    let _ = write!(
        body,
        "<h2>Inbox</h2><div class=\"cards\">{}{}{}{}{}</div>",
        card(c.pending.to_string(), "pending", ""),
        card(c.running.to_string(), "running", ""),
        card(c.done.to_string(), "done", ""),
        card(c.dead.to_string(), "dead", dead_class),
        card(oldest, "oldest unfinished", oldest_class),
    );
    // Stored bodies: encrypted under which key, or in clear.
    let mut bodies = String::new();
    for (key, n) in &keys {
        let (label, class) = match key {
            Some(key) => (
                format!("bodies encrypted (key {})", esc(&clean(key, 32))),
                "ok",
            ),
            None => (
                "bodies in clear".to_owned(),
                if *n > 0 { "bad" } else { "" },
            ),
        };
        bodies.push_str(&card(n.to_string(), &label, class));
    }
    if !bodies.is_empty() {
        let _ = write!(
            body,
            "<h2>Bodies at rest</h2><div class=\"cards\" id=\"bodies\">{bodies}</div>"
        );
    }
    let _ = write!(
        body,
        "<h2>Reconciler</h2><div class=\"cards\">{}{}{}{}{}</div>",
        card(expectations.expected.to_string(), "sessions expected", ""),
        card(expectations.webhook.to_string(), "resolved by webhook", ""),
        card(expectations.poll.to_string(), "recovered by poll", ""),
        card(expectations.open.to_string(), "waiting", ""),
        card(
            expectations.gave_up.to_string(),
            "given up",
            if expectations.gave_up > 0 {
                "bad"
            } else {
                "ok"
            }
        ),
    );
    let legend: String = SERIES
        .iter()
        .map(|(name, colour)| {
            format!("<span><svg class=\"sw\" width=\"10\" height=\"10\"><rect width=\"10\" height=\"10\" fill=\"{colour}\"/></svg>{name}</span>")
        })
        .collect();
    let _ = write!(
        body,
        "<h2>Deliveries per hour, last 24 h, by outcome</h2>{}<div class=\"legend\">{legend}</div>",
        chart(&hours, now)
    );
    let retry_all = match csrf {
        Some(csrf) if !dead.is_empty() => format!(
            "<form method=\"post\" action=\"{}/retry-dead\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" id=\"retry-dead\">Retry all dead</button></form>",
            esc(base),
        ),
        _ => String::new(),
    };
    let _ = write!(
        body,
        "<h2>Dead letters by error code {retry_all}</h2>{}<h2>Dead letters, newest first</h2>{}\
         <h2>Stuck: retrying or running, latest first</h2>{}{}<h2>Recent operator actions</h2>{}\
         <p class=\"muted\">Ids, kinds, states, times and error codes only: the console never shows clinical content.</p>",
        groups_table(&groups, now, base, csrf),
        rows_table(&dead, now, base, csrf, "No dead letters."),
        rows_table(&stuck, now, base, csrf, "Nothing stuck."),
        replay_form(base),
        audit_table(&recent, now),
    );
    Ok(page_shell("Suki inbox console", nonce, &body))
}

/// What is paused, with the buttons to resume; the button to pause the whole inbox.
fn pause_panel(pauses: &[crate::Pause], now: UnixMillis, base: &str, csrf: Option<&str>) -> String {
    let mut out = String::new();
    for p in pauses {
        let what = p.kind.as_ref().map_or("the whole inbox", |k| k.as_str());
        let button = csrf.map_or_else(String::new, |csrf| {
            format!(
                " <form method=\"post\" action=\"{}/resume\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"kind\" value=\"{}\"><button type=\"submit\" id=\"resume-{}\">Resume</button></form>",
                esc(base),
                p.kind.as_ref().map_or("", |k| k.as_str()),
                p.kind.as_ref().map_or("all", |k| k.as_str()),
            )
        });
        let _ = write!(
            out,
            "<p class=\"verdict paused\">Paused: {what}, by {} {}{}. Webhooks are still stored; workers claim nothing of it.{button}</p>",
            esc(&clean(&p.paused_by, MAX_TEXT)),
            relative(p.paused_at, now),
            p.reason
                .as_deref()
                .map(|r| format!(" ({})", esc(&clean(r, MAX_TEXT))))
                .unwrap_or_default(),
        );
    }
    if let Some(csrf) = csrf
        && !pauses.iter().any(|p| p.kind.is_none())
    {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"{}/pause\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input name=\"reason\" placeholder=\"reason (e.g. EHR down)\" maxlength=\"200\"> \
             <button type=\"submit\" id=\"pause\">Pause processing</button></form>",
            esc(base)
        );
    }
    out
}

/// Dead letters by code, with "retry this group" for an operator.
fn groups_table(
    groups: &[crate::DeadGroup],
    now: UnixMillis,
    base: &str,
    csrf: Option<&str>,
) -> String {
    if groups.is_empty() {
        return "<p class=\"muted\">No dead letters.</p>".to_owned();
    }
    let mut t = String::from(
        "<table id=\"groups\"><thead><tr><th>error code</th><th>rows</th><th>latest</th><th></th></tr></thead><tbody>",
    );
    for (i, g) in groups.iter().enumerate() {
        let button = match (csrf, &g.code) {
            (Some(csrf), Some(code)) => format!(
                "<form method=\"post\" action=\"{}/retry-group\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"code\" value=\"{}\"><button type=\"submit\" id=\"retry-group-{i}\">Retry this group ({})</button></form>",
                esc(base),
                esc(code),
                g.count
            ),
            _ => String::new(),
        };
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{button}</td></tr>",
            esc(&clean_or_dash(g.code.as_deref())),
            g.count,
            relative(g.latest, now)
        );
    }
    t.push_str("</tbody></table>");
    t
}

/// The replay form: its dry run comes first.
fn replay_form(base: &str) -> String {
    format!(
        "<h2>Replay after a handler bug</h2><form method=\"get\" action=\"{}/replay\">\
         <label>Rows processed in the last <input name=\"hours\" id=\"replay-hours\" value=\"2\" size=\"3\" inputmode=\"numeric\"> hour(s)</label> \
         <label>of kind <select name=\"kind\"><option value=\"\">any</option><option>completed</option><option>failed</option>\
         <option>timed_out</option><option>cancelled</option><option>unknown</option></select></label> \
         <button type=\"submit\" id=\"replay-preview\">How many?</button></form>",
        esc(base)
    )
}

/// The latest operator actions, newest first.
fn audit_table(entries: &[crate::AuditEntry], now: UnixMillis) -> String {
    if entries.is_empty() {
        return "<p class=\"muted\">None in the last 7 days.</p>".to_owned();
    }
    let mut t = String::from(
        "<table id=\"audit\"><thead><tr><th>when</th><th>who</th><th>from</th><th>action</th><th>target</th><th>rows</th></tr></thead><tbody>",
    );
    for e in entries.iter().rev().take(20) {
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            relative(e.at, now),
            esc(&clean(&e.actor, MAX_TEXT)),
            esc(&clean(&e.origin, MAX_TEXT)),
            esc(&clean(&e.action, MAX_TEXT)),
            esc(&clean_or_dash(e.target.as_deref())),
            e.rows
        );
    }
    t.push_str("</tbody></table>");
    t
}

/// How many retrying rows the page lists.
const STUCK_SHOWN: u32 = 200;

/// The page's top line: `failing` when health has a problem (the pipeline cannot do its job),
/// `degraded` when something needs a person (dead letters, rows being retried, sessions given
/// up), else `healthy`; with the reasons in plain words.
fn verdict(
    health: &crate::Health,
    dead: u64,
    retrying: usize,
    gave_up: u64,
) -> (&'static str, Vec<String>) {
    let failing: Vec<String> = health
        .problems
        .iter()
        .map(|problem| {
            match *problem {
                crate::Problem::StoreUnwritable => {
                    "the store cannot commit writes (store_unwritable)"
                }
                crate::Problem::StoreUnreachable => "the store does not answer (store_unreachable)",
                crate::Problem::OldestUnfinishedTooOld => {
                    "the oldest unfinished row waits too long (oldest_unfinished_too_old)"
                }
                crate::Problem::WorkerStalled => {
                    "this process's worker has stalled (worker_stalled)"
                }
                crate::Problem::TooManyDead => "too many dead letters (too_many_dead)",
                crate::Problem::ShuttingDown => "this process is shutting down (shutting_down)",
                crate::Problem::BodyKeysMissing => {
                    "stored bodies are sealed under a key this process does not hold (body_keys_missing)"
                }
            }
            .to_owned()
        })
        .collect();
    if !failing.is_empty() {
        return ("failing", failing);
    }
    let mut degraded = Vec::new();
    if dead > 0 {
        degraded.push(format!("{dead} dead letter(s) need a person"));
    }
    if retrying > 0 {
        let more = if retrying >= STUCK_SHOWN as usize {
            "+"
        } else {
            ""
        };
        degraded.push(format!("{retrying}{more} row(s) being retried"));
    }
    if gave_up > 0 {
        degraded.push(format!("{gave_up} expected session(s) given up"));
    }
    if !health.paused.is_empty() {
        degraded.insert(
            0,
            format!(
                "processing paused by an operator ({})",
                health.paused.join(", ")
            ),
        );
        return ("paused", degraded);
    }
    if degraded.is_empty() {
        ("healthy", Vec::new())
    } else {
        ("degraded", degraded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_line_says_failing_degraded_or_healthy_and_why() {
        let health = |problems: Vec<crate::Problem>| crate::Health {
            status: if problems.is_empty() {
                crate::HealthStatus::Ok
            } else {
                crate::HealthStatus::Unhealthy
            },
            store_reachable: true,
            store_writable: !problems.contains(&crate::Problem::StoreUnwritable),
            oldest_unfinished_seconds: Some(0.0),
            dead: Some(0),
            worker_heartbeat_seconds: None,
            problems,
            paused: Vec::new(),
        };
        assert_eq!(verdict(&health(vec![]), 0, 0, 0), ("healthy", vec![]));
        let (v, why) = verdict(&health(vec![]), 2, 5, 1);
        assert_eq!(v, "degraded");
        assert_eq!(
            why,
            [
                "2 dead letter(s) need a person",
                "5 row(s) being retried",
                "1 expected session(s) given up"
            ]
        );
        let (v, why) = verdict(&health(vec![crate::Problem::StoreUnwritable]), 2, 5, 1);
        assert_eq!(
            v, "failing",
            "a pipeline that cannot work outranks the rest"
        );
        assert_eq!(why, ["the store cannot commit writes (store_unwritable)"]);
        assert_eq!(
            verdict(&health(vec![]), 0, 200, 0).1,
            ["200+ row(s) being retried"]
        );
    }

    #[test]
    fn ids_from_payloads_are_escaped_and_the_mount_point_is_found() {
        let row = DeliveryRecord {
            id: 7,
            dedup_key: "k".to_owned(),
            source: crate::Source::Webhook,
            kind: suki_ambient_core::EventKind::Completed,
            session_id: Some(suki_ambient_core::SessionId::from(
                "<script>alert('x')</script>",
            )),
            encounter_id: None,
            generated_at: UnixMillis(0),
            received_at: UnixMillis(0),
            state: State::Dead,
            attempts: 1,
            run_after: UnixMillis(0),
            lease_owner: None,
            fence: 1,
            last_error: Some("a\"b".to_owned()),
            completed_at: None,
            snoozes: 0,
            key_id: None,
            round_start: 0,
        };
        let html = rows_table(&[row], UnixMillis(1_000), "/admin", Some("csrf"), "none");
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;")
                && html.contains("a&quot;b")
        );
        assert!(html.contains("action=\"/admin/retry/7\""));
        let original: Uri = "/admin/suki/retry/7".parse().expect("uri");
        let seen: Uri = "/retry/7".parse().expect("uri");
        assert_eq!(base(&original, &seen), "/admin/suki");
        assert_eq!(home(""), "/");
    }

    #[test]
    fn the_chart_stacks_each_hour_by_outcome() {
        let now = UnixMillis(100 * 3_600_000 + 5);
        let hour = |h: u64, state, count| crate::HourCount {
            hour_start: UnixMillis(h * 3_600_000),
            state,
            count,
        };
        let svg = chart(
            &[
                hour(100, State::Done, 3),
                hour(100, State::Dead, 1),
                hour(99, State::Pending, 2),
                hour(10, State::Done, 50),
            ],
            now,
        );
        assert!(svg.contains("<title>3 done</title>") && svg.contains("<title>1 dead</title>"));
        assert!(svg.contains("<title>2 in progress</title>"));
        assert!(
            !svg.contains("<title>50 done</title>"),
            "older than 24 h is left out"
        );
        assert!(
            svg.contains(">4</text>"),
            "the scale's top is the busiest hour"
        );
    }
}
