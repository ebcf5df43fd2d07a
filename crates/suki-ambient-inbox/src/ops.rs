//! What operators read and do, beside the application's names at the crate root: counts, traces,
//! the dead letters and their groups, pauses, destinations, health's parts, the reconciler's
//! checks, and the audit log's entries (its chain is in [`audit`](crate::audit)). The console
//! and the CLI are built on these.

pub use crate::expect::{CheckOutcome, Resolution};
pub use crate::health::{DestinationHealth, Problem, Readiness};
pub use crate::reconciler::{CheckReport, polled_event, polled_kind};
pub use crate::records::{
    AuditEntry, Counts, DeadFilter, DeadGroup, DestinationDown, DestinationRecord,
    ExpectationCounts, HourCount, InboxStatus, KeyCheck, Pause, RekeyReport, Source, TimelineEvent,
    Trace,
};
