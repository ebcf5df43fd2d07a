//! The pages' shell: HTML escaping, the security headers, and the plain answers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The security headers on an answer that has none yet (what the router or an extractor
/// answered by itself: a 405, a 415, a 400); the pages set theirs, with their style's nonce.
pub(crate) fn secured_all(response: Response) -> Response {
    if response
        .headers()
        .contains_key(header::CONTENT_SECURITY_POLICY)
    {
        response
    } else {
        secured(response, &nonce())
    }
}

/// The security headers of every answer; `nonce` allows the page's one style sheet.
pub(crate) fn secured(mut response: Response, nonce: &str) -> Response {
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
pub(crate) fn nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub(crate) fn html(status: StatusCode, body: String, nonce: &str) -> Response {
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

pub(crate) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    secured(response, &nonce())
}

/// The dashboard's address: the mount point itself (`/` at the root).
pub(crate) fn home(base: &str) -> String {
    if base.is_empty() {
        "/".to_owned()
    } else {
        base.to_owned()
    }
}

/// Text for HTML: `& < > " '` escaped.
pub(crate) fn esc(text: &str) -> String {
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

pub(crate) const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#1d2430;background:#f7f8fa}\
h1{font-size:20px;margin:0 0 16px}h2{font-size:16px;margin:24px 0 8px}\
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:10px 14px;min-width:120px}\
.card b{display:block;font-size:22px}.card span{color:#5b6575;font-size:12px}\
table{border-collapse:collapse;background:#fff;width:100%}th,td{border-bottom:1px solid #e5e8ed;padding:6px 8px;text-align:left;font-size:13px}\
th{background:#eef1f5}form{display:inline;margin:0}button{cursor:pointer;padding:3px 10px;border:1px solid #8a94a6;border-radius:4px;background:#fff}\
.bad{color:#b42318}.ok{color:#067647}\
.verdict{padding:10px 14px;border-radius:6px;font-size:1.05em}.verdict.healthy{background:#ecfdf3;color:#067647}\
.verdict.degraded,.verdict.paused{background:#fffaeb;color:#b54708}form.search{display:block;margin:12px 0}.who{color:#5b6575;margin:0 0 8px}input{padding:3px 6px}.verdict.failing{background:#fef3f2;color:#b42318}.legend span{margin-right:14px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px}\
svg{background:#fff;border:1px solid #dde1e7;border-radius:6px}.muted{color:#5b6575}";

pub(crate) fn page_shell(title: &str, nonce: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style nonce=\"{nonce}\">{STYLE}</style></head><body>{body}</body></html>"
    )
}

pub(crate) fn login_page(base: &str, nonce: &str, failed: bool) -> String {
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
pub(crate) fn unavailable(err: &suki_ambient_inbox::StoreError, what: &str) -> Response {
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
