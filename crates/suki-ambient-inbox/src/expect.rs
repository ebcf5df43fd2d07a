//! Expected sessions: what the integrator is waiting for, so that a session whose webhook never
//! arrived can be recovered by polling Suki's status API (the reconciler).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use suki_ambient_core::{EncounterId, SessionId, UnixMillis};

use crate::StoreError;

pub use suki_ambient_core::SessionKind;

/// A stored session kind.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn session_kind(stored: &str) -> Result<SessionKind, StoreError> {
    SessionKind::parse(stored).ok_or(StoreError::Corrupt("unknown session kind"))
}

/// How an expectation was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Its webhook reached the inbox.
    Webhook,
    /// A status poll found it ended and put its event in the inbox.
    Poll,
    /// Still not ended at the give-up age.
    GaveUp,
}

impl Resolution {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Poll => "poll",
            Self::GaveUp => "gave_up",
        }
    }
}

impl FromStr for Resolution {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "webhook" => Ok(Self::Webhook),
            "poll" => Ok(Self::Poll),
            "gave_up" => Ok(Self::GaveUp),
            _ => Err(StoreError::Corrupt("unknown resolution")),
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session the integrator expects a webhook for: tell the reconciler when a session is
/// submitted (where your front end sees the session end). `Debug` shows the ids, not the
/// `additional_info`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpectedSession {
    /// The session.
    pub session_id: SessionId,
    /// Its encounter.
    pub encounter_id: EncounterId,
    /// The provider to poll as (`sdp_provider_id`), when your partner setup needs one.
    pub provider_id: Option<String>,
    /// Ambient or form filling.
    pub kind: SessionKind,
    /// When the session ended (was submitted).
    pub ended_at: UnixMillis,
    /// The partner's context, as the webhook's `additional_info` would carry it (the EHR's
    /// patient and encounter…): a recovered session's event carries it, so that it is placed in
    /// the chart like a delivered one. Stored sealed like a body.
    pub additional_info: Option<serde_json::Map<String, serde_json::Value>>,
}

impl fmt::Debug for ExpectedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpectedSession")
            .field("session_id", &self.session_id)
            .field("encounter_id", &self.encounter_id)
            .field("provider_id", &self.provider_id)
            .field("kind", &self.kind)
            .field("ended_at", &self.ended_at)
            .field(
                "additional_info",
                &self
                    .additional_info
                    .as_ref()
                    .map(|i| format!("{} keys", i.len())),
            )
            .finish()
    }
}

impl ExpectedSession {
    /// An ambient session that ended at `ended_at`, polled with the client's own provider.
    pub fn ambient(session_id: SessionId, encounter_id: EncounterId, ended_at: UnixMillis) -> Self {
        Self {
            session_id,
            encounter_id,
            provider_id: None,
            kind: SessionKind::Ambient,
            ended_at,
            additional_info: None,
        }
    }

    /// The partner's context (what it sends Suki as `additional_info`): the event the
    /// reconciler recovers carries it, as the webhook would have.
    #[must_use]
    pub fn additional_info(mut self, info: serde_json::Map<String, serde_json::Value>) -> Self {
        self.additional_info = Some(info);
        self
    }

    /// Polls its status as this provider (`sdp_provider_id`).
    #[must_use]
    pub fn provider(mut self, provider_id: impl Into<String>) -> Self {
        self.provider_id = Some(provider_id.into());
        self
    }

    /// A form-filling session instead of an ambient one.
    #[must_use]
    pub fn form_filling(mut self) -> Self {
        self.kind = SessionKind::FormFilling;
        self
    }
}

/// A stored expectation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExpectationRecord {
    /// The session.
    pub session_id: SessionId,
    /// Its encounter.
    pub encounter_id: EncounterId,
    /// The provider to poll as.
    pub provider_id: Option<String>,
    /// Ambient or form filling.
    pub kind: SessionKind,
    /// When the session ended.
    pub ended_at: UnixMillis,
    /// When it is next checked; while claimed, when the claim's lease expires.
    pub next_check: UnixMillis,
    /// Status checks so far.
    pub checks: u32,
    /// The last status seen (`running`, `404`, `503`…).
    pub last_status: Option<String>,
    /// The reconciler holding it.
    pub lease_owner: Option<String>,
    /// The fencing token of the latest claim.
    pub fence: i64,
    /// How it was resolved, once it is.
    pub resolution: Option<Resolution>,
    /// When it was resolved.
    pub resolved_at: Option<UnixMillis>,
    /// The partner's context, sealed as the inbox stored it (not serialized, `Debug` shows its
    /// size only).
    #[serde(skip)]
    pub context: Option<SealedContext>,
}

/// An expected session's context as stored: sealed under the inbox's keys (or in clear without
/// them). `Debug` shows its size only.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedContext(Vec<u8>);

impl SealedContext {
    /// The stored bytes, as a store read them.
    pub fn from_stored(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The stored bytes, as a store writes them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SealedContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedContext({} bytes)", self.0.len())
    }
}

impl ExpectationRecord {
    /// The lease of this claim.
    pub fn lease(&self) -> ExpectationLease {
        ExpectationLease {
            session_id: self.session_id.clone(),
            fence: self.fence,
        }
    }
}

/// An expectation and the fencing token of the claim that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectationLease {
    /// The session.
    pub session_id: SessionId,
    /// The fencing token.
    pub fence: i64,
}

/// A check to record ([`Expectations::finish_checks`](crate::store::Expectations::finish_checks)): the lease it
/// held and what it concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedCheck {
    /// The expectation and the fencing token of the claim.
    pub lease: ExpectationLease,
    /// What the check concluded.
    pub outcome: CheckOutcome,
}

/// What one status check of an expected session concluded: what a pass records, what
/// [`on_check`](crate::ReconcilerBuilder::on_check) is told, what the metrics count. Each
/// carries the status seen: Suki's status text (cleaned, at most 64 characters), the HTTP
/// status of a failed call (`503`), or `unreachable`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckOutcome {
    /// Ended; this check stored its event in the inbox (recovered). Resolved as `poll`.
    Recovered {
        /// The terminal status seen.
        status: String,
    },
    /// Ended; its event was already in the inbox (its webhook came meanwhile), which resolved
    /// it.
    AlreadyStored {
        /// The terminal status seen.
        status: String,
    },
    /// Not ended yet (or not found, or Suki unavailable): checked again at `next_check`.
    Again {
        /// The status seen.
        status: String,
        /// When it is checked next.
        next_check: UnixMillis,
    },
    /// Past the give-up age without ending.
    GaveUp {
        /// The last status seen.
        status: String,
    },
}

impl CheckOutcome {
    /// The status seen.
    pub fn status(&self) -> &str {
        match self {
            Self::Recovered { status }
            | Self::AlreadyStored { status }
            | Self::Again { status, .. }
            | Self::GaveUp { status } => status,
        }
    }
}
