//! `fetch_results`: every link of a completed session, fetched concurrently.

use suki_ambient_core::api::{NoteContent, StatusResponse, StructuredData, Transcript};
use suki_ambient_core::{LinkKind, SessionCompleted, SessionId};

use crate::{AmbientClient, ClientError};

/// The results a completed session's `_links` point to: one `Result` per link present (`None`
/// when the webhook had no such link), so one failure does not lose the others.
#[derive(Debug)]
#[non_exhaustive]
pub struct SessionResults {
    /// The session.
    pub session_id: SessionId,
    /// `status`.
    pub status: Option<Result<StatusResponse, ClientError>>,
    /// `contents`: the session's note.
    pub contents: Option<Result<NoteContent, ClientError>>,
    /// `encounter_content`: the encounter's note.
    pub encounter_content: Option<Result<NoteContent, ClientError>>,
    /// `structured_data`: the session's structured data.
    pub structured_data: Option<Result<StructuredData, ClientError>>,
    /// `encounter_structured_data`.
    pub encounter_structured_data: Option<Result<StructuredData, ClientError>>,
    /// `transcripts`: the transcript.
    pub transcript: Option<Result<Transcript, ClientError>>,
}

impl SessionResults {
    /// The links that failed, with their errors.
    pub fn errors(&self) -> Vec<(LinkKind, &ClientError)> {
        fn err<T>(result: &Option<Result<T, ClientError>>) -> Option<&ClientError> {
            result.as_ref().and_then(|r| r.as_ref().err())
        }
        [
            (LinkKind::Status, err(&self.status)),
            (LinkKind::Contents, err(&self.contents)),
            (LinkKind::EncounterContent, err(&self.encounter_content)),
            (LinkKind::StructuredData, err(&self.structured_data)),
            (
                LinkKind::EncounterStructuredData,
                err(&self.encounter_structured_data),
            ),
            (LinkKind::Transcripts, err(&self.transcript)),
        ]
        .into_iter()
        .filter_map(|(kind, e)| e.map(|e| (kind, e)))
        .collect()
    }

    /// How many links were fetched (successfully or not).
    pub fn fetched(&self) -> usize {
        [
            self.status.is_some(),
            self.contents.is_some(),
            self.encounter_content.is_some(),
            self.structured_data.is_some(),
            self.encounter_structured_data.is_some(),
            self.transcript.is_some(),
        ]
        .into_iter()
        .filter(|x| *x)
        .count()
    }

    /// Whether every present link was fetched successfully.
    pub fn is_ok(&self) -> bool {
        self.errors().is_empty()
    }
}

impl AmbientClient {
    /// Follows every documented link of a completed session (the first of each kind),
    /// concurrently, over the client's connection pool.
    pub async fn fetch_results(&self, event: &SessionCompleted) -> SessionResults {
        let links = &event.links;
        async fn one<T: serde::de::DeserializeOwned>(
            client: &AmbientClient,
            link: Option<&suki_ambient_core::Link>,
        ) -> Option<Result<T, ClientError>> {
            match link {
                Some(link) => Some(client.follow_as(link).await),
                None => None,
            }
        }
        let (
            status,
            contents,
            encounter_content,
            structured_data,
            encounter_structured_data,
            transcript,
        ) = tokio::join!(
            one(self, links.status().first()),
            one(self, links.contents().first()),
            one(self, links.encounter_content().first()),
            one(self, links.structured_data().first()),
            one(self, links.encounter_structured_data().first()),
            one(self, links.transcripts().first()),
        );
        SessionResults {
            session_id: event.session_id.clone(),
            status,
            contents,
            encounter_content,
            structured_data,
            encounter_structured_data,
            transcript,
        }
    }
}
