//! Webhook models: `WebhookEvent` and its variants, `Links`, `Link`, `ErrorCode`, `EventKind`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::redact::{Count, RedactedStr};
use crate::{EncounterId, PayloadError, SessionId};

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

/// Which kind of event a [`WebhookEvent`] is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
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

    /// Classifies a webhook `status` string, case-insensitively, `-` and spaces read as `_`.
    ///
    /// `success` → completed and `failure` → failed are documented. The statuses of timeouts and
    /// cancellations are not: `timeout`, `timed_out`, `timedout`, `session_timeout`,
    /// `session_timed_out`, `expired` → timed out; `cancelled`, `canceled`, `cancel`, `aborted`,
    /// `session_cancelled`, `session_canceled` → cancelled. Anything else is unknown.
    pub fn from_status(status: &str) -> Self {
        let mut buf = [0u8; 24];
        let trimmed = status.trim().as_bytes();
        if trimmed.len() > buf.len() {
            return Self::Unknown;
        }
        let norm = &mut buf[..trimmed.len()];
        for (out, b) in norm.iter_mut().zip(trimmed) {
            *out = match b.to_ascii_lowercase() {
                b'-' | b' ' => b'_',
                other => other,
            };
        }
        match &*norm {
            b"success" => Self::Completed,
            b"failure" => Self::Failed,
            b"timeout" | b"timed_out" | b"timedout" | b"session_timeout" | b"session_timed_out"
            | b"expired" => Self::TimedOut,
            b"cancelled" | b"canceled" | b"cancel" | b"aborted" | b"session_cancelled"
            | b"session_canceled" => Self::Cancelled,
            _ => Self::Unknown,
        }
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

/// A link object: `{href, method, name, type}`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Link {
    /// Path (relative to the API base URL) or absolute URL of the resource.
    pub href: String,
    /// HTTP method, e.g. `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// A name for the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Media type of the resource (`type` on the wire).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl Link {
    /// A `GET` link to `href` returning JSON.
    pub fn get(href: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            href: href.into(),
            method: Some("GET".to_owned()),
            name: Some(name.into()),
            media_type: Some("application/json".to_owned()),
        }
    }

    /// The method, `GET` when absent.
    pub fn method_or_get(&self) -> &str {
        self.method.as_deref().unwrap_or("GET")
    }
}

/// The six documented `_links` keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LinkKind {
    /// `contents`: the session's note content.
    Contents,
    /// `encounter_content`: the encounter's note content.
    EncounterContent,
    /// `structured_data`: the session's structured data.
    StructuredData,
    /// `encounter_structured_data`: the encounter's structured data.
    EncounterStructuredData,
    /// `status`: the session status.
    Status,
    /// `transcripts`: the session transcript.
    Transcripts,
}

impl LinkKind {
    /// All six, in wire order of Suki's documentation.
    pub const ALL: [Self; 6] = [
        Self::Contents,
        Self::EncounterContent,
        Self::StructuredData,
        Self::EncounterStructuredData,
        Self::Status,
        Self::Transcripts,
    ];

    /// The key in `_links`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Contents => "contents",
            Self::EncounterContent => "encounter_content",
            Self::StructuredData => "structured_data",
            Self::EncounterStructuredData => "encounter_structured_data",
            Self::Status => "status",
            Self::Transcripts => "transcripts",
        }
    }

    /// The kind for a `_links` key.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.key() == key)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// `_links`: key → list of links. The six documented keys are typed; unknown keys are kept.
#[derive(Clone, Default, PartialEq, Debug)]
pub struct Links {
    known: [Vec<Link>; 6],
    other: BTreeMap<String, Value>,
}

impl Links {
    /// The six documented links of an Ambient session, relative to the API base URL, built
    /// from the [route table](crate::api::Route) (what the sandbox sends, and a way to fetch by
    /// ids alone).
    pub fn for_session(session_id: &SessionId, encounter_id: &EncounterId) -> Self {
        use crate::api::Route;
        Self::from_routes(
            &[
                Route::SessionContent,
                Route::EncounterContent,
                Route::SessionStructuredData,
                Route::EncounterStructuredData,
                Route::SessionStatus,
                Route::SessionTranscript,
            ],
            session_id,
            encounter_id.as_str(),
        )
    }

    /// The two links of a form-filling session (`status` and `structured_data`), relative to the
    /// API base URL.
    pub fn for_form_filling(session_id: &SessionId) -> Self {
        use crate::api::Route;
        Self::from_routes(
            &[Route::FormFillingStatus, Route::FormFillingStructuredData],
            session_id,
            "",
        )
    }

    fn from_routes(
        routes: &[crate::api::Route],
        session_id: &SessionId,
        encounter_id: &str,
    ) -> Self {
        use crate::api::RouteId;
        let mut links = Self::default();
        for &route in routes {
            let Some(kind) = route.link_kind() else {
                continue;
            };
            let id = match route.id() {
                RouteId::Encounter => encounter_id,
                _ => session_id.as_str(),
            };
            links.push(kind, Link::get(route.path(id), kind.key()));
        }
        links
    }

    /// The links under a documented key (empty when absent).
    pub fn get(&self, kind: LinkKind) -> &[Link] {
        &self.known[kind.index()]
    }

    /// `contents`: the session's note content.
    pub fn contents(&self) -> &[Link] {
        self.get(LinkKind::Contents)
    }

    /// `encounter_content`.
    pub fn encounter_content(&self) -> &[Link] {
        self.get(LinkKind::EncounterContent)
    }

    /// `structured_data` (session).
    pub fn structured_data(&self) -> &[Link] {
        self.get(LinkKind::StructuredData)
    }

    /// `encounter_structured_data`.
    pub fn encounter_structured_data(&self) -> &[Link] {
        self.get(LinkKind::EncounterStructuredData)
    }

    /// `status`.
    pub fn status(&self) -> &[Link] {
        self.get(LinkKind::Status)
    }

    /// `transcripts`.
    pub fn transcripts(&self) -> &[Link] {
        self.get(LinkKind::Transcripts)
    }

    /// Every link under a documented key, with its kind.
    pub fn iter(&self) -> impl Iterator<Item = (LinkKind, &Link)> {
        LinkKind::ALL
            .into_iter()
            .flat_map(move |kind| self.get(kind).iter().map(move |link| (kind, link)))
    }

    /// Keys this SDK does not know, with their raw values.
    pub fn other(&self) -> &BTreeMap<String, Value> {
        &self.other
    }

    /// The links under an unknown key, when they have the link shape.
    pub fn other_links(&self, key: &str) -> Option<Vec<Link>> {
        serde_json::from_value(self.other.get(key)?.clone()).ok()
    }

    /// Adds a link under a documented key.
    pub fn push(&mut self, kind: LinkKind, link: Link) {
        self.known[kind.index()].push(link);
    }

    /// Adds a link under a documented key (builder style).
    #[must_use]
    pub fn with(mut self, kind: LinkKind, link: Link) -> Self {
        self.push(kind, link);
        self
    }

    /// Whether there is no link and no unknown key.
    pub fn is_empty(&self) -> bool {
        self.known.iter().all(Vec::is_empty) && self.other.is_empty()
    }
}

impl Serialize for Links {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for kind in LinkKind::ALL {
            let links = self.get(kind);
            if !links.is_empty() {
                map.serialize_entry(kind.key(), links)?;
            }
        }
        for (key, value) in &self.other {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Links {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LinksVisitor;
        impl<'de> Visitor<'de> for LinksVisitor {
            type Value = Links;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of link arrays")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Links, A::Error> {
                let mut links = Links::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match LinkKind::from_key(&key) {
                        Some(kind) => {
                            let list = map.next_value::<Option<Vec<Link>>>()?;
                            links.known[kind.index()] = list.unwrap_or_default();
                        }
                        None => {
                            let value = map.next_value::<Value>()?;
                            links.other.insert(key.into_owned(), value);
                        }
                    }
                }
                Ok(links)
            }
        }
        d.deserialize_map(LinksVisitor)
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
            Ok(wire) => {
                let kind = EventKind::from_status(&wire.status);
                if kind == EventKind::Unknown {
                    let raw = serde_json::from_slice::<Map<String, Value>>(body)
                        .map_err(|e| PayloadError::from_json(&e))?;
                    return Ok(Self::unknown(wire.status, raw));
                }
                Self::from_wire(kind, wire)
            }
            Err(_) => Self::from_slice_slow(body),
        }
    }

    /// After the typed parse failed: an unknown status whose other fields do not fit the known
    /// shapes is still an `Unknown` event; anything else is reported with its path.
    fn from_slice_slow(body: &[u8]) -> Result<Self, PayloadError> {
        if let Ok(raw) = serde_json::from_slice::<Map<String, Value>>(body)
            && let Some(Value::String(status)) = raw.get("status")
            && EventKind::from_status(status) == EventKind::Unknown
        {
            let status = status.clone();
            return Ok(Self::unknown(status, raw));
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let wire = serde_path_to_error::deserialize::<_, Wire>(&mut de)
            .map_err(PayloadError::from_path_error)?;
        de.end().map_err(|e| PayloadError::from_json(&e))?;
        Self::from_wire(EventKind::from_status(&wire.status), wire)
    }

    /// Builds an event from an already parsed JSON value.
    ///
    /// # Errors
    /// As [`from_slice`](Self::from_slice).
    pub fn from_value(value: Value) -> Result<Self, PayloadError> {
        let Value::Object(raw) = value else {
            return Err(PayloadError::not_an_object());
        };
        let wire = match serde_path_to_error::deserialize::<_, Wire>(Value::Object(raw.clone())) {
            Ok(wire) => wire,
            Err(err) => {
                if let Some(Value::String(status)) = raw.get("status")
                    && EventKind::from_status(status) == EventKind::Unknown
                {
                    let status = status.clone();
                    return Ok(Self::unknown(status, raw));
                }
                return Err(PayloadError::from_path_error(err));
            }
        };
        match EventKind::from_status(&wire.status) {
            EventKind::Unknown => Ok(Self::unknown(wire.status, raw)),
            kind => Self::from_wire(kind, wire),
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

    fn from_wire(kind: EventKind, wire: Wire) -> Result<Self, PayloadError> {
        let session_id = wire.session_id.ok_or(PayloadError::missing("session_id"))?;
        let encounter_id = wire
            .encounter_id
            .ok_or(PayloadError::missing("encounter_id"))?;
        Ok(match kind {
            EventKind::Completed => Self::Completed(SessionCompleted {
                session_id,
                encounter_id,
                sessions: wire.sessions.unwrap_or_default(),
                additional_info: wire.additional_info,
                links: wire.links.unwrap_or_default(),
            }),
            EventKind::Failed => Self::Failed(SessionFailed {
                session_id,
                encounter_id,
                error_code: wire.error_code.ok_or(PayloadError::missing("error_code"))?,
                error_detail: wire.error_detail.unwrap_or_default(),
            }),
            EventKind::TimedOut | EventKind::Cancelled | EventKind::Unknown => {
                let ended = SessionEnded {
                    status: wire.status,
                    session_id,
                    encounter_id,
                    additional_info: wire.additional_info,
                };
                if kind == EventKind::Cancelled {
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
        Self::from_value(value).map_err(de::Error::custom)
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
