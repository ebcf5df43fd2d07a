//! Sample events, shaped like Suki's (ids as given, the documented links built from the route
//! table): what the test kit, the sandbox and the CLI's `send` all deliver.

use crate::{
    EncounterId, ErrorCode, Links, SessionCompleted, SessionEnded, SessionFailed, SessionId,
    WebhookEvent,
};

/// A completed session with every documented `_links` key pointing at Suki's paths.
pub fn completed(session_id: &str, encounter_id: &str) -> WebhookEvent {
    WebhookEvent::Completed(SessionCompleted {
        session_id: SessionId::from(session_id),
        encounter_id: EncounterId::from(encounter_id),
        sessions: vec![SessionId::from(session_id)],
        additional_info: None,
        links: links_for(session_id, encounter_id),
    })
}

/// The six documented links for a session, relative to the API base URL
/// ([`Links::for_session`]).
pub fn links_for(session_id: &str, encounter_id: &str) -> Links {
    Links::for_session(
        &SessionId::from(session_id),
        &EncounterId::from(encounter_id),
    )
}

/// A failed session (`ERROR_CODE_TRANSCRIPTION`).
pub fn failed(session_id: &str, encounter_id: &str) -> WebhookEvent {
    WebhookEvent::Failed(SessionFailed {
        session_id: SessionId::from(session_id),
        encounter_id: EncounterId::from(encounter_id),
        error_code: ErrorCode::Transcription,
        error_detail: "Error in transcription".to_owned(),
    })
}

/// A timed-out session (status `timeout`).
pub fn timed_out(session_id: &str, encounter_id: &str) -> WebhookEvent {
    WebhookEvent::TimedOut(ended("timeout", session_id, encounter_id))
}

/// A cancelled session (status `cancelled`).
pub fn cancelled(session_id: &str, encounter_id: &str) -> WebhookEvent {
    WebhookEvent::Cancelled(ended("cancelled", session_id, encounter_id))
}

fn ended(status: &str, session_id: &str, encounter_id: &str) -> SessionEnded {
    SessionEnded {
        status: status.to_owned(),
        session_id: SessionId::from(session_id),
        encounter_id: EncounterId::from(encounter_id),
        additional_info: None,
    }
}
