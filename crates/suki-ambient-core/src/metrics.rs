//! The webhook metrics, emitted through the [`metrics`](https://docs.rs/metrics) facade with the
//! `metrics` feature (the application installs the exporter it likes); without the feature these
//! calls compile to nothing. Labels are fixed vocabularies (outcomes, codes, kinds), never an id
//! or a payload value.

/// Counter: requests to a webhook receiver, by `outcome`: `processed`, `accepted`,
/// `duplicate`, `handler_failed`, `inbox_unavailable`, `replay_guard_unavailable`, or the
/// rejection's code (`mismatch`, `stale`, `missing_header`, …).
pub const WEBHOOK_REQUESTS: &str = "suki_webhook_requests_total";
/// Histogram (seconds): the signature check of one complete body.
pub const WEBHOOK_VERIFY_SECONDS: &str = "suki_webhook_verify_seconds";
/// Histogram (seconds): the application's handler, by event `kind`.
pub const HANDLER_SECONDS: &str = "suki_handler_seconds";

/// Counts one request's outcome.
#[inline]
pub(crate) fn request(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(WEBHOOK_REQUESTS, "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// A stopwatch for the histograms, for the SDK's other crates: with the feature off it holds
/// nothing and records nothing.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch(#[cfg(feature = "metrics")] std::time::Instant);

impl Stopwatch {
    /// Starts it.
    #[inline]
    pub fn start() -> Self {
        Self(
            #[cfg(feature = "metrics")]
            std::time::Instant::now(),
        )
    }

    /// Records the time since `start` in the histogram `name`.
    #[inline]
    pub fn record(self, name: &'static str) {
        #[cfg(feature = "metrics")]
        metrics::histogram!(name).record(self.0.elapsed().as_secs_f64());
        #[cfg(not(feature = "metrics"))]
        let _ = name;
    }

    /// Records the handler's time for an event `kind`.
    #[inline]
    pub fn record_handler(self, kind: &'static str) {
        #[cfg(feature = "metrics")]
        metrics::histogram!(HANDLER_SECONDS, "kind" => kind).record(self.0.elapsed().as_secs_f64());
        #[cfg(not(feature = "metrics"))]
        let _ = kind;
    }
}
