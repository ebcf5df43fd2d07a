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
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Form, OriginalUri, Path, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;
use suki_ambient_core::{SessionId, UnixMillis, WebhookSecret};

use crate::display::{MAX_TEXT, clean, clean_or_dash, next_run, relative, short};
use crate::{DeliveryRecord, Inbox, Selection, State};

const COOKIE: &str = "suki_console";
const DAY: u64 = 24 * 3_600_000;

struct Console {
    inbox: Inbox,
    /// HMAC(token, "bearer"): a presented token is checked by computing the same with it as the
    /// key, so the token itself is not kept.
    bearer: String,
    /// HMAC(token, "session-key"): the key that makes sign-in cookies (so that nobody without
    /// the token can predict one).
    session_key: String,
    /// The CSRF token of the forms: HMAC(token, "csrf").
    csrf: String,
    /// The signed-in browsers: cookie value → when it expires. Sign-out removes one.
    sessions: std::sync::Mutex<HashMap<String, Instant>>,
    /// When the sign-ins and bearer requests with a wrong token of the last minute failed.
    failures: std::sync::Mutex<VecDeque<Instant>>,
}

/// How long a sign-in lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// The most signed-in browsers at once (the oldest sign-in goes first).
const MAX_SESSIONS: usize = 256;
/// Wrong tokens allowed per minute; past that, sign-ins are refused (429) until the minute
/// has passed.
const MAX_FAILURES_PER_MINUTE: usize = 10;

/// The console's axum router, to `nest` where the application wants it (e.g. `/admin/suki`).
/// `token` is the bearer token that opens it (use a long random value, from a secret store).
pub fn router(inbox: Inbox, token: impl Into<String>) -> axum::Router {
    let token = token.into();
    let console = Arc::new(Console {
        bearer: derive(&token, "bearer"),
        session_key: derive(&token, "session-key"),
        csrf: derive(&token, "csrf"),
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
    let response = if is_login {
        if console.too_many_failures() {
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
        } else {
            next.run(request).await
        }
    } else if auth == Auth::None {
        if request.headers().contains_key(header::AUTHORIZATION) {
            console.failed();
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
    fn authorized(&self, headers: &HeaderMap) -> Auth {
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            && self.is_token(bearer.trim())
        {
            return Auth::Bearer;
        }
        match cookie(headers) {
            Some(value) if self.signed_in(value) => Auth::Cookie,
            _ => Auth::None,
        }
    }

    /// Whether `cookie` is a live sign-in (an expired one is forgotten).
    fn signed_in(&self, cookie: &str) -> bool {
        let mut sessions = lock(&self.sessions);
        match sessions.get(cookie) {
            Some(expires) if *expires > Instant::now() => true,
            Some(_) => {
                sessions.remove(cookie);
                false
            }
            None => false,
        }
    }

    /// A new sign-in: an unpredictable cookie value (HMAC under a key derived from the token),
    /// valid for [`SESSION_TTL`].
    fn sign_in(&self) -> String {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seed = format!(
            "{n}:{}:{:016x}{:016x}",
            UnixMillis::now().0,
            fastrand::u64(..),
            fastrand::u64(..)
        );
        let value = derive(&self.session_key, &seed);
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, expires| *expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(value.clone(), now + SESSION_TTL);
        value
    }

    /// Ends a sign-in: its cookie opens nothing any more.
    fn sign_out(&self, cookie: &str) {
        lock(&self.sessions).remove(cookie);
    }

    /// Counts a wrong token.
    fn failed(&self) {
        let mut failures = lock(&self.failures);
        failures.push_back(Instant::now());
        if failures.len() > 4 * MAX_FAILURES_PER_MINUTE {
            failures.pop_front();
        }
    }

    /// Whether the wrong tokens of the last minute reached the limit.
    fn too_many_failures(&self) -> bool {
        let mut failures = lock(&self.failures);
        while failures
            .front()
            .is_some_and(|at| at.elapsed() > Duration::from_secs(60))
        {
            failures.pop_front();
        }
        failures.len() >= MAX_FAILURES_PER_MINUTE
    }

    /// Whether `presented` is the console's token (constant time in its content).
    fn is_token(&self, presented: &str) -> bool {
        !presented.is_empty()
            && bool::from(
                derive(presented, "bearer")
                    .as_bytes()
                    .ct_eq(self.bearer.as_bytes()),
            )
    }

    /// A POST may change state: authorized, and from a cookie also a matching CSRF token from
    /// this origin.
    fn may_change(&self, headers: &HeaderMap, csrf: Option<&str>) -> bool {
        match self.authorized(headers) {
            Auth::Bearer => true,
            Auth::None => false,
            Auth::Cookie => {
                let token_ok =
                    csrf.is_some_and(|c| bool::from(c.as_bytes().ct_eq(self.csrf.as_bytes())));
                token_ok && same_origin(headers)
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    Bearer,
    Cookie,
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

fn nonce() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
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
.verdict.degraded{background:#fffaeb;color:#b54708}.verdict.failing{background:#fef3f2;color:#b42318}.legend span{margin-right:14px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px}\
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

/// The dashboard (`guard` has let only an authenticated request through).
async fn page(
    AxumState(console): Shared,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> Response {
    let base = base(&original, &uri);
    let nonce = nonce();
    match dashboard(&console, &base, &nonce).await {
        Ok(body) => html(StatusCode::OK, body, &nonce),
        Err(err) => {
            tracing::error!(error = %err, "suki console could not read the inbox");
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
    Form(form): Form<LoginForm>,
) -> Response {
    let base = base(&original, &uri);
    let base = base.strip_suffix("/login").unwrap_or(&base).to_owned();
    let ok = console.is_token(form.token.trim());
    if !ok || !same_origin(&headers) {
        tracing::warn!("suki console: a sign-in with a wrong token");
        console.failed();
        let nonce = nonce();
        return html(
            StatusCode::UNAUTHORIZED,
            login_page(&base, &nonce, true),
            &nonce,
        );
    }
    let mut response = see_other(&home(&base));
    let path = if base.is_empty() { "/" } else { base.as_str() };
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={}",
        console.sign_in(),
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
            "<p class=\"bad\">Not allowed.</p>",
        ),
        &nonce,
    )
}

async fn retry_one(
    AxumState(console): Shared,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !console.may_change(&headers, form.csrf.as_deref()) {
        return refused();
    }
    let base = base(&original, &uri);
    let base = base
        .strip_suffix(&format!("/retry/{id}"))
        .unwrap_or(&base)
        .to_owned();
    match console.inbox.retry(Selection::Id(id)).await {
        Ok(_) => see_other(&home(&base)),
        Err(err) => {
            tracing::error!(error = %err, "suki console could not retry a row");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

async fn retry_dead(
    AxumState(console): Shared,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !console.may_change(&headers, form.csrf.as_deref()) {
        return refused();
    }
    let base = base(&original, &uri);
    let base = base.strip_suffix("/retry-dead").unwrap_or(&base).to_owned();
    match console.inbox.retry(Selection::Dead).await {
        Ok(_) => see_other(&home(&base)),
        Err(err) => {
            tracing::error!(error = %err, "suki console could not retry the dead rows");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
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

fn rows_table(
    rows: &[DeliveryRecord],
    now: UnixMillis,
    base: &str,
    csrf: &str,
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
        let button = if matches!(r.state, State::Dead | State::Pending) {
            format!(
                "<form method=\"post\" action=\"{base}/retry/{id}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" id=\"retry-{id}\">Retry</button></form>",
                base = esc(base),
                id = r.id
            )
        } else {
            String::new()
        };
        let _ = write!(
            t,
            "<tr id=\"row-{id}\"><td>{id}</td><td class=\"state\">{state}</td><td>{kind}</td><td>{source}</td>\
             <td>{session}</td><td>{attempts}</td><td>{error}</td><td>{next}</td><td>{received}</td><td>{button}</td></tr>",
            id = r.id,
            state = r.state,
            kind = esc(&clean(r.kind.as_str(), MAX_TEXT)),
            source = r.source,
            session = esc(&clean_or_dash(r.session_id.as_ref().map(SessionId::as_str))),
            attempts = r.attempts,
            error = esc(&clean_or_dash(r.last_error.as_deref())),
            received = relative(r.received_at, now),
        );
    }
    t.push_str("</tbody></table>");
    t
}

async fn dashboard(
    console: &Console,
    base: &str,
    nonce: &str,
) -> Result<String, crate::StoreError> {
    let inbox = &console.inbox;
    let now = inbox.now();
    let health = inbox.health(&crate::HealthThresholds::default()).await;
    let status = inbox.status().await?;
    let hours = inbox
        .store()
        .hourly(UnixMillis(now.0.saturating_sub(DAY)))
        .await?;
    let expectations = inbox.store().expectation_counts().await?;
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
    let _ = write!(
        body,
        "<h1>Suki inbox console</h1>\
         <form method=\"post\" action=\"{b}/logout\"><button type=\"submit\">Sign out</button></form>\
         <p id=\"verdict\" class=\"verdict {verdict}\"><b>{title}</b>{why}</p>\
         <h2>Inbox</h2><div class=\"cards\">{}{}{}{}{}</div>",
        card(c.pending.to_string(), "pending", ""),
        card(c.running.to_string(), "running", ""),
        card(c.done.to_string(), "done (kept 7 days)", ""),
        card(c.dead.to_string(), "dead", dead_class),
        card(oldest, "oldest unfinished", oldest_class),
        b = esc(base),
        title = match verdict {
            "failing" => "Failing",
            "degraded" => "Degraded",
            _ => "Healthy",
        },
        why = if reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", esc(&reasons.join("; ")))
        },
    );
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
    let retry_all = if dead.is_empty() {
        String::new()
    } else {
        format!(
            "<form method=\"post\" action=\"{}/retry-dead\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" id=\"retry-dead\">Retry all dead</button></form>",
            esc(base),
            console.csrf
        )
    };
    let _ = write!(
        body,
        "<h2>Dead letters {retry_all}</h2>{}<h2>Stuck: retrying or running, latest first</h2>{}\
         <p class=\"muted\">Ids, kinds, states, times and error codes only: the console never shows clinical content.</p>",
        rows_table(&dead, now, base, &console.csrf, "No dead letters."),
        rows_table(&stuck, now, base, &console.csrf, "Nothing stuck."),
    );
    Ok(page_shell("Suki inbox console", nonce, &body))
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
            session_id: Some(SessionId::from("<script>alert('x')</script>")),
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
        };
        let html = rows_table(&[row], UnixMillis(1_000), "/admin", "csrf", "none");
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
