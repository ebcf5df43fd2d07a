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

#[cfg(test)]
mod tests {
    use super::*;

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
