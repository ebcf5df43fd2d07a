//! Short human-readable times for rows, as the CLI and the console show them.

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
pub fn relative(at: u64, now: UnixMillis) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_briefly() {
        assert_eq!(short(Duration::from_millis(850)), "850ms");
        assert_eq!(short(Duration::from_secs(125)), "2m 5s");
        assert_eq!(short(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d 4h");
        assert_eq!(relative(1_000, UnixMillis(61_000)), "1m 0s ago");
        assert_eq!(relative(61_000, UnixMillis(1_000)), "in 1m 0s");
    }
}
