//! The console's handlers: the dashboard, sign-in and -out, operators' actions, timelines.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, OriginalUri, Path, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use suki_ambient_core::UnixMillis;
use suki_ambient_inbox::display::{MAX_TEXT, clean, relative, short};
use suki_ambient_inbox::{Selection, State};

use crate::access::*;
use crate::html::*;
use crate::render::*;

/// The dashboard (`guard` has let only an authenticated request through).
pub(crate) async fn page(
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
pub(crate) struct LoginForm {
    pub(crate) token: String,
}

pub(crate) async fn login(
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
    let signed_in = suki_ambient_inbox::Action::SignIn {
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
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: Option<String>,
}

pub(crate) async fn logout(
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

pub(crate) fn refused() -> Response {
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

pub(crate) fn bad_request(text: &str) -> Response {
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
pub(crate) struct Post {
    pub(crate) console: Arc<Console>,
    pub(crate) headers: HeaderMap,
    pub(crate) extensions: axum::http::Extensions,
    pub(crate) back: String,
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
    async fn operate(
        self,
        csrf: Option<&str>,
        action: Result<suki_ambient_inbox::Action, &str>,
    ) -> Response {
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

pub(crate) async fn retry_one(
    post: Post,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let action = suki_ambient_inbox::Action::Retry(Selection::Id(id));
    post.operate(form.csrf.as_deref(), Ok(action)).await
}

pub(crate) async fn retry_dead(post: Post, Form(form): Form<CsrfForm>) -> Response {
    let action = suki_ambient_inbox::Action::Retry(Selection::Dead);
    post.operate(form.csrf.as_deref(), Ok(action)).await
}

#[derive(serde::Deserialize)]
pub(crate) struct GroupForm {
    #[serde(default)]
    pub(crate) csrf: Option<String>,
    pub(crate) code: String,
}

/// "Retry this group": the dead rows with exactly this code.
pub(crate) async fn retry_group(post: Post, Form(form): Form<GroupForm>) -> Response {
    let action = suki_ambient_inbox::Action::Retry(Selection::DeadMatching(
        suki_ambient_inbox::ops::DeadFilter::new().code(form.code),
    ));
    post.operate(form.csrf.as_deref(), Ok(action)).await
}

#[derive(serde::Deserialize)]
pub(crate) struct DiscardForm {
    #[serde(default)]
    pub(crate) csrf: Option<String>,
    #[serde(default)]
    pub(crate) reason: String,
}

pub(crate) async fn discard(
    post: Post,
    Path(id): Path<i64>,
    Form(form): Form<DiscardForm>,
) -> Response {
    let reason = form.reason.trim();
    let action = if reason.is_empty() {
        Err("A discard needs a reason.")
    } else {
        Ok(suki_ambient_inbox::Action::Discard {
            id,
            reason: clean(reason, 500),
        })
    };
    post.operate(form.csrf.as_deref(), action).await
}

#[derive(serde::Deserialize)]
pub(crate) struct PauseForm {
    #[serde(default)]
    pub(crate) csrf: Option<String>,
    #[serde(default)]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) reason: String,
}

/// The kind of a form's field (empty: every kind).
pub(crate) fn form_kind(kind: &str) -> Result<Option<suki_ambient_core::EventKind>, &'static str> {
    match kind.trim() {
        "" | "all" => Ok(None),
        kind => suki_ambient_core::EventKind::parse(kind)
            .map(Some)
            .ok_or("Unknown kind."),
    }
}

pub(crate) async fn pause(post: Post, Form(form): Form<PauseForm>) -> Response {
    let action = form_kind(&form.kind).map(|kind| {
        let reason = Some(clean(form.reason.trim(), 500)).filter(|r| !r.is_empty());
        suki_ambient_inbox::Action::Pause { kind, reason }
    });
    post.operate(form.csrf.as_deref(), action).await
}

pub(crate) async fn resume(post: Post, Form(form): Form<PauseForm>) -> Response {
    let action = form_kind(&form.kind).map(|kind| suki_ambient_inbox::Action::Resume { kind });
    post.operate(form.csrf.as_deref(), action).await
}

#[derive(serde::Deserialize)]
pub(crate) struct ReplayForm {
    #[serde(default)]
    pub(crate) csrf: Option<String>,
    /// Hours back.
    #[serde(default)]
    pub(crate) hours: String,
    #[serde(default)]
    pub(crate) kind: String,
}

impl ReplayForm {
    /// The action it asks for: rows processed within `hours` (1 to 720), of `kind`.
    pub(crate) fn action(
        &self,
        now: UnixMillis,
    ) -> Result<suki_ambient_inbox::Action, &'static str> {
        let hours: u64 = self
            .hours
            .trim()
            .parse()
            .ok()
            .filter(|h| (1..=720).contains(h))
            .ok_or("Hours: a whole number from 1 to 720.")?;
        Ok(suki_ambient_inbox::Action::Replay {
            since: UnixMillis(now.0.saturating_sub(hours * 3_600_000)),
            kind: form_kind(&self.kind)?,
        })
    }
}

/// A replay's dry run: how many rows it would make due again, and the button that does it.
pub(crate) async fn replay_preview(
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

pub(crate) async fn replay(post: Post, Form(form): Form<ReplayForm>) -> Response {
    let action = form.action(post.console.inbox.now());
    post.operate(form.csrf.as_deref(), action).await
}

#[derive(serde::Deserialize)]
pub(crate) struct TraceQuery {
    #[serde(default)]
    pub(crate) id: String,
}

/// One visit's timeline (a session or encounter id); each view is in the audit log.
pub(crate) async fn trace(
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
    let viewed = suki_ambient_inbox::Action::ViewTimeline { target: id.clone() };
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
        for line in suki_ambient_inbox::display::timeline(&trace, now) {
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
pub(crate) fn search_form(base: &str, value: &str) -> String {
    format!(
        "<form method=\"get\" action=\"{}/trace\" class=\"search\"><label>Session or encounter id \
         <input type=\"search\" name=\"id\" id=\"search\" value=\"{}\" maxlength=\"256\" required></label> \
         <button type=\"submit\" id=\"search-go\">Find</button></form>",
        esc(base),
        esc(value)
    )
}

/// Any other path (`guard` has answered an unauthenticated request already).
pub(crate) async fn not_found() -> Response {
    let nonce = nonce();
    html(
        StatusCode::NOT_FOUND,
        page_shell("Suki inbox console", &nonce, "<p>Not found.</p>"),
        &nonce,
    )
}

/// The colours of the chart's outcomes (done, in progress, dead).
pub(crate) async fn dashboard(
    console: &Console,
    who: Who,
    base: &str,
    nonce: &str,
) -> Result<String, suki_ambient_inbox::StoreError> {
    let inbox = &console.inbox;
    let now = inbox.now();
    let token = &console.tokens[who.token];
    let csrf = (token.role == Role::Operator).then_some(token.csrf.as_str());
    let pauses = inbox.pauses().await?;
    let groups = inbox.dead_groups(50).await?;
    let keys = inbox.key_counts().await?;
    // What operators changed, newest first (views and sign-ins cannot push it out), one more
    // than is shown to say whether there are more.
    let recent = inbox
        .audit_changes(UnixMillis(now.0.saturating_sub(7 * DAY)), AUDIT_SHOWN + 1)
        .await?;
    let health = inbox
        .health(&suki_ambient_inbox::HealthThresholds::default())
        .await;
    let status = inbox.status().await?;
    let hours = inbox
        .store()
        .hourly(UnixMillis(now.0.saturating_sub(DAY)))
        .await?;
    let expectations = inbox.store().expectation_counts().await?;
    // Visits Suki made no note for: documented another way, so a person should see them.
    let without_note = inbox
        .count_without_note(UnixMillis(now.0.saturating_sub(DAY)))
        .await?;
    let dead = inbox.list(Some(State::Dead), 100).await?;
    // Every row being retried, however many new rows are pending in front of it.
    let stuck = inbox.retrying(STUCK_SHOWN).await?;
    let c = &status.counts;
    let (verdict, reasons) = verdict(
        &health.problems,
        &health.paused,
        c.dead,
        stuck.len(),
        expectations.gave_up,
    );
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
        "<h2>Inbox</h2><div class=\"cards\">{}{}{}{}{}{}</div>",
        card(c.pending.to_string(), "pending", ""),
        card(c.running.to_string(), "running", ""),
        card(c.done.to_string(), "done", ""),
        card(c.dead.to_string(), "dead", dead_class),
        card(oldest, "oldest unfinished", oldest_class),
        card(
            without_note.to_string(),
            "sessions without a note (24 h)",
            if without_note > 0 { "bad" } else { "ok" }
        ),
    );
    let destinations: Vec<(bool, &str)> = health
        .destinations
        .iter()
        .map(|d| (d.record.up, d.summary.as_str()))
        .collect();
    body.push_str(&destinations_panel(&destinations));
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
    // Whether every stored body opens with a key this process holds: a console without the
    // inbox's keys (the CLI's, without SUKI_INBOX_KEYS) says so, and fails nothing for it.
    let key_check = health.key_check;
    let key_class = match key_check {
        suki_ambient_inbox::ops::KeyCheck::Missing => "bad",
        suki_ambient_inbox::ops::KeyCheck::Ok => "ok",
        _ => "",
    };
    let _ = write!(
        body,
        "<h2>Bodies at rest</h2><div class=\"cards\" id=\"bodies\">{bodies}</div>\
         <p id=\"key-check\" class=\"{key_class}\">key check: {}</p>",
        key_check.as_str()
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
