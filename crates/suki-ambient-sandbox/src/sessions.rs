//! Sessions: create them, and end them (complete, fail, time out, cancel) with their webhook.

use suki_ambient_core::api::SessionStatus;
use suki_ambient_core::{EncounterId, Links, SessionId, WebhookEvent, sample};

use crate::handle::{SandboxControl, SandboxError};
use crate::state::{Session, SessionKind};
use crate::synth::new_id;
use crate::{Delivery, synth};

/// Ids of a sandbox session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxSession {
    /// The session.
    pub session_id: SessionId,
    /// Its encounter.
    pub encounter_id: EncounterId,
}

impl SandboxControl {
    /// Starts an Ambient session (status `running`), in `encounter` or a new one.
    pub fn create_session(&self, encounter: Option<&EncounterId>) -> SandboxSession {
        self.create(encounter, SessionKind::Ambient)
    }

    /// Starts a form-filling session (status `running`).
    pub fn create_form_session(&self) -> SandboxSession {
        self.create(None, SessionKind::FormFilling)
    }

    fn create(&self, encounter: Option<&EncounterId>, kind: SessionKind) -> SandboxSession {
        let session_id = new_id();
        let encounter_id = encounter.map_or_else(new_id, |e| e.as_str().to_owned());
        let mut world = self.shared.world();
        world.sessions.insert(
            session_id.clone(),
            Session {
                encounter_id: encounter_id.clone(),
                kind,
                status: SessionStatus::Running,
                generated: None,
                event: None,
                additional_info: None,
            },
        );
        world
            .encounters
            .entry(encounter_id.clone())
            .or_default()
            .push(session_id.clone());
        SandboxSession {
            session_id: SessionId(session_id),
            encounter_id: EncounterId(encounter_id),
        }
    }

    /// Sets the `additional_info` the partner gave Suki for a running session: its completed
    /// webhook carries it (instead of the sandbox's own). `false` for an unknown session.
    pub fn set_additional_info(
        &self,
        id: &SessionId,
        info: serde_json::Map<String, serde_json::Value>,
    ) -> bool {
        match self.shared.world().sessions.get_mut(id.as_str()) {
            Some(session) => {
                session.additional_info = Some(info);
                true
            }
            None => false,
        }
    }

    /// Completes a session (generating its content) without delivering a webhook.
    ///
    /// # Errors
    /// [`SandboxError::UnknownSession`], [`SandboxError::AlreadyEnded`].
    pub fn complete_silently(&self, id: &SessionId) -> Result<WebhookEvent, SandboxError> {
        let mut world = self.shared.world();
        let index = world.completed;
        let session = world
            .sessions
            .get_mut(id.as_str())
            .ok_or(SandboxError::UnknownSession)?;
        ensure_running(session)?;
        session.generated = Some(synth::generate(index, id.as_str(), &self.shared.base_url));
        session.status = SessionStatus::Completed;
        let kind = session.kind;
        let encounter_id = session.encounter_id.clone();
        let info = session.additional_info.clone();
        world.completed += 1;
        let sessions = world
            .encounters
            .get(&encounter_id)
            .map(|ids| ids.iter().map(|s| SessionId(s.clone())).collect())
            .unwrap_or_default();
        let mut event = sample::completed(id.as_str(), &encounter_id);
        if let WebhookEvent::Completed(done) = &mut event {
            done.sessions = sessions;
            done.additional_info = info.or_else(|| {
                serde_json::json!({"priority": "normal", "source": "sandbox"})
                    .as_object()
                    .cloned()
            });
            if kind == SessionKind::FormFilling {
                done.links = Links::for_form_filling(id);
            }
        }
        if let Some(session) = world.sessions.get_mut(id.as_str()) {
            session.event = Some(event.clone());
        }
        Ok(event)
    }

    /// Completes a session and delivers its `success` webhook.
    ///
    /// # Errors
    /// As [`complete_silently`](Self::complete_silently), plus delivery errors.
    pub async fn complete(&self, id: &SessionId) -> Result<Delivery, SandboxError> {
        let event = self.complete_silently(id)?;
        self.deliver(&event).await
    }

    /// Serves `note` and `structured` as the content and structured data of completed session
    /// `id` (session and encounter endpoints) instead of the generated ones: your own
    /// documents, e.g. to test an EHR mapping with a note of your shape.
    ///
    /// # Errors
    /// [`SandboxError::UnknownSession`]; [`SandboxError::NotEnded`] when it has not completed.
    pub fn set_results(
        &self,
        id: &SessionId,
        note: suki_ambient_core::api::NoteContent,
        structured: suki_ambient_core::api::StructuredData,
    ) -> Result<(), SandboxError> {
        let mut world = self.shared.world();
        let session = world
            .sessions
            .get_mut(id.as_str())
            .ok_or(SandboxError::UnknownSession)?;
        let generated = session.generated.as_mut().ok_or(SandboxError::NotEnded)?;
        generated.note = note;
        generated.structured = structured;
        Ok(())
    }

    /// Fails a session (`ERROR_CODE_TRANSCRIPTION`) and delivers its `failure` webhook.
    ///
    /// # Errors
    /// [`SandboxError::UnknownSession`], [`SandboxError::AlreadyEnded`], delivery errors.
    pub async fn fail(&self, id: &SessionId) -> Result<Delivery, SandboxError> {
        let encounter_id = self.end(id, SessionStatus::Failed)?;
        let event = sample::failed(id.as_str(), encounter_id.as_str());
        self.deliver(&event).await
    }

    /// Times a session out and delivers a webhook with status `timeout` (Suki does not document
    /// this status string; the SDK recognises common spellings).
    ///
    /// # Errors
    /// As [`fail`](Self::fail).
    pub async fn time_out(&self, id: &SessionId) -> Result<Delivery, SandboxError> {
        let encounter_id = self.end(id, SessionStatus::Failed)?;
        let event = sample::timed_out(id.as_str(), encounter_id.as_str());
        self.deliver(&event).await
    }

    /// Cancels a session (status `aborted`) and delivers a webhook with status `cancelled`.
    ///
    /// # Errors
    /// As [`fail`](Self::fail).
    pub async fn cancel(&self, id: &SessionId) -> Result<Delivery, SandboxError> {
        let encounter_id = self.end(id, SessionStatus::Aborted)?;
        let event = sample::cancelled(id.as_str(), encounter_id.as_str());
        self.deliver(&event).await
    }

    fn end(&self, id: &SessionId, status: SessionStatus) -> Result<EncounterId, SandboxError> {
        let mut world = self.shared.world();
        let session = world
            .sessions
            .get_mut(id.as_str())
            .ok_or(SandboxError::UnknownSession)?;
        ensure_running(session)?;
        session.status = status;
        Ok(EncounterId(session.encounter_id.clone()))
    }
}

fn ensure_running(session: &Session) -> Result<(), SandboxError> {
    if session.status.is_terminal() {
        return Err(SandboxError::AlreadyEnded {
            status: session.status.to_string(),
        });
    }
    Ok(())
}
