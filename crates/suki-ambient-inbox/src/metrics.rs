//! The inbox's and the reconciler's metrics, through the [`metrics`](https://docs.rs/metrics)
//! facade with the `metrics` feature; without it these calls compile to nothing. Labels are
//! fixed vocabularies, never an id or a payload value.

use crate::{expect::CheckOutcome, records::InboxStatus, records::Source};

/// Counter: deliveries newly stored, by `source` (`webhook`, `poll`, `manual`).
pub const INBOX_ENQUEUED: &str = "suki_inbox_enqueued_total";
/// Counter: handler attempts finished, by `result` (`done`, `retry`, `dead`).
pub const INBOX_ATTEMPTS: &str = "suki_inbox_attempts_total";
/// Counter: rows moved to `dead`.
pub const INBOX_DEAD: &str = "suki_inbox_dead_total";
/// Counter: required links of completed sessions that failed, by `link` (`contents`, …),
/// `status` (the HTTP status, or `none`) and `outcome` (`retry`, `dead`).
pub const INBOX_LINK_FAILURES: &str = "suki_inbox_link_failures_total";
/// Counter: events of a status this SDK does not know, made dead letters (`unknown_status`) by
/// the default [`ResultsHandler::on_unknown`](crate::ResultsHandler::on_unknown).
pub const INBOX_UNKNOWN_STATUS: &str = "suki_inbox_unknown_status_total";
/// Gauge: 1 while the store cannot commit (the write probe failed, or a write of the inbox
/// failed recently and none succeeded since), else 0; set by each
/// [`Inbox::health`](crate::Inbox::health).
pub const INBOX_STORE_UNWRITABLE: &str = "suki_inbox_store_unwritable";
/// Gauge: rows by `state` (`pending`, `running`, `done`, `dead`), refreshed by the worker every
/// 15 s and by every [`Inbox::status`](crate::Inbox::status) / [`health`](crate::Inbox::health).
pub const INBOX_DEPTH: &str = "suki_inbox_depth";
/// Gauge: seconds since the oldest pending or running row was received (0 when none).
pub const INBOX_OLDEST_UNFINISHED: &str = "suki_inbox_oldest_unfinished_seconds";
/// Counter: reconciler status checks, by `result` (`recovered`, `already_stored`, `again`,
/// `gave_up`).
pub const RECONCILER_CHECKS: &str = "suki_reconciler_checks_total";
/// Counter: sessions recovered by a poll (their event stored by the reconciler).
pub const RECONCILER_RECOVERED: &str = "suki_reconciler_recovered_total";
/// Counter: sessions given up.
pub const RECONCILER_GAVE_UP: &str = "suki_reconciler_gave_up_total";

#[inline]
pub(crate) fn enqueued(source: Source) {
    #[cfg(feature = "metrics")]
    metrics::counter!(INBOX_ENQUEUED, "source" => source.as_str()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = source;
}

/// `done`, `retry`, `dead` or `snoozed`.
#[inline]
pub(crate) fn attempt(result: &'static str) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(INBOX_ATTEMPTS, "result" => result).increment(1);
        if result == "dead" {
            metrics::counter!(INBOX_DEAD).increment(1);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = result;
}

#[inline]
pub(crate) fn link_failure(link: &'static str, status: Option<u16>, permanent: bool) {
    #[cfg(feature = "metrics")]
    {
        let status = status.map_or_else(|| "none".to_owned(), |s| s.to_string());
        let outcome = if permanent { "dead" } else { "retry" };
        metrics::counter!(INBOX_LINK_FAILURES, "link" => link, "status" => status, "outcome" => outcome)
            .increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (link, status, permanent);
}

#[inline]
pub(crate) fn unknown_status() {
    #[cfg(feature = "metrics")]
    metrics::counter!(INBOX_UNKNOWN_STATUS).increment(1);
}

#[inline]
/// `suki_inbox_maintenance_leader`: 1 on the worker that holds the fleet's maintenance lease
/// (and so publishes the depth gauges), 0 elsewhere.
pub(crate) fn maintenance_leader(leading: bool) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("suki_inbox_maintenance_leader").set(if leading { 1.0 } else { 0.0 });
    #[cfg(not(feature = "metrics"))]
    let _ = leading;
}

pub(crate) fn store_writable(writable: bool) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(INBOX_STORE_UNWRITABLE).set(if writable { 0.0 } else { 1.0 });
    #[cfg(not(feature = "metrics"))]
    let _ = writable;
}

#[inline]
pub(crate) fn depth(status: &InboxStatus) {
    #[cfg(feature = "metrics")]
    {
        let c = &status.counts;
        for (state, n) in [
            ("pending", c.pending),
            ("running", c.running),
            ("done", c.done),
            ("dead", c.dead),
        ] {
            metrics::gauge!(INBOX_DEPTH, "state" => state).set(n as f64);
        }
        metrics::gauge!(INBOX_OLDEST_UNFINISHED).set(
            status
                .oldest_unfinished_age
                .map_or(0.0, |age| age.as_secs_f64()),
        );
    }
    #[cfg(not(feature = "metrics"))]
    let _ = status;
}

#[inline]
pub(crate) fn check(result: &CheckOutcome) {
    #[cfg(feature = "metrics")]
    {
        let label = match result {
            CheckOutcome::Recovered { .. } => "recovered",
            CheckOutcome::AlreadyStored { .. } => "already_stored",
            CheckOutcome::GaveUp { .. } => "gave_up",
            CheckOutcome::Again { .. } => "again",
        };
        metrics::counter!(RECONCILER_CHECKS, "result" => label).increment(1);
        match result {
            CheckOutcome::Recovered { .. } => {
                metrics::counter!(RECONCILER_RECOVERED).increment(1);
            }
            CheckOutcome::GaveUp { .. } => metrics::counter!(RECONCILER_GAVE_UP).increment(1),
            _ => {}
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = result;
}

/// Gauge: 1 while destination `destination` (`suki`, `ehr:<host>`) answers, 0 while its
/// breaker is open (rows that need it wait without spending attempts).
pub const DESTINATION_UP: &str = "suki_destination_up";
/// Gauge: rows this worker is processing now (its adaptive concurrency limit is
/// `suki_worker_concurrency_limit`).
pub const WORKER_IN_FLIGHT: &str = "suki_worker_in_flight";
/// Gauge: how many rows this worker may process at once now.
pub const WORKER_LIMIT: &str = "suki_worker_concurrency_limit";

#[inline]
pub(crate) fn destination_up(name: &str, up: bool) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(DESTINATION_UP, "destination" => name.to_owned()).set(if up {
        1.0
    } else {
        0.0
    });
    #[cfg(not(feature = "metrics"))]
    let _ = (name, up);
}

#[inline]
pub(crate) fn in_flight(running: usize, limit: usize) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!(WORKER_IN_FLIGHT).set(running as f64);
        metrics::gauge!(WORKER_LIMIT).set(limit as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (running, limit);
}
