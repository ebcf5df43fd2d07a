//! Time: `UnixMillis` (the unit of `generated-at`), the `Clock` the freshness check reads, the
//! system clock and a `FixedClock` for tests.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Unix time in milliseconds, the unit of `generated-at`.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixMillis(pub u64);

/// `d` in whole milliseconds, saturating at `u64::MAX` (a `Duration` holds more): the one
/// conversion every part of the SDK uses for times and timeouts it stores or logs.
///
/// ```
/// use std::time::Duration;
/// use suki_ambient_core::time::{UnixMillis, millis};
///
/// assert_eq!(millis(Duration::from_secs(2)), 2_000);
/// assert_eq!(millis(Duration::MAX), u64::MAX);
/// assert_eq!(UnixMillis(5).saturating_sub(Duration::from_millis(9)), UnixMillis(0));
/// assert_eq!(UnixMillis(u64::MAX - 1).saturating_add(Duration::MAX), UnixMillis(u64::MAX));
/// ```
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl UnixMillis {
    /// The system clock now.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self(millis(since))
    }

    /// `d` later, saturating.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(millis(d)))
    }

    /// `d` earlier, saturating at 0.
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(millis(d)))
    }

    /// The number of milliseconds.
    pub fn into_inner(self) -> u64 {
        self.0
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u64> for UnixMillis {
    fn from(ms: u64) -> Self {
        Self(ms)
    }
}

/// A source of the current time for the freshness check.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> UnixMillis;
}

/// The system clock (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        UnixMillis::now()
    }
}

/// A clock that stands still until told to move; clones share the same time. For tests.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use suki_ambient_core::time::{Clock, FixedClock, UnixMillis};
///
/// let clock = FixedClock::new(UnixMillis(1_000));
/// clock.advance(Duration::from_millis(500));
/// assert_eq!(clock.now(), UnixMillis(1_500));
/// ```
#[derive(Clone, Debug, Default)]
pub struct FixedClock(Arc<AtomicU64>);

impl FixedClock {
    /// A clock showing `at`.
    pub fn new(at: UnixMillis) -> Self {
        Self(Arc::new(AtomicU64::new(at.0)))
    }

    /// Sets the time.
    pub fn set(&self, at: UnixMillis) {
        self.0.store(at.0, Ordering::SeqCst);
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(millis(by), Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}
