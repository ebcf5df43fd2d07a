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

impl UnixMillis {
    /// The system clock now.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
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
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}
