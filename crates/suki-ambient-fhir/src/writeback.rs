//! `FhirWriteBack`: a [`ResultsHandler`] that maps each completed session's results and posts
//! them to the EHR, inside the inbox worker: a failed write retries the row, a permanent one makes
//! it a dead letter with a code (`fhir_422_invalid`), and a repeated one creates nothing.

use std::fmt;

use async_trait::async_trait;
use suki_ambient_client::SessionResults;
use suki_ambient_core::{
    EventKind, HandlerError, LinkKind, SessionCompleted, SessionEnded, SessionFailed,
};
use suki_ambient_inbox::{Coded, InboxMeta, LinkNeeds, Permanent, ResultsHandler};

use crate::{EhrContext, FhirClient, MapError, Mapping, SessionNote, transaction};

/// Where a session's note belongs in the EHR: the Patient, Encounter and Practitioner of a
/// completed session, found by the integrator (from the encounter id, or the
/// `additional_info` the partner gave Suki).
///
/// Return an error to retry the row later (`Err(Box::new(Snooze::new(…)))` when the encounter
/// is not open in the EHR yet, without spending an attempt), or [`Permanent`] to make it a dead
/// letter.
#[async_trait]
pub trait EhrResolver: Send + Sync + 'static {
    /// The EHR context of `event`.
    async fn resolve(
        &self,
        event: &SessionCompleted,
        meta: &InboxMeta,
    ) -> Result<EhrContext, HandlerError>;
}

#[async_trait]
impl<F> EhrResolver for F
where
    F: Fn(&SessionCompleted) -> Result<EhrContext, HandlerError> + Send + Sync + 'static,
{
    async fn resolve(
        &self,
        event: &SessionCompleted,
        _meta: &InboxMeta,
    ) -> Result<EhrContext, HandlerError> {
        self(event)
    }
}

/// Writes each completed session to the EHR as one FHIR transaction, from within the inbox's
/// worker: use it as the handler of [`FetchResults`](suki_ambient_inbox::FetchResults), whose
/// required links (the note) are fetched before it is called.
///
/// - The note and, when fetched, the structured data are mapped with [`transaction`], dated by
///   the webhook's `generated-at`, so every attempt posts the same Bundle.
/// - A retryable failure of the EHR (a 503 or a timeout outlasting the FHIR client's own
///   retries) fails the attempt with `fhir_503_…`: the worker retries the row with back-off;
///   a permanent one (`fhir_422_invalid`, `fhir_401`) makes it a dead letter, visible in the
///   console, the CLI and the metrics. Conditional creates make a retried write create nothing
///   twice.
/// - A note with no text is a dead letter `fhir_empty_note` (discard it if that is expected); a
///   session whose webhook has no `contents` link, `fhir_no_note`.
/// - Failed, timed-out and cancelled sessions have no note: nothing is written.
///
/// # Example
///
/// ```no_run
/// use suki_ambient_client::AmbientClient;
/// use suki_ambient_fhir::{BearerToken, EhrContext, FhirClient, FhirWriteBack, Reference};
/// use suki_ambient_inbox::{FetchResults, Inbox, InboxWorker, Permanent};
///
/// # async fn run(suki: AmbientClient, inbox: Inbox) -> Result<(), Box<dyn std::error::Error>> {
/// let ehr = FhirClient::builder("https://ehr.example/fhir/R4")
///     .auth(BearerToken::new(std::env::var("EHR_TOKEN")?))
///     .build()?;
/// let write_back = FhirWriteBack::new(ehr, |event: &suki_ambient_core::SessionCompleted| {
///     // Your lookup from Suki's encounter id to the EHR's references.
///     let encounter = event.encounter_id.as_str();
///     let _ = encounter;
///     Ok(EhrContext::new(Reference::parse("Patient/123").map_err(|_| Permanent("no_patient"))?))
/// });
/// let worker = InboxWorker::builder(inbox, FetchResults::new(suki, write_back)).build();
/// # let _ = worker;
/// # Ok(())
/// # }
/// ```
pub struct FhirWriteBack<R> {
    client: FhirClient,
    resolver: R,
    mapping: Mapping,
}

impl<R> fmt::Debug for FhirWriteBack<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FhirWriteBack")
            .field("client", &self.client)
            .field("mapping", &self.mapping)
            .finish_non_exhaustive()
    }
}

impl<R: EhrResolver> FhirWriteBack<R> {
    /// Posts with `client` what `resolver` places, with the default [`Mapping`].
    pub fn new(client: FhirClient, resolver: R) -> Self {
        Self {
            client,
            resolver,
            mapping: Mapping::default(),
        }
    }

    /// Maps with `mapping`'s choices.
    #[must_use]
    pub fn mapping(mut self, mapping: Mapping) -> Self {
        self.mapping = mapping;
        self
    }
}

#[async_trait]
impl<R: EhrResolver> ResultsHandler for FhirWriteBack<R> {
    async fn on_results(
        &self,
        event: SessionCompleted,
        results: SessionResults,
        meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        let content = match results.contents {
            Some(Ok(content)) => content,
            // A required link that failed never reaches the handler; an optional one may.
            Some(Err(err)) => return Err(Box::new(err)),
            None => return Err(Box::new(Permanent("fhir_no_note"))),
        };
        // Structured data is required unless the integrator made it optional: then a failed
        // fetch writes the note without its Conditions and orders, said with a WARN.
        let structured = match results.structured_data {
            Some(Ok(structured)) => Some(structured),
            Some(Err(err)) => {
                tracing::warn!(
                    id = meta.id,
                    session = %event.session_id,
                    error = %err,
                    "suki fhir: structured data could not be fetched (optional link); writing the note without diagnoses and orders"
                );
                None
            }
            None => None,
        };
        let ehr = self.resolver.resolve(&event, &meta).await?;
        let mut note = SessionNote::new(&event.session_id, &content, meta.generated_at);
        if let Some(structured) = &structured {
            note = note.structured_data(structured);
        }
        let bundle = match transaction(&note, &ehr, &self.mapping) {
            Ok(bundle) => bundle,
            Err(MapError::EmptyNote) => return Err(Box::new(Permanent("fhir_empty_note"))),
            Err(_) => return Err(Box::new(Permanent("fhir_mapping"))),
        };
        match self.client.write(&bundle).await {
            Ok(result) => {
                tracing::info!(
                    id = meta.id,
                    session = %event.session_id,
                    created = result.created(),
                    matched = result.matched(),
                    "suki fhir: session written to the EHR"
                );
                Ok(())
            }
            Err(err) => {
                let code = err.code();
                tracing::warn!(
                    id = meta.id,
                    session = %event.session_id,
                    error = %code,
                    retryable = err.is_retryable(),
                    "suki fhir: writing the session to the EHR failed"
                );
                Err(Box::new(if err.is_retryable() {
                    Coded::retryable(&code)
                } else {
                    Coded::permanent(&code)
                }))
            }
        }
    }

    async fn on_failed(&self, event: SessionFailed, meta: InboxMeta) -> Result<(), HandlerError> {
        tracing::debug!(id = meta.id, session = %event.session_id, "suki fhir: a failed session has no note to write");
        Ok(())
    }

    async fn on_ended(
        &self,
        kind: EventKind,
        event: SessionEnded,
        meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        tracing::debug!(id = meta.id, session = %event.session_id, %kind, "suki fhir: an ended session has no note to write");
        Ok(())
    }

    /// The note is required; the structured data is optional (the note is written without
    /// diagnoses and orders when it fails); nothing else is fetched.
    fn links(&self) -> Option<LinkNeeds> {
        Some(LinkNeeds::required(&[LinkKind::Contents]).optional(&[LinkKind::StructuredData]))
    }
}
