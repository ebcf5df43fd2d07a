//! What the CLI and the console show of rows: short human-readable times, and text from outside
//! (ids, statuses, error codes) made safe for a terminal or a page.

use std::time::Duration;

use suki_ambient_core::UnixMillis;

use crate::{DeliveryRecord, State};

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`, `850ms`: two units at most.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// When `at` (Unix ms) is relative to `now`: `in 2m 5s`, `3h 1m ago`.
pub fn relative(at: UnixMillis, now: UnixMillis) -> String {
    let at = at.0;
    if at >= now.0 {
        format!("in {}", short(Duration::from_millis(at - now.0)))
    } else {
        format!("{} ago", short(Duration::from_millis(now.0 - at)))
    }
}

/// The time of day of `at`, UTC: `10:02 UTC`.
pub fn time_of_day(at: UnixMillis) -> String {
    let secs = at.0 / 1_000 % 86_400;
    format!("{:02}:{:02} UTC", secs / 3_600, secs % 3_600 / 60)
}

/// `at` as a UTC date and time to the second: `2026-12-07T10:02:00Z`.
pub fn date_time(at: UnixMillis) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(at.0);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// `text` (an audit entry's detail) with each epoch-milliseconds time in it (12 to 14 digits)
/// written as a UTC date and time: `completed since 1796601600000` reads
/// `completed since 2026-12-07T00:00:00Z`. (The stored detail, and `--json`, keep the
/// milliseconds.)
pub fn human_times(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        match digits.parse::<u64>() {
            Ok(ms) if (12..=14).contains(&digits.len()) => out.push_str(&date_time(UnixMillis(ms))),
            _ => out.push_str(digits),
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// A destination for the person on call: `EHR fhir.example unreachable since 10:02 UTC
/// (fhir_503_transient, 20m 4s), 143 notes waiting, next probe in 20s`, or `Suki's API: up`.
pub fn destination(d: &crate::records::DestinationRecord, now: UnixMillis) -> String {
    let name = match d.name.strip_prefix("ehr:") {
        Some(host) => format!("EHR {}", clean(host, 80)),
        None if d.name == "suki" => "Suki's API".to_owned(),
        None => clean(&d.name, 80),
    };
    if d.up {
        return format!("{name}: up");
    }
    let since = d.down_since.unwrap_or(d.updated_at);
    let mut text = format!(
        "{name} unreachable since {} ({}, {})",
        time_of_day(since),
        clean_or_dash(d.reason.as_deref()),
        short(Duration::from_millis(now.0.saturating_sub(since.0)))
    );
    text.push_str(&format!(
        ", {} note{} waiting",
        d.waiting,
        if d.waiting == 1 { "" } else { "s" }
    ));
    if d.next_probe > now {
        text.push_str(&format!(", next probe {}", relative(d.next_probe, now)));
    } else {
        text.push_str(", probing");
    }
    text
}

/// A row's next run: when a pending row is due, when a running row's lease ends, `-` otherwise.
pub fn next_run(row: &DeliveryRecord, now: UnixMillis) -> String {
    match row.state {
        State::Pending => relative(row.run_after, now),
        State::Running => format!("lease {}", relative(row.run_after, now)),
        State::Done | State::Dead => "-".to_owned(),
    }
}

/// The most characters of one piece of outside text kept for display or storage.
pub const MAX_TEXT: usize = 128;

/// The most characters of an attempt's detail shown: the links fetched and the handler's
/// recorded outcome (at most 2,000).
pub const MAX_DETAIL: usize = 2_400;

/// Text from outside (an id, a status, an error code: from a webhook, the API or the store) as
/// it may be printed or stored: control characters (the escape sequences that retitle or clear a
/// terminal among them) and other invisible or bidirectional-override characters are shown as
/// `\u{..}` escapes, and the result is cut with `…` once it would pass `max` characters.
pub fn clean(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 8));
    let mut shown = 0;
    for c in text.chars() {
        let hidden = c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
        let piece: String = if hidden {
            c.escape_unicode().collect()
        } else {
            c.to_string()
        };
        let width = piece.chars().count();
        if shown + width > max {
            out.push('…');
            break;
        }
        out.push_str(&piece);
        shown += width;
    }
    out
}

/// [`clean`] with [`MAX_TEXT`], for an optional value (`-` when absent).
pub fn clean_or_dash(text: Option<&str>) -> String {
    text.map_or_else(|| "-".to_owned(), |t| clean(t, MAX_TEXT))
}

/// One line of a [`timeline`]: when, which row (none for an expected session), and what, as
/// plain text already [cleaned](clean) (escape it for a page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineLine {
    /// When it happened.
    pub at: UnixMillis,
    /// The row it is about.
    pub row: Option<i64>,
    /// What happened.
    pub what: String,
}

/// A [`Trace`](crate::ops::Trace) as lines in time order, for the CLI's `inbox trace` and the
/// console: each row's reception, its attempts and their outcomes, operators' actions, and
/// the reconciler's expectation (registered, checks, resolution). Ids, codes and statuses
/// only.
pub fn timeline(trace: &crate::records::Trace, now: UnixMillis) -> Vec<TimelineLine> {
    let mut lines = Vec::new();
    for d in &trace.deliveries {
        lines.push(TimelineLine {
            at: d.received_at,
            row: Some(d.id),
            what: format!(
                "received {} ({}); now {}, {} attempt(s){}",
                clean(d.kind.as_str(), MAX_TEXT),
                d.source,
                d.state,
                d.attempts,
                match d.state {
                    State::Dead => d
                        .last_error
                        .as_deref()
                        .map(|code| format!(", {}", clean(code, MAX_TEXT)))
                        .unwrap_or_default(),
                    State::Done if d.last_error.as_deref() == Some("discarded") => {
                        ", discarded".to_owned()
                    }
                    State::Pending => format!(", next run {}", relative(d.run_after, now)),
                    _ => String::new(),
                }
            ),
        });
    }
    for e in &trace.events {
        let mut what = match (&e.actor, e.attempt) {
            (Some(actor), _) => format!(
                "{} by {}",
                clean(&e.event, MAX_TEXT),
                clean(actor, MAX_TEXT)
            ),
            (None, attempt) => {
                let mut what = format!(
                    "attempt {} by {}",
                    attempt.map_or_else(|| "?".to_owned(), |a| a.to_string()),
                    clean_or_dash(e.worker.as_deref())
                );
                if let Some(started) = e.started_at {
                    what.push_str(&format!(
                        " ({})",
                        short(Duration::from_millis(e.at.0.saturating_sub(started.0)))
                    ));
                }
                what.push_str(&format!(": {}", clean(&e.event, MAX_TEXT)));
                what
            }
        };
        if let Some(code) = &e.code {
            what.push_str(&format!(" {}", clean(code, MAX_TEXT)));
        }
        if let Some(detail) = &e.detail {
            // An operator's reason; or what the attempt fetched, then what the handler
            // recorded (`InboxMeta::record`: the FHIR write-back's EHR ids), kept whole.
            let (label, limit) = if e.actor.is_some() {
                ("reason", MAX_TEXT)
            } else {
                ("fetched", MAX_DETAIL)
            };
            what.push_str(&format!("; {label}: {}", clean(detail, limit)));
        }
        if let Some(next) = e.next_run {
            what.push_str(&format!("; next run {}", relative(next, now)));
        }
        lines.push(TimelineLine {
            at: e.at,
            row: Some(e.delivery_id),
            what,
        });
    }
    for x in &trace.expectations {
        let session = clean(x.session_id.as_str(), MAX_TEXT);
        lines.push(TimelineLine {
            at: x.ended_at,
            row: None,
            what: format!(
                "session {session} ended (expected by the reconciler); {} check(s), last status {}",
                x.checks,
                clean_or_dash(x.last_status.as_deref())
            ),
        });
        match (x.resolution, x.resolved_at) {
            (Some(resolution), Some(at)) => lines.push(TimelineLine {
                at,
                row: None,
                what: format!("session {session} resolved: {}", resolution.as_str()),
            }),
            _ => lines.push(TimelineLine {
                at: x.next_check,
                row: None,
                what: format!(
                    "session {session} not resolved; next check {}",
                    relative(x.next_check, now)
                ),
            }),
        }
    }
    lines.sort_by_key(|l| l.at);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_details_show_dates_not_milliseconds() {
        assert_eq!(
            super::human_times("completed since 1796601600000, row 12"),
            "completed since 2026-12-07T00:00:00Z, row 12"
        );
        assert_eq!(
            super::human_times("retention floor 2192 days"),
            "retention floor 2192 days"
        );
    }

    #[test]
    fn durations_print_briefly() {
        assert_eq!(short(Duration::from_millis(850)), "850ms");
        assert_eq!(short(Duration::from_secs(125)), "2m 5s");
        assert_eq!(short(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d 4h");
        assert_eq!(relative(UnixMillis(1_000), UnixMillis(61_000)), "1m 0s ago");
        assert_eq!(relative(UnixMillis(61_000), UnixMillis(1_000)), "in 1m 0s");
    }

    #[test]
    fn outside_text_cannot_drive_a_terminal() {
        let hostile = "running\u{1b}]0;pwned\u{7}\u{1b}[2J\r\n\u{202e}gnp.exe";
        let shown = clean(hostile, MAX_TEXT);
        assert!(
            !shown.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{shown}"
        );
        assert_eq!(
            shown,
            "running\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{d}\\u{a}\\u{202e}gnp.exe"
        );
        assert_eq!(clean(&"x".repeat(5_000_000), 8), "xxxxxxxx…");
        assert_eq!(clean("a953839a-ddcd-407d", MAX_TEXT), "a953839a-ddcd-407d");
        assert_eq!(clean_or_dash(None), "-");
    }
}
