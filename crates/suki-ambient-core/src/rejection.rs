//! Logging a refused delivery, at most a burst per rejection code per minute.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::{Verifier, VerifyError, WebhookError};

/// How many warnings per rejection code [`log_rejection`] writes in one window.
const LOG_BURST: u32 = 10;
/// The window of [`LOG_BURST`].
const LOG_WINDOW: Duration = Duration::from_secs(60);

struct CodeWindow {
    code: &'static str,
    started: Instant,
    logged: u32,
    suppressed: u64,
}

static WINDOWS: Mutex<Vec<CodeWindow>> = Mutex::new(Vec::new());

/// Logs a refused delivery at WARN: its code, status and error (which never holds a header
/// value or body content), and for a `mismatch` how many secrets were tried, since a wrong or
/// mistyped secret makes every delivery fail that way and Suki never re-sends.
///
/// At most 10 lines per code per minute are written, so that a flood of bad requests cannot
/// drown the logs; the first line of the next minute says how many were left out
/// (`suppressed`). Every ready-made endpoint, extractor, layer, middleware and filter calls it.
pub fn log_rejection(err: &WebhookError, verifier: &Verifier) {
    let code = err.code();
    crate::metrics::request(code);
    let Some(suppressed) = admit(code, Instant::now()) else {
        return;
    };
    let status = err.status().as_u16();
    if matches!(err, WebhookError::Verify(VerifyError::SignatureMismatch)) {
        tracing::warn!(
            code,
            status,
            secrets_tried = verifier.secret_count(),
            suppressed,
            "suki webhook rejected: {err} (check the configured webhook secret)"
        );
    } else {
        tracing::warn!(code, status, suppressed, "suki webhook rejected: {err}");
    }
}

/// Whether a line for `code` may be written at `now`, and how many were left out before it.
fn admit(code: &'static str, now: Instant) -> Option<u64> {
    let mut windows = WINDOWS.lock().unwrap_or_else(PoisonError::into_inner);
    let index = match windows.iter().position(|w| w.code == code) {
        Some(index) => index,
        None => {
            windows.push(CodeWindow {
                code,
                started: now,
                logged: 0,
                suppressed: 0,
            });
            windows.len() - 1
        }
    };
    let window = &mut windows[index];
    if now.saturating_duration_since(window.started) >= LOG_WINDOW {
        window.started = now;
        window.logged = 0;
    }
    if window.logged < LOG_BURST {
        window.logged += 1;
        Some(std::mem::take(&mut window.suppressed))
    } else {
        window.suppressed += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_a_burst_per_code_per_window_then_the_count_left_out() {
        let start = Instant::now();
        let code = "test_code_for_admit";
        let admitted = (0..25).filter(|_| admit(code, start).is_some()).count();
        assert_eq!(admitted, LOG_BURST as usize);
        // Another code has its own budget.
        assert_eq!(admit("another_test_code", start), Some(0));
        // The next window starts with the number left out.
        assert_eq!(admit(code, start + LOG_WINDOW), Some(15));
        assert_eq!(admit(code, start + LOG_WINDOW), Some(0));
    }
}
