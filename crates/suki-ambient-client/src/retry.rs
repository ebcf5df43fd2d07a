//! `RetryPolicy`: bounded retries with exponential back-off, full jitter and `Retry-After`.

use std::time::{Duration, Instant, SystemTime};

use tower::retry::budget::Budget;

/// How GET calls are retried after connect errors, timeouts, 429, 500, 502, 503 and 504.
///
/// The delay before retry `n` (1-based) is uniform in `[0, min(max_delay, base_delay · 2ⁿ⁻¹)]`
/// ("full jitter"), unless the server sent `Retry-After` (seconds or an HTTP date), which is
/// honoured up to `max_retry_after`. A retry that would end after the call's deadline is not
/// attempted.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use suki_ambient_client::RetryPolicy;
///
/// let policy = RetryPolicy::default().max_attempts(5).base_delay(Duration::from_millis(100));
/// assert_eq!(policy.attempts(), 5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    max_retry_after: Duration,
    /// Quick retries allowed, in percent of the calls (over ten seconds).
    budget_percent: u32,
}

impl Default for RetryPolicy {
    /// 4 attempts, 200 ms base delay, 5 s maximum back-off, a `Retry-After` of up to 2 s
    /// waited within the call (a longer one ends the call: the error carries it, for the caller
    /// to reschedule).
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(2),
            budget_percent: 10,
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn none() -> Self {
        Self::default().max_attempts(1)
    }

    /// Total attempts, the first included (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The back-off of the first retry (doubled for each further one, before jitter).
    #[must_use]
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// The largest back-off.
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// The longest `Retry-After` waited within a call (default 2 s): a longer one ends the
    /// call with the server's error, which carries it
    /// ([`ClientError::retry_after`](crate::ClientError::retry_after)) for the caller to
    /// honour (the inbox's worker reschedules the row).
    #[must_use]
    pub fn max_retry_after(mut self, delay: Duration) -> Self {
        self.max_retry_after = delay;
        self
    }

    /// Quick retries allowed, in percent of the calls made over the last ten seconds (default
    /// 10; at most 100,000): a **retry budget**, shared by the clones of a client, so that an
    /// outage gets about one request per call instead of one per attempt (the inbox's worker
    /// retries the row later). The SDK client adds a reserve of one retry a second, so that a
    /// client making few calls still retries a lone failure; the FHIR client has none (a write
    /// that fails is the row's to retry).
    #[must_use]
    pub fn retry_budget(mut self, percent: u32) -> Self {
        self.budget_percent = percent.min(100_000);
        self
    }

    /// The budget of [`retry_budget`](Self::retry_budget), over `ttl`, with `reserve_per_second`
    /// retries a second allowed whatever the calls.
    pub fn budget(&self, reserve_per_second: u32) -> tower::retry::budget::TpsBudget {
        tower::retry::budget::TpsBudget::new(
            Duration::from_secs(10),
            reserve_per_second,
            self.budget_percent as f32 / 100.0,
        )
    }

    /// The longest `Retry-After` waited within a call.
    pub fn longest_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// The configured number of attempts.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay before the next attempt after failed attempt number `attempt` (1-based): the
    /// server's `Retry-After` when given (cut to [`max_retry_after`](Self::max_retry_after)),
    /// else exponential back-off with full jitter.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_retry_after);
        }
        let exp = self.base_delay.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let cap = exp.min(self.max_delay);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// A failed attempt, as [`retrying`] sees it: the error, whether sending again may succeed, and
/// the server's `Retry-After`.
#[derive(Debug)]
pub struct Failed<E> {
    /// The attempt's error.
    pub error: E,
    /// Whether another attempt may succeed (a timeout, a connect error, 408, 429, 5xx).
    pub retryable: bool,
    /// The server's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

/// Why [`retrying`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaveUp {
    /// The error is not one to retry.
    NotRetryable,
    /// The attempts allowed are spent.
    Attempts,
    /// The server asked for a longer wait than the policy waits within a call: the caller's
    /// to honour (the inbox reschedules the row).
    RetryAfter,
    /// The retry budget is spent: an outage gets about one request per call.
    Budget,
    /// The next attempt would start after the call's deadline.
    Deadline,
}

/// The last attempt's error, why there was no other, and how many attempts were made.
#[derive(Debug)]
pub struct Exhausted<E> {
    /// The last attempt's error.
    pub error: E,
    /// Why no other attempt was made.
    pub reason: GaveUp,
    /// Attempts made (1-based count).
    pub attempts: u32,
}

/// The retry loop of both of the SDK's HTTP clients (Suki's API and the EHR's FHIR server):
/// `attempt(n)` (`n` from 1) until it succeeds or `policy` says stop, with at most `attempts`
/// attempts (1 for a request that must not be sent twice), each retry taken from `budget`,
/// none starting after `deadline`. Before each retry `on_retry(error, n, delay)` is called
/// (for logs and metrics) and the loop sleeps `delay` ([`RetryPolicy::delay`]).
///
/// # Errors
/// [`Exhausted`]: the last error and why it was the last.
pub async fn retrying<T, E, A>(
    policy: &RetryPolicy,
    attempts: u32,
    budget: &impl Budget,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(u32) -> A,
    mut on_retry: impl FnMut(&E, u32, Duration),
) -> Result<T, Exhausted<E>>
where
    A: Future<Output = Result<T, Failed<E>>>,
{
    budget.deposit();
    let mut n = 0u32;
    loop {
        n += 1;
        let failed = match attempt(n).await {
            Ok(value) => return Ok(value),
            Err(failed) => failed,
        };
        let delay = policy.delay(n, failed.retry_after);
        let reason = if !failed.retryable {
            Some(GaveUp::NotRetryable)
        } else if n >= attempts {
            Some(GaveUp::Attempts)
        } else if failed
            .retry_after
            .is_some_and(|after| after > policy.longest_retry_after())
        {
            Some(GaveUp::RetryAfter)
        } else if !budget.withdraw() {
            Some(GaveUp::Budget)
        } else if Instant::now()
            .checked_add(delay)
            .is_none_or(|resume| deadline.is_some_and(|d| resume >= d))
        {
            // A wait that passes the deadline (or any representable time: a server's
            // `Retry-After` is input) ends the call with the server's error.
            Some(GaveUp::Deadline)
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Exhausted {
                error: failed.error,
                reason,
                attempts: n,
            });
        }
        on_retry(&failed.error, n, delay);
        tokio::time::sleep(delay).await;
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (relative to now). `None` when absent or
/// unreadable.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any attempt number, any `Retry-After` (a server value) and any cap give a delay
        /// without panicking, never above the cap that applies.
        #[test]
        fn delays_never_panic(
            attempt in proptest::num::u32::ANY,
            retry_after in proptest::option::of(proptest::num::u64::ANY),
            cap_secs in proptest::num::u64::ANY,
        ) {
            let policy = RetryPolicy::default()
                .max_retry_after(Duration::from_secs(cap_secs))
                .max_delay(Duration::MAX);
            let wait = retry_after.map(Duration::from_secs);
            let delay = policy.delay(attempt, wait);
            if let Some(wait) = wait {
                proptest::prop_assert_eq!(delay, wait.min(Duration::from_secs(cap_secs)));
            }
            let text = retry_after.map(|s| s.to_string()).unwrap_or_default();
            let _ = parse_retry_after(&text);
        }
    }

    #[test]
    fn full_jitter_stays_within_the_exponential_cap() {
        let p = RetryPolicy::default()
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(350));
        for _ in 0..1000 {
            assert!(p.delay(1, None) <= Duration::from_millis(100));
            assert!(p.delay(2, None) <= Duration::from_millis(200));
            assert!(p.delay(3, None) <= Duration::from_millis(350));
            assert!(p.delay(40, None) <= Duration::from_millis(350));
        }
        // Jitter actually varies.
        let samples: std::collections::HashSet<_> = (0..50).map(|_| p.delay(3, None)).collect();
        assert!(samples.len() > 10);
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = RetryPolicy::default().max_retry_after(Duration::from_secs(10));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(300))),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn retry_after_formats() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        let in_5s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(5));
        let parsed = parse_retry_after(&in_5s).unwrap();
        assert!(
            parsed <= Duration::from_secs(5) && parsed >= Duration::from_secs(3),
            "{parsed:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn at_least_one_attempt() {
        assert_eq!(RetryPolicy::default().max_attempts(0).attempts(), 1);
        assert_eq!(RetryPolicy::none().attempts(), 1);
    }

    /// `retrying` with a failing attempt: how many attempts ran and why it stopped.
    async fn run_failing(
        policy: RetryPolicy,
        attempts: u32,
        retryable: bool,
        retry_after: Option<Duration>,
        deadline: Option<Instant>,
    ) -> (u32, GaveUp, u32) {
        let budget = policy.budget(100);
        let ran = std::sync::atomic::AtomicU32::new(0);
        let mut retries = 0;
        let stopped = retrying(
            &policy,
            attempts,
            &budget,
            deadline,
            |_| async {
                ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err::<(), _>(Failed {
                    error: "503",
                    retryable,
                    retry_after,
                })
            },
            |_, _, _| retries += 1,
        )
        .await
        .expect_err("always fails");
        assert_eq!(stopped.error, "503");
        assert_eq!(stopped.attempts, ran.into_inner());
        (stopped.attempts, stopped.reason, retries)
    }

    #[tokio::test]
    async fn the_shared_loop_stops_for_each_reason() {
        let quick = RetryPolicy::default()
            .base_delay(Duration::from_millis(1))
            .max_delay(Duration::from_millis(2));
        assert_eq!(
            run_failing(quick, 3, true, None, None).await,
            (3, GaveUp::Attempts, 2)
        );
        assert_eq!(
            run_failing(quick, 3, false, None, None).await,
            (1, GaveUp::NotRetryable, 0)
        );
        assert_eq!(
            run_failing(quick, 3, true, Some(Duration::from_secs(60)), None).await,
            (1, GaveUp::RetryAfter, 0)
        );
        let soon = Some(Instant::now() + Duration::from_millis(40));
        assert_eq!(
            run_failing(quick, 3, true, Some(Duration::from_secs(1)), soon).await,
            (1, GaveUp::Deadline, 0)
        );
        // A budget of 0 % and no reserve: the first retry is refused.
        let spent = quick.retry_budget(0);
        let budget = spent.budget(0);
        let stopped = retrying(
            &spent,
            3,
            &budget,
            None,
            |_| async {
                Err::<(), _>(Failed {
                    error: (),
                    retryable: true,
                    retry_after: None,
                })
            },
            |_, _, _| {},
        )
        .await
        .expect_err("fails");
        assert_eq!((stopped.attempts, stopped.reason), (1, GaveUp::Budget));
        // Success on the second attempt.
        let budget = quick.budget(1);
        let value = retrying(
            &quick,
            3,
            &budget,
            None,
            |n| async move {
                if n < 2 {
                    Err(Failed {
                        error: (),
                        retryable: true,
                        retry_after: None,
                    })
                } else {
                    Ok(n)
                }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(value.ok(), Some(2));
    }
}
