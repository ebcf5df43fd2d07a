//! The dashboard's parts: the chart, the tables and the one-line verdict.

use std::fmt::Write as _;

use suki_ambient_core::UnixMillis;
use suki_ambient_inbox::display::{MAX_TEXT, clean, clean_or_dash, next_run, relative};
use suki_ambient_inbox::{DeliveryRecord, State};

use crate::html::*;

pub(crate) const SERIES: [(&str, &str); 3] = [
    ("done", "#12b76a"),
    ("in progress", "#f79009"),
    ("dead", "#d92d20"),
];

/// Deliveries per hour over the last 24 h, stacked by outcome, as an SVG.
pub(crate) fn chart(hours: &[suki_ambient_inbox::ops::HourCount], now: UnixMillis) -> String {
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
pub(crate) fn rows_table(
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
pub(crate) fn query_escape(text: &str) -> String {
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

/// What is paused, with the buttons to resume; the button to pause the whole inbox.
pub(crate) fn pause_panel(
    pauses: &[suki_ambient_inbox::ops::Pause],
    now: UnixMillis,
    base: &str,
    csrf: Option<&str>,
) -> String {
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
pub(crate) fn groups_table(
    groups: &[suki_ambient_inbox::ops::DeadGroup],
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
pub(crate) fn replay_form(base: &str) -> String {
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
/// How many of the latest operator actions the page lists.
pub(crate) const AUDIT_SHOWN: u32 = 20;

/// The latest operator actions (`entries` newest first, one more than is shown when there are
/// more).
pub(crate) fn audit_table(
    entries: &[suki_ambient_inbox::ops::AuditEntry],
    now: UnixMillis,
) -> String {
    if entries.is_empty() {
        return "<p class=\"muted\">None in the last 7 days.</p>".to_owned();
    }
    let mut t = String::from(
        "<table id=\"audit\"><thead><tr><th>when</th><th>who</th><th>from</th><th>action</th><th>target</th><th>rows</th></tr></thead><tbody>",
    );
    for e in entries.iter().take(AUDIT_SHOWN as usize) {
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
    if entries.len() > AUDIT_SHOWN as usize {
        t.push_str(
            "<p class=\"muted\" id=\"audit-more\">Older actions: <code>suki-ambient inbox audit</code>.</p>",
        );
    }
    t
}

/// How many retrying rows the page lists.
pub(crate) const STUCK_SHOWN: u32 = 200;

/// The page's top line: `failing` when health has a problem (the pipeline cannot do its job),
/// `degraded` when something needs a person (dead letters, rows being retried, sessions given
/// up), else `healthy`; with the reasons in plain words.
/// The destinations the workers found down (and back since): one line each for the person on
/// call, down first; nothing when every destination answers and none was ever down.
pub(crate) fn destinations_panel(destinations: &[(bool, &str)]) -> String {
    if destinations.is_empty() {
        return String::new();
    }
    let mut sorted = destinations.to_vec();
    sorted.sort_by_key(|(up, _)| *up);
    let mut items = String::new();
    for (up, summary) in sorted {
        let _ = write!(
            items,
            "<li class=\"{}\">{}</li>",
            if up { "ok" } else { "bad" },
            esc(summary)
        );
    }
    format!("<h2>Destinations</h2><ul class=\"destinations\" id=\"destinations\">{items}</ul>")
}

pub(crate) fn verdict(
    problems: &[suki_ambient_inbox::ops::Problem],
    paused: &[String],
    dead: u64,
    retrying: usize,
    gave_up: u64,
) -> (&'static str, Vec<String>) {
    let failing: Vec<String> = problems
        .iter()
        .map(|problem| format!("{} ({})", problem.describe(), problem.as_str()))
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
    if !paused.is_empty() {
        degraded.insert(
            0,
            format!("processing paused by an operator ({})", paused.join(", ")),
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
    use crate::access::base;
    use crate::html::home;
    use axum::http::Uri;

    #[test]
    fn the_top_line_says_failing_degraded_or_healthy_and_why() {
        assert_eq!(verdict(&[], &[], 0, 0, 0), ("healthy", vec![]));
        let (v, why) = verdict(&[], &[], 2, 5, 1);
        assert_eq!(v, "degraded");
        assert_eq!(
            why,
            [
                "2 dead letter(s) need a person",
                "5 row(s) being retried",
                "1 expected session(s) given up"
            ]
        );
        let (v, why) = verdict(
            &[suki_ambient_inbox::ops::Problem::StoreUnwritable],
            &[],
            2,
            5,
            1,
        );
        assert_eq!(
            v, "failing",
            "a pipeline that cannot work outranks the rest"
        );
        assert_eq!(why, ["the store cannot commit writes (store_unwritable)"]);
        assert_eq!(
            verdict(&[], &[], 0, 200, 0).1,
            ["200+ row(s) being retried"]
        );
    }

    #[test]
    fn destinations_are_listed_down_first_and_escaped() {
        assert_eq!(destinations_panel(&[]), "");
        let html = destinations_panel(&[
            (true, "Suki's API: up"),
            (
                false,
                "EHR <x> unreachable since 10:02 UTC, 3 notes waiting",
            ),
        ]);
        let down = html.find("unreachable").expect("down shown");
        let up = html
            .find("Suki&#39;s API")
            .or_else(|| html.find("Suki"))
            .expect("up shown");
        assert!(down < up, "down first: {html}");
        assert!(html.contains("EHR &lt;x&gt;"), "{html}");
        assert!(html.contains("class=\"bad\""), "{html}");
    }

    #[test]
    fn ids_from_payloads_are_escaped_and_the_mount_point_is_found() {
        let row = DeliveryRecord {
            id: 7,
            dedup_key: "k".to_owned(),
            source: suki_ambient_inbox::ops::Source::Webhook,
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
            waiting_for: None,
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
        let hour = |h: u64, state, count| suki_ambient_inbox::ops::HourCount {
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
