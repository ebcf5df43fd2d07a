//! Flow control: a circuit breaker per destination (Suki's API, each EHR), shared by the
//! workers of a fleet through the store, and [`Unavailable`], the handler error that makes a
//! row wait for a destination without spending an attempt.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use suki_ambient_core::UnixMillis;

use crate::{Inbox, records::ChoreLease};

/// A handler error: a destination the row needs (Suki's API, the EHR) is unavailable (a
/// transport error, a timeout, 5xx, 429 or 408, an answer that is not one, credentials refused
/// by the whole server). The row **waits without spending an attempt**: an outage is not the
/// row's failure. Consecutive failures open the destination's breaker; while it is open, the
/// rows that need it are not attempted, and one probe per interval (for the whole fleet)
/// finds when it is back. [`FetchResults`](crate::FetchResults) and `FhirWriteBack` return it
/// themselves; a handler calling a service of its own may too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    destination: String,
    code: String,
    retry_after: Option<Duration>,
    /// Said by the breaker, before any request (no failure of the destination to count):
    /// the row waits until then.
    gated: Option<UnixMillis>,
}

impl Unavailable {
    /// `destination` (a short name: `suki`, `ehr:<host>`, `billing`) failed with `code` (an
    /// error code, never content: cleaned to 64 characters of `[A-Za-z0-9_.-]`).
    pub fn new(destination: &str, code: &str) -> Self {
        Self {
            destination: clean(destination, 80, ":"),
            code: clean(code, 64, ""),
            retry_after: None,
            gated: None,
        }
    }

    /// The destination asked for no request before `after` (its `Retry-After`): the row and
    /// the next probe wait at least that long (capped at the worker's longest back-off).
    #[must_use]
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The destination's name.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The error code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Whether the breaker said it, before any request was sent.
    pub fn is_gated(&self) -> bool {
        self.gated.is_some()
    }

    pub(crate) fn gated_until(&self) -> Option<UnixMillis> {
        self.gated
    }

    pub(crate) fn retry_after_value(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is unavailable ({})", self.destination, self.code)
    }
}

impl std::error::Error for Unavailable {}

/// `text` kept to `most` characters of `[A-Za-z0-9_.-]` and `also`.
fn clean(text: &str, most: usize, also: &str) -> String {
    let kept: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') || also.contains(*c))
        .take(most)
        .collect();
    if kept.is_empty() {
        "unavailable".to_owned()
    } else {
        kept
    }
}

/// How the breakers behave ([`InboxWorkerBuilder::breaker`](crate::InboxWorkerBuilder::breaker)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BreakerSettings {
    /// Consecutive failures that open a breaker.
    pub(crate) threshold: u32,
    /// The first probe interval (doubled after each failed probe, jittered).
    pub(crate) probe_every: Duration,
    /// The longest probe interval (a longer `Retry-After` is cut to it).
    pub(crate) longest_probe: Duration,
    /// How long a probe may run before another worker may send one.
    pub(crate) probe_lease: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            threshold: 3,
            probe_every: Duration::from_secs(1),
            longest_probe: Duration::from_secs(30),
            probe_lease: Duration::from_secs(60),
        }
    }
}

/// What a row that needs a destination may do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Call it (the breaker is closed).
    Pass,
    /// Call it: this attempt is the destination's probe.
    Probe,
    /// Do not call it; wait until then.
    Wait { until: UnixMillis, reason: String },
}

/// One destination's breaker, as this worker sees it.
#[derive(Clone, Debug)]
enum Breaker {
    Closed {
        failures: u32,
        /// The latest failure's code (the reason when it opens).
        last: Option<String>,
    },
    Open {
        since: UnixMillis,
        reason: String,
        next_probe: UnixMillis,
        probes: u32,
        /// A probe of this worker runs until then.
        probing_until: Option<UnixMillis>,
    },
}

impl Default for Breaker {
    fn default() -> Self {
        Self::Closed {
            failures: 0,
            last: None,
        }
    }
}

/// The breakers of one worker (every destination its rows named), kept in step with the
/// store's record so that a fleet probes once per interval and opens and closes together.
pub(crate) struct Breakers {
    inbox: Inbox,
    owner: String,
    settings: BreakerSettings,
    /// The longest a row waits (the worker's longest back-off).
    longest_wait: Duration,
    state: Mutex<HashMap<String, Breaker>>,
}

impl fmt::Debug for Breakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breakers")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// `at` plus `after`.
fn plus(at: UnixMillis, after: Duration) -> UnixMillis {
    UnixMillis(at.0.saturating_add(suki_ambient_core::time::millis(after)))
}

/// Rows waiting for a probe come back spread over a quarter of a second after it.
fn spread() -> Duration {
    Duration::from_millis(fastrand::u64(20..250))
}

/// `d` scaled by a factor drawn in [0.9, 1.0]: never later than asked (a probe interval is a
/// promise of how soon a return is seen), and workers and rows that failed together do not
/// come back together.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.9 + 0.1 * fastrand::f64())
}

impl Breakers {
    pub(crate) fn new(
        inbox: Inbox,
        owner: String,
        settings: BreakerSettings,
        longest_wait: Duration,
    ) -> Self {
        Self {
            inbox,
            owner,
            settings,
            longest_wait,
            state: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Breaker>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The probe interval after `probes` failed probes (doubled after every fourth one, so
    /// that a short outage is seen ending soon and a long one is asked less and less), at
    /// least `retry_after`.
    fn interval(&self, probes: u32, retry_after: Option<Duration>) -> Duration {
        let grown = self
            .settings
            .probe_every
            .saturating_mul(1u32 << (probes / 4).min(16))
            .min(self.settings.longest_probe);
        let wanted = retry_after.map_or(grown, |after| grown.max(after));
        jittered(wanted).min(self.settings.longest_probe.max(self.settings.probe_every))
    }

    /// Whether a row that needs `destination` may call it now.
    pub(crate) async fn gate(&self, destination: &str) -> Gate {
        let now = self.inbox.now();
        let ask = {
            let mut state = self.lock();
            let breaker = state.entry(destination.to_owned()).or_default();
            match breaker {
                Breaker::Closed { .. } => return Gate::Pass,
                Breaker::Open {
                    next_probe,
                    probing_until,
                    reason,
                    ..
                } => {
                    let probing = probing_until.is_some_and(|until| until > now);
                    if probing || *next_probe > now {
                        let at = if probing {
                            plus(now, jittered(self.settings.probe_every))
                        } else {
                            *next_probe
                        };
                        return Gate::Wait {
                            // Spread after the probe, so that the probe's answer is known
                            // when most of them come back.
                            until: plus(at, spread()),
                            reason: reason.clone(),
                        };
                    }
                    // Ours to ask for: marked as probing so that our other rows wait.
                    let until = plus(now, self.settings.probe_lease);
                    *probing_until = Some(until);
                    (until, reason.clone())
                }
            }
        };
        let (until, reason) = ask;
        let taken = self
            .inbox
            .backend()
            .take_probe(ChoreLease {
                task: destination,
                owner: &self.owner,
                now,
                until,
            })
            .await;
        match taken {
            Ok(true) => {
                tracing::info!(
                    destination,
                    "suki inbox: probing a destination that was down with one row"
                );
                Gate::Probe
            }
            other => {
                if let Err(err) = other {
                    tracing::warn!(destination, error = %err, "suki inbox could not take a destination's probe; waiting");
                }
                // Another worker probes (or the store cannot say): wait for its answer.
                let wait = jittered(self.settings.probe_every);
                if let Some(Breaker::Open {
                    next_probe,
                    probing_until,
                    ..
                }) = self.lock().get_mut(destination)
                {
                    *probing_until = None;
                    *next_probe = plus(now, wait);
                }
                Gate::Wait {
                    until: plus(now, wait + spread()),
                    reason,
                }
            }
        }
    }

    /// How long until the rows waiting for an open breaker's next probe are due (its time
    /// plus the spread), when that is sooner than `within`: an idle worker wakes then, not at
    /// its next poll.
    pub(crate) fn next_wake(&self, within: Duration) -> Duration {
        let now = self.inbox.now();
        self.lock()
            .values()
            .filter_map(|b| match b {
                Breaker::Open { next_probe, .. } if *next_probe > now => {
                    Some(Duration::from_millis(next_probe.0 - now.0) + Duration::from_millis(260))
                }
                _ => None,
            })
            .fold(within, Duration::min)
    }

    /// Whether `destination`'s breaker is open here.
    pub(crate) fn is_open(&self, destination: &str) -> bool {
        matches!(self.lock().get(destination), Some(Breaker::Open { .. }))
    }

    /// `destination` answered (a probe or any call): closes its breaker.
    pub(crate) async fn success(&self, destination: &str) {
        let was_open = {
            let mut state = self.lock();
            let breaker = state.entry(destination.to_owned()).or_default();
            let was = match breaker {
                Breaker::Open { since, .. } => Some(*since),
                Breaker::Closed { failures: 0, .. } => return,
                Breaker::Closed { .. } => None,
            };
            *breaker = Breaker::default();
            was
        };
        if let Some(since) = was_open {
            self.closed(destination, since).await;
        }
    }

    async fn closed(&self, destination: &str, since: UnixMillis) {
        let now = self.inbox.now();
        crate::metrics::destination_up(destination, true);
        match self.inbox.backend().destination_up(destination, now).await {
            Ok(resumed) => {
                // The rows made due are claimed now, not at the next poll.
                self.inbox.wake().notify_waiters();
                tracing::warn!(
                    destination,
                    down_for_s = now.0.saturating_sub(since.0) / 1_000,
                    resumed,
                    "suki inbox: a destination answers again; the rows waiting for it are due now"
                )
            }
            Err(err) => tracing::warn!(
                destination,
                error = %err,
                "suki inbox: a destination answers again, but the store could not record it; its waiting rows come back at their time"
            ),
        }
    }

    /// `destination` failed a call with `code`: counted, opening the breaker at the
    /// threshold; a probe's failure puts the next one further off. The time the row waits to.
    pub(crate) async fn failure(
        &self,
        destination: &str,
        code: &str,
        retry_after: Option<Duration>,
    ) -> UnixMillis {
        let now = self.inbox.now();
        let (record, until) = {
            let mut state = self.lock();
            let breaker = state.entry(destination.to_owned()).or_default();
            match breaker {
                Breaker::Closed { failures, last } => {
                    *failures += 1;
                    *last = Some(code.to_owned());
                    if *failures < self.settings.threshold {
                        // Not open yet: this row alone waits a short, jittered while.
                        let wait = jittered(self.settings.probe_every / 5)
                            .max(retry_after.unwrap_or_default())
                            .min(self.longest_wait);
                        return plus(now, wait);
                    }
                    let next_probe = plus(now, self.interval(0, retry_after));
                    *breaker = Breaker::Open {
                        since: now,
                        reason: code.to_owned(),
                        next_probe,
                        probes: 0,
                        probing_until: None,
                    };
                    tracing::warn!(
                        destination,
                        reason = code,
                        failures = self.settings.threshold,
                        next_probe_in_ms = next_probe.0.saturating_sub(now.0),
                        "suki inbox: a destination is down (its breaker opened); the rows that need it wait without spending attempts"
                    );
                    crate::metrics::destination_up(destination, false);
                    (Some(next_probe), next_probe)
                }
                Breaker::Open {
                    reason,
                    next_probe,
                    probes,
                    probing_until,
                    ..
                } => {
                    *reason = code.to_owned();
                    if probing_until.take().is_some() || *next_probe <= now {
                        // The probe failed.
                        *probes += 1;
                        *next_probe = plus(now, self.interval(*probes, retry_after));
                        tracing::info!(
                            destination,
                            reason = code,
                            probes = *probes,
                            next_probe_in_ms = next_probe.0.saturating_sub(now.0),
                            "suki inbox: a destination's probe failed; still down"
                        );
                        (Some(*next_probe), *next_probe)
                    } else {
                        // A call that was in flight when it opened.
                        (None, *next_probe)
                    }
                }
            }
        };
        if let Some(next_probe) = record {
            let down = crate::records::DestinationDown {
                name: destination,
                reason: code,
                now,
                next_probe,
            };
            if let Err(err) = self.inbox.backend().destination_down(down).await {
                tracing::warn!(destination, error = %err, "suki inbox could not record a destination down in the store");
            }
        }
        plus(until, spread())
    }

    /// A probe this worker took and did not send (the row stopped before calling the
    /// destination): given back, so that another row sends it now.
    pub(crate) async fn release_probe(&self, destination: &str) {
        let now = self.inbox.now();
        let reason = match self.lock().get_mut(destination) {
            Some(Breaker::Open {
                probing_until,
                next_probe,
                reason,
                ..
            }) if probing_until.is_some() => {
                *probing_until = None;
                *next_probe = now;
                reason.clone()
            }
            _ => return,
        };
        let down = crate::records::DestinationDown {
            name: destination,
            reason: &reason,
            now,
            next_probe: now,
        };
        if let Err(err) = self.inbox.backend().destination_down(down).await {
            tracing::warn!(destination, error = %err, "suki inbox could not give a probe back; another worker probes when its lease ends");
        }
    }

    /// Takes what the store says of each destination: one found down by another worker is
    /// open here too, one another worker's probe found back is closed here too.
    pub(crate) async fn sync(&self) {
        let Ok(records) = self.inbox.backend().destinations().await else {
            return;
        };
        let mut back = Vec::new();
        {
            let mut state = self.lock();
            for record in records {
                let breaker = state.entry(record.name.clone()).or_default();
                match (record.up, &mut *breaker) {
                    (false, Breaker::Closed { .. }) => {
                        tracing::info!(
                            destination = %record.name,
                            reason = record.reason.as_deref().unwrap_or(""),
                            "suki inbox: another worker found a destination down; waiting for it here too"
                        );
                        crate::metrics::destination_up(&record.name, false);
                        *breaker = Breaker::Open {
                            since: record.down_since.unwrap_or(record.updated_at),
                            reason: record.reason.clone().unwrap_or_default(),
                            next_probe: record.next_probe,
                            probes: record.probes,
                            probing_until: None,
                        };
                    }
                    (
                        false,
                        Breaker::Open {
                            next_probe, probes, ..
                        },
                    ) => {
                        // Another worker's failed probe put the next one further off.
                        if record.next_probe > *next_probe {
                            *next_probe = record.next_probe;
                            *probes = record.probes;
                        }
                    }
                    (true, Breaker::Open { .. }) => {
                        *breaker = Breaker::default();
                        back.push(record.name.clone());
                    }
                    (true, Breaker::Closed { .. }) => {}
                }
            }
        }
        for name in back {
            crate::metrics::destination_up(&name, true);
            tracing::info!(destination = %name, "suki inbox: another worker found a destination back");
        }
    }
}

/// The breakers an attempt goes through, and the destinations it reached: shared between
/// the handler's [`InboxMeta`](crate::InboxMeta) and the worker. Compares equal always.
#[derive(Clone, Default)]
pub(crate) struct Passage {
    pub(crate) breakers: Option<Arc<Breakers>>,
    /// The destinations the handler asked for and was let through.
    pub(crate) reached: Arc<Mutex<Vec<String>>>,
    /// The destination the row waited for, let through before the handler ran (as its probe,
    /// or because it is back).
    pub(crate) granted: Option<String>,
}

impl Passage {
    pub(crate) fn reached(&self) -> Vec<String> {
        self.reached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn mark(&self, destination: &str) {
        let mut reached = self
            .reached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !reached.iter().any(|d| d == destination) {
            reached.push(destination.to_owned());
        }
    }

    /// Whether the attempt may call `destination` now; `Unavailable` (said by the breaker,
    /// nothing sent) when not.
    pub(crate) async fn enter(&self, destination: &str) -> Result<(), Unavailable> {
        if self.granted.as_deref() == Some(destination)
            || self.reached().iter().any(|d| d == destination)
        {
            self.mark(destination);
            return Ok(());
        }
        if let Some(breakers) = &self.breakers {
            match breakers.gate(destination).await {
                Gate::Pass | Gate::Probe => {}
                Gate::Wait { reason, until } => {
                    let mut unavailable = Unavailable::new(destination, &reason);
                    unavailable.gated = Some(until);
                    return Err(unavailable);
                }
            }
        }
        self.mark(destination);
        Ok(())
    }
}

impl PartialEq for Passage {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Passage {}

impl fmt::Debug for Passage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passage")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_are_cleaned() {
        let u = Unavailable::new("ehr:fhir.example:8443 <x>", "fhir_503 Patient\n");
        assert_eq!(u.destination(), "ehr:fhir.example:8443x");
        assert_eq!(u.code(), "fhir_503Patient");
        assert_eq!(Unavailable::new("", "").destination(), "unavailable");
    }
}
