//! The inbox console (the facade's feature `console`, `suki_ambient::inbox::console`): a server-rendered page that shows at a glance whether
//! notes are flowing, and lets the person on call retry what is stuck. No script, no front-end
//! build, no clinical content: ids, kinds, states, times and error codes only.
//!
//! ```no_run
//! # async fn example(inbox: suki_ambient_inbox::Inbox) {
//! let console = suki_ambient_console::router(inbox, std::env::var("SUKI_CONSOLE_TOKEN").unwrap());
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

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod access;
mod html;
mod pages;
mod render;

pub use access::{Access, Role};

use std::sync::Arc;

use axum::extract::{OriginalUri, State as AxumState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use suki_ambient_inbox::Inbox;

use access::*;
use html::*;
use pages::*;

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
pub(crate) async fn guard(
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
