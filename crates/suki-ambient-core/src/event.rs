//! Webhook models: `WebhookEvent` and its variants, `ErrorCode`, `EventKind` (links are in
//! `links`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::redact::{Count, RedactedStr};
use crate::{EncounterId, Links, PayloadError, SessionId};

/// One webhook delivery, parsed. Match on it; new variants may be added.
///
/// Parse with [`WebhookEvent::from_slice`] (or [`crate::Verified::parse`] after verification).
/// A `status` this SDK does not recognise becomes [`WebhookEvent::Unknown`] with the raw JSON:
/// acknowledge it, since Suki does not re-deliver.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum WebhookEvent {
    /// `status: "success"`: the session's note, structured data and transcript are ready.
    Completed(SessionCompleted),
    /// `status: "failure"`: the session failed (e.g. transcription error).
    Failed(SessionFailed),
    /// The session timed out (status spelling undocumented; see [`EventKind::from_status`]).
    TimedOut(SessionEnded),
    /// The session was cancelled (status spelling undocumented; see [`EventKind::from_status`]).
    Cancelled(SessionEnded),
    /// A status this SDK does not know, with the raw JSON.
    Unknown(UnknownEvent),
}

/// A completed session (`status: "success"`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionCompleted {
    /// The session that completed.
    pub session_id: SessionId,
    /// The encounter it belongs to.
    pub encounter_id: EncounterId,
    /// The encounter's session ids so far (empty when absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<SessionId>,
    /// Free-form extra information (e.g. `{"priority": "high"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_info: Option<Map<String, Value>>,
    /// Where to fetch the results.
    #[serde(rename = "_links", default, skip_serializing_if = "Links::is_empty")]
    pub links: Links,
}

/// A failed session (`status: "failure"`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionFailed {
    /// The session that failed.
    pub session_id: SessionId,
    /// The encounter it belongs to.
    pub encounter_id: EncounterId,
    /// Why it failed.
    pub error_code: ErrorCode,
    /// A human-readable detail (may be empty).
    #[serde(default)]
    pub error_detail: String,
}

/// A session that ended without a result: timed out or cancelled.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnded {
    /// The raw `status` string as sent.
    pub status: String,
    /// The session that ended.
    pub session_id: SessionId,
    /// The encounter it belongs to.
    pub encounter_id: EncounterId,
    /// Free-form extra information, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_info: Option<Map<String, Value>>,
}

/// An event whose `status` is not recognised. Carries the ids when present and the raw JSON.
#[derive(Clone, PartialEq)]
pub struct UnknownEvent {
    /// The raw `status` string.
    pub status: String,
    /// `session_id`, when it is a string.
    pub session_id: Option<SessionId>,
    /// `encounter_id`, when it is a string.
    pub encounter_id: Option<EncounterId>,
    /// The whole payload.
    pub raw: Map<String, Value>,
}

/// Which kind of event a [`WebhookEvent`] is. Serializes as [`as_str`](Self::as_str) spells it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// [`WebhookEvent::Completed`].
    Completed,
    /// [`WebhookEvent::Failed`].
    Failed,
    /// [`WebhookEvent::TimedOut`].
    TimedOut,
    /// [`WebhookEvent::Cancelled`].
    Cancelled,
    /// [`WebhookEvent::Unknown`].
    Unknown,
}

impl EventKind {
    /// A stable snake_case name (`completed`, `failed`, `timed_out`, `cancelled`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
        }
    }

    /// The kind spelled `name` exactly as [`as_str`](Self::as_str) spells it (a stored kind),
    /// if any; [`from_status`](Self::from_status) classifies a status text instead.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            "timed_out" => Some(Self::TimedOut),
            "cancelled" => Some(Self::Cancelled),
            "unknown" => Some(Self::Unknown),
            _ => None,
        }
    }

    /// Classifies a session status, case-insensitively, `-` and spaces read as `_`: the one
    /// table for the webhook's `status` and the status API's (see
    /// [`SessionStatus::event_kind`](crate::api::SessionStatus::event_kind)).
    ///
    /// | status | kind |
    /// |---|---|
    /// | `success` (the webhook's, documented), `completed` (the status API's) | completed |
    /// | `failure` (the webhook's, documented), `failed` (the status API's) | failed |
    /// | `timeout`, `timed_out`, `timedout`, `time_out`, `session_timeout`, `session_timed_out`, `expired` | timed out |
    /// | `cancelled`, `canceled`, `cancel`, `aborted` (the status API's), `session_cancelled`, `session_canceled` | cancelled |
    /// | anything else | unknown |
    ///
    /// The webhook statuses of timeouts and cancellations are not documented: the spellings
    /// above are the likely ones. An unknown status is still acknowledged and stored.
    ///
    /// ```
    /// use suki_ambient_core::EventKind;
    ///
    /// assert_eq!(EventKind::from_status("SUCCESS"), EventKind::Completed);
    /// assert_eq!(EventKind::from_status("Timed-Out"), EventKind::TimedOut);
    /// assert_eq!(EventKind::from_status("running"), EventKind::Unknown);
    /// ```
    pub fn from_status(status: &str) -> Self {
        Known::from_status(status).map_or(Self::Unknown, Known::kind)
    }
}

/// The statuses this SDK knows: what [`WebhookEvent::from_wire`] can build. `Unknown` is not
/// one of them, so no caller can ask for it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Known {
    Completed,
    Failed,
    TimedOut,
    Cancelled,
}

impl Known {
    fn kind(self) -> EventKind {
        match self {
            Self::Completed => EventKind::Completed,
            Self::Failed => EventKind::Failed,
            Self::TimedOut => EventKind::TimedOut,
            Self::Cancelled => EventKind::Cancelled,
        }
    }

    fn from_status(status: &str) -> Option<Self> {
        let mut buf = [0u8; 24];
        let trimmed = status.trim().as_bytes();
        if trimmed.len() > buf.len() {
            return None;
        }
        let norm = &mut buf[..trimmed.len()];
        for (out, b) in norm.iter_mut().zip(trimmed) {
            *out = match b.to_ascii_lowercase() {
                b'-' | b' ' => b'_',
                other => other,
            };
        }
        Some(match &*norm {
            b"success" | b"completed" => Self::Completed,
            b"failure" | b"failed" => Self::Failed,
            b"timeout" | b"timed_out" | b"timedout" | b"time_out" | b"session_timeout"
            | b"session_timed_out" | b"expired" => Self::TimedOut,
            b"cancelled" | b"canceled" | b"cancel" | b"aborted" | b"session_cancelled"
            | b"session_canceled" => Self::Cancelled,
            _ => return None,
        })
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What identifies an event across re-sends: (session id, kind). See
/// [`WebhookEvent::idempotency_key`].
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct IdempotencyKey {
    /// The session.
    pub session_id: SessionId,
    /// The kind of event.
    pub kind: EventKind,
}

/// Why a session failed. Open set: unknown codes are kept in `Other`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `ERROR_CODE_TRANSCRIPTION`: error in transcription.
    Transcription,
    /// Any other code, as sent.
    Other(String),
}

impl ErrorCode {
    /// The code as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Transcription => "ERROR_CODE_TRANSCRIPTION",
            Self::Other(code) => code,
        }
    }
}

impl From<&str> for ErrorCode {
    fn from(code: &str) -> Self {
        match code {
            "ERROR_CODE_TRANSCRIPTION" => Self::Transcription,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Self::from(&*code))
    }
}

/// The wire shape of every event, for dispatch on `status`.
#[derive(Deserialize)]
struct Wire {
    status: String,
    #[serde(default)]
    session_id: Option<SessionId>,
    #[serde(default)]
    encounter_id: Option<EncounterId>,
    #[serde(default)]
    sessions: Option<Vec<SessionId>>,
    #[serde(default)]
    additional_info: Option<Map<String, Value>>,
    #[serde(rename = "_links", default)]
    links: Option<Links>,
    #[serde(default)]
    error_code: Option<ErrorCode>,
    #[serde(default)]
    error_detail: Option<String>,
}

impl WebhookEvent {
    /// Parses a raw webhook body.
    ///
    /// # Errors
    /// [`PayloadError`] when the body is not JSON, not an object with a string `status`, or a
    /// known status lacks a required field. The error holds no payload content.
    ///
    /// # Example
    ///
    /// ```
    /// use suki_ambient_core::{EventKind, WebhookEvent};
    ///
    /// let event = WebhookEvent::from_slice(br#"{"status":"failure","session_id":"s",
    ///     "encounter_id":"e","error_code":"ERROR_CODE_TRANSCRIPTION","error_detail":""}"#).unwrap();
    /// assert_eq!(event.kind(), EventKind::Failed);
    /// ```
    pub fn from_slice(body: &[u8]) -> Result<Self, PayloadError> {
        match serde_json::from_slice::<Wire>(body) {
            Ok(wire) => Self::classify(wire, || {
                serde_json::from_slice(body).map_err(|e| PayloadError::from_json(&e))
            }),
            // Described below, with the JSON path of the problem.
            Err(_) => Self::from_slice_slow(body),
        }
    }

    /// After the typed parse failed: an unknown status whose other fields do not fit the known
    /// shapes is still an `Unknown` event; anything else is reported with its path.
    fn from_slice_slow(body: &[u8]) -> Result<Self, PayloadError> {
        if let Ok(raw) = serde_json::from_slice::<Map<String, Value>>(body)
            && let Some(status) = Self::unknown_status(&raw)
        {
            return Ok(Self::unknown(status, raw));
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let wire = serde_path_to_error::deserialize::<_, Wire>(&mut de)
            .map_err(PayloadError::from_path_error)?;
        de.end().map_err(|e| PayloadError::from_json(&e))?;
        Self::classify(wire, || {
            serde_json::from_slice(body).map_err(|e| PayloadError::from_json(&e))
        })
    }

    /// Builds an event from an already parsed JSON value.
    ///
    /// # Errors
    /// As [`from_slice`](Self::from_slice).
    pub fn from_value(value: Value) -> Result<Self, PayloadError> {
        let Value::Object(raw) = value else {
            return Err(PayloadError::not_an_object());
        };
        match serde_path_to_error::deserialize::<_, Wire>(Value::Object(raw.clone())) {
            Ok(wire) => Self::classify(wire, || Ok(raw)),
            Err(err) => match Self::unknown_status(&raw) {
                Some(status) => Ok(Self::unknown(status, raw)),
                None => Err(PayloadError::from_path_error(err)),
            },
        }
    }

    /// The one rule for statuses: a known one builds its typed event; any other is acknowledged
    /// as `Unknown` and keeps the raw JSON (`raw` is only read then).
    fn classify(
        wire: Wire,
        raw: impl FnOnce() -> Result<Map<String, Value>, PayloadError>,
    ) -> Result<Self, PayloadError> {
        match Known::from_status(&wire.status) {
            Some(known) => Self::from_wire(known, wire),
            None => Ok(Self::unknown(wire.status, raw()?)),
        }
    }

    /// The status of `raw` when it is a string this SDK does not know (the same rule as
    /// [`classify`](Self::classify), for bodies that do not fit the typed shape).
    fn unknown_status(raw: &Map<String, Value>) -> Option<String> {
        match raw.get("status") {
            Some(Value::String(status)) if Known::from_status(status).is_none() => {
                Some(status.clone())
            }
            _ => None,
        }
    }

    fn unknown(status: String, raw: Map<String, Value>) -> Self {
        let id = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_owned);
        Self::Unknown(UnknownEvent {
            session_id: id("session_id").map(SessionId),
            encounter_id: id("encounter_id").map(EncounterId),
            status,
            raw,
        })
    }

    fn from_wire(known: Known, wire: Wire) -> Result<Self, PayloadError> {
        let session_id = wire.session_id.ok_or(PayloadError::missing("session_id"))?;
        let encounter_id = wire
            .encounter_id
            .ok_or(PayloadError::missing("encounter_id"))?;
        Ok(match known {
            Known::Completed => Self::Completed(SessionCompleted {
                session_id,
                encounter_id,
                sessions: wire.sessions.unwrap_or_default(),
                additional_info: wire.additional_info,
                links: wire.links.unwrap_or_default(),
            }),
            Known::Failed => Self::Failed(SessionFailed {
                session_id,
                encounter_id,
                error_code: wire.error_code.ok_or(PayloadError::missing("error_code"))?,
                error_detail: wire.error_detail.unwrap_or_default(),
            }),
            Known::TimedOut | Known::Cancelled => {
                let ended = SessionEnded {
                    status: wire.status,
                    session_id,
                    encounter_id,
                    additional_info: wire.additional_info,
                };
                if known == Known::Cancelled {
                    Self::Cancelled(ended)
                } else {
                    Self::TimedOut(ended)
                }
            }
        })
    }

    /// The kind of event.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::Completed(_) => EventKind::Completed,
            Self::Failed(_) => EventKind::Failed,
            Self::TimedOut(_) => EventKind::TimedOut,
            Self::Cancelled(_) => EventKind::Cancelled,
            Self::Unknown(_) => EventKind::Unknown,
        }
    }

    /// The session id (absent only for an unknown event that lacks it).
    pub fn session_id(&self) -> Option<&SessionId> {
        match self {
            Self::Completed(e) => Some(&e.session_id),
            Self::Failed(e) => Some(&e.session_id),
            Self::TimedOut(e) | Self::Cancelled(e) => Some(&e.session_id),
            Self::Unknown(e) => e.session_id.as_ref(),
        }
    }

    /// The encounter id (absent only for an unknown event that lacks it).
    pub fn encounter_id(&self) -> Option<&EncounterId> {
        match self {
            Self::Completed(e) => Some(&e.encounter_id),
            Self::Failed(e) => Some(&e.encounter_id),
            Self::TimedOut(e) | Self::Cancelled(e) => Some(&e.encounter_id),
            Self::Unknown(e) => e.encounter_id.as_ref(),
        }
    }

    /// The `status` string: `success`, `failure`, or the raw string for the other kinds.
    pub fn status_str(&self) -> &str {
        match self {
            Self::Completed(_) => "success",
            Self::Failed(_) => "failure",
            Self::TimedOut(e) | Self::Cancelled(e) => &e.status,
            Self::Unknown(e) => &e.status,
        }
    }

    /// (session id, kind): the same for every re-send of one event, unlike the replay key of a
    /// delivery. `None` for unknown events (deduplicate those by [`crate::ReplayKey`]).
    pub fn idempotency_key(&self) -> Option<IdempotencyKey> {
        match self {
            Self::Unknown(_) => None,
            _ => Some(IdempotencyKey {
                session_id: self.session_id()?.clone(),
                kind: self.kind(),
            }),
        }
    }

    /// The body as JSON bytes (what the sandbox and test builders send).
    pub fn to_vec(&self) -> Vec<u8> {
        // PANIC: every model serializes to JSON: string keys, no non-finite floats are created.
        serde_json::to_vec(self).expect("webhook models always serialize")
    }
}

impl fmt::Debug for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Completed(e) => f.debug_tuple("Completed").field(e).finish(),
            Self::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
            Self::TimedOut(e) => f.debug_tuple("TimedOut").field(e).finish(),
            Self::Cancelled(e) => f.debug_tuple("Cancelled").field(e).finish(),
            Self::Unknown(e) => f.debug_tuple("Unknown").field(e).finish(),
        }
    }
}

fn info_debug(info: &Option<Map<String, Value>>) -> Option<Count> {
    info.as_ref().map(|m| Count(m.len()))
}

impl fmt::Debug for SessionCompleted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCompleted")
            .field("session_id", &self.session_id)
            .field("encounter_id", &self.encounter_id)
            .field("sessions", &self.sessions)
            .field("additional_info", &info_debug(&self.additional_info))
            .field("links", &self.links)
            .finish()
    }
}

impl fmt::Debug for SessionFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionFailed")
            .field("session_id", &self.session_id)
            .field("encounter_id", &self.encounter_id)
            .field("error_code", &self.error_code)
            .field("error_detail", &RedactedStr(self.error_detail.len()))
            .finish()
    }
}

impl fmt::Debug for SessionEnded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionEnded")
            .field("status", &self.status)
            .field("session_id", &self.session_id)
            .field("encounter_id", &self.encounter_id)
            .field("additional_info", &info_debug(&self.additional_info))
            .finish()
    }
}

impl fmt::Debug for UnknownEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnknownEvent")
            .field("status", &RedactedStr(self.status.len()))
            .field("session_id", &self.session_id)
            .field("encounter_id", &self.encounter_id)
            .field("raw", &Count(self.raw.len()))
            .finish()
    }
}

/// Serializes a model with its `status` in front.
#[derive(Serialize)]
struct WithStatus<'a, T> {
    status: &'a str,
    #[serde(flatten)]
    inner: &'a T,
}

impl Serialize for WebhookEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Completed(e) => WithStatus {
                status: "success",
                inner: e,
            }
            .serialize(s),
            Self::Failed(e) => WithStatus {
                status: "failure",
                inner: e,
            }
            .serialize(s),
            Self::TimedOut(e) | Self::Cancelled(e) => e.serialize(s),
            Self::Unknown(e) => e.raw.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for WebhookEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl From<SessionCompleted> for WebhookEvent {
    fn from(e: SessionCompleted) -> Self {
        Self::Completed(e)
    }
}

impl From<SessionFailed> for WebhookEvent {
    fn from(e: SessionFailed) -> Self {
        Self::Failed(e)
    }
}
