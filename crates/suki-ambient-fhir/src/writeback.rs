//! `FhirWriteBack`: a [`ResultsHandler`] that maps each completed session's results and writes
//! them to the EHR, inside the inbox worker: a failed write retries the row, a permanent one makes
//! it a dead letter with a code (`fhir_422_invalid`), and a repeated one creates nothing.
//! Sessions that end without a note reach [`NoNote`]: a WARN, or a `Communication` or `Task` in
//! the chart.

use std::fmt;
use std::future::Future;

use async_trait::async_trait;
use serde_json::{Map, Value};
use suki_ambient_client::{ClientError, SessionResults};
use suki_ambient_core::{
    EncounterId, EventKind, HandlerError, LinkKind, SessionCompleted, SessionEnded, SessionFailed,
    SessionId,
};
use suki_ambient_inbox::{Coded, InboxMeta, LinkNeeds, Permanent, ResultsHandler, Unavailable};

use crate::map::{NoNoteResource, no_note};
use crate::{
    EhrContext, FhirClient, FhirError, MapError, Mapping, OnConflict, SessionNote,
    TransactionBundle, transaction,
};

/// The session an [`EhrResolver`] places in the EHR: its ids, the encounter's sessions, the
/// `additional_info` the partner gave Suki, and the inbox row. `Debug` shows the ids and kind
/// only (`additional_info` is the partner's, and may hold anything).
#[derive(Clone)]
#[non_exhaustive]
pub struct SessionRef {
    /// What happened to the session: `Completed`, or `Failed`/`TimedOut`/`Cancelled` (the
    /// resolver is asked for those only when [`NoNote`] writes to the chart).
    pub kind: EventKind,
    /// The session.
    pub session_id: SessionId,
    /// Suki's encounter id: the key of your lookup.
    pub encounter_id: EncounterId,
    /// The encounter's sessions so far, in order (a completed session's webhook lists them).
    pub sessions: Vec<SessionId>,
    /// The partner's `additional_info`, when sent.
    pub additional_info: Option<Map<String, Value>>,
    /// The inbox row.
    pub meta: InboxMeta,
}

impl SessionRef {
    /// The string `additional_info[key]`, when there is one.
    pub fn info(&self, key: &str) -> Option<&str> {
        self.additional_info.as_ref()?.get(key)?.as_str()
    }

    /// The session of the same encounter before this one (its note is the one this session's
    /// replaces: [`EhrContext::replaces`]).
    pub fn previous_session(&self) -> Option<&SessionId> {
        let at = self.sessions.iter().position(|s| *s == self.session_id)?;
        at.checked_sub(1)
            .and_then(|before| self.sessions.get(before))
    }
}

impl fmt::Debug for SessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRef")
            .field("kind", &self.kind)
            .field("session_id", &self.session_id)
            .field("encounter_id", &self.encounter_id)
            .field("sessions", &self.sessions.len())
            .field("meta", &self.meta.id)
            .finish_non_exhaustive()
    }
}

/// Where a session's note belongs in the EHR: the Patient, Encounter and Practitioner, found by
/// the integrator (a lookup of Suki's encounter id in your scheduling data or the EHR's
/// `Encounter?identifier=…`, or the `additional_info` the partner gave Suki). It may await.
///
/// Any `Fn(SessionRef) -> impl Future<Output = Result<EhrContext, HandlerError>>` is one:
///
/// ```
/// use suki_ambient_core::HandlerError;
/// use suki_ambient_fhir::{EhrContext, Reference, SessionRef};
/// use suki_ambient_inbox::Permanent;
///
/// let resolve = |session: SessionRef| async move {
///     // e.g. `GET [ehr]/Encounter?identifier=urn:partner:encounter|<id>` with your client.
///     let encounter = format!("Encounter/{}", session.encounter_id.as_str());
///     let patient = session.info("ehr_patient").ok_or(Permanent("no_ehr_patient"))?;
///     Ok::<_, HandlerError>(
///         EhrContext::new(Reference::parse(patient)?).encounter(Reference::parse(&encounter)?),
///     )
/// };
/// # fn is_resolver(_: impl suki_ambient_fhir::EhrResolver) {}
/// # is_resolver(resolve);
/// ```
///
/// Return an error to retry the row later (`Err(Box::new(Snooze::new(…)))` when the encounter
/// is not open in the EHR yet, without spending an attempt), or [`Permanent`] to make it a dead
/// letter: a session is never written to a chart the resolver did not name.
#[async_trait]
pub trait EhrResolver: Send + Sync + 'static {
    /// The EHR context of `session`.
    async fn resolve(&self, session: SessionRef) -> Result<EhrContext, HandlerError>;
}

#[async_trait]
impl<F, Fut> EhrResolver for F
where
    F: Fn(SessionRef) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<EhrContext, HandlerError>> + Send + 'static,
{
    async fn resolve(&self, session: SessionRef) -> Result<EhrContext, HandlerError> {
        self(session).await
    }
}

/// What [`FhirWriteBack`] does with a session that ended without a note (failed, timed out,
/// cancelled): the clinician still has a visit to document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoNote {
    /// A WARN naming the session, the encounter and Suki's code (the default); the row ends
    /// `done`. Wire the log (or the inbox's `suki_inbox_processed_total{kind="failed"}`) to
    /// your alerting.
    #[default]
    Warn,
    /// The WARN, and a completed `Communication` in the chart (to the practitioner, when the
    /// resolver gives one): "Suki Ambient produced no note for this visit…".
    Communication,
    /// The WARN, and a requested `Task` in the chart ("Document the visit"), owned by the
    /// practitioner when the resolver gives one: it shows on a work list.
    ///
    /// With either, an EHR whose CapabilityStatement declares no create of the resource makes
    /// the row a dead letter `fhir_no_note_not_writable` (switch to `Warn`, or discard it).
    Task,
}

/// Writes each completed session to the EHR from within the inbox's worker: use it as the
/// handler of [`FetchResults`](suki_ambient_inbox::FetchResults), which fetches only the note
/// (required) and the structured data (optional) before it is called.
///
/// - The note and, when fetched, the structured data are mapped with [`transaction`], dated by
///   the webhook's `generated-at`, and written with the [`FhirClient`]'s
///   [`WriteStrategy`](crate::WriteStrategy): every attempt writes the same resources.
/// - A retryable failure of the EHR (a 503 or a timeout outlasting the FHIR client's own
///   retries) fails the attempt with `fhir_503_…`: the worker retries the row with back-off;
///   a permanent one (`fhir_422_invalid`, `fhir_401`) makes it a dead letter, visible in the
///   console, the CLI and the metrics. Conditional creates make a retried write create nothing
///   twice.
/// - A note with no text is a dead letter `fhir_empty_note` (discard it if that is expected); a
///   session whose webhook has no `contents` link, `fhir_no_note`.
/// - Failed, timed-out and cancelled sessions have no note: [`NoNote`] says what happens.
///
/// # Example
///
/// ```no_run
/// use suki_ambient_client::AmbientClient;
/// use suki_ambient_fhir::{
///     BearerToken, EhrContext, FhirClient, FhirWriteBack, NoNote, Reference, SessionRef,
/// };
/// use suki_ambient_inbox::{FetchResults, Inbox, InboxWorker};
///
/// # async fn run(suki: AmbientClient, inbox: Inbox) -> Result<(), Box<dyn std::error::Error>> {
/// let ehr = FhirClient::builder("https://ehr.example/fhir/R4")
///     .auth(BearerToken::new(std::env::var("EHR_TOKEN")?))
///     .build()?;
/// let write_back = FhirWriteBack::new(ehr, |session: SessionRef| async move {
///     // Your lookup from Suki's encounter id to the EHR's references.
///     let _ = session.encounter_id;
///     Ok(EhrContext::new(Reference::parse("Patient/123")?))
/// })
/// .on_no_note(NoNote::Task);
/// let worker = InboxWorker::builder(inbox, FetchResults::new(suki, write_back)).build();
/// # let _ = worker;
/// # Ok(())
/// # }
/// ```
pub struct FhirWriteBack<R> {
    client: FhirClient,
    /// The EHR's name for its breaker: `ehr:<host>`.
    destination: String,
    resolver: R,
    mapping: Mapping,
    no_note: NoNote,
    on_conflict: OnConflict,
}

impl<R> fmt::Debug for FhirWriteBack<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FhirWriteBack")
            .field("client", &self.client)
            .field("mapping", &self.mapping)
            .field("no_note", &self.no_note)
            .field("on_conflict", &self.on_conflict)
            .finish_non_exhaustive()
    }
}

impl<R: EhrResolver> FhirWriteBack<R> {
    /// Writes with `client` what `resolver` places, with the default [`Mapping`].
    pub fn new(client: FhirClient, resolver: R) -> Self {
        let url = client.base_url();
        let destination = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("ehr:{host}:{port}"),
            (Some(host), None) => format!("ehr:{host}"),
            (None, _) => "ehr".to_owned(),
        };
        Self {
            client,
            destination,
            resolver,
            mapping: Mapping::default(),
            no_note: NoNote::default(),
            on_conflict: OnConflict::default(),
        }
    }

    /// What happens when the EHR already has different resources under a session's
    /// identifiers (another chart, a changed note): default [`OnConflict::Fail`], a dead letter
    /// `fhir_conflict` naming them (the WARN and the row's timeline); after fixing the resolver,
    /// `OnConflict::Supersede` and a retry correct the chart.
    #[must_use]
    pub fn on_conflict(mut self, on_conflict: OnConflict) -> Self {
        self.on_conflict = on_conflict;
        self
    }

    /// Maps with `mapping`'s choices.
    #[must_use]
    pub fn mapping(mut self, mapping: Mapping) -> Self {
        self.mapping = mapping;
        self
    }

    /// What a session without a note leaves (default [`NoNote::Warn`]).
    #[must_use]
    pub fn on_no_note(mut self, no_note: NoNote) -> Self {
        self.no_note = no_note;
        self
    }

    /// Writes `bundle`: `Ok`, or the row's error (retryable or a dead letter, with its code).
    /// The outcome (each resource's id and what happened to it, the parts skipped and why, and
    /// `also`) is recorded in the row's timeline.
    async fn write(
        &self,
        bundle: &TransactionBundle,
        session: &SessionId,
        meta: &InboxMeta,
        also: &[&str],
    ) -> Result<(), HandlerError> {
        // The EHR's breaker: while the EHR is down, the row waits (no attempt, no request).
        meta.reach(&self.destination).await?;
        match self
            .client
            .write_checked(bundle, self.on_conflict, meta.attempt > 1)
            .await
        {
            Ok(result) => {
                tracing::info!(
                    id = meta.id,
                    session = %session,
                    created = result.created(),
                    matched = result.matched(),
                    corrected = result.corrected.len(),
                    skipped = result.skipped.len(),
                    "suki fhir: session written to the EHR"
                );
                meta.record(&outcome(&result, also));
                Ok(())
            }
            Err(err) => Err(row_error(&err, session, meta, &self.destination)),
        }
    }

    /// A session that ended without a note: the WARN, and what [`NoNote`] writes.
    async fn no_note(&self, session: SessionRef, code: Option<&str>) -> Result<(), HandlerError> {
        // Suki's code, kept to an identifier (it is logged and written to the chart); never
        // empty: a timed-out or cancelled session says so.
        let code: String = code
            .map(|c| {
                c.chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                    .take(64)
                    .collect::<String>()
            })
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| no_note_code(session.kind).to_owned());
        tracing::warn!(
            id = session.meta.id,
            session = %session.session_id,
            encounter = %session.encounter_id,
            kind = %session.kind,
            code = %code,
            "suki fhir: the session ended without a note; the visit needs documenting another way"
        );
        crate::metrics::no_note(session.kind);
        let said = format!("no note: {} ({code})", session.kind);
        let resource = match self.no_note {
            NoNote::Warn => {
                session.meta.record(&said);
                return Ok(());
            }
            NoNote::Communication => NoNoteResource::Communication,
            NoNote::Task => NoNoteResource::Task,
        };
        let (kind, id, meta) = (
            session.kind,
            session.session_id.clone(),
            session.meta.clone(),
        );
        let ehr = self.resolver.resolve(session).await?;
        meta.reach(&self.destination).await?;
        let bundle = no_note(
            &id,
            kind,
            Some(code.as_str()),
            meta.generated_at,
            &ehr,
            resource,
        )
        .map_err(|_| -> HandlerError { Box::new(Permanent("fhir_mapping")) })?;
        match self
            .client
            .write_checked(&bundle, self.on_conflict, meta.attempt > 1)
            .await
        {
            // An EHR that declares no create of the resource: said (the WARN, the skip counted,
            // the row's outcome), and the row ends; retrying would not change the EHR.
            Ok(result) => {
                if result.entries.is_empty() {
                    tracing::warn!(
                        id = meta.id,
                        session = %id,
                        "suki fhir: the EHR takes no {} (its CapabilityStatement); nothing written to the chart",
                        if resource == NoNoteResource::Task { "Task" } else { "Communication" }
                    );
                }
                meta.record(&outcome(&result, &[&said]));
                Ok(())
            }
            Err(err) => Err(row_error(&err, &id, &meta, &self.destination)),
        }
    }
}

/// The row's outcome: what the write did, then `also`.
fn outcome(result: &crate::TransactionResult, also: &[&str]) -> String {
    let mut text = result.to_string();
    for extra in also {
        if !text.is_empty() {
            text.push_str("; ");
        }
        text.push_str(extra);
    }
    text
}

/// Suki's code for a session that ended without a note and without a code of its own.
fn no_note_code(kind: EventKind) -> &'static str {
    match kind {
        EventKind::TimedOut => "timeout",
        EventKind::Cancelled => "cancelled",
        EventKind::Failed => "failed",
        _ => "no_note",
    }
}

/// An optional link's answer, as the note needs it.
enum Part<T> {
    Fetched(T),
    /// Suki has none: the status (404, 410).
    Absent(u16),
    /// The event does not link it.
    NotLinked,
    /// Not fetched for this event (a single-session encounter's encounter content).
    NotAsked,
}

impl<T> Part<T> {
    /// What the outcome says of a part the note goes without.
    fn absence(&self, what: &str) -> Option<String> {
        match self {
            Self::Absent(status) => Some(format!("{what} absent ({status})")),
            Self::NotLinked => Some(format!("{what} not linked")),
            Self::Fetched(_) | Self::NotAsked => None,
        }
    }
}

/// An optional link's answer: fetched, or absent (404/410, or not linked: the note goes
/// without it, said); any other failure is the row's error (retried when transient, else a
/// dead letter `fetch_<link>_<code>`).
fn optional_part<T>(
    link: &str,
    answer: Option<Result<T, ClientError>>,
    session: &SessionId,
    meta: &InboxMeta,
) -> Result<Part<T>, HandlerError> {
    match answer {
        Some(Ok(value)) => Ok(Part::Fetched(value)),
        Some(Err(err)) if matches!(err.status(), Some(404 | 410)) => {
            let status = err.status().unwrap_or_default();
            tracing::warn!(
                id = meta.id,
                session = %session,
                link,
                status,
                "suki fhir: Suki has no such part for the session; the note is written without it"
            );
            Ok(Part::Absent(status))
        }
        Some(Err(err)) => Err(link_failure(link, &err, session, meta)),
        None => Ok(Part::NotLinked),
    }
}

/// The row's error when an optional link could not be fetched and is not absent: retried
/// when the failure is (a 503, a timeout), else a dead letter naming the link.
fn link_failure(
    link: &str,
    err: &ClientError,
    session: &SessionId,
    meta: &InboxMeta,
) -> HandlerError {
    let what = match (err.status(), err.code()) {
        (Some(status), Some(code)) => format!("{status}_{code}"),
        (Some(status), None) => status.to_string(),
        (None, _) => match err {
            ClientError::Timeout { .. } => "timeout".to_owned(),
            ClientError::Decode { .. } => "decode".to_owned(),
            _ => "transport".to_owned(),
        },
    };
    let code = format!("fetch_{link}_{what}");
    if err.is_outage() {
        // Suki's API is unavailable: the row waits for it (its breaker), no attempt spent.
        let unavailable = Unavailable::new("suki", &code);
        return Box::new(match err.retry_after() {
            Some(after) => unavailable.retry_after(after),
            None => unavailable,
        });
    }
    tracing::warn!(
        id = meta.id,
        session = %session,
        error = %code,
        retryable = err.is_retryable(),
        link,
        "suki fhir: a part of the note could not be fetched; the note is not written without it"
    );
    Box::new(if err.is_retryable() {
        Coded::retryable(&code)
    } else {
        Coded::permanent(&code)
    })
}

/// The row's error for a failed write: the EHR unavailable (the row waits for it without
/// spending an attempt), or retryable or permanent, with the error's code.
fn row_error(
    err: &FhirError,
    session: &SessionId,
    meta: &InboxMeta,
    destination: &str,
) -> HandlerError {
    let code = err.code();
    if err.is_outage() {
        tracing::warn!(
            id = meta.id,
            session = %session,
            error = %code,
            destination,
            "suki fhir: the EHR is unavailable; the row waits for it"
        );
        let unavailable = Unavailable::new(destination, &code);
        return Box::new(match err.retry_after() {
            Some(after) => unavailable.retry_after(after),
            None => unavailable,
        });
    }
    tracing::warn!(
        id = meta.id,
        session = %session,
        error = %code,
        retryable = err.is_retryable(),
        "suki fhir: writing the session to the EHR failed"
    );
    Box::new(match (err.is_retryable(), err.retry_after()) {
        (true, Some(after)) => Coded::retryable(&code).retry_after(after),
        (true, None) => Coded::retryable(&code),
        (false, _) => Coded::permanent(&code),
    })
}

#[async_trait]
impl<R: EhrResolver> ResultsHandler for FhirWriteBack<R> {
    async fn on_results(
        &self,
        event: SessionCompleted,
        results: SessionResults,
        meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        let session_content = match results.contents {
            Some(Ok(content)) => content,
            // A required link that failed never reaches the handler; an optional one may.
            Some(Err(err)) => return Err(Box::new(err)),
            None => return Err(Box::new(Permanent("fhir_no_note"))),
        };
        let mut said: Vec<String> = Vec::new();
        // An encounter recorded in several sessions: the current note is the encounter-level
        // content (every session's), replacing the encounter's previous note; a session's own
        // content covers that session only. Without it (not linked, 404/410) the session's own
        // note is written, as for a single-session encounter.
        let several = event.sessions.len() > 1;
        let encounter = if several {
            optional_part(
                "encounter_content",
                results.encounter_content,
                &event.session_id,
                &meta,
            )?
        } else {
            Part::NotAsked
        };
        let (content, structured, encounter_note) = match encounter {
            Part::Fetched(content) => {
                said.push(format!(
                    "note: the encounter's ({} sessions)",
                    event.sessions.len()
                ));
                let structured = optional_part(
                    "encounter_structured_data",
                    results.encounter_structured_data,
                    &event.session_id,
                    &meta,
                )?;
                (content, structured, true)
            }
            other => {
                if let Some(why) = other.absence("encounter content") {
                    said.push(why);
                }
                // Structured data is part of the note when the event links it: a transient
                // failure retries the row (what was fetched is kept for the next attempt), a
                // permanent one that is not an absence is a dead letter naming it; only a link
                // that is absent (none, or 404/410) writes the note without diagnoses and
                // orders, recorded in the outcome.
                let structured = optional_part(
                    "structured_data",
                    results.structured_data,
                    &event.session_id,
                    &meta,
                )?;
                (session_content, structured, false)
            }
        };
        let structured = match structured {
            Part::Fetched(structured) => Some(structured),
            other => {
                if let Some(why) = other.absence("structured data") {
                    said.push(why);
                }
                None
            }
        };
        let session = SessionRef {
            kind: EventKind::Completed,
            session_id: event.session_id.clone(),
            encounter_id: event.encounter_id.clone(),
            sessions: event.sessions.clone(),
            additional_info: event.additional_info.clone(),
            meta: meta.clone(),
        };
        let previous = session.previous_session().cloned();
        let mut ehr = self.resolver.resolve(session).await?;
        if encounter_note
            && ehr.replaces.is_none()
            && let Some(previous) = previous
        {
            ehr = ehr.replaces(previous);
        }
        let mut note = SessionNote::new(&event.session_id, &content, meta.generated_at);
        if let Some(structured) = &structured {
            note = note.structured_data(structured);
        }
        let bundle = match transaction(&note, &ehr, &self.mapping) {
            Ok(bundle) => bundle,
            Err(MapError::EmptyNote) => return Err(Box::new(Permanent("fhir_empty_note"))),
            Err(_) => return Err(Box::new(Permanent("fhir_mapping"))),
        };
        let also: Vec<&str> = said.iter().map(String::as_str).collect();
        self.write(&bundle, &event.session_id, &meta, &also).await
    }

    async fn on_failed(&self, event: SessionFailed, meta: InboxMeta) -> Result<(), HandlerError> {
        let session = SessionRef {
            kind: EventKind::Failed,
            session_id: event.session_id,
            encounter_id: event.encounter_id,
            sessions: Vec::new(),
            additional_info: None,
            meta,
        };
        self.no_note(session, Some(event.error_code.as_str())).await
    }

    async fn on_ended(
        &self,
        kind: EventKind,
        event: SessionEnded,
        meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        let session = SessionRef {
            kind,
            session_id: event.session_id,
            encounter_id: event.encounter_id,
            sessions: Vec::new(),
            additional_info: event.additional_info,
            meta,
        };
        self.no_note(session, None).await
    }

    /// The note is required; the structured data is fetched as optional so that its absence
    /// (404/410) writes the note without diagnoses and orders, while its other failures retry
    /// the row or make it a dead letter (`fetch_structured_data_…`); for an encounter of
    /// several sessions, the encounter's content and structured data too; nothing else.
    fn links(&self) -> Option<LinkNeeds> {
        Some(
            LinkNeeds::required(&[LinkKind::Contents])
                .optional(&[LinkKind::StructuredData])
                .encounter(&[
                    LinkKind::EncounterContent,
                    LinkKind::EncounterStructuredData,
                ]),
        )
    }
}
